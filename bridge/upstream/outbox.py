"""The outbox: the store's events table read in sequence order, with the upstream's ack watermark.

Events are committed with the state changes that cause them, so there is nothing to enqueue:
the link reads what follows the last sequence number it sent and records acks here. Trimming
keeps acknowledged history bounded and never touches an unacknowledged event
(docs/upstream-protocol.md, "The outbox bound").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bridge.model import Event
from bridge.serialize import event_json
from bridge.store import UPSTREAM_ACKED_SEQ, UPSTREAM_LAST_COMMAND, Reader, Store

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxState:
    """Where the outbox stands, read in one snapshot of the store."""

    first_seq: int
    last_seq: int
    acked_seq: int
    last_command_id: str | None


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a session starts sending, and whether a snapshot must go first."""

    after_seq: int
    snapshot: bool
    reason: str


def plan_resume(state: OutboxState, upstream_acked: int, snapshot_wanted: bool) -> Resume:
    """Pure: from the upstream's `welcome`, the sequence number to send after and whether the
    upstream needs a snapshot (it asked, it has nothing, it lost events we no longer hold, or
    it is ahead of a store restored from a backup)."""
    if upstream_acked > state.last_seq:
        return Resume(state.first_seq - 1, True, "upstream is ahead of this store (restored?)")
    if upstream_acked < state.first_seq - 1:
        return Resume(state.first_seq - 1, True, "upstream lacks events no longer held")
    if upstream_acked == 0:
        return Resume(0, True, "upstream has nothing yet")
    if snapshot_wanted:
        return Resume(upstream_acked, True, "upstream asked for one")
    if upstream_acked < state.acked_seq:
        return Resume(upstream_acked, True, "upstream lost acknowledged events")
    return Resume(upstream_acked, False, "resuming")


class Outbox:
    """Reads and acknowledges the events table on behalf of the upstream link."""

    def __init__(self, store: Store, bridge_id: str, *, keep_acked: int,
                 max_unacked: int) -> None:
        self._store = store
        self._bridge_id = bridge_id
        self._keep_acked = keep_acked
        self._max_unacked = max_unacked
        self.last_seq = 0
        self.acked_seq = 0
        self._full_logged = False

    async def load(self) -> OutboxState:
        """Read the watermarks from the store."""
        state = await self._store.read(_state)
        self.last_seq = max(self.last_seq, state.last_seq)
        self.acked_seq = state.acked_seq
        return state

    def committed(self, events: list[Event]) -> None:
        """Note events the engine just committed (called from its listener)."""
        for event in events:
            if event.sequence is not None and event.sequence > self.last_seq:
                self.last_seq = event.sequence
        self._check_bound()

    @property
    def unacked(self) -> int:
        """Events assigned but not yet acknowledged by the upstream."""
        return max(0, self.last_seq - self.acked_seq)

    @property
    def full(self) -> bool:
        """True while the unacknowledged backlog is at its bound."""
        return self.unacked >= self._max_unacked

    async def batch(self, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` event objects after `after_seq`, rendered on the reader thread."""
        bridge_id = self._bridge_id

        def render(reader: Reader) -> list[dict[str, Any]]:
            return [event_json(e, bridge_id) for e in reader.events(after_seq, limit)]

        return await self._store.read(render)

    async def ack(self, seq: int) -> int:
        """Persist a cumulative ack and trim old acknowledged events; returns how many went."""
        keep = self._keep_acked
        trimmed, _ = await self._store.write(lambda tx: tx.ack_upstream(seq, keep))
        self.acked_seq = max(self.acked_seq, seq)
        self._check_bound()
        return trimmed

    def _check_bound(self) -> None:
        if self.full and not self._full_logged:
            self._full_logged = True
            _LOG.error("upstream outbox full: %d events await the upstream's ack; locks keep "
                       "working and every event is kept, but upstream commands are refused "
                       "until it catches up", self.unacked)
        elif not self.full and self._full_logged:
            self._full_logged = False
            _LOG.info("upstream outbox below its bound again (%d unacknowledged)", self.unacked)


def _state(reader: Reader) -> OutboxState:
    first, last = reader.event_bounds()
    acked = int(reader.kv(UPSTREAM_ACKED_SEQ) or 0)
    return OutboxState(first, last, acked, reader.kv(UPSTREAM_LAST_COMMAND))
