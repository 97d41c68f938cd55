"""What SmartThings' answers say about one lock's codes, without I/O: the lockCodes capability's
attributes, the codeChanged outcomes in its history, and the checks made before a setCode."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bridge.driver import CommandRejected, RejectReason
from bridge.model import AccessCodeErrorCode

# What SmartThings' stock lock drivers report when a lock does not say (Z-Wave defaults).
DEFAULT_MAX_CODES = 30
DEFAULT_MIN_LENGTH, DEFAULT_MAX_LENGTH = 4, 8
# Characters kept out of a name (it travels in JSON and shows in apps; nothing is published).
_UNSENDABLE = re.compile(r"[\x00-\x1f\"\\]")
# "3 set", "3 changed", "3 failed", "3 deleted", "3 unset", "3 renamed" ([zw-defaults]).
_CHANGE = re.compile(r"^(\d+) (set|changed|failed|deleted|unset|renamed)$")


@dataclass(frozen=True, slots=True)
class LockStatus:
    """The lockCodes (and battery) attributes of one lock as the cloud shows them now."""

    max_codes: int = DEFAULT_MAX_CODES
    min_length: int = DEFAULT_MIN_LENGTH
    max_length: int = DEFAULT_MAX_LENGTH
    # slot -> name: lockCodes never holds PINs.
    codes: dict[int, str] = field(default_factory=dict)
    # The latest codeChanged value and when it was reported ("" when never).
    code_changed: str = ""
    code_changed_at: str = ""
    battery: int | None = None
    locked: bool | None = None

    def full(self) -> bool:
        return all(slot in self.codes for slot in range(1, self.max_codes + 1))


@dataclass(frozen=True, slots=True)
class Change:
    """One codeChanged event: its slot, what happened, and the event's identity."""

    slot: int
    what: str
    key: str


def parse_status(components: Any) -> LockStatus:
    """A LockStatus from `GET /devices/{id}/status` (`{"components": {"main": ...}}`)."""
    main = _dict(_dict(_dict(components).get("components")).get("main"))
    lock_codes = _dict(main.get("lockCodes"))

    def value(capability: dict[str, Any], attribute: str) -> Any:
        return _dict(capability.get(attribute)).get("value")

    changed = _dict(lock_codes.get("codeChanged"))
    locked = value(_dict(main.get("lock")), "lock")
    return LockStatus(
        max_codes=_int(value(lock_codes, "maxCodes")) or DEFAULT_MAX_CODES,
        min_length=_int(value(lock_codes, "minCodeLength")) or DEFAULT_MIN_LENGTH,
        max_length=_int(value(lock_codes, "maxCodeLength")) or DEFAULT_MAX_LENGTH,
        codes=parse_lock_codes(value(lock_codes, "lockCodes")),
        code_changed=str(changed.get("value") or ""),
        code_changed_at=str(changed.get("timestamp") or ""),
        battery=_int(value(_dict(main.get("battery")), "battery")),
        locked=None if locked not in ("locked", "unlocked") else locked == "locked")


def parse_lock_codes(raw: Any) -> dict[int, str]:
    """The lockCodes attribute (JSON text: slot -> name) as {slot: name}."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, OverflowError):
            return {}
    codes: dict[int, str] = {}
    if isinstance(raw, dict):
        for key, name in raw.items():
            slot = _int(key)
            if slot is not None and slot > 0:
                codes[slot] = str(name if name is not None else "")
    return codes


def parse_change(value: Any) -> tuple[int, str] | None:
    """("3 failed") -> (3, "failed"); None for anything else ("0 set" is the master code)."""
    found = _CHANGE.match(str(value or "").strip())
    if found is None or int(found.group(1)) == 0:
        return None
    return int(found.group(1)), found.group(2)


def history_changes(answer: Any) -> list[Change]:
    """The codeChanged events of `GET /history/devices`, oldest first."""
    items = answer.get("items") if isinstance(answer, dict) else None
    changes: list[tuple[int, Change]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("attribute") != "codeChanged":
            continue
        parsed = parse_change(item.get("value"))
        if parsed is None:
            continue
        epoch = _int(item.get("epoch")) or 0
        key = f"{item.get('hash')}:{epoch}:{item.get('value')}"
        changes.append((epoch, Change(parsed[0], parsed[1], key)))
    return [change for _, change in sorted(changes, key=lambda pair: pair[0])]


def outcome(changes: Iterable[Change], seen: set[str], slot: int,
            wanted: tuple[str, ...]) -> str | None:
    """The first new codeChanged of `slot` that is one of `wanted`, or None."""
    for change in changes:
        if change.key not in seen and change.slot == slot and change.what in wanted:
            return change.what
    return None


def sendable_name(wanted: str, slot: int, limit: int) -> str:
    """The name sent with setCode: printable, at most `limit` characters, never empty."""
    name = _UNSENDABLE.sub(" ", wanted).strip()[:limit].strip()
    return name or f"Code {slot}"


def check_write(status: LockStatus, pins: dict[int, str], slot: int, pin: str,
                name: str) -> None:
    """Refuse what the lock would refuse or could only refuse silently."""
    if not 1 <= slot <= status.max_codes:
        raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                              f"slot {slot} is not between 1 and maxCodes ({status.max_codes})")
    if not pin.isdigit() or not status.min_length <= len(pin) <= status.max_length:
        raise CommandRejected(RejectReason.INVALID_PIN,
                              f"the lock takes codes of {status.min_length} to "
                              f"{status.max_length} digits")
    if any(held == pin for other, held in pins.items()
           if other != slot and other in status.codes):
        raise CommandRejected(RejectReason.DUPLICATE_PIN,
                              "another slot of the lock holds this code")
    held = status.codes.get(slot)
    if status.full() and held is not None and held != name:
        others = sum(1 for s in status.codes if s not in pins)
        raise CommandRejected(
            RejectReason.NO_SPACE,
            f"every slot up to maxCodes ({status.max_codes}) holds a code; {others} of them "
            "are codes lockbridge did not set",
            error_code=AccessCodeErrorCode.SMARTTHINGS_NO_FREE_SLOTS_AVAILABLE.value)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(float(str(value)))
    except (ValueError, OverflowError):
        return None
