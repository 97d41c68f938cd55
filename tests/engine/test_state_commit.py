"""The engine's one committer: a change it was asked to commit lands on disk, in memory and with
its listeners together, even when the caller is cancelled while SQLite commits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from bridge.clock import FakeClock
from bridge.engine import CodeRequest
from bridge.engine.state import EngineState
from bridge.model import Event, EventType
from bridge.planner import Policy, needs_no_plan
from bridge.records import CodeRecord, DeviceRecord
from bridge.secrets import PinCipher
from bridge.store import Store, StoreUnavailable, Tx
from drivers.simulator.lock import SimLock, SimLockSpec
from tests.harness import START


async def _committer_with_one_lock(tmp_path: Path) -> EngineState:
    """The engine's committer over a fresh store holding one simulated lock, `dev`."""
    store = Store(tmp_path / "db", PinCipher(os.urandom(32)))
    await store.open()
    state = EngineState(store, FakeClock(START), Policy(), lambda: True)
    info = SimLock(SimLockSpec("l", "L"), clock=None).info()  # type: ignore[arg-type]
    await state.commit(devices=[DeviceRecord("dev", "sim", "l", info, START)])
    return state


async def test_a_caller_cancelled_during_the_commit_still_sees_memory_and_listeners_follow(
        tmp_path: Path) -> None:
    state = await _committer_with_one_lock(tmp_path)
    store = state.store
    heard: list[Event] = []
    state.subscribe(heard.extend)
    in_commit, release = threading.Event(), threading.Event()

    class SlowReceipt:
        def record(self, tx: Tx) -> None:
            # Runs in the store's writer thread, inside the transaction.
            in_commit.set()
            release.wait(10)

    code = CodeRecord("c1", "dev", START, code="93817264")
    event = state.event(EventType.ACCESS_CODE_CREATED, "dev", "c1", {})
    caller = asyncio.create_task(state.commit(codes=[code], events=[event], receipt=SlowReceipt()))
    assert await asyncio.to_thread(in_commit.wait, 10)
    caller.cancel()
    release.set()
    with contextlib.suppress(asyncio.CancelledError):
        await caller
    for _ in range(200):
        if heard:
            break
        await asyncio.sleep(0.01)
    [stored] = await store.read(lambda r: r.codes())
    await store.close()
    assert stored.access_code_id == "c1"
    assert state.codes["c1"] == code, "the change is on disk, so memory must hold it too"
    assert [e.event_id for e in heard] == [event.event_id], "listeners hear of its events"


async def test_a_write_the_store_could_not_record_is_settled_by_reading_the_slot(
        harness_factory: Any) -> None:
    """The lock took a changed PIN, then the store refused to record it (disk full): once the
    store writes again, a read of the slot settles the intent as our own write, not as a change
    at the keypad, and deleting the code then takes that PIN off the lock."""
    h = await harness_factory([SimLockSpec("front", "Front")])
    device_id = h.device_id("front")
    made = await h.engine.create_code(device_id, CodeRequest(name="Guest", code="4821"))
    await h.settle()
    assert h.slots("front") == {h.code(made.access_code_id).slot: "4821"}
    driver = h.driver
    inner_write, inner_submit = driver.write_code, h.store.submit
    refuse_next_commit = False

    async def write_then_lose_the_disk(external_id: str, code: Any) -> Any:
        nonlocal refuse_next_commit
        result = await inner_write(external_id, code)
        refuse_next_commit = True
        return result

    def store_submit(fn: Any, *args: Any) -> Any:
        # The engine's committer asks the store through `submit`.
        nonlocal refuse_next_commit
        if refuse_next_commit:
            refuse_next_commit = False
            refused = asyncio.get_running_loop().create_future()
            refused.set_exception(StoreUnavailable("disk full (test)"))
            return refused
        return inner_submit(fn, *args)

    driver.write_code = write_then_lose_the_disk  # type: ignore[method-assign]
    h.store.submit = store_submit  # type: ignore[method-assign]
    await h.engine.update_code(made.access_code_id, CodeRequest(code="5932"))
    await h.until(lambda: not refuse_next_commit and "5932" in h.slots("front").values(),
                  what="the new PIN on the lock, its record refused")
    # The worker waits for the store (5 s), then reads the slot back.
    await h.until(lambda: h.code(made.access_code_id).on_lock_pin == "5932"
                  and h.code(made.access_code_id).verified, advance=1,
                  what="the write settled by a read")
    assert not h.events_of(EventType.ACCESS_CODE_MODIFIED_EXTERNAL_TO_SEAM), \
        "our own write was taken for a change at the keypad"
    await h.engine.delete_code(made.access_code_id)
    await h.settle()
    assert h.slots("front") == {}, "the deleted code's PIN is still on the lock"


async def test_listeners_after_an_awaited_one_still_hear_when_the_caller_is_cancelled(
        tmp_path: Path) -> None:
    """Listeners are told in turn, an awaitable one awaited before the next; a caller cancelled
    while one of them is awaited does not stop the telling."""
    state = await _committer_with_one_lock(tmp_path)
    store = state.store
    told: list[str] = []
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(events: list[Event]) -> None:
        told.append("slow")
        entered.set()
        await release.wait()
        told.append("slow done")

    state.subscribe(lambda events: told.append("first") and None)
    state.subscribe(slow)
    state.subscribe(lambda events: told.append("last") and None)
    event = state.event(EventType.ACCESS_CODE_CREATED, "dev", "c1", {})
    caller = asyncio.create_task(state.commit(
        codes=[CodeRecord("c1", "dev", START, code="93817264")], events=[event]))
    await asyncio.wait_for(entered.wait(), 10)
    assert "c1" in state.codes, "memory follows the write before listeners are told"
    caller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await caller
    release.set()
    for _ in range(200):
        if "last" in told:
            break
        await asyncio.sleep(0.01)
    await store.close()
    assert told == ["first", "slow", "slow done", "last"]


async def test_commits_of_one_group_reach_memory_and_listeners_in_their_order_even_cancelled(
        tmp_path: Path) -> None:
    """Two changes to one code that share a group commit: the later one is on disk last, so it
    must be the one in memory, and listeners hear the events in sequence order, also when the
    later caller was cancelled while the group committed (its change is followed for it)."""
    state = await _committer_with_one_lock(tmp_path)
    store = state.store
    heard: list[Event] = []
    state.subscribe(heard.extend)

    class Hold:
        """A receipt that keeps the writer thread inside the transaction until released."""

        def __init__(self) -> None:
            self.inside, self.release = threading.Event(), threading.Event()

        def record(self, tx: Tx) -> None:
            self.inside.set()
            self.release.wait(10)

    ahead, in_group = Hold(), Hold()
    holding = asyncio.create_task(state.commit(receipt=ahead))
    assert await asyncio.to_thread(ahead.inside.wait, 10)
    # Both wait behind the held write, so they share the next group, A before B.
    first = asyncio.create_task(state.commit(
        codes=[CodeRecord("c1", "dev", START, name="A", code="93817264")],
        events=[state.event(EventType.ACCESS_CODE_CREATED, "dev", "c1", {})],
        receipt=in_group))
    second = asyncio.create_task(state.commit(
        codes=[CodeRecord("c1", "dev", START, name="B", code="93817264")],
        events=[state.event(EventType.ACCESS_CODE_CHANGED, "dev", "c1", {})]))
    await asyncio.sleep(0)  # both are queued for the writer
    ahead.release.set()
    await holding
    assert await asyncio.to_thread(in_group.inside.wait, 10)
    second.cancel()  # while its group is being written
    in_group.release.set()
    await first
    with contextlib.suppress(asyncio.CancelledError):
        await second
    for _ in range(200):
        if len(heard) == 2:
            break
        await asyncio.sleep(0.01)
    [stored] = await store.read(lambda r: r.codes())
    await store.close()
    assert stored.name == "B"
    assert state.codes["c1"].name == "B", "memory holds an older change than the disk"
    sequences = [e.sequence for e in heard]
    assert sequences == sorted(sequences) and len(sequences) == 2, sequences


async def test_planning_codes_follow_commits_in_the_lock_order(tmp_path: Path) -> None:
    # The planner walks only these at each step of a lock's worker: every code of the lock but
    # those that need no plan, in the lock's order (the planner's ties go to the older code).
    state = await _committer_with_one_lock(tmp_path)
    try:
        device = state.devices["dev"]

        def settled(code: CodeRecord) -> CodeRecord:
            return replace(code, on_lock_pin=code.code, slot=1, verified=True)

        codes = [CodeRecord(f"c{i}", "dev", START, code=f"48291{i}") for i in range(5)]
        await state.commit(codes=[codes[0], settled(codes[1]), codes[2], settled(codes[3])])
        assert [c.access_code_id for c in state.planning_codes(device)] == ["c0", "c2"]
        await state.commit(codes=[settled(codes[0]), codes[4]])
        assert [c.access_code_id for c in state.planning_codes(device)] == ["c2", "c4"]
        # Back among them (its PIN changed): in its place, not last.
        await state.commit(codes=[replace(settled(codes[1]), code="999999")])
        assert [c.access_code_id for c in state.planning_codes(device)] == ["c1", "c2", "c4"]
        await state.commit(drop=["c2"])
        assert [c.access_code_id for c in state.planning_codes(device)] == ["c1", "c4"]
        # A lock record that is not the current one gets every code; a new one, its own look.
        renamed = replace(device, warnings=())
        assert len(state.planning_codes(renamed)) == 4
        await state.commit(devices=[renamed])
        assert [c.access_code_id for c in state.planning_codes(renamed)] == ["c1", "c4"]
        assert [c.access_code_id for c in state.planning_codes(renamed)] == [
            c.access_code_id for c in state.codes_of("dev")
            if not needs_no_plan(c, renamed)]
    finally:
        await state.store.close()
