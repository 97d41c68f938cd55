"""What the Zigbee2MQTT driver knows of its locks: settings, per-lock state, what it remembers
between runs, and the judgements made from what the users answered (no I/O here)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bridge.driver import (
    CommandRejected,
    DeviceInfo,
    DriverError,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
)
from drivers.mqtt.lockdriver import LockSettings, LockState, MqttOptions, slot_lock_info
from drivers.zigbee2mqtt import mapping

_DEFAULT_SLOTS = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class LockOptions(LockSettings):
    """Per-lock settings from the configuration; None means "as discovered"."""

    friendly_name: str
    expose_pin: bool | None = None
    write_unread_users: bool = False


@dataclass(frozen=True, slots=True)
class Options(MqttOptions[LockOptions]):
    """One Zigbee2MQTT instance: its base topic, and whether every device exposing pin_code
    is managed or only the locks listed."""

    base_topic: str = "zigbee2mqtt"
    discover: bool = True
    confirmation_window_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Expect:
    """What our own command should leave in a user: a PIN, or nothing (`pin` None)."""

    pin: str | None


@dataclass(slots=True)
class Op:
    """A command in flight on one lock's user; Zigbee2MQTT's failure report for it lands here."""

    slot: int | None
    failed: asyncio.Future[DriverError]


@dataclass(slots=True)
class Waiter:
    """A read of one user waiting for answers (every candidate entry, in order)."""

    slot: int
    answers: asyncio.Queue[SlotRead] = field(default_factory=asyncio.Queue)


@dataclass(slots=True, kw_only=True)
class Lock(LockState):
    """One lock: the base's state, and what its users answered since the link came up."""

    ieee: str | None = None
    online_flag: bool | None = None
    ops: list[Op] = field(default_factory=list)
    waiters: list[Waiter] = field(default_factory=list)
    heard: list[asyncio.Future[None]] = field(default_factory=list)
    # What each user answered since the link came up, and the users whose last read got none.
    known: dict[int, SlotRead] = field(default_factory=dict)
    unanswered: set[int] = field(default_factory=set)
    # Users found holding a code nobody told us about, just before a write: never overwritten.
    foreign: set[int] = field(default_factory=set)
    # The lock's reported fields in its last state message (a `get` answer changes none).
    last_report: dict[str, object] | None = None


@dataclass(slots=True)
class Discovery:
    """What Zigbee2MQTT said of its devices (or an earlier run remembered): the locks, their
    `expose_pin`, and the users each lock's own answers showed it has."""

    locks: dict[str, mapping.DiscoveredLock] = field(default_factory=dict)
    expose: dict[str, bool] = field(default_factory=dict)
    expose_default: bool | None = None
    ranges: dict[str, int] = field(default_factory=dict)

    def beyond(self, lock: Lock, slot: int) -> bool:
        """True for a user past the range the lock's own answers showed."""
        count = self.ranges.get(lock.external_id)
        return count is not None and slot >= lock.info.capabilities.first_slot + count

    def full(self, lock: Lock, slot: int) -> CommandRejected:
        """A write the lock has no user for."""
        count = self.ranges.get(lock.external_id, lock.info.capabilities.slot_count)
        return CommandRejected(RejectReason.NO_SPACE,
                               f"{lock.external_id} has {count} users (user {slot} and the last "
                               "of Zigbee2MQTT's range do not answer) and every one is taken")

    def recall(self, doc: Mapping[str, object]) -> None:
        """Take what the memory file holds (entries of the wrong shape are skipped)."""
        locks = doc.get("locks")
        if isinstance(locks, dict):
            for name, facts in locks.items():
                if not isinstance(facts, dict) or not isinstance(facts.get("ieee"), str):
                    continue
                count = facts.get("slot_count")
                self.locks[name] = mapping.DiscoveredLock(
                    friendly_name=name, ieee_address=facts["ieee"],
                    vendor=str(facts.get("vendor") or ""), model=str(facts.get("model") or ""),
                    description=str(facts.get("description") or ""),
                    slot_count=count if isinstance(count, int) and count > 0 else None)
                if isinstance(facts.get("expose_pin"), bool):
                    self.expose[name] = facts["expose_pin"]
        ranges = doc.get("device_users")
        if isinstance(ranges, dict):
            self.ranges = {name: count for name, count in ranges.items()
                           if isinstance(count, int) and not isinstance(count, bool)
                           and count > 0}

    def memory(self) -> dict[str, object]:
        """The memory file's document."""
        locks: dict[str, object] = {}
        for name, found in self.locks.items():
            expose = self.expose.get(found.ieee_address,
                                     self.expose.get(name, self.expose_default))
            locks[name] = {"ieee": found.ieee_address, "vendor": found.vendor,
                           "model": found.model, "description": found.description,
                           "slot_count": found.slot_count, "expose_pin": expose}
        doc: dict[str, object] = {"locks": locks}
        if self.ranges:
            doc["device_users"] = dict(sorted(self.ranges.items()))
        return doc

    def info(self, override: LockOptions, ieee: str | None, base: str,
             spacing_s: float) -> DeviceInfo:
        """The lock as lockbridge describes it: the configuration over what was discovered."""
        name = override.friendly_name
        found = self.locks.get(name)
        expose = override.expose_pin
        if expose is None:
            expose = self.expose.get(ieee or "", self.expose.get(name, self.expose_default))
        slot_count = override.slot_count or (found.slot_count if found else None) \
            or _DEFAULT_SLOTS
        if name in self.ranges:
            # The lock's own answers beat a table and the configuration alike.
            slot_count = min(slot_count, self.ranges[name])
        min_length = override.min_length or 4
        return slot_lock_info(
            name, override, display_name=name,
            maker=(found.vendor if found and found.vendor else "Zigbee",
                   found.model if found and found.model else "Zigbee door lock"),
            device_type="zigbee_lock", hub_id=f"zigbee2mqtt:{base}", first_slot=0,
            slot_count=slot_count, reserved=override.reserved_slots, masks_pins=not expose,
            lengths=(min_length, override.max_length or max(8, min_length)),
            spacing_s=spacing_s)


def refusal(lock: Lock, slot: int, pin: str, read: SlotRead) -> DriverError:
    """Why a set the lock did not keep was refused, as far as can be told: Zigbee2MQTT never
    passes on the lock's answer (duplicate, memory full, general failure)."""
    shown = "empty" if read.state is SlotState.EMPTY else "another code"
    holders = sorted(s for s, r in lock.known.items() if s != slot
                     and r.state is SlotState.KNOWN and r.pin == pin)
    if holders:
        return CommandRejected(RejectReason.DUPLICATE_PIN,
                               f"the lock did not keep the PIN in user {slot}: user "
                               f"{holders[0]} already holds it")
    hidden = sorted(s for s, r in lock.known.items() if s != slot
                    and r.state is SlotState.UNREADABLE)
    silent = sorted(s for s in lock.unanswered if s != slot and s not in lock.known)
    if hidden or silent:
        where = " and ".join(part for part in (
            f"user {listed(hidden)} hold PINs that cannot be read" if hidden else "",
            f"user {listed(silent)} did not answer" if silent else "") if part)
        return CommandRejected(
            RejectReason.DUPLICATE_PIN,
            f"the lock did not keep the PIN in user {slot} (it reads back {shown}); "
            f"Zigbee2MQTT does not pass on the lock's answer, and on this lock {where}: "
            "most likely one of them already is this PIN (a duplicate)")
    return RetryLater(f"the lock did not keep the PIN in user {slot} (it reads back "
                      f"{shown}); Zigbee2MQTT does not pass on the lock's answer, so why "
                      "is not known")


def listed(slots: Sequence[int]) -> str:
    """`3`, `3, 7` or `3, 7, 9 and 5 more`: a list of users short enough for a message."""
    shown = ", ".join(map(str, slots[:5]))
    return shown + (f" and {len(slots) - 5} more" if len(slots) > 5 else "")
