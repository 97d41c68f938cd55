"""The encrypted state backup: a consistent copy of the database (SQLite's online backup API),
sealed with a key derived from the PIN key, written on a schedule to a second path, and put back
by `lockbridge restore`. Not to be confused with bridge/backup.py (the backup access code pool).

File format: MAGIC, then chunks of `length (4 bytes, big-endian) | nonce (12) | ciphertext`, each
AES-GCM sealed with its index and whether it is the last as associated data, so a truncated,
reordered or spliced file is refused, as is a wrong key. docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bridge.clock import Clock
from bridge.secrets import key_path, load_or_create_key
from bridge.statecheck import CONTINUE_AFTER_UPSTREAM
from bridge.store import MIGRATIONS

if TYPE_CHECKING:
    from bridge.daemon import Bridge

_LOG = logging.getLogger(__name__)
MAGIC = b"LOCKBRIDGE-STATE-BACKUP 1\n"
# Small enough for a Raspberry Pi's memory whatever the database's size.
CHUNK_BYTES = 1 << 20
_HEADER = struct.Struct(">I")
FIRST_BACKUP_AFTER_S = 60.0


class BackupError(Exception):
    """The backup cannot be used: not a backup, damaged, or sealed under another key."""


@dataclass(frozen=True, slots=True)
class Restored:
    """What `restore_state` put back."""

    devices: int
    managed_codes: int
    newest_seq: int
    replaced: Path | None


def backup_key(pin_key: bytes) -> bytes:
    """The backup's own key, derived from the PIN key (one key to keep, two purposes)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"lockbridge state backup v1").derive(pin_key)


def write_backup(db: Path, dest: Path, pin_key: bytes) -> None:
    """Copy the live database consistently, seal it and replace `dest` atomically (blocking)."""
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The clear copy stays beside the database it copies, never on the backup's disk.
    plain = db.with_name(f".{db.name}.backup-copy")
    sealed = dest.with_name(f".{dest.name}.tmp")
    try:
        plain.unlink(missing_ok=True)
        _copy_database(db, plain)
        fd = os.open(sealed, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            seal_file(plain, out, pin_key)
            out.flush()
            os.fsync(out.fileno())
        os.replace(sealed, dest)
        _fsync_dir(dest.parent)
    finally:
        for leftover in (plain, Path(f"{plain}-wal"), Path(f"{plain}-shm"), sealed):
            leftover.unlink(missing_ok=True)


def seal_file(plain: Path, out: BinaryIO, pin_key: bytes) -> None:
    """Write `plain` to `out` in the backup format."""
    aead = AESGCM(backup_key(pin_key))
    out.write(MAGIC)
    with plain.open("rb") as src:
        chunk = src.read(CHUNK_BYTES)
        index = 0
        while True:
            following = src.read(CHUNK_BYTES)
            nonce = os.urandom(12)
            body = aead.encrypt(nonce, chunk, _aad(index, last=not following))
            out.write(_HEADER.pack(len(body)) + nonce + body)
            if not following:
                return
            chunk, index = following, index + 1


def open_file(sealed: Path, out: BinaryIO, pin_key: bytes) -> None:
    """Write the database sealed in `sealed` to `out`; BackupError if it cannot be trusted."""
    aead = AESGCM(backup_key(pin_key))
    with sealed.open("rb") as src:
        if src.read(len(MAGIC)) != MAGIC:
            raise BackupError(f"{sealed} is not a lockbridge state backup")
        for index, (nonce, body, last) in enumerate(_chunks(src)):
            try:
                out.write(aead.decrypt(nonce, body, _aad(index, last)))
            except InvalidTag:
                raise BackupError(f"{sealed} does not open with this PIN key (another box's "
                                  "key?) or is damaged") from None
            if last:
                return
    raise BackupError(f"{sealed} is cut short")


def restore_state(backup: Path, db: Path, pin_key: bytes) -> Restored:
    """Put the backup in place of `db` (kept aside if there is one) and mark it restored, so
    its sequence numbers continue after the upstream's (blocking; the daemon must be stopped)."""
    staged = db.with_name(f".{db.name}.restore")
    staged.unlink(missing_ok=True)
    try:
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            open_file(backup, out, pin_key)
            out.flush()
            os.fsync(out.fileno())
        devices, codes, newest = _check_and_mark(staged)
        replaced = set_aside(db)
        os.replace(staged, db)
        _fsync_dir(db.parent)
    finally:
        staged.unlink(missing_ok=True)
    return Restored(devices, codes, newest, replaced)


async def start_state_backup(bridge: Bridge, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
    """Write the state backup every `store.backup_interval_s` when `store.backup_path` is set."""
    config = bridge.loaded.config
    if config.store.backup_path is None:
        return []
    key = load_or_create_key(key_path(config.store.key_file, config.state_dir))
    writer = StateBackup(bridge.store.path, config.store.backup_path,
                         config.store.backup_interval_s, key, bridge.clock)
    bridge.extras["state_backup"] = writer
    return [group.create_task(writer.run(), name="state-backup")]


class StateBackup:
    """The scheduled writer; a failure is logged once until a backup succeeds again."""

    def __init__(self, db: Path, dest: Path, interval_s: float, pin_key: bytes,
                 clock: Clock) -> None:
        self._db = db
        self.dest = dest
        self._interval = interval_s
        self._key = pin_key
        self._clock = clock
        self.problem: str | None = None
        self.written = 0

    async def run(self) -> None:
        """Back up every interval until cancelled."""
        # The first soon after start: a box that dies in its first hour has a backup too.
        delay = min(self._interval, FIRST_BACKUP_AFTER_S)
        while True:  # until cancelled at shutdown
            await self._clock.sleep(delay)
            await self.write_once()
            delay = self._interval

    async def write_once(self) -> None:
        """One backup, off the event loop."""
        try:
            await asyncio.to_thread(write_backup, self._db, self.dest, self._key)
        except (OSError, sqlite3.Error) as exc:
            if self.problem is None:
                _LOG.warning("state backup to %s failed (%s); retrying every %.0f s",
                             self.dest, exc, self._interval)
            self.problem = str(exc)
            return
        if self.problem is not None:
            _LOG.info("state backup to %s works again", self.dest)
        self.problem = None
        self.written += 1


def _copy_database(db: Path, dest: Path) -> None:
    # One step of the online backup API reads every page under one read transaction: a
    # consistent snapshot even while the daemon writes.
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(dest)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def _chunks(src: BinaryIO) -> Iterator[tuple[bytes, bytes, bool]]:
    header = src.read(_HEADER.size)
    while len(header) == _HEADER.size:
        (length,) = _HEADER.unpack(header)
        nonce, body = src.read(12), src.read(length)
        header = src.read(_HEADER.size)
        yield nonce, body, not header


def _aad(index: int, last: bool) -> bytes:
    return MAGIC + struct.pack(">Q?", index, last)


def _check_and_mark(staged: Path) -> tuple[int, int, int]:
    conn = sqlite3.connect(staged, isolation_level=None)
    try:
        if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise BackupError("the database in the backup fails its integrity check")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise BackupError(f"the backup's schema version {version} is newer than this "
                              "lockbridge understands: upgrade lockbridge first")
        devices = conn.execute("SELECT count(*) FROM devices").fetchone()[0]
        codes = conn.execute("SELECT count(*) FROM access_codes WHERE is_managed").fetchone()[0]
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        newest = int(row[0]) if row else 0
        # The events after `newest` are the restored bridge's own: the upstream has none.
        conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)",
                     (CONTINUE_AFTER_UPSTREAM, f"restored:{newest}"))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return int(devices), int(codes), newest


def set_aside(db: Path) -> Path | None:
    """Move a database (and its WAL, which belongs to it alone) out of the way, kept."""
    if not db.exists():
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        return None
    n = 1
    while db.with_name(f"{db.name}.replaced-{n}").exists():
        n += 1
    aside = db.with_name(f"{db.name}.replaced-{n}")
    for suffix in ("-wal", "-shm", ""):
        part = Path(f"{db}{suffix}")
        if part.exists():
            os.replace(part, Path(f"{aside}{suffix}"))
    return aside


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
