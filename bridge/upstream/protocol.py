"""The upstream protocol's messages (docs/upstream-protocol.md), validated on both sides.

Every message is one JSON object with a `type`; each direction is a pydantic discriminated union
on it, and a command's body is a second union on `action`. Parsing failures become a
`ProtocolProblem` carrying the error type and the field to name in the reply.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from bridge.instants import Instant

PROTOCOL_VERSION = 1
MAX_COMMAND_ID = 128


class ProtocolProblem(Exception):
    """A message that cannot be used; `kind` is the `error.type` to answer with."""

    def __init__(self, kind: str, message: str, field: str | None = None,
                 command_id: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field
        self.command_id = command_id


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorBody(_Message):
    """What went wrong: a machine-readable type, a sentence, and the field at fault if any."""

    type: str
    message: str
    field: str | None = None


# -- bridge to upstream -------------------------------------------------------------------------


class Hello(_Message):
    """The bridge's first message in a session."""

    type: Literal["hello"] = "hello"
    protocol_version: int
    bridge_id: str
    software_version: str
    last_command_id: str | None
    last_seq: Annotated[int, Field(ge=0)]
    first_seq: Annotated[int, Field(ge=0)]
    # A bridge whose state is gone asks for what the upstream knows of it (`welcome.restore`).
    restore_wanted: bool = False


class Snapshot(_Message):
    """Everything the bridge knows now; `upto_seq` is the newest event it reflects."""

    type: Literal["snapshot"] = "snapshot"
    snapshot_id: str
    upto_seq: Annotated[int, Field(ge=0)]
    devices: list[dict[str, Any]]
    access_codes: list[dict[str, Any]]
    unmanaged_access_codes: list[dict[str, Any]]


class EventObject(BaseModel):
    """A Seam event; only the fields the protocol relies on are checked."""

    model_config = ConfigDict(extra="allow", frozen=True)

    event_id: str
    event_type: str
    sequence_number: Annotated[int, Field(ge=1)]


class Events(_Message):
    """A batch of outbox events in increasing sequence order."""

    type: Literal["events"] = "events"
    events: Annotated[list[EventObject], Field(min_length=1)]

    @model_validator(mode="after")
    def _in_order(self) -> Events:
        seqs = [e.sequence_number for e in self.events]
        if any(b <= a for a, b in itertools.pairwise(seqs)):
            raise ValueError("events must be in strictly increasing sequence_number order")
        return self


class CommandResult(_Message):
    """The one answer to a command."""

    type: Literal["command_result"] = "command_result"
    command_id: str
    ok: bool
    result: dict[str, Any] | None = None
    error: ErrorBody | None = None


class ErrorMessage(_Message):
    """The bridge's answer to an upstream message it could not use."""

    type: Literal["error"] = "error"
    error: ErrorBody
    command_id: str | None = None


BridgeMessage = Annotated[Hello | Snapshot | Events | CommandResult | ErrorMessage,
                          Field(discriminator="type")]

# -- upstream to bridge -------------------------------------------------------------------------


class RestoreState(_Message):
    """What the upstream knows of a bridge: its managed codes as `access_code` objects (PINs
    included), reflecting events up to `upto_seq`."""

    upto_seq: Annotated[int, Field(ge=0)]
    access_codes: list[dict[str, Any]]


class Welcome(_Message):
    """The upstream's answer to `hello`: where it is in the event stream."""

    type: Literal["welcome"] = "welcome"
    protocol_version: int
    acked_seq: Annotated[int, Field(ge=0)]
    snapshot_wanted: bool
    # Only when the hello had `restore_wanted`; null when the upstream knows nothing of it.
    restore: RestoreState | None = None


class Ack(_Message):
    """Every event up to and including `seq` is stored upstream."""

    type: Literal["ack"] = "ack"
    seq: Annotated[int, Field(ge=0)]


class Command(_Message):
    """A command envelope; `command` is validated separately so a bad body can be answered."""

    type: Literal["command"] = "command"
    command_id: Annotated[str, Field(min_length=1, max_length=MAX_COMMAND_ID)]
    command: dict[str, Any]


UpstreamMessage = Annotated[Welcome | Ack | Command, Field(discriminator="type")]

# -- command bodies -----------------------------------------------------------------------------

Pin = Annotated[str, Field(pattern=r"^\d{4,12}$")]
Name = Annotated[str, Field(max_length=200)]
Id = Annotated[str, Field(min_length=1, max_length=128)]


class _Window(_Message):
    starts_at: Instant | None = None
    ends_at: Instant | None = None

    @model_validator(mode="after")
    def _ordered(self) -> _Window:
        if (self.starts_at is None) != (self.ends_at is None):
            missing = "ends_at" if self.ends_at is None else "starts_at"
            raise ProtocolField(missing, "starts_at and ends_at go together")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ProtocolField("ends_at", "ends_at must be after starts_at")
        return self


class CreateAccessCode(_Window):
    """`access_codes.create`."""

    action: Literal["access_codes.create"]
    device_id: Id
    name: Name | None = None
    code: Pin | None = None
    preferred_code_length: Annotated[int, Field(ge=4, le=12)] | None = None
    allow_external_modification: bool | None = None
    common_code_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    use_backup_access_code_pool: bool | None = None


class UpdateAccessCode(_Message):
    """`access_codes.update`: `starts_at` or `ends_at` alone moves one end of the window."""

    action: Literal["access_codes.update"]
    access_code_id: Id
    name: Name | None = None
    code: Pin | None = None
    type: Literal["ongoing", "time_bound"] | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    allow_external_modification: bool | None = None
    use_backup_access_code_pool: bool | None = None

    @model_validator(mode="after")
    def _ordered(self) -> UpdateAccessCode:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ProtocolField("ends_at", "ends_at must be after starts_at")
        return self


class DeleteAccessCode(_Message):
    """`access_codes.delete`."""

    action: Literal["access_codes.delete"]
    access_code_id: Id


class PullBackupAccessCode(_Message):
    """`access_codes.pull_backup_access_code`."""

    action: Literal["access_codes.pull_backup_access_code"]
    access_code_id: Id


class ConvertUnmanagedAccessCode(_Message):
    """`access_codes.unmanaged.convert_to_managed`."""

    action: Literal["access_codes.unmanaged.convert_to_managed"]
    access_code_id: Id
    name: Name | None = None
    allow_external_modification: bool | None = None


class DeleteUnmanagedAccessCode(_Message):
    """`access_codes.unmanaged.delete`."""

    action: Literal["access_codes.unmanaged.delete"]
    access_code_id: Id


class UpdateDevice(_Message):
    """`devices.update`: `is_managed: false` takes a lock out of lockbridge (its backup codes
    come off), `true` brings an unmanaged one back; `backup_access_code_pool_enabled: true`
    switches its backup pool on (it cannot be switched off). At least one of the two."""

    action: Literal["devices.update"]
    device_id: Id
    is_managed: bool | None = None
    backup_access_code_pool_enabled: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> UpdateDevice:
        if self.is_managed is None and self.backup_access_code_pool_enabled is None:
            raise ProtocolField("is_managed", "give is_managed or "
                                "backup_access_code_pool_enabled")
        return self


class RequestSnapshot(_Message):
    """`snapshot`: send a full snapshot now."""

    action: Literal["snapshot"]


# Every command a bridge carries out, one model per `action`.
CommandAction = (CreateAccessCode | UpdateAccessCode | DeleteAccessCode | PullBackupAccessCode
                 | ConvertUnmanagedAccessCode | DeleteUnmanagedAccessCode | UpdateDevice
                 | RequestSnapshot)
CommandBody = Annotated[CommandAction, Field(discriminator="action")]
# Actions that add events to the outbox, refused while it is full.
MUTATING_ACTIONS = frozenset({
    "access_codes.create", "access_codes.update", "access_codes.delete",
    "access_codes.pull_backup_access_code", "access_codes.unmanaged.convert_to_managed",
    "access_codes.unmanaged.delete", "devices.update",
})


class ProtocolField(ValueError):
    """A cross-field rule broken inside a model; carries the field to name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# -- parsing ------------------------------------------------------------------------------------

_UPSTREAM = TypeAdapter(UpstreamMessage)
_BRIDGE = TypeAdapter(BridgeMessage)
_COMMAND = TypeAdapter(CommandBody)
_UPSTREAM_TYPES = frozenset({"welcome", "ack", "command"})
_BRIDGE_TYPES = frozenset({"hello", "snapshot", "events", "command_result", "error"})


def parse_upstream(text: str, max_bytes: int) -> Welcome | Ack | Command:
    """An upstream message, or ProtocolProblem naming what is wrong with it."""
    raw = _json_object(text, max_bytes)
    command_id = raw.get("command_id") if isinstance(raw.get("command_id"), str) else None
    if raw.get("type") not in _UPSTREAM_TYPES:
        raise ProtocolProblem("unknown_message_type",
                              f"unknown message type {str(raw.get('type'))[:40]!r}", "type",
                              command_id)
    try:
        message: Welcome | Ack | Command = _UPSTREAM.validate_python(raw)
    except ValidationError as exc:
        raise _invalid(exc, "invalid_message", command_id) from None
    return message


def parse_bridge(text: str, max_bytes: int) -> Hello | Snapshot | Events | CommandResult \
        | ErrorMessage:
    """A bridge message (the upstream side's parser), or ProtocolProblem."""
    raw = _json_object(text, max_bytes)
    if raw.get("type") not in _BRIDGE_TYPES:
        raise ProtocolProblem("unknown_message_type",
                              f"unknown message type {str(raw.get('type'))[:40]!r}", "type")
    try:
        message: Hello | Snapshot | Events | CommandResult | ErrorMessage = \
            _BRIDGE.validate_python(raw)
    except ValidationError as exc:
        raise _invalid(exc, "invalid_message", None) from None
    return message


def parse_command(command: Command) -> CommandAction:
    """The command's body, or ProtocolProblem `invalid_input` naming the parameter."""
    try:
        body: CommandAction = _COMMAND.validate_python(command.command)
    except ValidationError as exc:
        raise _invalid(exc, "invalid_input", command.command_id) from None
    return body


def dump(message: _Message) -> str:
    """One message as the JSON text of a frame."""
    return message.model_dump_json(exclude_none=False)


def dumps(payload: dict[str, Any]) -> str:
    """A message built as a plain dict (large event batches, where speed matters)."""
    return json.dumps(payload, separators=(",", ":"), default=_default)


# -- internals ----------------------------------------------------------------------------------


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _json_object(text: str, max_bytes: int) -> dict[str, Any]:
    if len(text) > max_bytes or len(text.encode()) > max_bytes:
        raise ProtocolProblem("message_too_large",
                              f"message of {len(text.encode())} bytes is over the limit of "
                              f"{max_bytes}")
    try:
        raw = json.loads(text)
    except ValueError:
        raise ProtocolProblem("invalid_json", "the message is not valid JSON") from None
    except RecursionError:
        raise ProtocolProblem("invalid_json", "the message is nested too deeply") from None
    if not isinstance(raw, dict):
        raise ProtocolProblem("invalid_json", "the message must be a JSON object")
    return raw


def _invalid(exc: ValidationError, kind: str, command_id: str | None) -> ProtocolProblem:
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"]]
    # A discriminated union puts the tag (`hello`, `access_codes.create`) first; it is no field.
    if loc and (loc[0] in _UPSTREAM_TYPES or loc[0] in _BRIDGE_TYPES or "." in loc[0]
                or loc[0] == "snapshot"):
        loc = loc[1:]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, ProtocolField):
        return ProtocolProblem(kind, cause.message, cause.field, command_id)
    field = ".".join(loc) or None
    if first["type"] in ("union_tag_not_found", "union_tag_invalid"):
        field = "action" if kind == "invalid_input" else "type"
    message = str(first["msg"]).removeprefix("Value error, ")
    return ProtocolProblem(kind, f"{field}: {message}" if field else message, field, command_id)
