"""The driver contract: the same checks every `LockDriver` passes, whatever is behind it.

To run it on a driver, subclass the variant for how its locks keep codes and give it a
`subject` fixture that yields a started driver with one lock, and the means to look inside that
lock (see tests/drivers/test_contract.py for the simulator and the MQTT drivers):

    class TestMyDriver(DriverContract):          # IdDriverContract for a lock that numbers
        @pytest.fixture                          # codes itself (Addressing.ID)
        async def subject(self, tmp_path): ...
            yield ContractSubject(driver=..., external_id=..., truth=..., silence=...)

The shared checks: the lock is described; a code is set and read back (a leading zero survives
where the lock takes one); clearing takes exactly one code; re-applying the same code changes
nothing; the occupied slots are listed; one slot that does not answer is unreadable while the
others are read; and a lock that stops answering makes the driver give up within its bound with
`RetryLater`, never hang.

Only what addressing changes differs. `DriverContract` (slots lockbridge chooses): a code goes
into the slot asked for, and a slot that does not exist is refused for good.
`IdDriverContract` (ids the lock assigns): a create names no slot and is answered with the id
the lock gave; a create sent again after its answer was lost finds its first landing instead
of making a second code; a PIN already on the lock in a code lockbridge did not make is refused
as a duplicate, never taken over (`CodeWrite.first_sent_at`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

import pytest

from bridge.driver import (
    Addressing,
    Availability,
    CodeWrite,
    CommandRejected,
    DeviceInfo,
    DriverEvent,
    LockDriver,
    RejectReason,
    RetryLater,
    SlotState,
    WriteResult,
)


@dataclass
class ContractSubject:
    """A started driver, one of its locks, and a window into that lock."""

    driver: LockDriver
    external_id: str
    # What is physically on the lock now: {slot: PIN}, slots as the driver numbers them.
    truth: Callable[[], dict[int, str]]
    # Make the lock (or the service in front of it) stop answering.
    silence: Callable[[], Awaitable[None]]
    # The driver must give up on an unanswered command within this many seconds.
    answer_bound_s: float = 5.0
    events: list[DriverEvent] = field(default_factory=list)
    # Make the lock stop answering reads of one slot only (None: the peer cannot; then
    # `mute_slot_absent` says why).
    mute_slot: Callable[[int], Awaitable[None]] | None = None
    mute_slot_absent: str = "this lock's peer cannot silence a single slot"
    # Put a code with this PIN on the lock as someone else would (the maker's app, the
    # keypad): for the id-addressed checks of codes lockbridge did not make.
    foreign_code: Callable[[str], Awaitable[None]] | None = None

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
        allowed = [d for d in "0123456789" if d not in rules.forbidden_digits]
        leading_zero = "0" in allowed and not rules.no_leading_zero
        # A digit the keypad lacks is replaced by one it has.
        swap = str.maketrans({d: allowed[-1] for d in rules.forbidden_digits})
        made: list[str] = []
        i = 0
        while len(made) < count:
            first = "0" if i == 0 and leading_zero else str(i % 9 + 1)
            pin = (first + str(7 * i + 3).rjust(length - 1, "5")).translate(swap)
            if pin not in made and not pin.startswith(rules.forbidden_prefixes):
                made.append(pin)
            i += 1
        return made


class _SharedContract:
    """The checks that do not depend on how the lock addresses its codes. A variant says how
    a new code is put on the lock (`put`) and which slot a command names before any code is
    there (`fresh_slot`)."""

    addressing: ClassVar[Addressing]

    async def put(self, subject: ContractSubject, pins: Sequence[str],
                  name: str = "x") -> list[WriteResult]:
        """Put new codes on the lock, one for each PIN, the way the engine creates them."""
        raise NotImplementedError

    def fresh_slot(self, subject: ContractSubject) -> int | None:
        """The slot a create names (None: the lock picks it)."""
        raise NotImplementedError

    def reapplied(self, first: WriteResult, second: WriteResult) -> None:
        """What a second write of the same code answers, compared with the first."""
        assert (second.slot, second.pin) == (first.slot, first.pin)

    @pytest.fixture
    def coded(self, subject: ContractSubject) -> ContractSubject:
        """The subject, for checks of a lock that takes codes from lockbridge."""
        caps = subject.info().capabilities
        if not caps.programs_codes:
            pytest.skip("this lock takes no codes from lockbridge")
        # A lock run through the other variant's checks would prove nothing.
        assert caps.addressing is self.addressing
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
        [pin] = coded.pins(1)
        [result] = await self.put(coded, [pin], name="Guest")
        assert coded.truth()[result.slot] == pin
        [read] = await coded.driver.read_slots(coded.external_id, [result.slot])
        assert read.slot == result.slot
        if coded.info().capabilities.masks_pins_on_read:
            assert read.state is SlotState.UNREADABLE
        else:
            assert (read.state, read.pin) == (SlotState.KNOWN, pin)
            assert not (read.pending or read.failed)

    async def test_clears_exactly_one_slot(self, coded: ContractSubject) -> None:
        pin_a, pin_b = coded.pins(2)
        a, b = (r.slot for r in await self.put(coded, [pin_a, pin_b]))
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
        [pin] = coded.pins(1)
        [first] = await self.put(coded, [pin], name="Guest")
        state = coded.truth()
        second = await coded.driver.write_code(coded.external_id,
                                               CodeWrite(slot=first.slot, pin=pin,
                                                         name="Guest"))
        self.reapplied(first, second)
        assert coded.truth() == state
        listed = await coded.driver.list_codes(coded.external_id)
        assert [r.slot for r in listed].count(first.slot) == 1

    async def test_lists_the_occupied_slots(self, coded: ContractSubject) -> None:
        await self.put(coded, coded.pins(2))
        listed = {r.slot: r for r in await coded.driver.list_codes(coded.external_id)}
        assert set(listed) == set(coded.truth())
        assert all(r.state is not SlotState.EMPTY for r in listed.values())

    async def test_gives_up_with_retry_later_when_the_lock_stops_answering(
            self, coded: ContractSubject) -> None:
        slot = self.fresh_slot(coded)
        known = slot if slot is not None else coded.info().capabilities.first_slot
        [pin] = coded.pins(1)
        await coded.silence()
        calls: Sequence[Callable[[], Awaitable[object]]] = (
            lambda: coded.driver.write_code(coded.external_id,
                                            CodeWrite(slot=slot, pin=pin, name="x")),
            lambda: coded.driver.read_slots(coded.external_id, [known]),
            lambda: coded.driver.clear_code(coded.external_id, known),
        )
        for call in calls:
            with pytest.raises(RetryLater):
                # A TimeoutError here would mean the driver hung instead of giving up.
                await asyncio.wait_for(call(), coded.answer_bound_s)

    async def test_a_slot_that_does_not_answer_blinds_only_itself(
            self, coded: ContractSubject) -> None:
        if coded.mute_slot is None:
            pytest.skip(coded.mute_slot_absent)
        pin_a, pin_b = coded.pins(2)
        a, b = (r.slot for r in await self.put(coded, [pin_a, pin_b]))
        await coded.mute_slot(b)
        reads = {r.slot: r for r in await asyncio.wait_for(
            coded.driver.read_slots(coded.external_id, [a, b]), 3 * coded.answer_bound_s)}
        if coded.info().capabilities.masks_pins_on_read:
            assert reads[a].state is SlotState.UNREADABLE
        else:
            assert (reads[a].state, reads[a].pin) == (SlotState.KNOWN, pin_a)
        # Unknown is never empty: a code there must not be overwritten.
        assert reads[b].state is SlotState.UNREADABLE


class DriverContract(_SharedContract):
    """For locks whose codes sit in numbered slots lockbridge chooses (Addressing.SLOT).
    Subclass with a `subject` fixture; each test gets a fresh lock."""

    addressing = Addressing.SLOT

    async def put(self, subject: ContractSubject, pins: Sequence[str],
                  name: str = "x") -> list[WriteResult]:
        results = []
        for slot, pin in zip(subject.free_slots(len(pins)), pins, strict=True):
            result = await subject.driver.write_code(subject.external_id,
                                                     CodeWrite(slot=slot, pin=pin, name=name))
            # The code goes where it was asked to go.
            assert (result.slot, result.pin) == (slot, pin)
            results.append(result)
        return results

    def fresh_slot(self, subject: ContractSubject) -> int | None:
        [slot] = subject.free_slots(1)
        return slot

    def reapplied(self, first: WriteResult, second: WriteResult) -> None:
        assert first == second

    async def test_refuses_a_slot_that_does_not_exist(self, coded: ContractSubject) -> None:
        caps = coded.info().capabilities
        beyond = caps.first_slot + caps.slot_count
        [pin] = coded.pins(1)
        with pytest.raises(CommandRejected) as raised:
            await coded.driver.write_code(coded.external_id,
                                          CodeWrite(slot=beyond, pin=pin, name="x"))
        assert raised.value.reason is RejectReason.SLOT_OUT_OF_RANGE
        assert coded.truth() == {}


class IdDriverContract(_SharedContract):
    """For locks that number their codes themselves (Addressing.ID, a cloud such as Nuki's):
    a create names no slot and learns the id from the lock. Subclass with a `subject`
    fixture; each test gets a fresh lock."""

    addressing = Addressing.ID

    async def put(self, subject: ContractSubject, pins: Sequence[str],
                  name: str = "x") -> list[WriteResult]:
        results: list[WriteResult] = []
        for pin in pins:
            result = await subject.driver.write_code(subject.external_id,
                                                     CodeWrite(slot=None, pin=pin, name=name))
            # A create is answered once the lock has the code, under an id of its own.
            assert result.pin == pin and result.confirmed
            assert result.slot not in {r.slot for r in results}
            results.append(result)
        return results

    def fresh_slot(self, subject: ContractSubject) -> int | None:
        return None

    async def test_a_create_sent_again_finds_its_first_landing(
            self, coded: ContractSubject) -> None:
        [pin] = coded.pins(1)
        first_sent_at = datetime.now(UTC)
        code = CodeWrite(slot=None, pin=pin, name="Guest", first_sent_at=first_sent_at)
        first = await coded.driver.write_code(coded.external_id, code)
        # Its answer was lost: the engine sends the same create again, with when it first went.
        again = await coded.driver.write_code(coded.external_id, code)
        assert (again.slot, again.pin) == (first.slot, pin)
        assert coded.truth() == {first.slot: pin}

    async def test_a_pin_someone_else_set_is_refused_never_taken_over(
            self, coded: ContractSubject) -> None:
        if coded.foreign_code is None:
            pytest.skip("this lock's peer cannot make a code as someone else")
        [pin] = coded.pins(1)
        await coded.foreign_code(pin)
        theirs = coded.truth()
        with pytest.raises(CommandRejected) as raised:
            await coded.driver.write_code(coded.external_id,
                                          CodeWrite(slot=None, pin=pin, name="Guest"))
        assert raised.value.reason is RejectReason.DUPLICATE_PIN
        assert coded.truth() == theirs
