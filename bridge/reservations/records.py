"""What reservation automations keep: spaces, user identities, reservations, access grants,
access methods and automation runs, as frozen values with their stored form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Where a space or reservation came from: the API, the configuration, or an iCal feed.
SOURCE_API = "api"
SOURCE_CONFIG = "config"


@dataclass(frozen=True, slots=True)
class Space:
    """A place with locks (a flat, a room) that reservations name by `space_key`."""

    space_id: str
    space_key: str | None
    name: str
    device_ids: tuple[str, ...]
    created_at: datetime
    customer_key: str | None = None
    source: str = SOURCE_API


@dataclass(frozen=True, slots=True)
class UserIdentity:
    """A guest or user a reservation is for."""

    user_identity_key: str
    customer_key: str
    created_at: datetime
    user_identity_id: str = ""
    name: str | None = None
    email_address: str | None = None
    phone_number: str | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """A stay as pushed: who, when, which spaces. Its access grant carries the access."""

    reservation_key: str
    customer_key: str
    starts_at: datetime
    ends_at: datetime
    space_keys: tuple[str, ...]
    created_at: datetime
    user_identity_key: str | None = None
    name: str | None = None
    # "api" (push_data), "config", or "feed:<feed key>" (an iCal feed).
    source: str = SOURCE_API


@dataclass(frozen=True, slots=True)
class AccessGrant:
    """Access to some locks for a time; each becomes managed access codes on its locks."""

    access_grant_id: str
    created_at: datetime
    starts_at: datetime
    ends_at: datetime
    device_ids: tuple[str, ...]
    space_ids: tuple[str, ...] = ()
    access_grant_key: str | None = None
    reservation_key: str | None = None
    customer_key: str | None = None
    user_identity_key: str | None = None
    name: str | None = None
    # The PIN asked for (sealed at rest); None: generated within each lock's rules.
    requested_code: str | None = None


@dataclass(frozen=True, slots=True)
class AccessMethod:
    """One PIN of a grant: the managed code on each of its locks (one per lock).

    A grant whose locks can share a PIN has one code access method; locks that cannot take
    the same PIN get one each."""

    access_method_id: str
    access_grant_id: str
    created_at: datetime
    # device_id -> access_code_id of the managed code that carries the PIN there.
    codes: dict[str, str] = field(default_factory=dict)
    issued_at: datetime | None = None
    # Set when a missing or moved code was put back: the next issue is a reissue.
    reissue_pending: bool = False
    # Locks the method could not go on (a slot rule that forbids widening): device_id -> why.
    refused: dict[str, str] = field(default_factory=dict)
    # The issued PIN the last access_method.issued/reissued told of (sealed at rest).
    issued_code: str | None = None


@dataclass(frozen=True, slots=True)
class RunEntry:
    """What a run decided or did for one lock of one grant."""

    access_grant_id: str
    device_id: str
    action: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AutomationRun:
    """One push, delete or feed update: what triggered it and what it did, lock by lock."""

    automation_run_id: str
    trigger: str
    created_at: datetime
    customer_key: str | None = None
    entries: tuple[RunEntry, ...] = ()
    # Rules that replaced a preferred PIN: "<device_id>: <rule>: <why>".
    pin_substitutions: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    # What the request held that lockbridge takes but does not act on.
    ignored: tuple[str, ...] = ()


def to_document(value: Any) -> dict[str, Any]:
    """A record as JSON-ready values (times as ISO text), secrets included."""
    return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_document(value)
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


_TIMES = frozenset({"created_at", "starts_at", "ends_at", "issued_at"})


def from_document(kind: type[Any], doc: dict[str, Any]) -> Any:
    """A record of `kind` from `to_document`'s form."""
    names = {f.name for f in dataclasses.fields(kind)}
    values: dict[str, Any] = {}
    for name, raw in doc.items():
        if name not in names:
            continue
        if name in _TIMES and raw is not None:
            values[name] = datetime.fromisoformat(raw)
        elif name == "entries":
            values[name] = tuple(RunEntry(**e) for e in raw)
        elif isinstance(raw, list):
            values[name] = tuple(raw)
        else:
            values[name] = raw
    return kind(**values)


def run_json(run: AutomationRun) -> dict[str, Any]:
    """An automation run as /automation_runs/list and `lockbridge runs --json` show it."""
    return {"automation_run_id": run.automation_run_id, "trigger": run.trigger,
            "created_at": run.created_at.isoformat(), "customer_key": run.customer_key,
            "decisions": [{"access_grant_id": e.access_grant_id, "device_id": e.device_id,
                           "action": e.action, "detail": e.detail} for e in run.entries],
            "pin_substitutions": list(run.pin_substitutions), "errors": list(run.errors),
            "ignored": list(run.ignored)}
