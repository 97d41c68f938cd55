"""The engine's one committer: a change it was asked to commit lands on disk, in memory and with
its listeners together, even when the caller is cancelled while SQLite commits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from pathlib import Path

from bridge.clock import FakeClock
from bridge.engine.state import EngineState
from bridge.model import Event, EventType
from bridge.planner import Policy
from bridge.records import CodeRecord, DeviceRecord
from bridge.secrets import PinCipher
from bridge.store import Store, Tx
from drivers.simulator.lock import SimLock, SimLockSpec
from tests.harness import START


async def test_a_caller_cancelled_during_the_commit_still_sees_memory_and_listeners_follow(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "db", PinCipher(os.urandom(32)))
    await store.open()
    state = EngineState(store, FakeClock(START), Policy(), lambda: True)
    info = SimLock(SimLockSpec("l", "L"), clock=None).info()  # type: ignore[arg-type]
    await state.commit(devices=[DeviceRecord("dev", "sim", "l", info, START)])
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
