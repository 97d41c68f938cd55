"""Sequence numbers after a restore or an accepted fresh start (Tx.continue_after_upstream): the
events the upstream cannot have move after its acked_seq in order, the rest stay, numbering
continues, and the flag is cleared; a table of cases over a real store."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.model import Event, EventType
from bridge.secrets import PinCipher
from bridge.statecheck import CONTINUE_AFTER_UPSTREAM
from bridge.store import UPSTREAM_ACKED_SEQ, Store, Tx

CASES = [
    # (events held, local ack, flag, upstream acked) -> (sequence numbers after, next number)
    pytest.param(3, 0, "fresh", 10, [11, 12, 13], 14, id="fresh store: all move after"),
    pytest.param(5, 2, "restored:3", 9, [1, 2, 3, 10, 11], 12,
                 id="restored: the backup's stay, the new ones move"),
    pytest.param(3, 0, "restored:3", 3, [1, 2, 3], 4, id="restored, upstream not ahead"),
    pytest.param(4, 0, "restored:2", 2, [1, 2, 3, 4], 5, id="restored, upstream at the backup"),
    pytest.param(0, 0, "fresh", 7, [], 8, id="nothing held: numbering starts after"),
    pytest.param(12, 0, "fresh", 5, list(range(6, 18)), 18,
                 id="more held than the upstream acked: no collision"),
]


@pytest.mark.parametrize(("held", "acked", "flag", "upstream", "after", "following"), CASES)
async def test_continue_after_upstream(tmp_path: Path, held: int, acked: int, flag: str,
                                       upstream: int, after: list[int], following: int) -> None:
    store = Store(tmp_path / "db", PinCipher(os.urandom(32)))
    await store.open()
    try:
        ids = [str(uuid.uuid4()) for _ in range(held)]

        def seed(tx: Tx) -> None:
            for event_id in ids:
                tx.add_event(_event(event_id))
            tx.put_kv(UPSTREAM_ACKED_SEQ, str(acked))
            tx.put_kv(CONTINUE_AFTER_UPSTREAM, flag)

        await store.write(seed)
        await store.write(lambda tx: tx.continue_after_upstream(upstream, CONTINUE_AFTER_UPSTREAM))
        events = await store.read(lambda r: r.events(0, 1000))
        assert [e.sequence for e in events] == after
        assert [e.event_id for e in events] == ids, "order kept"
        _, appended = await store.write(lambda tx: tx.add_event(_event(str(uuid.uuid4()))))
        assert appended[0].sequence == following
        assert await store.read(lambda r: r.kv(CONTINUE_AFTER_UPSTREAM)) is None
        # The upstream's ack is taken only when it is past what the store may have sent.
        expected = upstream if upstream > _base(flag, acked) else acked
        assert await store.read(lambda r: r.kv(UPSTREAM_ACKED_SEQ)) == str(expected)
    finally:
        await store.close()


def _base(flag: str, acked: int) -> int:
    return int(flag.partition(":")[2]) if flag.startswith("restored:") else acked


def _event(event_id: str) -> Event:
    return Event(event_id, EventType.LOCK_UNLOCKED, datetime.now(UTC), None, None, {})
