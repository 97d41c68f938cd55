"""Whether the store can write: a full or failing disk is an outage, logged once, probed, ended.

While the outage lasts every write is refused with `StoreUnavailable` before it starts (the API
answers 503, /health is not ready, the lock workers wait), so a write that happens to fit in
space SQLite already holds cannot end the outage and start it again at every request. Each write
first probes with a transaction that grows the database; the first probe that commits ends it.
docs/reliability.md, "A failing disk".
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

_LOG = logging.getLogger(__name__)

# SQLite's primary result codes that mean the disk, not the statement: SQLITE_READONLY,
# SQLITE_IOERR, SQLITE_FULL (extended codes carry them in the low byte).
_DISK_CODES = frozenset({8, 10, 13})
# Enough to need new pages (and WAL frames) whatever free space the file already has.
PROBE_BYTES = 65536
_PROBE_KEY = "store.space_probe"
# Tests only: a file holding a page count the writer connection may not grow past
# (`PRAGMA max_page_count`), so a full disk is simulated through SQLite's own SQLITE_FULL path;
# the limit is lifted when the file is gone. Never set in production.
PAGE_LIMIT_ENV = "LOCKBRIDGE_TEST_PAGE_LIMIT_FILE"
_NO_PAGE_LIMIT = 1073741823


class StoreUnavailable(Exception):
    """The store cannot write now (disk full, I/O error, read-only); retry later."""


def disk_problem(exc: sqlite3.Error) -> str | None:
    """Pure: the reason when an SQLite error is the disk's fault, else None."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None or code & 0xFF not in _DISK_CODES:
        return None
    return str(exc)


class WriteHealth:
    """The writer's outage state; every method runs on the store's writer thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.problem: str | None = None
        self.failed_writes = 0
        self.outages = 0
        self._limit_file = os.environ.get(PAGE_LIMIT_ENV)

    @property
    def writable(self) -> bool:
        """False during an outage."""
        return self.problem is None

    def before_write(self, conn: sqlite3.Connection) -> None:
        """Raise StoreUnavailable while the outage lasts; end it when a probe commits."""
        self._apply_test_page_limit(conn)
        if self.problem is not None:
            self._probe(conn)

    def failed(self, exc: sqlite3.Error) -> StoreUnavailable | None:
        """The error to raise for a failed write, when the disk is at fault."""
        reason = disk_problem(exc)
        if reason is None:
            return None
        self.failed_writes += 1
        if self.problem is None:
            self.problem = reason
            self.outages += 1
            _LOG.error("store %s cannot write (%s): API writes answer 503 and /health is not "
                       "ready until it can; locks keep their codes", self._path, reason)
        return StoreUnavailable(f"the store cannot write: {reason}")

    def _probe(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR REPLACE INTO kv VALUES (?, zeroblob(?))",
                         (_PROBE_KEY, PROBE_BYTES))
            conn.execute("DELETE FROM kv WHERE key = ?", (_PROBE_KEY,))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            rollback(conn)
            self.failed_writes += 1
            raise StoreUnavailable(f"the store cannot write: {self.problem}") from exc
        _LOG.warning("store %s can write again (%d writes refused during the outage)",
                     self._path, self.failed_writes)
        self.problem = None

    def _apply_test_page_limit(self, conn: sqlite3.Connection) -> None:
        if self._limit_file is None:
            return
        try:
            pages = int(Path(self._limit_file).read_text())
        except (OSError, ValueError):
            pages = _NO_PAGE_LIMIT
        conn.execute(f"PRAGMA max_page_count = {pages}")


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLite ends one itself on some disk errors,
    and a ROLLBACK then would fail and hide the error that matters."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")
