"""The driver contract: the same checks every `LockDriver` passes, whatever is behind it.

To run it on a driver, subclass `DriverContract` in a test module and give it a `subject`
fixture that yields a started driver with one lock, and the means to look inside that lock
(see tests/test_contract.py for the simulator and the MQTT drivers):

    class TestMyDriver(DriverContract):
        @pytest.fixture
        async def subject(self, tmp_path): ...
            yield ContractSubject(driver=..., external_id=..., truth=..., silence=...)

The checks: the lock is described; a code is set and read back (a leading zero survives);
clearing takes exactly one slot; re-applying the same code changes nothing; the occupied slots
are listed; a slot that does not exist is refused for good; one slot that does not answer is
unreadable while the others are read; and a lock that stops answering makes the driver give up
within its bound with `RetryLater`, never hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from bridge.driver import (
    Availability,
    CodeWrite,
    CommandRejected,
    DeviceInfo,
    DriverEvent,
    LockDriver,
    RejectReason,
    RetryLater,
    SlotState,
)


@dataclass
class ContractSubject:
    """A started driver, one of its locks, and a window into that lock."""

    driver: LockDriver
    external_id: str
    # What is physically on the lock now: {slot: PIN}.
    truth: Callable[[], dict[int, str]]
    # Make the lock (or the service in front of it) stop answering.
    silence: Callable[[], Awaitable[None]]
    # The driver must give up on an unanswered command within this many seconds.
    answer_bound_s: float = 5.0
    events: list[DriverEvent] = field(default_factory=list)
    # Make the lock stop answering reads of one slot only (None: the peer cannot).
    mute_slot: Callable[[int], Awaitable[None]] | None = None

    def info(self) -> DeviceInfo:
        """The lock as the driver describes it."""
        return next(d for d in self.driver.devices() if d.external_id == self.external_id)

    def free_slots(self, count: int) -> list[int]:
        """`count` usable slots that hold nothing now."""
        caps = self.info().capabilities
        taken = set(self.truth()) | caps.reserved_slots
        return [s for s in caps.slots() if s not in taken][:count]

    def pins(self, count: int) -> list[str]:
        """Distinct PINs the lock accepts, the first with a leading zero when allowed."""
        rules = self.info().constraints
        length = rules.fixed_length or max(rules.min_length, 4)
        first = "0" if not rules.no_leading_zero else "1"
        return [(first if i == 0 else str(i % 9 + 1)) + str(7 * i + 3).rjust(length - 1, "5")
                for i in range(count)]


class DriverContract:
    """Subclass with a `subject` fixture; each test gets a fresh lock."""

    @pytest.fixture
    def coded(self, subject: ContractSubject) -> ContractSubject:
        """The subject, for checks of a lock that takes codes from lockbridge."""
        if not subject.info().capabilities.programs_codes:
            pytest.skip("this lock takes no codes from lockbridge")
        return subject

    async def test_a_lock_that_takes_no_codes_refuses_them_for_good(
            self, subject: ContractSubject) -> None:
        caps = subject.info().capabilities
        if caps.programs_codes:
            pytest.skip("this lock takes codes")
        with pytest.raises(CommandRejected) as raised:
            await subject.driver.write_code(subject.external_id,
                                            CodeWrite(slot=caps.first_slot, pin="1357",
                                                      name="x"))
        assert raised.value.reason is RejectReason.UNSUPPORTED
        assert await subject.driver.list_codes(subject.external_id) == []

    async def test_a_probe_gives_up_when_the_lock_stops_answering(
            self, subject: ContractSubject) -> None:
        await subject.silence()
        assert not await asyncio.wait_for(subject.driver.probe(subject.external_id),
                                          subject.answer_bound_s)

    async def test_describes_its_lock(self, subject: ContractSubject) -> None:
        info = subject.info()
        # A lock that takes codes has slots for them; one that takes none says so.
        assert (len(info.capabilities.slots()) > 0) == info.capabilities.programs_codes
        assert subject.driver.availability(subject.external_id) is Availability.ONLINE
        assert await subject.driver.probe(subject.external_id)

    async def test_sets_a_code_and_reads_it_back(self, coded: ContractSubject) -> None:
        [slot] = coded.free_slots(1)
        [pin] = coded.pins(1)
        result = await coded.driver.write_code(coded.external_id,
                                                 CodeWrite(slot=slot, pin=pin, name="Guest"))
        assert (result.slot, result.pin) == (slot, pin)
        assert coded.truth()[slot] == pin
        [read] = await coded.driver.read_slots(coded.external_id, [slot])
        assert read.slot == slot
        if coded.info().capabilities.masks_pins_on_read:
            assert read.state is SlotState.UNREADABLE
        else:
            assert (read.state, read.pin) == (SlotState.KNOWN, pin)

    async def test_clears_exactly_one_slot(self, coded: ContractSubject) -> None:
        a, b = coded.free_slots(2)
        pin_a, pin_b = coded.pins(2)
        for slot, pin in ((a, pin_a), (b, pin_b)):
            await coded.driver.write_code(coded.external_id,
                                            CodeWrite(slot=slot, pin=pin, name="x"))
        before = coded.truth()
        await coded.driver.clear_code(coded.external_id, a)
        after = coded.truth()
        assert a not in after and after[b] == pin_b
        assert {s: p for s, p in before.items() if s != a} == after
        [read] = await coded.driver.read_slots(coded.external_id, [a])
        assert read.state is SlotState.EMPTY
        # Clearing an empty slot is not an error.
        await coded.driver.clear_code(coded.external_id, a)
        assert coded.truth() == after

    async def test_reapplying_the_same_code_changes_nothing(self,
                                                            coded: ContractSubject) -> None:
        [slot] = coded.free_slots(1)
        [pin] = coded.pins(1)
        code = CodeWrite(slot=slot, pin=pin, name="Guest")
        first = await coded.driver.write_code(coded.external_id, code)
        state = coded.truth()
        second = await coded.driver.write_code(coded.external_id, code)
        assert first == second and coded.truth() == state
        listed = await coded.driver.list_codes(coded.external_id)
        assert [r.slot for r in listed].count(slot) == 1

    async def test_lists_the_occupied_slots(self, coded: ContractSubject) -> None:
        slots = coded.free_slots(2)
        for slot, pin in zip(slots, coded.pins(2), strict=True):
            await coded.driver.write_code(coded.external_id,
                                            CodeWrite(slot=slot, pin=pin, name="x"))
        listed = {r.slot: r for r in await coded.driver.list_codes(coded.external_id)}
        assert set(listed) == set(coded.truth())
        assert all(r.state is not SlotState.EMPTY for r in listed.values())

    async def test_refuses_a_slot_that_does_not_exist(self, coded: ContractSubject) -> None:
        caps = coded.info().capabilities
        beyond = caps.first_slot + caps.slot_count
        [pin] = coded.pins(1)
        with pytest.raises(CommandRejected) as raised:
            await coded.driver.write_code(coded.external_id,
                                            CodeWrite(slot=beyond, pin=pin, name="x"))
        assert raised.value.reason is RejectReason.SLOT_OUT_OF_RANGE
        assert coded.truth() == {}

    async def test_gives_up_with_retry_later_when_the_lock_stops_answering(
            self, coded: ContractSubject) -> None:
        [slot] = coded.free_slots(1)
        [pin] = coded.pins(1)
        await coded.silence()
        calls: Sequence[Callable[[], Awaitable[object]]] = (
            lambda: coded.driver.write_code(coded.external_id,
                                              CodeWrite(slot=slot, pin=pin, name="x")),
            lambda: coded.driver.read_slots(coded.external_id, [slot]),
            lambda: coded.driver.clear_code(coded.external_id, slot),
        )
        for call in calls:
            with pytest.raises(RetryLater):
                # A TimeoutError here would mean the driver hung instead of giving up.
                await asyncio.wait_for(call(), coded.answer_bound_s)

    async def test_a_slot_that_does_not_answer_blinds_only_itself(
            self, coded: ContractSubject) -> None:
        if coded.mute_slot is None:
            pytest.skip("this lock's peer cannot silence a single slot")
        a, b = coded.free_slots(2)
        pin_a, pin_b = coded.pins(2)
        for slot, pin in ((a, pin_a), (b, pin_b)):
            await coded.driver.write_code(coded.external_id,
                                            CodeWrite(slot=slot, pin=pin, name="x"))
        await coded.mute_slot(b)
        reads = {r.slot: r for r in await asyncio.wait_for(
            coded.driver.read_slots(coded.external_id, [a, b]), 3 * coded.answer_bound_s)}
        if coded.info().capabilities.masks_pins_on_read:
            assert reads[a].state is SlotState.UNREADABLE
        else:
            assert (reads[a].state, reads[a].pin) == (SlotState.KNOWN, pin_a)
        # Unknown is never empty: a code there must not be overwritten.
        assert reads[b].state is SlotState.UNREADABLE

