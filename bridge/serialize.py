"""Seam-shaped JSON of devices, access codes, unmanaged codes and events.

One module so the local HTTP API, the upstream link and the CLI show the same objects.
Differences from Seam's published schema are listed in docs/api.md.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import Any

from bridge.backup import supports_pool
from bridge.driver import LockState
from bridge.model import AccessCodeStatus, Event, Issue
from bridge.records import CodeRecord, DeviceRecord
from bridge.stateview import StateView

# A fixed namespace so a bridge's workspace_id is stable across restarts.
_WORKSPACE_NAMESPACE = uuid.UUID("0b5c2a47-64a1-4c83-9d6a-2b7cf6f6d7a1")

_DEVICE_ERROR_FLAGS = {"account_disconnected": ("is_connected_account_error", True)}


@functools.cache
def workspace_id(bridge_id: str) -> str:
    """The bridge's stand-in for Seam's workspace id."""
    return str(uuid.uuid5(_WORKSPACE_NAMESPACE, bridge_id))


def connected_account_id(bridge_id: str, driver: str) -> str:
    """One "connected account" per configured driver (a radio, a broker, a cloud account)."""
    return str(uuid.uuid5(_WORKSPACE_NAMESPACE, f"{bridge_id}:{driver}"))


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as Seam writes times."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def device_json(device: DeviceRecord, bridge_id: str) -> dict[str, Any]:
    """A device object."""
    info = device.info
    caps = info.capabilities
    return {
        "device_id": device.device_id,
        "device_type": info.device_type,
        "display_name": device.display_name,
        "nickname": device.display_name,
        "space_ids": [],
        "capabilities_supported": ["access_code", "lock"] if caps.programs_codes else ["lock"],
        "can_program_online_access_codes": caps.programs_codes and not caps.algorithmic_pins,
        "can_program_offline_access_codes": caps.programs_codes and caps.algorithmic_pins,
        "connected_account_id": connected_account_id(bridge_id, device.driver),
        "workspace_id": workspace_id(bridge_id),
        "created_at": iso(device.created_at),
        "is_managed": device.is_managed,
        "custom_metadata": {},
        "device_manufacturer": {"display_name": info.manufacturer,
                                "manufacturer": info.manufacturer.lower()},
        # Seam's `location` is an object, never null.
        "location": {"time_zone": device.time_zone} if device.time_zone else {},
        "errors": [_device_issue(i, error=True) for i in device.errors],
        "warnings": [_device_issue(i, error=False) for i in device.warnings],
        "properties": {
            "online": device.online,
            "name": device.display_name,
            "appearance": {"name": device.display_name},
            "model": {"display_name": info.model, "manufacturer_display_name": info.manufacturer},
            "manufacturer": info.manufacturer,
            "supports_backup_access_code_pool": supports_pool(device),
            "has_native_entry_events": True,
            "code_constraints": _constraints(device),
            "max_active_codes_supported": caps.slot_count - len(caps.reserved_slots),
            "supported_code_lengths": list(info.constraints.allowed_lengths()),
            "supports_accessory_keypad": False,
            "supports_offline_access_codes": caps.algorithmic_pins,
            **_reported_state(info.state),
        },
    }


def access_code_json(code: CodeRecord, state: StateView, bridge_id: str) -> dict[str, Any]:
    """A managed access code object, with its device's errors folded in as Seam does."""
    device = state.devices.get(code.device_id)
    device_errors = [_device_issue(i, error=True) for i in device.errors] if device else []
    available = state.backup_available(code)
    return {
        "access_code_id": code.access_code_id,
        "device_id": code.device_id,
        "workspace_id": workspace_id(bridge_id),
        "name": code.name,
        "code": code.code,
        "common_code_key": code.common_code_key,
        "type": code.type.value,
        "starts_at": iso(code.starts_at),
        "ends_at": iso(code.ends_at),
        "created_at": iso(code.created_at),
        "status": code.status.value,
        "is_managed": True,
        "is_backup": code.is_backup,
        "is_backup_access_code_available": bool(available),
        "pulled_backup_access_code_id": code.pulled_backup_access_code_id,
        "is_scheduled_on_device": code.is_scheduled_on_device,
        "is_external_modification_allowed": code.allow_external_modification,
        "is_one_time_use": False,
        "is_offline_access_code": False,
        "is_waiting_for_code_assignment": code.code is None,
        "appearance": {"name": code.appearance_name} if code.appearance_name else None,
        "errors": [_code_issue(i, error=True) for i in code.errors] + device_errors,
        "warnings": [_code_issue(i, error=False) for i in code.warnings],
        "pending_mutations": _pending(code),
    }


def unmanaged_code_json(code: CodeRecord, bridge_id: str) -> dict[str, Any]:
    """An unmanaged access code object."""
    body: dict[str, Any] = {
        "access_code_id": code.access_code_id,
        "device_id": code.device_id,
        "workspace_id": workspace_id(bridge_id),
        "name": code.name,
        "code": code.code,
        "type": "ongoing",
        "starts_at": None,
        "ends_at": None,
        "created_at": iso(code.created_at),
        "status": AccessCodeStatus.SET.value,
        "is_managed": False,
        "errors": [],
        "warnings": [],
    }
    # Seam's schema allows these flags only as `true`: absent means "can".
    if code.code is None:
        body["cannot_be_managed"] = True
    if code.slot is None:
        body["cannot_delete_unmanaged_access_code"] = True
    return body


def event_json(event: Event, bridge_id: str) -> dict[str, Any]:
    """An event object; `data` keys become top-level fields as in Seam's events."""
    occurred = iso(event.occurred_at)
    body: dict[str, Any] = {
        "event_id": event.event_id,
        "event_type": event.event_type.value,
        "workspace_id": workspace_id(bridge_id),
        "created_at": occurred,
        "occurred_at": occurred,
        "sequence_number": event.sequence,
    }
    if event.device_id is not None:
        body["device_id"] = event.device_id
    if event.access_code_id is not None:
        body["access_code_id"] = event.access_code_id
    for key, value in event.data.items():
        body.setdefault(key, value)
    return body


def _reported_state(state: LockState | None) -> dict[str, Any]:
    """What the lock last said of itself, in Seam's lock and battery properties; nothing it
    did not say (a key is left out rather than guessed)."""
    if state is None:
        return {}
    out: dict[str, Any] = {}
    if state.locked is not None:
        out["locked"] = state.locked
    if state.door_open is not None:
        out["door_open"] = state.door_open
    if state.battery_percent is not None:
        level = min(max(state.battery_percent, 0), 100) / 100
        out["battery_level"] = level
        out["battery"] = {"level": level, "status": _battery_status(level)}
    return out


def _battery_status(level: float) -> str:
    """Seam's battery status words for a level; the thresholds are lockbridge's own (Seam
    publishes none)."""
    if level < _BATTERY_CRITICAL_BELOW:
        return "critical"
    if level < _BATTERY_LOW_BELOW:
        return "low"
    return "full" if level >= _BATTERY_FULL_FROM else "good"


_BATTERY_CRITICAL_BELOW, _BATTERY_LOW_BELOW, _BATTERY_FULL_FROM = 0.10, 0.25, 0.95


def _constraints(device: DeviceRecord) -> list[dict[str, Any]]:
    rules = device.info.constraints
    # Lengths are in `supported_code_lengths`; Seam has no constraint_type for them.
    out: list[dict[str, Any]] = []
    if rules.no_leading_zero:
        out.append({"constraint_type": "no_zeros_at_start"})
    if rules.matches_prefixes:
        out.append({"constraint_type": "cannot_specify_pin_code_prefix"})
    if "0" in rules.forbidden_digits:
        out.append({"constraint_type": "no_zeros"})
    if "12" in rules.forbidden_prefixes:
        out.append({"constraint_type": "cannot_start_with_12"})
    out.append({"constraint_type": "name_length",
                "max_length": device.info.capabilities.name_max_length})
    return out


def _pending(code: CodeRecord) -> list[dict[str, Any]]:
    if code.status is AccessCodeStatus.SETTING:
        mutation = "creating"
    elif code.status is AccessCodeStatus.REMOVING:
        mutation = "deleting"
    else:
        return []
    since = code.pending_since or code.created_at
    return [{"mutation_code": mutation, "created_at": iso(since),
             "message": f"lockbridge is {mutation} this code on the device"}]


def _code_issue(issue: Issue, *, error: bool) -> dict[str, Any]:
    key = "error_code" if error else "warning_code"
    body: dict[str, Any] = {key: issue.code, "message": issue.message,
                            "created_at": iso(issue.created_at)}
    if error:
        body["is_access_code_error"] = True
    return body


def _device_issue(issue: Issue, *, error: bool) -> dict[str, Any]:
    key = "error_code" if error else "warning_code"
    body: dict[str, Any] = {key: issue.code, "message": issue.message,
                            "created_at": iso(issue.created_at)}
    if error:
        body["is_device_error"] = True
        flag = _DEVICE_ERROR_FLAGS.get(issue.code)
        if flag:
            body[flag[0]] = flag[1]
    return body
