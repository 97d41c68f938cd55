"""The simulator behaves like a lock, and each injected fault does what it says."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from bridge.clock import FakeClock
from bridge.config import load_config
from bridge.driver import (
    Availability,
    CodeWrite,
    CommandRejected,
    DriverEvent,
    DriverEventKind,
    LocalWindow,
    Reauthenticate,
    RejectReason,
    RetryLater,
    SlotState,
)
from bridge.drivercontext import DriverContext
from drivers.simulator import SimLockSpec, SimulatorDriver
from drivers.simulator.config import build
from drivers.simulator.driver import load_state_file


def make(**spec: object) -> tuple[SimulatorDriver, FakeClock]:
    clock = FakeClock()
    return SimulatorDriver("sim", [SimLockSpec(lock_id="l", name="L", **spec)], clock), clock  # type: ignore[arg-type]


async def test_write_read_clear_round_trip() -> None:
    driver, _ = make()
    result = await driver.write_code("l", CodeWrite(slot=3, pin="0155", name="Guest"))
    assert (result.slot, result.pin) == (3, "0155")
    [read] = await driver.read_slots("l", [3])
    assert read.state is SlotState.KNOWN and read.pin == "0155"
    await driver.clear_code("l", 3)
    [read] = await driver.read_slots("l", [3])
    assert read.state is SlotState.EMPTY


async def test_fail_next_n_sets_then_succeed() -> None:
    driver, _ = make()
    driver.lock("l").fail_sets = 2
    for _ in range(2):
        with pytest.raises(RetryLater):
            await driver.write_code("l", CodeWrite(slot=1, pin="1357", name="x"))
    await driver.write_code("l", CodeWrite(slot=1, pin="1357", name="x"))
    assert driver.lock("l").slots[1].pin == "1357"


async def test_offline_for_a_period_ends_on_the_clock() -> None:
    driver, clock = make()
    driver.lock("l").go_offline(600)
    with pytest.raises(RetryLater):
        await driver.read_slots("l", [1])
    assert driver.availability("l") is Availability.OFFLINE
    await clock.advance(601)
    assert await driver.probe("l")
    assert driver.availability("l") is Availability.ONLINE


async def test_slots_full_and_duplicate_and_invalid_are_refused_for_good() -> None:
    driver, _ = make(slot_count=2, fixed_length=4)
    await driver.write_code("l", CodeWrite(slot=None, pin="2468", name="a"))
    with pytest.raises(CommandRejected) as dup:
        await driver.write_code("l", CodeWrite(slot=None, pin="2468", name="b"))
    assert dup.value.reason is RejectReason.DUPLICATE_PIN
    with pytest.raises(CommandRejected) as bad:
        await driver.write_code("l", CodeWrite(slot=None, pin="12345", name="c"))
    assert bad.value.reason is RejectReason.INVALID_PIN
    await driver.write_code("l", CodeWrite(slot=None, pin="1357", name="d"))
    with pytest.raises(CommandRejected) as full:
        await driver.write_code("l", CodeWrite(slot=None, pin="9753", name="e"))
    assert full.value.reason is RejectReason.NO_SPACE
    with pytest.raises(CommandRejected) as oob:
        await driver.write_code("l", CodeWrite(slot=40, pin="9753", name="e"))
    assert oob.value.reason in (RejectReason.SLOT_OUT_OF_RANGE, RejectReason.NO_SPACE)


async def test_masked_reads_are_unreadable_not_empty() -> None:
    driver, _ = make(masks_pins=True)
    await driver.write_code("l", CodeWrite(slot=1, pin="8642", name="a"))
    reads = await driver.read_slots("l", [1, 2])
    assert [r.state for r in reads] == [SlotState.UNREADABLE, SlotState.EMPTY]
    assert reads[0].pin is None


async def test_keypad_edit_and_use_are_reported() -> None:
    driver, _ = make()
    seen: list[DriverEvent] = []

    async def sink(event: DriverEvent) -> None:
        seen.append(event)

    await driver.start(sink)
    await driver.keypad_set("l", 5, "9999")
    await driver.keypad_use("l", 5)
    assert [(e.kind, e.slot) for e in seen] == [
        (DriverEventKind.SLOT_CHANGED, 5), (DriverEventKind.KEYPAD_USED, 5)]
    [read] = await driver.read_slots("l", [5])
    assert read.pin == "9999"


async def test_algorithmic_lock_chooses_its_own_pin() -> None:
    driver, _ = make(algorithmic_pins=True, can_read=False, id_addressed=True)
    result = await driver.write_code("l", CodeWrite(slot=None, pin=None, name="g"))
    assert result.pin.isdigit() and len(result.pin) == 8
    [read] = await driver.read_slots("l", [result.slot])
    assert read.state is SlotState.UNREADABLE


async def test_a_replayed_write_to_a_lock_that_picks_its_slot_takes_no_second_slot(
        tmp_path: Path) -> None:
    # The outcome of the first write was lost (the daemon was killed mid-write): the bridge
    # sends it again. The lock finds the code by the reference it keeps, even after a restart
    # of the driver, instead of programming a second slot nobody will ever clear.
    spec = SimLockSpec(lock_id="l", name="L", algorithmic_pins=True, can_read=False,
                       id_addressed=True)

    async def sink(event: DriverEvent) -> None:
        return None

    first = SimulatorDriver("sim", [spec], FakeClock(), tmp_path / "sim.json")
    await first.start(sink)
    sent = await first.write_code("l", CodeWrite(slot=None, pin=None, name="g", key="code-1"))
    again = SimulatorDriver("sim", [spec], FakeClock(), tmp_path / "sim.json")
    await again.start(sink)
    replayed = await again.write_code("l", CodeWrite(slot=None, pin=None, name="g",
                                                     key="code-1"))
    assert (replayed.slot, replayed.pin) == (sent.slot, sent.pin)
    assert list(again.lock("l").slots) == [sent.slot]
    other = await again.write_code("l", CodeWrite(slot=None, pin=None, name="h", key="code-2"))
    assert other.slot != sent.slot


async def test_account_disconnected_asks_for_reauthentication() -> None:
    driver, _ = make()
    driver.lock("l").disconnect_account()
    with pytest.raises(Reauthenticate):
        await driver.write_code("l", CodeWrite(slot=1, pin="1357", name="x"))


async def test_faults_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("""\
drivers:
  - kind: simulator
    locks:
      - id: a
        name: A
        faults: {fail_next_sets: 1, keypad_codes: {4: "7777"}}
      - id: b
        name: B
        faults: {offline: true}
      - id: c
        name: C
        preset: schlage_be469
        faults: {slots_full: true}
""")
    loaded = load_config(path)
    driver = build(loaded.drivers[0], DriverContext(FakeClock(), tmp_path))  # type: ignore[arg-type]
    assert driver.lock("a").slots[4].pin == "7777"
    with pytest.raises(RetryLater):
        await driver.write_code("a", CodeWrite(slot=1, pin="1357", name="x"))
    assert driver.availability("b") is Availability.OFFLINE
    with pytest.raises(CommandRejected):
        await driver.write_code("c", CodeWrite(slot=1, pin="1357", name="x"))
    assert driver.devices()[2].constraints.fixed_length == 4


async def test_state_file_survives_a_new_driver(tmp_path: Path) -> None:
    clock = FakeClock()
    spec = SimLockSpec(lock_id="l", name="L")
    first = SimulatorDriver("sim", [spec], clock, tmp_path / "sim.json")

    async def sink(event: DriverEvent) -> None:
        return None

    await first.start(sink)
    await first.write_code("l", CodeWrite(slot=2, pin="2580", name="x"))
    second = SimulatorDriver("sim", [spec], clock, tmp_path / "sim.json")
    await second.start(sink)
    assert second.lock("l").slots[2].pin == "2580"


async def test_every_lock_keeps_its_slots_through_restarts_and_saves(tmp_path: Path) -> None:
    """What each slot holds (PIN, name, window, key) and its write count survive a restart,
    and a save for another lock's write after it."""
    clock = FakeClock()
    specs = [SimLockSpec(lock_id="a", name="A"), SimLockSpec(lock_id="b", name="B")]
    window = LocalWindow(datetime(2026, 6, 1, 15, 0), datetime(2026, 6, 3, 11, 0))

    async def sink(event: DriverEvent) -> None:
        return None

    first = SimulatorDriver("sim", specs, clock, tmp_path / "sim.json")
    await first.start(sink)
    await first.write_code("a", CodeWrite(slot=1, pin="1111", name="a1"))
    await first.write_code("b", CodeWrite(slot=3, pin="3333", name="b3", window=window,
                                          key="code-b3"))
    second = SimulatorDriver("sim", specs, clock, tmp_path / "sim.json")
    await second.start(sink)
    await second.write_code("a", CodeWrite(slot=2, pin="2222", name="a2"))
    third = SimulatorDriver("sim", specs, clock, tmp_path / "sim.json")
    await third.start(sink)
    assert {n: s.pin for n, s in third.lock("a").slots.items()} == {1: "1111", 2: "2222"}
    held = third.lock("b").slots[3]
    assert (held.pin, held.name, held.window, held.key) == ("3333", "b3", window, "code-b3")
    assert third.lock("b").writes == {3: 1}


async def test_control_file_injects_faults_from_outside(tmp_path: Path) -> None:
    """The opt-in control file: commands appended after start are applied in order, earlier
    ones never; a line that is not a command is skipped without repeating it."""
    clock = FakeClock()
    control = tmp_path / "control.jsonl"
    control.write_text('{"lock": "l", "op": "wipe"}\n')
    driver = SimulatorDriver("sim", [SimLockSpec(lock_id="l", name="L")], clock,
                             tmp_path / "sim.json", control)
    events: list[DriverEvent] = []

    async def sink(event: DriverEvent) -> None:
        events.append(event)

    await driver.start(sink)
    try:
        await driver.write_code("l", CodeWrite(slot=1, pin="2580", name="x"))
        with control.open("a") as fh:
            fh.write('{"lock": "l", "op": "offline"}\nnot json 97531\n'
                     '{"lock": "l", "op": "keypad_set", "slot": 4, "pin": "86420"}\n'
                     '{"lock": "l", "op": "refuse", "count": 2}\n'
                     '{"lock": "l", "op": "latency", "seconds": 0.5}\n')
        for _ in range(5):
            await clock.advance(0.2)
        lock = driver.lock("l")
        assert lock.slots[1].pin == "2580", "the wipe written before start was not replayed"
        assert lock.slots[4].pin == "86420"
        assert lock.current_availability() is Availability.OFFLINE
        assert (lock.fail_sets, lock.fail_clears, lock.spec.latency_s) == (2, 2, 0.5)
        assert [e.kind for e in events] == [DriverEventKind.AVAILABILITY,
                                           DriverEventKind.SLOT_CHANGED]
        with control.open("a") as fh:
            fh.write('{"lock": "l", "op": "online"}\n{"lock": "l", "op": "wipe"}\n')
        for _ in range(3):
            await clock.advance(0.2)
        assert lock.slots == {} and lock.current_availability() is Availability.ONLINE
        assert load_state_file(tmp_path / "sim.json") == {"l": {}}
    finally:
        await driver.stop()


def test_control_file_is_off_unless_configured(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"state_dir: {tmp_path}\ndrivers:\n  - kind: simulator\n"
                      "    control_file: ctl.jsonl\n    locks: [{id: a, name: A}]\n")
    loaded = load_config(config)
    driver = build(loaded.drivers[0], DriverContext(clock=FakeClock(), state_dir=tmp_path))  # type: ignore[arg-type]
    assert driver._control is not None and driver._control.path == tmp_path / "ctl.jsonl"
    config.write_text(f"state_dir: {tmp_path}\ndrivers:\n  - kind: simulator\n"
                      "    locks: [{id: a, name: A}]\n")
    driver = build(load_config(config).drivers[0], DriverContext(clock=FakeClock(),  # type: ignore[arg-type]
                                                                 state_dir=tmp_path))
    assert driver._control is None
