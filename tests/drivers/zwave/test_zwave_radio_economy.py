"""Radio economy on the real zwave-js mock: the frames each lock receives, counted by the mock
itself (not by lockbridge), per code converged and per hour and day of steady state.

Every frame wakes a battery lock's radio. Before, the engine re-read every managed slot of
every lock each reconcile (hourly): one User Code Get per code per hour. Now a lock with a User
Code checksum costs one checksum read per reconcile, and one without is swept once a day,
keypad changes in between arriving as the lock's own reports. A lock with User Code v2's
multi-code read is listed several codes a frame, its empty slots skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.engine import CodeRequest
from bridge.engine.worker import SWEEP_INTERVAL_S
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

PLAIN, SUMMED = 2, 3  # node 2 keeps no User Code checksum, node 3 does
PINS = ["4711", "24681357", "90210"]
HOUR = 3600.0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[ZWaveStack]:
    with running_stack(tmp_path / "zwave", [
        {"id": PLAIN, "slots": 10, "schedules": False, "checksum": False},
        {"id": SUMMED, "slots": 10, "schedules": False},
    ]) as zwave:
        yield zwave


async def frames(stack: ZWaveStack, node: int) -> dict[str, Any]:
    """The commands the mock node received since the last call (the mock resets its count)."""
    received: dict[str, Any] = await stack.control("received", node=node)
    return received


async def test_steady_state_costs_a_checksum_an_hour_or_a_sweep_a_day(
        stack: ZWaveStack, tmp_path: Path) -> None:
    SEEN_PINS.update(PINS)
    h, _ = await start_zwave_engine(stack.url, tmp_path)
    try:
        # The first scan (and zwave-js's interview) are not what is counted here.
        await quiet_for(h, 60, step=30)
        for node in (PLAIN, SUMMED):
            await frames(stack, node)
        created = []
        for node in (PLAIN, SUMMED):
            device_id = h.device_id(f"7e570001-{node}", driver="zw")
            for pin in PINS:
                made = await h.engine.create_code(device_id, CodeRequest(name="Guest", code=pin))
                created.append(made.access_code_id)
        await h.until(lambda: all(h.code(c).status is AccessCodeStatus.SET and h.code(c).verified
                                  for c in created), advance=0.5, timeout=60, what="converged")
        await quiet_for(h, 120, step=30)
        # Converging: two frames per code, the set and the read that verifies it.
        for node in (PLAIN, SUMMED):
            assert await frames(stack, node) == {"UserCodeCCExtendedUserCodeSet": len(PINS),
                                                 "UserCodeCCGet": len(PINS)}

        # One hour with no change: before, every managed slot was read again (3 frames a lock).
        await quiet_for(h, HOUR)
        assert await frames(stack, PLAIN) == {}
        assert await frames(stack, SUMMED) == {"UserCodeCCUserCodeChecksumGet": 1}

        # The rest of the day: the lock without a checksum is swept once (its managed slots),
        # the other answers one checksum read an hour. Before: 3 reads an hour each, 72 a day.
        await quiet_for(h, SWEEP_INTERVAL_S - HOUR, step=HOUR)
        assert await frames(stack, PLAIN) == {"UserCodeCCGet": len(PINS)}
        assert await frames(stack, SUMMED) == {"UserCodeCCUserCodeChecksumGet": 23}

        # A keypad change in between is not left for the sweep: the lock reports it, and the
        # code is put back within seconds, not a day.
        slot = h.code(created[0]).slot
        assert slot is not None
        await stack.control("keypad_clear", node=PLAIN, slot=slot)
        for _ in range(600):
            if (await stack.slots(PLAIN)).get(slot) == PINS[0]:
                break
            await h.clock.advance(0.5)
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the code cleared at the keypad was not put back")
    finally:
        await h.stop()


MULTI = 4  # a lock with User Code v2's multi-code read (Extended User Code Get, Report More)
BIG_LOCK_SLOTS = 250
# Codes put at the lock's keypad before lockbridge first sees it: two runs of slots.
KEYPAD_SLOTS = [*range(1, 21), *range(100, 110)]
# What the mock's reports carry (46 payload bytes: a 4-digit code takes 8, an empty slot 4):
# five codes a frame, so slots 1-20 take 4 frames and 100-109 two; each report points to the
# next occupied slot, so the empty ones between are never asked for.
FIRST_SCAN_FRAMES = 6
CODE_READS = ("UserCodeCCGet", "UserCodeCCExtendedUserCodeGet", "UserCodeCCUserCodeChecksumGet")


async def test_the_first_scan_reads_several_codes_a_frame_and_skips_empty_slots(
        tmp_path: Path) -> None:

    pins = {slot: f"{5000 + 7 * slot:04d}" for slot in KEYPAD_SLOTS}
    SEEN_PINS.update(pins.values())
    with running_stack(tmp_path / "zwave", [
        {"id": MULTI, "slots": BIG_LOCK_SLOTS, "schedules": False, "checksum": False,
         "multi_report": True},
    ]) as zwave:
        async def first_scan(run: str) -> tuple[dict[str, Any], list[Any]]:
            """A fresh lockbridge (driver, engine, store) meets the lock: what it sent it
            before settling, and what its driver then knows of the lock's codes."""
            (tmp_path / run).mkdir()
            await frames(zwave, MULTI)
            h, zw = await start_zwave_engine(zwave.url, tmp_path / run)
            try:
                await h.until(lambda: len(h.engine.devices) == 1, timeout=60, what="the lock")
                await quiet_for(h, 60, step=30)
                # zwave-js's own interview may still be running: only code reads are counted.
                sent = {name: count for name, count in (await frames(zwave, MULTI)).items()
                        if name in CODE_READS}
                # Everything read is known now: listing the codes sends nothing more.
                listed = await zw.list_codes(f"7e570001-{MULTI}")
                assert await frames(zwave, MULTI) == {}
                return sent, listed
            finally:
                await h.stop()

        # An empty lock of 250 slots: one frame, whose report says no slot is occupied.
        sent, listed = await first_scan("empty")
        assert sent == {"UserCodeCCExtendedUserCodeGet": 1}
        assert listed == []

        for slot, pin in pins.items():
            await zwave.control("keypad_silent_set", node=MULTI, slot=slot, code=pin)
        sent, listed = await first_scan("thirty")
        assert sent == {"UserCodeCCExtendedUserCodeGet": FIRST_SCAN_FRAMES}
        assert {read.slot: read.pin for read in listed} == pins


async def test_a_lost_multi_code_report_costs_that_slot_alone(tmp_path: Path) -> None:
    from bridge.clock import SystemClock
    from bridge.driver import DriverEvent, RetryLater, SlotState
    from drivers.zwave.driver import ZWaveDriver

    pins = {3: "3333", 4: "4444", 12: "1212", 30: "3030"}
    SEEN_PINS.update(pins.values())
    with running_stack(tmp_path / "zwave", [
        {"id": MULTI, "slots": 40, "schedules": False, "checksum": False, "multi_report": True},
    ]) as zwave:
        config = fast_config(zwave.url)
        zw = ZWaveDriver(config, SystemClock(), tmp_path / "state")
        events: list[DriverEvent] = []

        async def sink(event: DriverEvent) -> None:
            events.append(event)

        try:
            await zw.start(sink)
            external_id = f"7e570001-{MULTI}"
            for slot, pin in pins.items():
                await zwave.control("keypad_silent_set", node=MULTI, slot=slot, code=pin)
            # The lock never answers for slot 12, alone or as the first of a multi-code read.
            await zwave.control("mute_slot", node=MULTI, slot=12)
            await frames(zwave, MULTI)
            reads = {read.slot: read for read in await zw.read_slots(external_id, list(pins))}
            # One report from slot 3 (slots 3 to 10; it points to 12), one lost from 12; then 12
            # alone (lost again: unreadable, never empty) and 30 alone.
            assert {slot: read.pin for slot, read in reads.items()
                    if read.state is SlotState.KNOWN} == {3: "3333", 4: "4444", 30: "3030"}
            assert reads[12].state is SlotState.UNREADABLE
            assert await frames(zwave, MULTI) == {"UserCodeCCExtendedUserCodeGet": 2,
                                                  "UserCodeCCGet": 2}
            # Listing the lock: slots 1 to 8 in one report (pointing to 12), 12 lost in bulk and
            # alone: the engine is told to retry, and the walk resumes there.
            with pytest.raises(RetryLater):
                await zw.list_codes(external_id)
            assert await frames(zwave, MULTI) == {"UserCodeCCExtendedUserCodeGet": 2,
                                                  "UserCodeCCGet": 1}
            # Reads are not news: no slot changed for the engine's sake.
            assert not [e for e in events if e.kind.value == "slot_changed"]
        finally:
            await zw.stop()
