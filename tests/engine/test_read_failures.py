"""Reads that fail or take long on a lock that stays online: bounded retries, writes go on."""

from __future__ import annotations

import asyncio

import pytest

from bridge.driver import RetryLater
from bridge.engine import CodeRequest
from drivers.simulator import SimLockSpec

pytestmark = pytest.mark.timeout(60)


async def test_failing_reads_back_off_and_never_block_writes(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    dev = h.device_id("front")
    calls: list[str] = []

    async def no_answer(*_args: object) -> list[object]:
        calls.append("read")
        raise RetryLater("no report from the lock")

    # A marginal mesh: the lock takes commands but its reports never arrive.
    h.driver.read_slots = no_answer  # type: ignore[method-assign,assignment]
    h.driver.list_codes = no_answer  # type: ignore[method-assign,assignment]
    h.engine._workers[dev].full_read = True
    await h.engine.create_code(dev, CodeRequest(name="Guest", code="86420"))
    await h.advance(3600, step=30)
    # The code went onto the lock although every read failed...
    assert "86420" in h.slots("front").values()
    # ...and an hour of failing reads cost a handful of frames, not one per step (a dead lock
    # retried at every step was once sent 19,694). Backoff 5 s doubling to 30 min: about 10 in
    # the first hour.
    assert 3 <= len(calls) <= 12, len(calls)
    assert h.engine.devices[dev].online


async def test_a_slow_walk_of_every_slot_is_given_time(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front", slot_count=30)])
    dev = h.device_id("front")
    walk = h.driver.list_codes
    walks: list[float] = []

    async def slow_walk(external_id: str) -> object:
        # One report per slot at 1.5 s each (a battery Z-Wave lock): 45 s, past the 30 s
        # timeout of a single command.
        walks.append(h.clock.monotonic())
        await h.clock.sleep(45)
        return await walk(external_id)

    h.driver.list_codes = slow_walk  # type: ignore[method-assign]
    h.engine._workers[dev].full_read = True
    h.engine._wake(dev)
    for _ in range(60):  # 5 minutes of fake time; the walk is in flight, so no settling
        await h.clock.advance(5)
        await asyncio.sleep(0.01)
    assert len(walks) == 1
    assert not h.engine._workers[dev].full_read


async def test_a_lock_whose_reads_never_show_anything_is_called_write_only(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front", slot_count=10,
                                           confirmation_window_s=0)])
    dev = h.device_id("front")
    lock = h.driver.lock("front")
    # The lock takes codes, but every slot read comes back with nothing in it, not even "empty".
    lock.unanswered_slots = set(range(1, 11))
    codes = [await h.engine.create_code(dev, CodeRequest(name=f"Guest {n}", code=f"8642{n}"))
             for n in range(3)]
    await h.advance(3 * 3600, step=60)
    device = h.engine.devices[dev]
    assert "write_only_lock" in {w.code for w in device.warnings}
    # Codes still count as set on the lock's word: the writes were accepted.
    assert all(str(h.engine.codes[c.access_code_id].status) == "set" for c in codes)
    assert {f"8642{n}" for n in range(3)} <= set(h.slots("front").values())
    # Reads that show something again clear the warning.
    lock.unanswered_slots = set()
    await h.engine.create_code(dev, CodeRequest(name="Later", code="97531"))
    await h.advance(2 * 3600, step=60)
    assert "write_only_lock" not in {w.code for w in h.engine.devices[dev].warnings}
