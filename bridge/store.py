"""SQLite system of record: WAL, FULL sync, numbered migrations, sealed PINs, one writer thread
that commits the writes waiting together in one transaction (group commit)."""

from __future__ import annotations

import asyncio
import enum
import errno
import gc
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from bridge.model import Event, EventType
from bridge.records import (
    CodeRecord,
    DeviceRecord,
    code_from_row,
    code_to_row,
    device_from_json,
    device_to_json,
)
from bridge.secrets import PinCipher
from bridge.startup import StartupError
from bridge.storehealth import StoreUnavailable as StoreUnavailable  # re-exported
from bridge.storehealth import WriteHealth, disk_problem, rollback

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")
# Told a submitted write's outcome when it ran after its caller was cancelled (`Store.submit`).
AfterCancel = Callable[[tuple[Any, list[Event]] | BaseException], None]

# Event data keys that hold a PIN; they are sealed like every other PIN at rest.
SECRET_EVENT_KEYS = frozenset({"code", "backup_code"})

# Each entry moves the schema from version N to N+1; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        driver TEXT NOT NULL,
        external_id TEXT NOT NULL,
        record TEXT NOT NULL,
        UNIQUE (driver, external_id)
    );
    CREATE TABLE access_codes (
        access_code_id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices (device_id),
        is_managed INTEGER NOT NULL,
        record TEXT NOT NULL,
        secrets BLOB NOT NULL
    );
    CREATE INDEX access_codes_device ON access_codes (device_id);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        occurred_at TEXT NOT NULL,
        device_id TEXT,
        access_code_id TEXT,
        data TEXT NOT NULL,
        secrets BLOB
    );
    CREATE TABLE intents (
        device_id TEXT NOT NULL,
        slot INTEGER NOT NULL,
        op TEXT NOT NULL,
        access_code_id TEXT,
        secrets BLOB,
        created_at TEXT NOT NULL,
        PRIMARY KEY (device_id, slot)
    );
    CREATE TABLE action_attempts (
        action_attempt_id TEXT PRIMARY KEY,
        record TEXT NOT NULL
    );
    CREATE TABLE declared_codes (
        key TEXT PRIMARY KEY,
        access_code_id TEXT NOT NULL
    );
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # v2: results of upstream commands, so a repeated command id gets its first result back.
    """
    CREATE TABLE upstream_commands (
        command_id TEXT PRIMARY KEY,
        result BLOB NOT NULL,
        finished_at TEXT NOT NULL
    );
    """,
    # v3: reservation automations (bridge/reservations/): one JSON document per row, its PINs
    # (a grant's requested code) sealed apart; automation runs in the order they happened.
    """
    CREATE TABLE spaces (id TEXT PRIMARY KEY, record TEXT NOT NULL, secrets BLOB);
    CREATE TABLE user_identities (id TEXT PRIMARY KEY, record TEXT NOT NULL, secrets BLOB);
    CREATE TABLE reservations (id TEXT PRIMARY KEY, record TEXT NOT NULL, secrets BLOB);
    CREATE TABLE access_grants (id TEXT PRIMARY KEY, record TEXT NOT NULL, secrets BLOB);
    CREATE TABLE access_methods (id TEXT PRIMARY KEY, record TEXT NOT NULL, secrets BLOB);
    CREATE TABLE automation_runs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        record TEXT NOT NULL,
        secrets BLOB
    );
    """,
    # v4: customer portal links and the sessions they open, by the hash of their token only.
    """
    CREATE TABLE portal_links (
        token_hash TEXT PRIMARY KEY,
        customer_key TEXT NOT NULL,
        options TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE portal_sessions (
        session_hash TEXT PRIMARY KEY,
        customer_key TEXT NOT NULL,
        options TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    """,
)
# Tables that hold one JSON document per id (Tx.put_document, Reader.documents).
DOCUMENT_TABLES = frozenset({"spaces", "user_identities", "reservations", "access_grants",
                             "access_methods", "automation_runs"})
# kv keys of the upstream link.
UPSTREAM_ACKED_SEQ = "upstream.acked_seq"
UPSTREAM_LAST_COMMAND = "upstream.last_command_id"
# kv key: when this database was made (unix seconds), a witness of lost state
# (bridge/statecheck.py).
STORE_CREATED_AT = "store.created_at"
# Prefix of the kv keys marking an upstream command as applied before its result is stored.
UPSTREAM_APPLIED = "upstream.applied:"


class StoreError(Exception):
    """The database cannot be used as it is (newer schema, corruption, wrong key)."""


class StoreUnusable(StoreError, StartupError):
    """The database cannot be opened on this box as it is: what is wrong and the fix."""


# Most writes one group commits together: bounds a group's transaction, and so how long a write
# arriving during it waits for the next group's fsync.
MAX_GROUP = 500
# The savepoint around each write of a group, so one failing write leaves the others in place.
_SAVEPOINT = "lockbridge_write"

# SQLite's primary result codes that can pass by themselves: busy, locked, disk full.
_TRANSIENT_SQLITE = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL})
# What to do about a database that is damaged or not a database at all.
_RESTORE_FIX = ("stop lockbridge, move it aside and restore the database and pin.key from the "
                "same backup (docs/install.md, Backup and restore)")


class IntentOp(enum.StrEnum):
    """What an intent's command does to its slot."""

    WRITE = "write"
    CLEAR = "clear"


@dataclass(frozen=True, slots=True)
class Intent:
    """A command about to go to a lock, recorded so a restart can verify or replay it."""

    device_id: str
    slot: int
    op: IntentOp
    access_code_id: str | None
    pin: str | None


class Tx:
    """What a write transaction may do; every method runs on the writer thread."""

    def __init__(self, conn: sqlite3.Connection, cipher: PinCipher) -> None:
        self._conn = conn
        self._cipher = cipher
        self.appended: list[Event] = []

    def put_device(self, device: DeviceRecord) -> None:
        """Insert or replace a device."""
        self._conn.execute(
            "INSERT INTO devices (device_id, driver, external_id, record) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device_id) DO UPDATE SET record = excluded.record",
            (device.device_id, device.driver, device.external_id, device_to_json(device)),
        )

    def put_code(self, code: CodeRecord) -> None:
        """Insert or replace a code; its PINs are sealed."""
        public, secrets = code_to_row(code)
        sealed = self._cipher.seal(json.dumps(secrets), code.access_code_id)
        self._conn.execute(
            "INSERT INTO access_codes (access_code_id, device_id, is_managed, record, secrets) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (access_code_id) DO UPDATE SET "
            "device_id = excluded.device_id, is_managed = excluded.is_managed, "
            "record = excluded.record, secrets = excluded.secrets",
            (code.access_code_id, code.device_id, int(code.is_managed), json.dumps(public), sealed),
        )

    def drop_code(self, access_code_id: str) -> None:
        """Forget a code for good."""
        self._conn.execute("DELETE FROM access_codes WHERE access_code_id = ?", (access_code_id,))

    def add_event(self, event: Event) -> None:
        """Append to the outbox; the sequence number is assigned here. PINs in it are sealed."""
        public = {k: v for k, v in event.data.items() if k not in SECRET_EVENT_KEYS}
        hidden = {k: v for k, v in event.data.items() if k in SECRET_EVENT_KEYS}
        sealed = self._cipher.seal(json.dumps(hidden), event.event_id) if hidden else None
        cur = self._conn.execute(
            "INSERT INTO events (event_id, event_type, occurred_at, device_id, access_code_id, "
            "data, secrets) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event.event_id, event.event_type.value, event.occurred_at.isoformat(),
             event.device_id, event.access_code_id, json.dumps(public), sealed),
        )
        self.appended.append(
            Event(event.event_id, event.event_type, event.occurred_at, event.device_id,
                  event.access_code_id, event.data, cur.lastrowid)
        )

    def put_intent(self, intent: Intent) -> None:
        """Record what is about to be sent to a lock."""
        context = f"{intent.device_id}:{intent.slot}"
        sealed = self._cipher.seal(json.dumps({"pin": intent.pin}), context)
        self._conn.execute(
            "INSERT OR REPLACE INTO intents (device_id, slot, op, access_code_id, secrets, "
            "created_at) VALUES (?, ?, ?, ?, ?, datetime('now'))",
            (intent.device_id, intent.slot, intent.op, intent.access_code_id, sealed),
        )

    def drop_intent(self, device_id: str, slot: int) -> None:
        """The command's outcome is recorded; forget the intent."""
        self._conn.execute("DELETE FROM intents WHERE device_id = ? AND slot = ?",
                           (device_id, slot))

    def set_declared(self, key: str, access_code_id: str) -> None:
        """Remember which code a `codes:` entry of the config created."""
        self._conn.execute("INSERT OR REPLACE INTO declared_codes VALUES (?, ?)",
                           (key, access_code_id))

    def put_kv(self, key: str, value: str) -> None:
        """Store a small setting."""
        self._conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))

    def drop_kv(self, key: str) -> None:
        """Forget a small setting."""
        self._conn.execute("DELETE FROM kv WHERE key = ?", (key,))

    def put_action_attempt(self, attempt_id: str, record: dict[str, Any]) -> None:
        """Insert or replace an action attempt."""
        self._conn.execute("INSERT OR REPLACE INTO action_attempts VALUES (?, ?)",
                           (attempt_id, json.dumps(record)))

    def ack_upstream(self, seq: int, keep_acked: int) -> int:
        """Record the upstream's cumulative ack and trim acknowledged events beyond the newest
        `keep_acked`; an unacknowledged event is never deleted. Returns how many were trimmed."""
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?",
                                 (UPSTREAM_ACKED_SEQ,)).fetchone()
        acked = max(seq, int(row[0]) if row else 0)
        self._conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)",
                           (UPSTREAM_ACKED_SEQ, str(acked)))
        newest = self._conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        horizon = min(acked, newest - keep_acked)
        if horizon <= 0:
            return 0
        return self._conn.execute("DELETE FROM events WHERE seq <= ?", (horizon,)).rowcount

    def continue_after_upstream(self, upstream_acked: int, flag_key: str) -> int:
        """After a restore or an accepted fresh start the upstream holds sequence numbers this
        store never assigned: move the events the upstream cannot have after `upstream_acked`
        (in order), continue numbering after them, take the upstream's ack and clear
        `flag_key`. The upstream cannot have a fresh store's unacknowledged events, nor the
        events a restored store made after its restore (`flag_key` holds "restored:<newest
        sequence number in the backup>"); it has every event the backup held, since it
        acknowledged past them. Returns how many events moved."""
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?",
                                 (UPSTREAM_ACKED_SEQ,)).fetchone()
        base = int(row[0]) if row else 0
        flag = self._conn.execute("SELECT value FROM kv WHERE key = ?",
                                  (flag_key,)).fetchone()
        if flag is not None and str(flag[0]).startswith("restored:"):
            base = int(str(flag[0]).partition(":")[2])
        row = self._conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        newest = int(row[0]) if row else 0
        self._conn.execute("DELETE FROM kv WHERE key = ?", (flag_key,))
        if upstream_acked <= base:
            return 0
        offset = upstream_acked - base
        # Through negative numbers, so no moved row ever meets one not yet moved.
        self._conn.execute("UPDATE events SET seq = -seq WHERE seq > ?", (base,))
        moved = self._conn.execute("UPDATE events SET seq = ? - seq WHERE seq < 0",
                                   (offset,)).rowcount
        top = max(newest + offset, upstream_acked)
        if row is None:
            self._conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)",
                               (top,))
        else:
            self._conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'",
                               (top,))
        self._conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)",
                           (UPSTREAM_ACKED_SEQ, str(upstream_acked)))
        return int(moved)

    def mark_command_applied(self, command_id: str, marker: str) -> None:
        """Record, in the transaction that makes an upstream command's change, that the change
        is made; `marker` (no PIN in it) says how to rebuild the result. Cleared when the
        result is stored."""
        self._conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)",
                           (UPSTREAM_APPLIED + command_id, marker))

    def put_command_result(self, command_id: str, result: str, keep: int) -> None:
        """Store an upstream command's result (sealed: it may hold a PIN), clear its applied
        marker, and forget all but the newest `keep` results."""
        sealed = self._cipher.seal(result, f"command:{command_id}")
        self._conn.execute(
            "INSERT INTO upstream_commands VALUES (?, ?, datetime('now'))", (command_id, sealed))
        self._conn.execute("DELETE FROM kv WHERE key = ?", (UPSTREAM_APPLIED + command_id,))
        self._conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)",
                           (UPSTREAM_LAST_COMMAND, command_id))
        self._conn.execute(
            "DELETE FROM upstream_commands WHERE rowid <= "
            "(SELECT max(rowid) FROM upstream_commands) - ?", (keep,))

    def put_document(self, table: str, doc_id: str, record: dict[str, Any],
                     secrets: dict[str, Any] | None = None) -> None:
        """Insert or replace one document of a DOCUMENT_TABLES table; `secrets` are sealed."""
        sealed = self._cipher.seal(json.dumps(secrets), f"{table}:{doc_id}") if secrets \
            else None
        self._conn.execute(
            f"INSERT INTO {_document_table(table)} (id, record, secrets) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET record = excluded.record, "
            "secrets = excluded.secrets", (doc_id, json.dumps(record), sealed))

    def drop_document(self, table: str, doc_id: str) -> None:
        """Forget one document of a DOCUMENT_TABLES table."""
        self._conn.execute(f"DELETE FROM {_document_table(table)} WHERE id = ?", (doc_id,))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Raw SQL for the few callers that need it (outbox trimming, tests)."""
        return self._conn.execute(sql, params)


class Store:
    """The database. Writes are serialised on one thread; reads use their own connection."""

    def __init__(self, path: Path, cipher: PinCipher, *, group_commit: bool = True) -> None:
        self.path = path
        self._cipher = cipher
        # False: each write its own transaction and fsync (the benchmarks' naive baseline).
        self._group_commit = group_commit
        self._waiting: list[tuple[Callable[[Tx], Any], asyncio.Future[Any],
                                  AfterCancel | None]] = []
        self._drainer: asyncio.Task[None] | None = None
        # Groups committed and the writes they held (their ratio is the mean group size).
        self.groups = 0
        self.grouped_writes = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-reader")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        # Whether writes work now (disk full, I/O errors): /health, metrics and the API read it.
        self.health = WriteHealth(path)

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Create or migrate the database and check its integrity."""
        loop = asyncio.get_running_loop()
        try:
            self._wconn = await loop.run_in_executor(self._writer, self._open_writer)
            self._rconn = await loop.run_in_executor(self._reader, self._open_reader)
        except BaseException:
            self._writer.shutdown(wait=False)
            self._reader.shutdown(wait=False)
            raise

    async def close(self) -> None:
        """Finish the writes already asked for, checkpoint and close both connections."""
        loop = asyncio.get_running_loop()
        if self._drainer is not None and not self._drainer.done():
            await asyncio.wait({self._drainer})
        if self._rconn is not None:
            await loop.run_in_executor(self._reader, self._rconn.close)
            self._rconn = None
        if self._wconn is not None:
            await loop.run_in_executor(self._writer, self._close_writer)
            self._wconn = None
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    def open_sync(self) -> None:
        """Open without an event loop (CLI reads)."""
        self._rconn = self._open_reader(create=False)

    # -- writing ---------------------------------------------------------------------------

    async def write(self, fn: Callable[[Tx], _T]) -> tuple[_T, list[Event]]:
        """Run `fn` in a transaction; returns its result and the events it appended, once the
        change is durable. An exception from `fn` undoes only its own change and is raised here.

        Writes that wait together share one transaction and one fsync (group commit): the
        writer thread takes every waiting write, runs them in one transaction and commits once.
        """
        result, appended = await self.submit(fn)
        return result, appended

    def submit(self, fn: Callable[[Tx], _T], ran_after_cancel: AfterCancel | None = None,
               ) -> asyncio.Future[tuple[_T, list[Event]]]:
        """`write`, asked for now, as a future that resolves as `write` returns. Cancelled
        before its group starts, the write is not run (as when `write` is cancelled).
        Cancelled once its group has started, the write still runs, and `ran_after_cancel`
        (if given) is called on the event loop with its outcome, `(result, appended events)`
        or the exception it raised: a caller that must follow every write it asked for (the
        engine's committer, three commits a code) needs no `asyncio.shield` for it."""
        loop = asyncio.get_running_loop()
        if not self._group_commit:
            ran = loop.run_in_executor(self._writer, self._run_tx, fn)
            if ran_after_cancel is None:
                return ran
            answer: asyncio.Future[tuple[_T, list[Event]]] = loop.create_future()

            def settle(ran: asyncio.Future[tuple[_T, list[Event]]]) -> None:
                error = ran.exception()
                if answer.cancelled():
                    ran_after_cancel(error if error is not None else ran.result())
                elif error is not None:
                    answer.set_exception(error)
                else:
                    answer.set_result(ran.result())

            ran.add_done_callback(settle)
            return answer
        done: asyncio.Future[tuple[Any, list[Event]]] = loop.create_future()
        self._waiting.append((fn, done, ran_after_cancel))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return done

    # -- reading ---------------------------------------------------------------------------

    async def read(self, fn: Callable[[Reader], _T]) -> _T:
        """Run a read on the reader connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._run_read, fn)

    def read_sync(self, fn: Callable[[Reader], _T]) -> _T:
        """A read from a plain thread (CLI)."""
        return self._run_read(fn)

    # -- internals -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=30)
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
                os.close(fd)
            conn = self._connect()
        except (OSError, sqlite3.Error) as exc:
            self._raise_unusable(exc)
            raise
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            # An access-control record must survive someone pulling the plug.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            version = self._checked_version(conn)
            with scan_cache(conn):
                check = conn.execute("PRAGMA quick_check").fetchone()[0]
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                self._raise_unusable(exc)
            raise
        if check != "ok":
            conn.close()
            raise StoreUnusable(f"{self.path} failed its integrity check ({check})",
                                _RESTORE_FIX)
        if version < len(MIGRATIONS):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for number in range(version, len(MIGRATIONS)):
                    for statement in _statements(MIGRATIONS[number]):
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
                if version == 0:
                    conn.execute("INSERT OR REPLACE INTO kv VALUES (?, strftime('%s', 'now'))",
                                 (STORE_CREATED_AT,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            _LOG.info("store %s migrated from version %d to %d", self.path, version,
                      len(MIGRATIONS))
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)
        return conn

    def _open_reader(self, create: bool = True) -> sqlite3.Connection:
        if not create and not self.path.exists():
            raise StoreError(f"no database at {self.path}")
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            self._raise_unusable(exc)
            raise
        try:
            self._checked_version(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                self._raise_unusable(exc)
            raise
        return conn

    def _checked_version(self, conn: sqlite3.Connection) -> int:
        """The schema version; StoreUnusable when it is newer than this build knows."""
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreUnusable(
                f"{self.path} has schema version {version}, newer than this lockbridge "
                f"understands ({len(MIGRATIONS)})",
                "upgrade lockbridge to the version that wrote it, or restore the database and "
                "pin.key from a backup made before the upgrade")
        return version

    def _raise_unusable(self, exc: OSError | sqlite3.Error) -> None:
        """StoreUnusable, saying the operator's next step, when SQLite could not open the file
        for a reason a restart cannot cure; returns for one that may pass by itself (a lock
        held too long, a full disk), which the caller re-raises so systemd restarts the daemon."""
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in _TRANSIENT_SQLITE or getattr(exc, "errno", None) == errno.ENOSPC:
            return
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc,
                                                                      sqlite3.OperationalError):
            raise StoreUnusable(f"{self.path} is not a lockbridge database or is damaged "
                                f"({exc})", _RESTORE_FIX) from exc
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreUnusable(
            f"cannot open the database {self.path} ({reason})",
            f"it must be a file the service user can write, in a writable directory: chown -R "
            f"lockbridge:lockbridge {self.path.parent} && chmod 600 {self.path}; a read-only "
            "file system is often an SD card remounted after errors (check dmesg)") from exc

    def _close_writer(self) -> None:
        assert self._wconn is not None
        try:
            # PASSIVE never waits: a TRUNCATE checkpoint waits (up to the busy timeout) for
            # readers in other processes, which hung a CLI closing beside a running daemon.
            self._wconn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            self._wconn.close()

    async def _drain(self) -> None:
        """Commit the waiting writes, group by group, until none waits; each caller's future
        resolves only after the commit that made its change durable."""
        loop = asyncio.get_running_loop()
        group: list[tuple[Callable[[Tx], Any], asyncio.Future[Any], AfterCancel | None]] = []
        try:
            while self._waiting:
                # A caller cancelled before its group started is not run (as with an executor).
                group = [w for w in self._waiting[:MAX_GROUP] if not w[1].done()]
                del self._waiting[:MAX_GROUP]
                if not group:
                    continue
                try:
                    outcomes = await asyncio.shield(loop.run_in_executor(
                        self._writer, self._run_group, [fn for fn, _, _ in group]))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the store is closed: every write of it fails
                    outcomes = [_Failed(exc)] * len(group)
                for (_, done, after), outcome in zip(group, outcomes, strict=True):
                    if done.done():
                        # Cancelled while its group ran: the change is made (or failed) all
                        # the same, and the caller may want to know which.
                        if after is not None and done.cancelled():
                            try:
                                after(outcome.exc if isinstance(outcome, _Failed) else outcome)
                            except Exception:  # one caller's follower never stops the others'
                                _LOG.exception("following a write whose caller was cancelled")
                        continue
                    if isinstance(outcome, _Failed):
                        done.set_exception(outcome.exc)
                    else:
                        done.set_result(outcome)
                group = []
        except asyncio.CancelledError:
            # The loop is going away: nobody is left to hand these results to.
            for _, done, _ in [*group, *self._waiting]:
                done.cancel()
            self._waiting.clear()
            raise

    def _run_group(self, fns: list[Callable[[Tx], Any]]) -> list[Any]:
        """Run `fns` in one transaction and commit once; each entry of the answer is `(result,
        appended events)` or `_Failed`. When the group as a whole fails (a disk error, the
        commit itself) or the store is in an outage, each write runs alone, exactly as without
        grouping, so one write's trouble is never another's."""
        conn = self._wconn
        if conn is None:
            raise StoreError("store is closed")
        if len(fns) == 1 or not self.health.writable:
            return [self._run_alone(fn) for fn in fns]
        self.health.before_write(conn)
        try:
            try:
                outcomes = self._group_pass(conn, fns, isolated=False)
            except _WriteRaised:
                # Undone, and run again with each write in its own savepoint: only the write
                # that raised fails. (Writes are run again after a rollback anyway: see below.)
                rollback(conn)
                outcomes = self._group_pass(conn, fns, isolated=True)
        except (sqlite3.Error, _GroupFailed):
            rollback(conn)
            _LOG.debug("a group of %d writes failed as a whole; each runs alone", len(fns))
            return [self._run_alone(fn) for fn in fns]
        except BaseException:
            rollback(conn)
            raise
        self.groups += 1
        self.grouped_writes += len(fns)
        return outcomes

    def _group_pass(self, conn: sqlite3.Connection, fns: list[Callable[[Tx], Any]], *,
                    isolated: bool) -> list[Any]:
        """One transaction over `fns`, committed. Not `isolated`: the writes one after the
        other, _WriteRaised at the first that raises (nearly every group: two statements a
        write less than a savepoint around each, a third of the writer's statements in the
        cold converge). `isolated`: each write in its own savepoint, one that raises rolled
        back alone and its exception its outcome."""
        conn.execute("BEGIN IMMEDIATE")
        outcomes: list[Any] = []
        for fn in fns:
            tx = Tx(conn, self._cipher)
            if not isolated:
                try:
                    result = fn(tx)
                except Exception as exc:
                    raise _WriteRaised from exc
                outcomes.append((result, tx.appended))
                continue
            conn.execute(f"SAVEPOINT {_SAVEPOINT}")
            try:
                result = fn(tx)
            except Exception as exc:
                if not conn.in_transaction or (isinstance(exc, sqlite3.Error)
                                               and disk_problem(exc) is not None):
                    raise _GroupFailed from exc
                conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
                conn.execute(f"RELEASE {_SAVEPOINT}")
                outcomes.append(_Failed(exc))
                continue
            conn.execute(f"RELEASE {_SAVEPOINT}")
            outcomes.append((result, tx.appended))
        conn.execute("COMMIT")
        return outcomes

    def _run_alone(self, fn: Callable[[Tx], Any]) -> Any:
        """One write in its own transaction, its exception as the outcome."""
        try:
            outcome = self._run_tx(fn)
        except Exception as exc:
            return _Failed(exc)
        self.groups += 1
        self.grouped_writes += 1
        return outcome

    def _run_tx(self, fn: Callable[[Tx], _T]) -> tuple[_T, list[Event]]:
        conn = self._wconn
        if conn is None:
            raise StoreError("store is closed")
        tx = Tx(conn, self._cipher)
        self.health.before_write(conn)
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(tx)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            rollback(conn)
            unavailable = self.health.failed(exc)
            if unavailable is not None:
                raise unavailable from exc
            raise
        except BaseException:
            rollback(conn)
            raise
        return result, tx.appended

    def _run_read(self, fn: Callable[[Reader], _T]) -> _T:
        conn = self._rconn
        if conn is None:
            raise StoreError("store is closed")
        conn.execute("BEGIN")
        try:
            return fn(Reader(conn, self._cipher))
        finally:
            conn.execute("COMMIT")


@dataclass(frozen=True, slots=True)
class _Failed:
    """A write of a group that raised: its caller gets `exc`."""

    exc: BaseException


class _GroupFailed(Exception):
    """A group's transaction cannot go on (a disk error, or SQLite ended it)."""


class _WriteRaised(Exception):
    """A write of a group run without savepoints raised: the group runs again with them."""


class Reader:
    """Queries over one consistent snapshot."""

    def __init__(self, conn: sqlite3.Connection, cipher: PinCipher) -> None:
        self._conn = conn
        self._cipher = cipher

    def devices(self) -> list[DeviceRecord]:
        """Every device."""
        rows = self._conn.execute("SELECT record FROM devices ORDER BY rowid").fetchall()
        shared: dict[tuple[Any, ...], Any] = {}
        return [device_from_json(r[0], shared) for r in rows]

    def codes(self, device_id: str | None = None) -> list[CodeRecord]:
        """Every code, or one device's."""
        if device_id is not None:
            rows = self._conn.execute(
                "SELECT access_code_id, record, secrets FROM access_codes WHERE device_id = ? "
                "ORDER BY rowid", (device_id,))
            return [self._code(r) for r in rows]
        with scan_cache(self._conn), collector_paused():
            rows = self._conn.execute(
                "SELECT access_code_id, record, secrets FROM access_codes ORDER BY rowid")
            # Row by row, not fetchall(): the raw JSON of every code at once was a startup
            # peak larger than the decoded codes themselves.
            return [self._code(r) for r in rows]

    def intents(self) -> list[Intent]:
        """Commands that were sent (or about to be) when the process last stopped."""
        rows = self._conn.execute(
            "SELECT device_id, slot, op, access_code_id, secrets FROM intents"
        ).fetchall()
        out = []
        for device_id, slot, op, code_id, sealed in rows:
            pin = json.loads(self._cipher.open(sealed, f"{device_id}:{slot}"))["pin"]
            out.append(Intent(device_id, slot, IntentOp(op), code_id, pin))
        return out

    def events(
        self, after_seq: int = 0, limit: int = 1000, device_id: str | None = None,
        access_code_id: str | None = None, event_types: Iterable[str] | None = None,
    ) -> list[Event]:
        """Events in sequence order."""
        sql = ("SELECT seq, event_id, event_type, occurred_at, device_id, access_code_id, data, "
               "secrets FROM events WHERE seq > ?")
        params: list[Any] = [after_seq]
        if device_id is not None:
            sql += " AND device_id = ?"
            params.append(device_id)
        if access_code_id is not None:
            sql += " AND access_code_id = ?"
            params.append(access_code_id)
        types = list(event_types or [])
        if types:
            sql += f" AND event_type IN ({','.join('?' * len(types))})"
            params.extend(types)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        return [self._event(r) for r in self._conn.execute(sql, params).fetchall()]

    def event(self, event_id: str) -> Event | None:
        """One event by id."""
        row = self._conn.execute(
            "SELECT seq, event_id, event_type, occurred_at, device_id, access_code_id, data, "
            "secrets FROM events WHERE event_id = ?", (event_id,),
        ).fetchone()
        return self._event(row) if row else None

    def declared(self) -> dict[str, str]:
        """Config keys of declared codes and the codes they created."""
        return dict(self._conn.execute("SELECT key, access_code_id FROM declared_codes"))

    def kv(self, key: str) -> str | None:
        """A small setting."""
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def action_attempts(self) -> list[dict[str, Any]]:
        """Every action attempt."""
        rows = self._conn.execute("SELECT record FROM action_attempts ORDER BY rowid")
        return [json.loads(r[0]) for r in rows]

    def command_result(self, command_id: str) -> str | None:
        """The stored result of an upstream command, or None if it never finished."""
        row = self._conn.execute("SELECT result FROM upstream_commands WHERE command_id = ?",
                                 (command_id,)).fetchone()
        return self._cipher.open(row[0], f"command:{command_id}") if row else None

    def command_marker(self, command_id: str) -> str | None:
        """The applied marker of an upstream command whose change is committed but whose
        result was never stored (a crash in between), or None."""
        return self.kv(UPSTREAM_APPLIED + command_id)

    def event_bounds(self) -> tuple[int, int]:
        """(oldest sequence number still held, newest ever assigned); (n + 1, n) when empty."""
        row = self._conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        newest = int(row[0]) if row else 0
        oldest = self._conn.execute("SELECT min(seq) FROM events").fetchone()[0]
        return (int(oldest) if oldest is not None else newest + 1), newest

    def documents(self, table: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Every document of a DOCUMENT_TABLES table, oldest first: (record, secrets)."""
        rows = self._conn.execute(
            f"SELECT id, record, secrets FROM {_document_table(table)} ORDER BY rowid")
        return [(json.loads(record), json.loads(self._cipher.open(sealed, f"{table}:{doc_id}"))
                 if sealed is not None else {}) for doc_id, record, sealed in rows]

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Raw rows of a query, for the few readers with tables of their own (the portal)."""
        return list(self._conn.execute(sql, params))

    def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """A single integer from a query."""
        return int(self._conn.execute(sql, params).fetchone()[0])

    def _event(self, row: tuple[Any, ...]) -> Event:
        seq, event_id, event_type, occurred_at, device_id, code_id, data, sealed = row
        payload = json.loads(data)
        if sealed is not None:
            payload.update(json.loads(self._cipher.open(sealed, event_id)))
        return Event(event_id, EventType(event_type), datetime.fromisoformat(occurred_at),
                     device_id, code_id, payload, seq)

    def _code(self, row: tuple[str, str, bytes]) -> CodeRecord:
        code_id, public, sealed = row
        return code_from_row(_row_json(public), _row_json(self._cipher.open(sealed, code_id)))


# The C scanner json.loads ends in (typeshed does not declare the attribute).
_SCAN_JSON: Callable[[str, int], tuple[Any, int]] = \
    json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _row_json(text: str) -> Any:
    """`json.loads(text)` for the JSON the store wrote itself (compact, nothing around it),
    without its wrappers: 2 us less a call, 60,000 calls in the startup read of 30,000 codes.
    Anything else (whitespace, trailing data, an error) goes through json.loads as it is."""
    try:
        value, end = _SCAN_JSON(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


# SQLite's page cache during a scan that reads every page once (KiB, as a negative cache_size).
SCAN_CACHE_KIB = 256


@contextmanager
def scan_cache(conn: sqlite3.Connection) -> Iterator[None]:
    """A small page cache for the length of a full scan (the integrity check, the startup read
    of every code): at the default size each connection kept 2 MB of pages no later query used,
    4 MB of the daemon's RSS over a store of 30,000 codes."""
    size = int(conn.execute("PRAGMA cache_size").fetchone()[0])
    conn.execute(f"PRAGMA cache_size = {-SCAN_CACHE_KIB}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA cache_size = {size}")


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic garbage collection for the length of a bulk read. The startup read makes
    30,000 codes that all live on, and no cycles: the collector, run every 700 new objects,
    went through them (and, a few times, through the whole heap) again and again, 15% of the
    read's CPU. The count carries on, so the first allocation after the read collects once.
    Process-wide, so it only turns the collector back on if it was on when the read began."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _document_table(table: str) -> str:
    """`table` when it is a document table (never SQL from elsewhere), else ValueError."""
    if table not in DOCUMENT_TABLES:
        raise ValueError(f"{table!r} is not a document table")
    return table


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
