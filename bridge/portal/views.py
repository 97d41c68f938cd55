"""What the portal's pages show, as plain JSON-ready values: pure functions of the engine's
state (through `StateView`), a session's scope and whether it may see PINs. No I/O here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bridge.backup import available
from bridge.model import AccessCodeType, Event, Issue
from bridge.portal.remedies import remedy_for
from bridge.portal.scope import PortalScope
from bridge.records import CodeRecord, DeviceRecord
from bridge.serialize import iso
from bridge.stateview import StateView

if TYPE_CHECKING:
    from bridge.reservations.service import ReservationService

View = dict[str, Any]


def visible_devices(state: StateView, scope: PortalScope) -> list[DeviceRecord]:
    """The managed locks a session may see, by name."""
    return sorted((d for d in state.devices.values()
                   if d.is_managed and not d.removed and scope.allows(d.device_id)),
                  key=lambda d: (d.display_name.lower(), d.device_id))


def lock_view(state: StateView, device: DeviceRecord, pool_size: int) -> View:
    """One lock: state, battery, problems with cause and remedy, backup pool fill."""
    codes = state.codes_of(device.device_id)
    reported = device.info.state
    guest = [c for c in codes if c.is_managed and not c.is_backup and not c.deleted]
    return {
        "device_id": device.device_id,
        "name": device.display_name,
        "model": device.info.model,
        "online": device.online,
        "availability": device.availability.value,
        "locked": reported.locked if reported else None,
        "battery_percent": reported.battery_percent if reported else None,
        "problems": problems(device.errors, device.warnings),
        "codes": len(guest),
        "codes_failing": sum(1 for c in guest if c.errors),
        "backup_pool": {"ready": len(available(codes)), "size": pool_size}
        if device.backup_pool_enabled else None,
    }


def codes_view(state: StateView, device: DeviceRecord, show_pins: bool,
               origins: Mapping[str, View] | None = None) -> list[View]:
    """Every code on a lock a portal shows: managed codes and backups (labelled), oldest
    first; PINs only for sessions allowed to see them, a backup's only once handed out; with
    `origins` (code_origins), the reservation or access grant each came from."""
    codes = [c for c in state.codes_of(device.device_id)
             if c.is_managed and not (c.deleted and not c.on_lock)]
    names = {c.access_code_id: c.name for c in codes}
    return [_code(c, device, names, show_pins, (origins or {}).get(c.access_code_id))
            for c in codes]


def event_view(state: StateView, event: Event) -> View:
    """One event for the activity page: what happened, when, to which lock and code (no
    PIN, whatever the event's data holds)."""
    device = state.devices.get(event.device_id or "")
    code = state.codes.get(event.access_code_id or "")
    return {
        "event_id": event.event_id,
        "event_type": event.event_type.value,
        "occurred_at": iso(event.occurred_at),
        "device_id": event.device_id,
        "device_name": device.display_name if device else None,
        "access_code_id": event.access_code_id,
        "access_code_name": code.name if code and code.is_managed else None,
    }


def problems(errors: Iterable[Issue], warnings: Iterable[Issue]) -> list[View]:
    """Errors then warnings, each with its message, cause and remedy."""
    out = []
    for kind, issues in (("error", errors), ("warning", warnings)):
        for issue in issues:
            remedy = remedy_for(issue.code)
            out.append({"code": issue.code, "kind": kind, "message": issue.message,
                        "cause": remedy.cause, "remedy": remedy.remedy,
                        "since": iso(issue.created_at)})
    return out


def code_origins(reservations: ReservationService | None) -> dict[str, View]:
    """For each code an access method put on a lock, the reservation (or the access grant
    asked for directly) it came from, by access code id."""
    if reservations is None:
        return {}
    state = reservations.state
    out: dict[str, View] = {}
    for method in state.methods.values():
        grant = state.grants.get(method.access_grant_id)
        if grant is None:
            continue
        label = (f"Reservation {grant.reservation_key}" if grant.reservation_key
                 else f"Access grant {grant.name or grant.access_grant_id}")
        origin = {"label": label, "reservation_key": grant.reservation_key,
                  "access_grant_id": grant.access_grant_id,
                  "access_method_id": method.access_method_id}
        for code_id in method.codes.values():
            out[code_id] = origin
    return out


def _code(code: CodeRecord, device: DeviceRecord, names: dict[str, str | None],
          show_pins: bool, origin: View | None) -> View:
    handed_out = not code.is_backup or code.backup_pulled_for is not None
    pin_shown = show_pins and handed_out and code.code is not None
    return {
        "access_code_id": code.access_code_id,
        "name": code.name,
        "pin": code.code if pin_shown else None,
        "pin_length": len(code.code) if code.code else None,
        "type": code.type.value,
        "starts_at": iso(code.starts_at),
        "ends_at": iso(code.ends_at),
        "status": code.status.value,
        "removing": code.deleted,
        "is_backup": code.is_backup,
        "backup_for": names.get(code.backup_pulled_for or "")
        if code.backup_pulled_for else None,
        "backup_in_pool": code.is_backup and code.backup_pulled_for is None,
        "pulled_backup_access_code_id": code.pulled_backup_access_code_id,
        "problems": problems(code.errors, code.warnings),
        "origin": origin,
        "can_pull_backup": (not code.is_backup and not code.deleted
                            and code.type is AccessCodeType.TIME_BOUND
                            and device.backup_pool_enabled),
        "can_retry": bool(code.errors) and not code.is_backup and not code.deleted,
        "can_delete": not code.deleted and handed_out,
    }


def runs_view(reservations: ReservationService | None, state: StateView, scope: PortalScope,
              device_id: str | None, reservation_key: str | None, limit: int) -> list[View]:
    """The latest automation runs, newest first, each with only what it did on the session's
    locks (of one lock, of one reservation, when asked); a run that did nothing there is left
    out. No PIN: runs never hold one."""
    if reservations is None:
        return []
    grants = reservations.state.grants
    out: list[View] = []
    for run in reversed(reservations.state.runs):
        entries = []
        for entry in run.entries:
            grant = grants.get(entry.access_grant_id)
            key = grant.reservation_key if grant is not None else None
            if not scope.allows(entry.device_id) or device_id not in (None, entry.device_id) \
                    or reservation_key not in (None, key):
                continue
            device = state.devices.get(entry.device_id)
            entries.append({"device_id": entry.device_id,
                            "device_name": device.display_name if device else None,
                            "reservation_key": key, "action": entry.action,
                            "detail": entry.detail})
        if entries:
            out.append({"automation_run_id": run.automation_run_id, "trigger": run.trigger,
                        "created_at": iso(run.created_at), "entries": entries})
        if len(out) >= limit:
            break
    return out
