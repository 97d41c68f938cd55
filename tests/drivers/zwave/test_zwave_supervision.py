"""One frame per code where the lock confirms the write itself (Supervision), on the real
zwave-js mock: the frames each lock receives are counted by the mock, not by lockbridge.

A lock with the Supervision CC answers each User Code Set with a Supervision Report; Success
means it has done it, so the driver takes the write (or clear) as confirmed without reading the
slot back. Working, Fail and an unsupervised Set are still read back, and a lock whose Success
is followed by a duplicate notice is believed no more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import SystemClock
from bridge.driver import (
    CodeWrite,
    CommandRejected,
    DriverEvent,
    DriverEventKind,
    RejectReason,
    SlotState,
)
from bridge.engine import CodeRequest
from bridge.model import AccessCodeStatus
from drivers.simulator.lock import SEEN_PINS
from tests.zwave_stack import (
    ZWaveStack,
    fast_config,
    missing_node,
    quiet_for,
    running_stack,
    start_zwave_engine,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_node() is not None, reason=missing_node() or ""),
]

SUPERVISED, PLAIN = 2, 3
PINS = ["4711", "24681357", "90210"]
SET, GET = "UserCodeCCExtendedUserCodeSet", "UserCodeCCGet"


async def frames(stack: ZWaveStack, node: int) -> dict[str, Any]:
    """The commands the mock node received since the last call (the mock resets its count)."""
    received: dict[str, Any] = await stack.control("received", node=node)
    return received


async def bounded(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait (in real time, bounded) until `condition()` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)
    assert condition(), what


async def test_a_supervised_lock_costs_one_frame_per_code_and_per_clear(tmp_path: Path) -> None:
    """Through the engine: converging and deleting codes costs the supervised lock the Sets
    alone, the unsupervised one each Set and the Get that verifies it; both hold the codes."""
    SEEN_PINS.update(PINS)
    nodes = [{"id": SUPERVISED, "slots": 10, "schedules": False, "checksum": False,
              "supervision": True},
             {"id": PLAIN, "slots": 10, "schedules": False, "checksum": False}]
    with running_stack(tmp_path / "zwave", nodes) as stack:
        h, _ = await start_zwave_engine(stack.url, tmp_path)
        try:
            await h.until(lambda: len(h.engine.devices) == 2, timeout=60, what="both locks")
            await quiet_for(h, 60, step=30)
            for node in (SUPERVISED, PLAIN):
                await frames(stack, node)
            created: dict[int, list[str]] = {}
            for node in (SUPERVISED, PLAIN):
                device_id = h.device_id(f"7e570001-{node}", driver="zw")
                created[node] = [
                    (await h.engine.create_code(device_id, CodeRequest(name="Guest", code=pin)))
                    .access_code_id for pin in PINS]
            everything = [c for codes in created.values() for c in codes]
            await h.until(lambda: all(h.code(c).status is AccessCodeStatus.SET
                                      and h.code(c).verified for c in everything),
                          advance=0.5, timeout=60, what="converged")
            await quiet_for(h, 120, step=30)
            assert await frames(stack, SUPERVISED) == {SET: len(PINS)}
            assert await frames(stack, PLAIN) == {SET: len(PINS), GET: len(PINS)}
            for node in (SUPERVISED, PLAIN):
                assert sorted((await stack.slots(node)).values()) == sorted(PINS)

            for code_id in everything:
                await h.engine.delete_code(code_id)
            await h.until(lambda: not any(c in h.engine.codes for c in everything),
                          advance=0.5, timeout=60, what="deleted")
            await quiet_for(h, 120, step=30)
            assert await frames(stack, SUPERVISED) == {SET: len(PINS)}
            assert await frames(stack, PLAIN) == {SET: len(PINS), GET: len(PINS)}
            for node in (SUPERVISED, PLAIN):
                assert await stack.slots(node) == {}
        finally:
            await h.stop()


async def test_working_fail_and_a_late_duplicate_are_read_back(tmp_path: Path) -> None:
    """Driver alone: Working and Fail still cost the read that judges them; a lock that
    answers Success and then reports the code a duplicate has the slot read again (the engine
    is told), and from then on its writes are read back, so the duplicate is refused."""
    from drivers.zwave.driver import ZWaveDriver

    SEEN_PINS.update([*PINS, "31337"])
    nodes = [{"id": SUPERVISED, "slots": 10, "schedules": False, "checksum": False,
              "supervision": True, "duplicate_success": True, "duplicate_notice_ms": 300}]
    with running_stack(tmp_path / "zwave", nodes) as stack:
        zw = ZWaveDriver(fast_config(stack.url), SystemClock(), tmp_path / "state")
        events: list[DriverEvent] = []

        async def sink(event: DriverEvent) -> None:
            events.append(event)

        try:
            await zw.start(sink)
            lock = zw.devices()[0].external_id
            await frames(stack, SUPERVISED)
            # Success: one frame, and the driver knows the slot as a read would have shown it.
            result = await zw.write_code(lock, CodeWrite(slot=1, pin=PINS[0], name="Guest"))
            assert (result.slot, result.pin, result.confirmed) == (1, PINS[0], True)
            assert await frames(stack, SUPERVISED) == {SET: 1}
            assert [(r.slot, r.pin) for r in await zw.list_codes(lock)] == [(1, PINS[0])]
            await frames(stack, SUPERVISED)  # listing walked the other nine slots
            # Working: the lock is not done, and its final report never reaches the driver,
            # which reads the slot once the time the lock named is up (a read at once would
            # still find it empty).
            await stack.control("working_sets", node=SUPERVISED, count=1)
            result = await zw.write_code(lock, CodeWrite(slot=2, pin=PINS[1], name="Guest"))
            assert result.confirmed
            assert await frames(stack, SUPERVISED) == {SET: 1, GET: 1}
            # Fail, and the slot stayed empty: refused after the read, as before.
            await stack.control("fail_sets", node=SUPERVISED, count=1, keep=False)
            with pytest.raises(CommandRejected) as refused:
                await zw.write_code(lock, CodeWrite(slot=3, pin=PINS[2], name="Other"))
            assert refused.value.reason is RejectReason.OTHER
            assert await frames(stack, SUPERVISED) == {SET: 1, GET: 1}
            assert await stack.slots(SUPERVISED) == {1: PINS[0], 2: PINS[1]}

            # The lock answers Success to a PIN it already holds elsewhere, keeps nothing, and
            # says so a moment later.
            await stack.control("keypad_silent_set", node=SUPERVISED, slot=6, code="31337")
            result = await zw.write_code(lock, CodeWrite(slot=7, pin="31337", name="Dup"))
            assert result.confirmed  # believed, for now: one frame
            await bounded(lambda: any(e.kind is DriverEventKind.SLOT_CHANGED and e.slot == 7
                                      for e in events), "slot 7 reported changed")
            # The engine's next attempt is read back and the notice judges it.
            with pytest.raises(CommandRejected) as refused:
                await zw.write_code(lock, CodeWrite(slot=7, pin="31337", name="Dup"))
            assert refused.value.reason is RejectReason.DUPLICATE_PIN
            await frames(stack, SUPERVISED)
            # Any later write to this lock is read back too.
            assert (await zw.write_code(lock, CodeWrite(slot=4, pin="4444", name="G"))).confirmed
            assert await frames(stack, SUPERVISED) == {SET: 1, GET: 1}
        finally:
            await zw.stop()


async def test_a_late_notice_naming_no_slot_has_every_recent_write_read_again(
        tmp_path: Path) -> None:
    """A lock answers Success to a PIN it holds elsewhere and says so, naming no slot, only
    after the next write is done: the notice may be about either write, so both slots are
    read again, and the refused one is found empty."""
    from drivers.zwave.driver import ZWaveDriver

    SEEN_PINS.update(["31337", "4444"])
    nodes = [{"id": SUPERVISED, "slots": 10, "schedules": False, "checksum": False,
              "supervision": True, "duplicate_success": True, "duplicate_notice_ms": 600}]
    with running_stack(tmp_path / "zwave", nodes) as stack:
        zw = ZWaveDriver(fast_config(stack.url), SystemClock(), tmp_path / "state")
        events: list[DriverEvent] = []

        async def sink(event: DriverEvent) -> None:
            events.append(event)

        try:
            await zw.start(sink)
            lock = zw.devices()[0].external_id
            await zw.list_codes(lock)
            await stack.control("duplicate_params", node=SUPERVISED, value=False)
            await stack.control("keypad_silent_set", node=SUPERVISED, slot=6, code="31337")
            assert (await zw.write_code(lock, CodeWrite(slot=7, pin="31337",
                                                        name="Dup"))).confirmed
            assert (await zw.write_code(lock, CodeWrite(slot=4, pin="4444",
                                                        name="G"))).confirmed
            await bounded(lambda: {e.slot for e in events
                                   if e.kind is DriverEventKind.SLOT_CHANGED} >= {4, 7},
                          "both recent writes reported changed")
            assert await stack.slots(SUPERVISED) == {4: "4444", 6: "31337"}
            # Neither slot is listed from what the Success made the driver believe.
            assert 7 not in {r.slot for r in await zw.list_codes(lock)}
            reads = {r.slot: r for r in await zw.read_slots(lock, [4, 7])}
            assert reads[4].pin == "4444"
            assert reads[7].state is SlotState.EMPTY
        finally:
            await zw.stop()


async def test_a_new_session_reads_only_the_slots_confirmed_by_supervision(
        tmp_path: Path) -> None:
    """zwave-js's cache never saw the codes the lock confirmed by Supervision, so a lockbridge
    started again finds the lock's checksum different from it: it reads those slots alone
    (remembered across the restart), not every slot of the lock."""
    from drivers.zwave.driver import ZWaveDriver

    SEEN_PINS.update(PINS)
    nodes = [{"id": SUPERVISED, "slots": 10, "schedules": False, "supervision": True}]

    async def nothing(event: DriverEvent) -> None:
        pass

    with running_stack(tmp_path / "zwave", nodes) as stack:
        first = ZWaveDriver(fast_config(stack.url), SystemClock(), tmp_path / "state")
        try:
            await first.start(nothing)
            lock = first.devices()[0].external_id
            for slot, pin in enumerate(PINS[:2], start=1):
                assert (await first.write_code(lock, CodeWrite(slot=slot, pin=pin,
                                                               name="Guest"))).confirmed
        finally:
            await first.stop()
        await frames(stack, SUPERVISED)
        again = ZWaveDriver(fast_config(stack.url), SystemClock(), tmp_path / "state")
        try:
            await again.start(nothing)
            listed = await again.list_codes(lock)
            assert [(r.slot, r.pin) for r in listed] == [(1, PINS[0]), (2, PINS[1])]
            assert await frames(stack, SUPERVISED) == {"UserCodeCCUserCodeChecksumGet": 1,
                                                       GET: 2}
        finally:
            await again.stop()


async def test_through_the_engine_a_success_then_duplicate_ends_as_a_duplicate(
        tmp_path: Path) -> None:
    """The engine is told the slot changed, reads it, writes again, and this time the read back
    and the notice make it `duplicate_code_on_device`; the lock keeps only its own code."""
    from bridge.model import AccessCodeErrorCode

    SEEN_PINS.update(["31337"])
    nodes = [{"id": SUPERVISED, "slots": 10, "schedules": False, "checksum": False,
              "supervision": True, "duplicate_success": True, "duplicate_notice_ms": 300}]
    with running_stack(tmp_path / "zwave", nodes) as stack:
        h, _ = await start_zwave_engine(stack.url, tmp_path)
        try:
            await h.until(lambda: len(h.engine.devices) == 1, timeout=60, what="the lock")
            await quiet_for(h, 60, step=30)
            # Typed at the keypad after lockbridge listed the lock, and not announced.
            await stack.control("keypad_silent_set", node=SUPERVISED, slot=9, code="31337")
            device_id = h.device_id(f"7e570001-{SUPERVISED}", driver="zw")
            made = await h.engine.create_code(device_id, CodeRequest(name="Dup", code="31337"))
            cid = made.access_code_id
            await h.until(lambda: h.code(cid).has_error(
                AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE), advance=0.5, timeout=60,
                what="duplicate_code_on_device")
            assert await stack.slots(SUPERVISED) == {9: "31337"}
            assert h.code(cid).status is not AccessCodeStatus.SET
        finally:
            await h.stop()
