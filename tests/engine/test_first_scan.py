"""A lock's first scan after a restart: the slots lockbridge manages are read, and put back
where they are wrong, before the walk of every slot (minutes on a battery Z-Wave lock)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import FakeClock
from bridge.driver import CodeWrite, CommandRejected, RejectReason, SlotRead
from bridge.engine import CodeRequest
from bridge.model import AccessCodeStatus
from drivers.simulator import SimLockSpec, SimulatorDriver
from tests.harness import START, Harness, start_engine

pytestmark = pytest.mark.timeout(60)

SLOTS = 250
# A walk of every slot, one radio round trip each (a battery Z-Wave lock, ~0.9 s a frame).
WALK_S = SLOTS * 0.9
PINS = ["53101", "53112", "53123", "53134", "53145"]


class Recorder:
    """Wraps a simulator driver: the calls the engine made, in order, each with what the engine
    showed of the codes when the call went out; the walk of every slot takes `WALK_S`."""

    def __init__(self, driver: SimulatorDriver, clock: FakeClock) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.status_at_walk: dict[str, tuple[AccessCodeStatus, bool]] = {}
        self.walked = False
        self.harness: Harness | None = None
        read, walk, write = driver.read_slots, driver.list_codes, driver.write_code

        async def read_slots(external_id: str, slots: Sequence[int]) -> list[SlotRead]:
            self.calls.append(("read", tuple(slots)))
            return await read(external_id, slots)

        async def list_codes(external_id: str) -> list[SlotRead]:
            self.calls.append(("walk", None))
            assert self.harness is not None
            self.status_at_walk = {c.access_code_id: (c.status, c.verified)
                                   for c in self.harness.engine.codes.values()}
            await clock.sleep(WALK_S)
            listed = await walk(external_id)
            self.walked = True
            return listed

        async def write_code(external_id: str, code: CodeWrite) -> Any:
            self.calls.append(("write", code.slot))
            return await write(external_id, code)

        driver.read_slots = read_slots  # type: ignore[method-assign]
        driver.list_codes = list_codes  # type: ignore[method-assign]
        driver.write_code = write_code  # type: ignore[method-assign]


async def _converged_then_stopped(tmp_path: Path, clock: FakeClock,
                                  spec: SimLockSpec) -> dict[str, int]:
    """A first lockbridge puts `PINS` on the lock and stops: {access code id: slot}."""
    driver = SimulatorDriver("sim", [spec], clock, tmp_path / "locks.json")
    h = await start_engine(tmp_path, {"sim": driver}, clock=clock)
    try:
        device_id = h.device_id("front")
        made = [await h.engine.create_code(device_id, CodeRequest(name="Guest", code=pin))
                for pin in PINS]
        await h.until(lambda: all(h.code(c.access_code_id).status is AccessCodeStatus.SET
                                  for c in made), advance=1, what="codes set")
        slots = {c.access_code_id: h.code(c.access_code_id).slot for c in made}
    finally:
        await h.stop()
    assert None not in slots.values()
    return {code_id: slot for code_id, slot in slots.items() if slot is not None}


async def test_a_restart_verifies_and_repairs_managed_codes_before_walking_the_lock(
        tmp_path: Path) -> None:
    clock = FakeClock(START)
    spec = SimLockSpec("front", "Front", slot_count=SLOTS, lists_slot_by_slot=True)
    slots = await _converged_then_stopped(tmp_path, clock, spec)
    changed, cleared = sorted(slots.values())[1:3]
    # While lockbridge is down, the keypad changes one managed code and deletes another.
    offline = SimulatorDriver("sim", [spec], clock, tmp_path / "locks.json")
    await offline.start(_ignore)
    await offline.keypad_set("front", changed, "97531")
    await offline.keypad_clear("front", cleared)
    await offline.stop()

    driver = SimulatorDriver("sim", [spec], clock, tmp_path / "locks.json")
    recorder = Recorder(driver, clock)
    h = await start_engine(tmp_path, {"sim": driver}, clock=clock)
    recorder.harness = h
    try:
        # A code asked for now needs a free slot: only the walk shows which are free.
        late = await h.engine.create_code(h.device_id("front"),
                                          CodeRequest(name="Late", code="86420"))
        await h.until(lambda: recorder.walked and h.code(late.access_code_id).status
                      is AccessCodeStatus.SET, advance=5, what="the walk and the late code")
        await h.settle()
        walk = recorder.calls.index(("walk", None))
        # First the managed slots, in one read; then the two codes put back in their own
        # slots; then the walk; the new code only after it.
        assert recorder.calls[0] == ("read", tuple(sorted(slots.values())))
        assert sorted(recorder.calls[1:walk]) == [("write", changed), ("write", cleared)]
        assert recorder.calls[walk + 1:] == [("write", h.code(late.access_code_id).slot)]
        # Every managed code was verified before the walk began.
        assert {code_id: recorder.status_at_walk[code_id] for code_id in slots} == \
            {code_id: (AccessCodeStatus.SET, True) for code_id in slots}
        on_lock = {slot: sim.pin for slot, sim in driver.lock("front").slots.items()}
        assert {on_lock[slot] for slot in slots.values()} == set(PINS)
    finally:
        await h.stop()


async def test_a_lock_whose_driver_says_nothing_changed_is_not_read_twice(
        tmp_path: Path) -> None:
    clock = FakeClock(START)
    spec = SimLockSpec("front", "Front", slot_count=SLOTS, lists_slot_by_slot=True)
    await _converged_then_stopped(tmp_path, clock, spec)
    driver = SimulatorDriver("sim", [spec], clock, tmp_path / "locks.json")
    recorder = Recorder(driver, clock)
    asked: list[str] = []

    async def codes_unchanged(external_id: str) -> bool:
        # A lock whose checksum agrees with what its driver saw: the walk costs no frame.
        asked.append(external_id)
        return True

    driver.codes_unchanged = codes_unchanged  # type: ignore[attr-defined]
    h = await start_engine(tmp_path, {"sim": driver}, clock=clock)
    recorder.harness = h
    try:
        await h.until(lambda: recorder.walked, advance=5, what="the walk")
        await h.settle()
        assert asked == ["front"]
        assert recorder.calls == [("walk", None)]
    finally:
        await h.stop()


async def test_a_lock_whose_slots_cannot_be_read_alone_is_still_walked(
        tmp_path: Path) -> None:
    clock = FakeClock(START)
    spec = SimLockSpec("front", "Front", slot_count=SLOTS, lists_slot_by_slot=True)
    await _converged_then_stopped(tmp_path, clock, spec)
    driver = SimulatorDriver("sim", [spec], clock, tmp_path / "locks.json")
    recorder = Recorder(driver, clock)

    async def refused(external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        recorder.calls.append(("read", tuple(slots)))
        raise CommandRejected(RejectReason.UNSUPPORTED, "this hub only lists a lock's codes")

    driver.read_slots = refused  # type: ignore[method-assign]
    h = await start_engine(tmp_path, {"sim": driver}, clock=clock)
    recorder.harness = h
    try:
        # The managed slots are tried once; after the read's backoff the lock is walked.
        await h.until(lambda: recorder.walked, advance=5, what="the walk")
        assert [call for call, _ in recorder.calls[:2]] == ["read", "walk"]
    finally:
        await h.stop()


async def test_a_lock_listed_in_one_call_is_not_read_first(tmp_path: Path) -> None:
    # A cloud's or a hub's listing is one request: reading the managed slots before it would
    # cost a rate-limited cloud one more request per lock at every start and reconnect.
    clock = FakeClock(START)
    spec = SimLockSpec("front", "Front", slot_count=SLOTS)
    await _converged_then_stopped(tmp_path, clock, spec)
    driver = SimulatorDriver("sim", [spec], clock, tmp_path / "locks.json")
    recorder = Recorder(driver, clock)
    h = await start_engine(tmp_path, {"sim": driver}, clock=clock)
    recorder.harness = h
    try:
        await h.until(lambda: recorder.walked, advance=5, what="the walk")
        await h.settle()
        assert recorder.calls == [("walk", None)]
    finally:
        await h.stop()


async def _ignore(_event: object) -> None:
    pass
