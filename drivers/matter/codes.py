"""A lockbridge code on a Matter lock: one user holding one PIN credential (slot = the PIN
credential's index), created by lockbridge's fabric. PINs never come back from the lock: a slot
is verified by its credential status (occupied, by which user, by which fabric)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from bridge.driver import (
    CodeWrite,
    CommandRejected,
    DeviceInfo,
    LocalWindow,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
)
from drivers.matter import mapping
from drivers.matter.commands import CredentialStatus, DoorLockCommands, best_effort


@dataclass(slots=True)
class Written:
    """What lockbridge last put in a slot, kept in memory only (a PIN digest, never the PIN)."""

    user_index: int
    digest: str
    name: str
    window: LocalWindow | None


@dataclass(slots=True)
class LockCodes:
    """One lock's code operations and what the driver remembers of its slots."""

    commands: DoorLockCommands
    fabric: int
    total_users: int
    written: dict[int, Written] = field(default_factory=dict)
    # Slots changed at the lock (keypad, another fabric) since lockbridge last wrote them.
    changed: set[int] = field(default_factory=set)

    async def read(self, slot: int) -> SlotRead:
        """One slot as its credential status shows it (occupied slots are unreadable)."""
        status = await self.commands.credential_status(slot)
        return self._slot_read(slot, status)

    def _slot_read(self, slot: int, status: CredentialStatus) -> SlotRead:
        if not status.exists:
            self.written.pop(slot, None)
            self.changed.discard(slot)
            return SlotRead(slot=slot, state=SlotState.EMPTY)
        if status.creator_fabric != self.fabric:
            return SlotRead(slot=slot, state=SlotState.UNREADABLE,
                            reason="another fabric's code")
        if slot in self.changed or status.modifier_fabric not in (None, self.fabric):
            # Not the name lockbridge gave: the engine takes the code as changed at the lock.
            return SlotRead(slot=slot, state=SlotState.UNREADABLE,
                            name=mapping.CHANGED_AT_LOCK, reason="changed at the lock")
        return SlotRead(slot=slot, state=SlotState.UNREADABLE, reason="masked")

    async def list(self, slot_count: int) -> list[SlotRead]:
        """Every occupied slot, following the lock's own next-occupied index."""
        reads: list[SlotRead] = []
        slot: int | None = 1
        seen: set[int] = set()
        while slot is not None and 1 <= slot <= slot_count and slot not in seen:
            seen.add(slot)
            status = await self.commands.credential_status(slot)
            read = self._slot_read(slot, status)
            if read.state is not SlotState.EMPTY:
                reads.append(read)
            slot = status.next_index
        return reads

    async def write(self, slot: int, pin: str, code: CodeWrite, info: DeviceInfo) -> None:
        """Put the code in `slot`: a new user and credential, or a Modify of our own."""
        status = await self.commands.credential_status(slot)
        if status.exists and status.creator_fabric != self.fabric:
            raise CommandRejected(RejectReason.OTHER, f"slot {slot} holds a code another "
                                  "controller (fabric) made; lockbridge never changes it")
        name = code.name[: mapping.USER_NAME_MAX]
        schedules = info.capabilities.native_schedules
        wanted = Written(0, _digest(slot, pin), name, code.window if schedules else None)
        if status.exists and status.user_index is not None:
            known = self.written.get(slot)
            if known is not None and slot not in self.changed and \
                    (known.digest, known.name, known.window) == \
                    (wanted.digest, wanted.name, wanted.window):
                return  # the same code again: nothing to change
            await self._modify(slot, pin, status.user_index, wanted, schedules)
        else:
            await self._add(slot, pin, wanted, schedules)

    async def _add(self, slot: int, pin: str, wanted: Written, schedules: bool) -> None:
        user = await self._free_user()
        user_type = mapping.USER_TYPE_YEAR_DAY if wanted.window else \
            mapping.USER_TYPE_UNRESTRICTED
        await self.commands.set_user(mapping.OP_ADD, user, wanted.name, user_type)
        try:
            # The schedule before the PIN: the code never opens outside its window.
            if wanted.window is not None:
                await self._schedule(user, wanted.window)
            answer = await self.commands.set_credential(mapping.OP_ADD, slot, pin, user)
            if answer == mapping.STATUS_OCCUPIED:
                # Someone filled the slot since it was read: ours to modify, or refused.
                status = await self.commands.credential_status(slot)
                if status.creator_fabric != self.fabric or status.user_index is None:
                    raise CommandRejected(RejectReason.OTHER,
                                          f"slot {slot} was taken by another controller")
                await best_effort(self.commands.clear_user(user), f"removing user {user}")
                await self._modify(slot, pin, status.user_index, wanted, schedules)
                return
            _raise_for(answer, slot)
        except BaseException:
            await best_effort(self.commands.clear_user(user), f"removing user {user}")
            raise
        wanted.user_index = user
        self._remember(slot, wanted)

    async def _modify(self, slot: int, pin: str, user: int, wanted: Written,
                      schedules: bool) -> None:
        user_type = mapping.USER_TYPE_YEAR_DAY if wanted.window else \
            mapping.USER_TYPE_UNRESTRICTED
        await self.commands.set_user(mapping.OP_MODIFY, user, wanted.name, user_type)
        if wanted.window is not None:
            await self._schedule(user, wanted.window)
        elif schedules:
            # A code made ongoing loses its window (unknown after a restart: cleared anyway).
            previous = self.written.get(slot)
            if previous is None or previous.window is not None:
                await best_effort(self.commands.clear_year_day(user), "clearing a schedule")
        answer = await self.commands.set_credential(mapping.OP_MODIFY, slot, pin, user)
        _raise_for(answer, slot)
        wanted.user_index = user
        self._remember(slot, wanted)

    async def _schedule(self, user: int, window: LocalWindow) -> None:
        await self.commands.set_year_day(user, mapping.local_epoch(window.starts_at),
                                         mapping.local_epoch(window.ends_at))

    def _remember(self, slot: int, wanted: Written) -> None:
        self.written[slot] = wanted
        self.changed.discard(slot)

    async def confirm(self, slot: int) -> bool:
        """Whether the slot now holds a credential of lockbridge's fabric."""
        status = await self.commands.credential_status(slot)
        return status.exists and status.creator_fabric == self.fabric

    async def clear(self, slot: int) -> None:
        """Remove our code in `slot` (its user, and with it the credential and schedules)."""
        status = await self.commands.credential_status(slot)
        if not status.exists:
            self.written.pop(slot, None)
            return
        if status.creator_fabric != self.fabric:
            raise CommandRejected(RejectReason.OTHER, f"slot {slot} holds a code another "
                                  "controller (fabric) made; lockbridge never changes it")
        if status.user_index is not None:
            await self.commands.clear_user(status.user_index)
        if (await self.commands.credential_status(slot)).exists:
            raise RetryLater(f"slot {slot} still holds a PIN after clearing it")
        self.written.pop(slot, None)
        self.changed.discard(slot)

    async def _free_user(self) -> int:
        """The lowest user index no one holds."""
        for index in range(1, self.total_users + 1):
            user = await self.commands.user(index)
            if user.get("userStatus") is None:
                return index
        raise CommandRejected(RejectReason.NO_SPACE, "every user on the lock is taken")


def _raise_for(answer: int, slot: int) -> None:
    error = mapping.refusal(answer, f"setting the PIN in slot {slot}")
    if answer == mapping.STATUS_OCCUPIED:
        error = RetryLater(f"slot {slot} was occupied while lockbridge modified it")
    if error is not None:
        raise error


def _digest(slot: int, pin: str) -> str:
    """Tells a re-applied PIN from a new one without keeping the PIN."""
    return hashlib.sha256(f"{slot}:{pin}".encode()).hexdigest()
