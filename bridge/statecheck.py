"""Lost state is never a silent fresh start: the checks that refuse to run over state that is gone.

A bridge whose database vanished (a dead SD card, a deleted file) would otherwise start empty:
the guests' codes on its locks would become unmanaged and never be removed, declared codes would
be created again as duplicates, and the upstream's sequence numbers would restart at 1. Three
witnesses tell that state existed: the PIN key lockbridge made beside the database is there but
the database is not; the database is younger than that key; the upstream has acknowledged events
beyond the newest this store ever assigned (checked by the upstream link).
docs/reliability.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from bridge.startup import StartupError
from bridge.store import STORE_CREATED_AT, Reader, Store, Tx

_LOG = logging.getLogger(__name__)

# kv keys. The store writes STORE_CREATED_AT (unix seconds) when it makes a new database.
FRESH_ACCEPTED = "store.fresh_state_accepted"
# The store was rebuilt from the upstream (bridge/upstreamrestore.py): younger than the key.
RESTORED_FROM = "store.restored_from"
# Set by a restore or an accepted fresh start: the upstream may be ahead of this store, and its
# sequence numbers continue after the upstream's instead of being refused (bridge/upstream/link.py).
CONTINUE_AFTER_UPSTREAM = "store.continue_after_upstream"
# The key and a database made on the same first start are seconds apart; a database made this
# much later than the key replaced one that held state.
KEY_AGE_MARGIN_S = 60.0


class StateLost(StartupError):
    """State this bridge had is gone; running now would silently start fresh.

    Raised from the daemon's build path and the upstream link; like every StartupError the CLI
    prints it as one line with the way out and exits with a status systemd does not restart on.
    """

    def __init__(self, what: str, config: Path | str) -> None:
        super().__init__(
            f"refusing to start: {what}",
            f"restore it with `lockbridge restore -c {config}` (the state backup at "
            f"store.backup_path, --from PATH, or --from-upstream), or start fresh on purpose with "
            f"`lockbridge run -c {config} --accept-fresh-state` (codes the lost state managed "
            "then stay on the locks as unmanaged codes)")


@dataclass(frozen=True, slots=True)
class StateWitness:
    """The PIN key and the database as found before the store opened."""

    key: Path
    db: Path
    # Only a key lockbridge made itself under state_dir witnesses a database; a key given as
    # store.key_file or a systemd credential may well be older than a first start.
    own_key: bool
    key_existed: bool
    db_existed: bool

    @property
    def database_gone(self) -> bool:
        """lockbridge's own key is there but its database is not."""
        return self.own_key and self.key_existed and not self.db_existed


def witness(key_file: Path, state_dir: Path, db: Path) -> StateWitness:
    """Look at the key and the database before anything creates them."""
    return StateWitness(key_file, db, key_file == state_dir / "pin.key", key_file.exists(),
                        db.exists())


def check_before_open(seen: StateWitness, config: Path, accept_fresh: bool) -> None:
    """Refuse when lockbridge's own key is there but its database is not."""
    if seen.database_gone and not accept_fresh:
        raise StateLost(f"the PIN key {seen.key} is there but the database {seen.db} is gone",
                        config)


def database_younger_than_key(key_mtime: float, created_at: float | None) -> bool:
    """Pure: a database made well after the key replaced one that held state."""
    return created_at is not None and created_at > key_mtime + KEY_AGE_MARGIN_S


async def check_after_open(store: Store, seen: StateWitness, config: Path,
                           accept_fresh: bool) -> None:
    """Refuse a database younger than the key; record an operator's choice to start fresh."""
    created, accepted = await store.read(_facts)
    if accepted is not None or not seen.own_key or not seen.key_existed:
        return
    younger = database_younger_than_key(seen.key.stat().st_mtime, created)
    if not (younger or seen.database_gone):
        return
    if not accept_fresh:
        raise StateLost(f"the database {store.path} was made after the PIN key {seen.key}: "
                        "the state it replaced is gone", config)
    await accept_fresh_state(store)


async def accept_fresh_state(store: Store) -> None:
    """Record that the operator chose to start over, so later starts do not refuse again."""
    await store.write(_mark_fresh)
    _LOG.warning("starting with fresh state by the operator's choice (--accept-fresh-state): "
                 "codes on the locks from before are unmanaged now")


def _mark_fresh(tx: Tx) -> None:
    # SQLite reads the time, as for every other timestamp the store keeps itself.
    tx.execute("INSERT OR REPLACE INTO kv VALUES (?, strftime('%s', 'now'))", (FRESH_ACCEPTED,))
    tx.put_kv(CONTINUE_AFTER_UPSTREAM, "fresh")


def _facts(reader: Reader) -> tuple[float | None, str | None]:
    created = reader.kv(STORE_CREATED_AT)
    return ((float(created) if created is not None else None),
            reader.kv(FRESH_ACCEPTED) or reader.kv(RESTORED_FROM))
