"""The bridge's own state of devices and codes: immutable records, serialised for the store."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from bridge.driver import (
    Addressing,
    Availability,
    DeviceInfo,
    DeviceProblem,
    LocalWindow,
    LockCapabilities,
    LockState,
    PinConstraints,
)
from bridge.model import AccessCodeStatus, AccessCodeType, Issue


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A lock as the bridge tracks it."""

    device_id: str
    driver: str
    external_id: str
    info: DeviceInfo
    created_at: datetime
    availability: Availability = Availability.ONLINE
    display_name: str = ""
    time_zone: str | None = None
    errors: tuple[Issue, ...] = ()
    warnings: tuple[Issue, ...] = ()
    backup_pool_enabled: bool = False
    removed: bool = False
    command_spacing_s: float | None = None
    # False once an operator took the lock out of lockbridge (Seam: an unmanaged device).
    is_managed: bool = True

    @property
    def online(self) -> bool:
        """True when commands can reach the lock."""
        return self.availability is Availability.ONLINE


@dataclass(frozen=True, slots=True)
class Held:
    """What a lock stores for a code beside its PIN, as far as lockbridge knows: the window
    (None: none, the code is ongoing there) and the name (None: the lock keeps no name)."""

    window: LocalWindow | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class CodeSync:
    """Where a code's last change to its lock stands, beyond what `status` says. Each mark
    is independent of the others (a create whose answer was lost has both `outcome_unknown` and
    `first_sent_at`), so they are fields, not one phase."""

    # A write went out for the code and no answer came back: it may or may not be on the lock.
    outcome_unknown: bool = False
    # The lock's cloud lists the code but its last change never reached the lock (which keeps
    # what it had, if anything): written again, and deleted from the list when it goes.
    not_applied: bool = False
    # Removed or changed at the lock while external changes are allowed: it stays off until
    # the code is updated.
    external_hold: bool = False
    # The lock refused it for a reason sending it again cannot change (a RejectReason value):
    # only a change to the code or a delete helps, not a reconnect.
    refused_for_good: str | None = None
    # On a lock that numbers codes itself: when the first create went out, which later proves
    # that a code found with its PIN is ours.
    first_sent_at: datetime | None = None
    # Restored from the upstream: not written before a full read of its lock looked for it.
    awaiting_adoption: bool = False


# The marks of almost every code: one shared object, not one per code (frozen, so sharing is safe).
NO_SYNC = CodeSync()


@dataclass(frozen=True, slots=True)
class CodeRecord:
    """An access code, managed or unmanaged, with what the bridge knows of it on the lock."""

    access_code_id: str
    device_id: str
    created_at: datetime
    type: AccessCodeType = AccessCodeType.ONGOING
    is_managed: bool = True
    name: str | None = None
    code: str | None = None
    requested_code: str | None = None
    preferred_code_length: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    status: AccessCodeStatus = AccessCodeStatus.SETTING
    slot: int | None = None
    # What the bridge believes is on the lock in `slot` for this code.
    on_lock_pin: str | None = None
    # The window and name the lock stores for it (what was written, or what a read showed);
    # None when unknown (records from before this was kept), then only the PIN is compared.
    on_lock_held: Held | None = None
    verified: bool = False
    last_write_at: datetime | None = None
    pending_since: datetime | None = None
    is_scheduled_on_device: bool = False
    errors: tuple[Issue, ...] = ()
    warnings: tuple[Issue, ...] = ()
    allow_external_modification: bool = False
    common_code_key: str | None = None
    use_backup_access_code_pool: bool = False
    is_backup: bool = False
    pulled_backup_access_code_id: str | None = None
    backup_pulled_for: str | None = None
    backup_pulled_at: datetime | None = None
    appearance_name: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    # Set when the code should be taken off and then forgotten.
    deleted: bool = False
    # Bumped on every change asked for by a user, so a stale command result is ignored.
    revision: int = 0
    gave_up: bool = False
    ever_set: bool = False
    sync: CodeSync = NO_SYNC

    @property
    def on_lock(self) -> bool:
        """True when the bridge believes the code is in a slot on the lock."""
        return self.on_lock_pin is not None

    def has_error(self, code: str) -> bool:
        """True when `errors` holds `code`."""
        return any(e.code == code for e in self.errors)

    def has_warning(self, code: str) -> bool:
        """True when `warnings` holds `code`."""
        return any(w.code == code for w in self.warnings)


_SECRET_FIELDS = ("code", "requested_code", "on_lock_pin")
# Looked up once: dataclasses.fields() per stored code was a third of a write's cost.
_CODE_PUBLIC_FIELDS = tuple(f.name for f in dataclasses.fields(CodeRecord)
                            if f.name not in _SECRET_FIELDS)
_NO_DEFAULT = object()
# Each public field with its default: a field at its default is left out of the stored row (most
# of a code's 35 public fields are; its row was 960 bytes of mostly defaults, and decoding them
# was most of the startup read). Reading fills them back from the record's defaults.
_CODE_PUBLIC_DEFAULTS = tuple(
    (f.name, _NO_DEFAULT if f.default is dataclasses.MISSING else f.default)
    for f in dataclasses.fields(CodeRecord) if f.name not in _SECRET_FIELDS)


def code_to_row(record: CodeRecord) -> tuple[dict[str, Any], dict[str, str | None]]:
    """Split a code into its public JSON (fields at their default left out) and its secrets
    (sealed by the store)."""
    return _code_to_row(record)


def _row_splitter() -> Callable[[CodeRecord], tuple[dict[str, Any], dict[str, str | None]]]:
    """`code_to_row`'s body, one generated line per field (the store writes a code three
    times on its way to the lock: a loop of getattr over 35 fields was 11 us a code). A field
    is left out when it is its default: identity first (None, False, 0, (), NO_SYNC, enum
    members), else equal and of the same type."""
    names: dict[str, Any] = {"_encode": _encode, "_plain": _PLAIN}
    lines = ["    public = {}"]
    for number, (name, default) in enumerate(_CODE_PUBLIC_DEFAULTS):
        names[f"_default{number}"] = default
        names[f"_type{number}"] = type(default)
        lines.append(f"    value = record.{name}")
        if default is not _NO_DEFAULT:
            lines.append(f"    if value is not _default{number} and not (type(value) is "
                         f"_type{number} and value == _default{number}):")
            indent = "        "
        else:
            indent = "    "
        lines.append(f"{indent}public[{name!r}] = value if type(value) in _plain "
                     "else _encode(value)")
    secrets = ", ".join(f"{name!r}: record.{name}" for name in _SECRET_FIELDS)
    lines.append(f"    return public, {{{secrets}}}")
    source = "\n".join([f"def split(record, *, {', '.join(f'{n}={n}' for n in names)}):",
                         *lines])
    namespace: dict[str, Any] = {}
    exec(compile(source, "<CodeRecord row>", "exec"), dict(names), namespace)
    built: Callable[[CodeRecord], tuple[dict[str, Any], dict[str, str | None]]] = \
        namespace["split"]
    return built


def code_from_row(public: dict[str, Any], secrets: dict[str, str | None]) -> CodeRecord:
    """Rebuild a code from what `code_to_row` produced. `public` may be consumed.
    A field the row leaves out takes its default: rows written since left out every field at
    its default, and a row written before a field existed has it at its default."""
    if public.keys() <= _CODE_PUBLIC_KEYS:
        # Every current row: decoded and assembled in one generated pass (30,000 at startup).
        return _from_current_row(public, secrets)
    # A row of an older version, with keys records no longer have (`extra`).
    kwargs = {name: public[name] for name in _CODE_PUBLIC_FIELDS if name in public}
    for name, value in kwargs.items():
        decode = _DECODER_OF.get(name)
        if decode is not None and value is not None:
            kwargs[name] = decode(value)
    kwargs["device_id"] = sys.intern(kwargs["device_id"])
    pin = secrets.get("code")
    kwargs["code"] = pin
    for name in ("requested_code", "on_lock_pin"):
        value = secrets.get(name)
        kwargs[name] = pin if value == pin else value
    if "sync" not in public and public.get("extra"):
        kwargs["sync"] = _sync_from_extra(public["extra"])
    return _assemble(kwargs)


def _generate(decoding: bool) -> Callable[..., CodeRecord]:
    """A function that builds a CodeRecord, one generated line per field (as `dataclasses`
    generates `__init__`), where the frozen dataclass's __init__ goes through
    object.__setattr__ field by field: about half its time.

    The record is built as a `_CodeSlots`, a plain class with CodeRecord's slots and layout,
    whose plain attribute stores the interpreter specialises (a slot's descriptor called per
    field was 60% of the startup read's builder), then made a CodeRecord by assigning its
    class, which Python allows between classes of the same slots and layout (tried here, at
    import: a CodeRecord that gains a base or a weakref slot fails here, not on a read).

    Without `decoding`: `_assemble(values)`, `CodeRecord(**values)`. With it:
    `_from_current_row(public, secrets)`, a stored row as `code_from_row` reads it: the
    fields JSON cannot hold as they are decoded, the lock's id interned, and one PIN object
    shared by the code, its requested and its on-lock PIN where they are equal (a converged
    code's three are). Valid while CodeRecord's __init__ only assigns (no __post_init__).
    A missing field without a default raises TypeError, as __init__ would."""
    if hasattr(CodeRecord, "__post_init__"):
        raise TypeError("CodeRecord has a __post_init__, which the generated builder would skip")
    probe = object.__new__(_CodeSlots)
    probe.__class__ = CodeRecord  # type: ignore[assignment]  # TypeError if layouts differ
    names: dict[str, Any] = {"_new": object.__new__, "_slots": _CodeSlots, "_cls": CodeRecord,
                             "_missing": _NO_DEFAULT, "_needs": _needs, "_intern": sys.intern}
    lines = ["    record = _new(_slots)", "    get = values.get"]
    if decoding:
        lines += ["    pin = secrets.get('code')"]
    for number, field in enumerate(dataclasses.fields(CodeRecord)):
        name = field.name
        has_default = field.default is not dataclasses.MISSING
        if has_default:
            names[f"_default{number}"] = field.default
        if decoding and name == "code":
            lines.append(f"    record.{name} = pin")
            continue
        if decoding and name in _SECRET_FIELDS:
            lines += [f"    value = secrets.get({name!r})",
                      f"    record.{name} = pin if value == pin else value"]
            continue
        decoder = _DECODER_OF.get(name) if decoding else None
        if decoder is None and has_default:
            lines.append(f"    record.{name} = get({name!r}, _default{number})")
            continue
        lines.append(f"    value = get({name!r}, _missing)")
        if has_default:
            lines.append(f"    if value is _missing: value = _default{number}")
        else:
            lines.append(f"    if value is _missing: _needs({name!r})")
        if decoder is not None:
            names[f"_decode{number}"] = decoder
            lines.append(f"    {'el' if has_default else ''}if value is not None: "
                         f"value = _decode{number}(value)")
        if decoding and name == "device_id":
            lines.append("    value = _intern(value)")
        lines.append(f"    record.{name} = value")
    # Every slot is set: from here on it is a frozen CodeRecord like any other.
    lines.append("    record.__class__ = _cls")
    arguments = "values, secrets" if decoding else "values"
    source = "\n".join([f"def build({arguments}, *, {', '.join(f'{n}={n}' for n in names)}):",
                         *lines, "    return record"])
    namespace: dict[str, Any] = {}
    exec(compile(source, "<CodeRecord builder>", "exec"), dict(names), namespace)
    built: Callable[..., CodeRecord] = namespace["build"]
    return built


class _CodeSlots:
    """A CodeRecord under construction (see `_generate`): CodeRecord's slots, in its order, on
    the same base, so an instance can become a CodeRecord by assigning `__class__`."""

    __slots__ = CodeRecord.__slots__


def _copier() -> Callable[..., CodeRecord]:
    """`replace_code`'s body: a new record slot by slot from the old one's (one generated line
    per field, as `_generate`), then the changes over them."""
    names: dict[str, Any] = {"_new": object.__new__, "_cls": CodeRecord,
                             "_setattr": object.__setattr__}
    lines = ["    record = _new(_cls)"]
    for number, field in enumerate(dataclasses.fields(CodeRecord)):
        names[f"_set{number}"] = getattr(CodeRecord, field.name).__set__
        lines.append(f"    _set{number}(record, old.{field.name})")
    lines += ["    for name, value in changes.items():",
              "        _setattr(record, name, value)",
              "    return record"]
    source = "\n".join([f"def copy(old, changes, *, {', '.join(f'{n}={n}' for n in names)}):",
                         *lines])
    namespace: dict[str, Any] = {}
    exec(compile(source, "<CodeRecord copier>", "exec"), dict(names), namespace)
    built: Callable[..., CodeRecord] = namespace["copy"]
    return built


def replace_code(code: CodeRecord, /, **changes: Any) -> CodeRecord:
    """`dataclasses.replace(code, **changes)` in about a fifth of its time: the engine copies a
    code (38 fields) about six times on its way to the lock, and `dataclasses.replace` goes
    through `fields()` and the frozen `__init__`'s `object.__setattr__` per field. Valid while
    CodeRecord's __init__ only assigns (checked by `_generate`)."""
    if not changes.keys() <= _CODE_FIELD_NAMES:
        unknown = ", ".join(sorted(changes.keys() - _CODE_FIELD_NAMES))
        raise TypeError(f"CodeRecord has no field {unknown}")
    return _copy_code(code, changes)


def _needs(name: str) -> None:
    raise TypeError(f"CodeRecord needs {name}")


def _sync_from_extra(extra: dict[str, Any]) -> CodeSync:
    """The sync marks of a row written before they were typed (kept in a dict `extra`)."""
    first_sent = extra.get("first_sent_at")
    return CodeSync(outcome_unknown=bool(extra.get("outcome_unknown")),
                    not_applied=bool(extra.get("not_applied")),
                    external_hold=bool(extra.get("external_hold")),
                    refused_for_good=extra.get("refused_for_good"),
                    first_sent_at=datetime.fromisoformat(first_sent) if first_sent else None,
                    awaiting_adoption=bool(extra.get("awaiting_adoption")))


_F = TypeVar("_F")


def device_to_json(record: DeviceRecord) -> str:
    """A device as JSON."""
    fields = dataclasses.fields(record)
    return json.dumps({f.name: _encode(getattr(record, f.name)) for f in fields})


def device_from_json(text: str, shared: dict[tuple[Any, ...], Any] | None = None,
                     ) -> DeviceRecord:
    """A device from `device_to_json`. `shared`: equal capabilities and PIN rules already
    built for other devices of the same read (a bridge's locks are mostly of a few models),
    used again instead of built anew: frozen, so sharing them changes nothing."""
    raw = json.loads(text)
    info = raw["info"]
    caps = info["capabilities"]
    caps["reserved_slots"] = frozenset(caps["reserved_slots"])
    # The engine compares it by identity (`is Addressing.SLOT`): a plain string would make a
    # slot lock loaded from the store look like one that numbers codes itself.
    caps["addressing"] = Addressing(caps.get("addressing", Addressing.SLOT))
    cons = info["constraints"]
    cons["forbidden_prefixes"] = tuple(cons["forbidden_prefixes"])
    if shared is None:
        shared = {}
    info["capabilities"] = _shared(shared, LockCapabilities, caps)
    info["constraints"] = _shared(shared, PinConstraints, cons)
    if info.get("state") is not None:
        info["state"] = LockState(**info["state"])
    info["errors"] = tuple(DeviceProblem(**p) for p in info.get("errors", ()))
    raw["info"] = DeviceInfo(**info)
    raw["created_at"] = datetime.fromisoformat(raw["created_at"])
    raw["availability"] = Availability(raw["availability"])
    raw["errors"] = _issues(raw["errors"])
    raw["warnings"] = _issues(raw["warnings"])
    return DeviceRecord(**raw)


def _shared(shared: dict[tuple[Any, ...], Any], kind: type[_F], fields: dict[str, Any]) -> _F:
    """`kind(**fields)`, or the equal one already in `shared`."""
    key = (kind, *fields.items())  # every field is hashable: the records are frozen
    found = shared.get(key)
    if found is None:
        found = shared[key] = kind(**fields)
    return cast(_F, found)


def _encode(value: Any) -> Any:
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, Issue):
        return {"code": value.code, "message": value.message,
                "created_at": value.created_at.isoformat()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


# Stored as they are; exact types, so a subclass (a StrEnum) still takes the checks of _encode.
_PLAIN = frozenset({str, int, bool, float})


def _issues(raw: list[dict[str, Any]]) -> tuple[Issue, ...]:
    return tuple(
        Issue(i["code"], i["message"], datetime.fromisoformat(i["created_at"])) for i in raw
    )


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _issue_tuple(raw: list[dict[str, Any]]) -> tuple[Issue, ...]:
    return _issues(raw) if raw else ()


def _sync(value: dict[str, Any]) -> CodeSync:
    if value == _NO_SYNC_JSON:
        return NO_SYNC
    first_sent = value.get("first_sent_at")
    return CodeSync(**{**value, "first_sent_at": datetime.fromisoformat(first_sent)
                       if first_sent else None})


def _held(value: dict[str, Any]) -> Held:
    window = value.get("window")
    return Held(window=LocalWindow(datetime.fromisoformat(window["starts_at"]),
                                   datetime.fromisoformat(window["ends_at"]),
                                   window.get("zone")) if window else None,
                name=value.get("name"))


_TIME_FIELDS = ("created_at", "starts_at", "ends_at", "last_write_at", "pending_since",
                "next_attempt_at", "backup_pulled_at")
def _member_of(enum_type: type[Any]) -> Callable[[Any], Any]:
    """`enum_type(value)` through a dict first: an Enum's own lookup by value costs a few
    microseconds, paid for every stored code at startup."""
    by_value = {member.value: member for member in enum_type}

    def member(value: Any) -> Any:
        found = by_value.get(value)
        return found if found is not None else enum_type(value)

    return member


# How each stored field that JSON cannot hold as it is becomes its value again (None stays None).
_DECODER_OF: dict[str, Callable[[Any], Any]] = {
    **{name: _time for name in _TIME_FIELDS},
    "errors": _issue_tuple, "warnings": _issue_tuple,
    "type": _member_of(AccessCodeType), "status": _member_of(AccessCodeStatus),
    "on_lock_held": _held, "sync": _sync,
}
_CODE_PUBLIC_KEYS = frozenset(_CODE_PUBLIC_FIELDS)
_NO_SYNC_JSON = _encode(NO_SYNC)
_assemble: Callable[[dict[str, Any]], CodeRecord] = _generate(decoding=False)
_from_current_row: Callable[[dict[str, Any], dict[str, str | None]], CodeRecord] = \
    _generate(decoding=True)
_CODE_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(CodeRecord))
_copy_code: Callable[[CodeRecord, dict[str, Any]], CodeRecord] = _copier()
_code_to_row = _row_splitter()
