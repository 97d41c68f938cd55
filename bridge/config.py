"""YAML configuration validated with pydantic; each problem reported as FILE:LINE: path: reason."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge.clock import SystemClock
from bridge.ical.config import IcalFeedConfig
from bridge.instants import in_utc
from bridge.listener import OPENABLE, beyond_loopback
from bridge.portal.config import PortalConfig
from bridge.zones import TimeZoneName
from drivers import registry


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BridgeIdentity(_Strict):
    """Who this bridge is, upstream and in logs."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "lockbridge"
    name: str = "lockbridge"


class ApiConfig(_Strict):
    """The local HTTP API (beyond loopback: bridge/listener.py)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8787
    enabled: bool = True
    max_body_bytes: Annotated[int, Field(gt=0)] = 65536
    # A listener beyond loopback needs TLS, or this set on purpose: keys cross the LAN in clear.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    allow_plain_http: bool = False
    # Routes served without a key beyond loopback (on loopback they always are).
    public_routes: list[str] = []


class LoggingConfig(_Strict):
    """Log verbosity."""

    level: Literal["debug", "info", "warning", "error"] = "info"


class StoreConfig(_Strict):
    """Where the PIN encryption key lives, when not under the state directory, and where the
    encrypted state backup goes."""

    key_file: Path | None = None
    # A second disk (a USB stick, a NAS mount): the state survives the SD card that holds
    # state_dir. Encrypted under the PIN key; `lockbridge restore` reads it back.
    backup_path: Path | None = None
    backup_interval_s: Annotated[float, Field(gt=0)] = 3600.0


class ScheduleConfig(_Strict):
    """When time-bound codes go on and come off."""

    native_lead_time_days: Annotated[float, Field(ge=0, le=9)] = 9
    bridge_lead_time_minutes: Annotated[float, Field(ge=0)] = 60
    errors_ahead_days: Annotated[float, Field(ge=0)] = 3
    require_synchronized_clock: bool = True
    # Ended time-bound codes (off their lock) are forgotten this long after their end.
    forget_ended_codes_after_days: Annotated[float, Field(ge=0)] = 30


class EngineConfig(_Strict):
    """Pacing and retries of commands to locks."""

    default_command_spacing_s: Annotated[float, Field(ge=0)] = 2.0
    max_attempts: Annotated[int, Field(ge=1)] = 5
    retry_base_s: Annotated[float, Field(gt=0)] = 5.0
    retry_cap_s: Annotated[float, Field(gt=0)] = 1800.0
    probe_base_s: Annotated[float, Field(gt=0)] = 60.0
    delay_warning_after_s: Annotated[float, Field(gt=0)] = 300.0
    reconcile_interval_s: Annotated[float, Field(gt=0)] = 3600.0
    command_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    concurrency_per_driver: Annotated[int, Field(ge=1)] = 4


class BackupPoolConfig(_Strict):
    """Backup access code pools (as Seam's pools behave: docs/seam-model.md)."""

    size: Annotated[int, Field(ge=1, le=20)] = 5
    reserve_slots: Annotated[int, Field(ge=0)] = 2
    many_active_threshold: Annotated[int, Field(ge=1)] = 2
    auto_pull: bool = False
    auto_pull_before_hours: Annotated[float, Field(ge=0)] = 36


class PropertyConfig(_Strict):
    """A property (a house, a hotel) and its time zone."""

    id: str
    time_zone: TimeZoneName | None = None



class DeviceOverride(_Strict):
    """Per-device settings that win over what the driver reports."""

    display_name: str | None = None
    time_zone: TimeZoneName | None = None
    property: str | None = None
    command_spacing_s: Annotated[float, Field(ge=0)] | None = None
    backup_pool_size: Annotated[int, Field(ge=1, le=20)] | None = None
    auto_pull_backup: bool | None = None
    # PIN rules the driver cannot learn from the lock: Schlage's one length for every code,
    # and its rule that no code may start with the programming code's digits.
    pin_length: Annotated[int, Field(ge=4, le=10)] | None = None
    pin_forbidden_prefixes: list[Annotated[str, Field(pattern=r"^[0-9]{1,10}$")]] = []


class DeclaredCode(_Strict):
    """A code the configuration asks for (staff codes, the demo's guest codes)."""

    key: Annotated[str, Field(min_length=1)]
    device: str
    name: str
    code: Annotated[str, Field(pattern=r"^[0-9]{3,12}$")] | None = None
    type: Literal["ongoing", "time_bound"] = "ongoing"
    starts_at: str | None = None
    ends_at: str | None = None
    use_backup_access_code_pool: bool = False

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _time_or_offset(cls, value: str | None) -> str | None:
        if value is not None:
            # Only the form is checked here; the daemon resolves offsets against its clock.
            parse_time_or_offset(value, SystemClock().now())
        return value


class DeclaredReservation(_Strict):
    """A reservation the configuration pushes once (the demo's guest stay)."""

    key: Annotated[str, Field(min_length=1, max_length=200)]
    guest: str | None = None
    starts_at: str
    ends_at: str
    code: Annotated[str, Field(pattern=r"^[0-9]{3,12}$")] | None = None

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _time_or_offset(cls, value: str) -> str:
        # Only the form is checked here; the daemon resolves offsets against its clock.
        parse_time_or_offset(value, SystemClock().now())
        return value


class DeclaredSpace(_Strict):
    """A space (a flat, a room) and its locks, by the locks' ids in their drivers."""

    key: Annotated[str, Field(min_length=1, max_length=200)]
    name: str
    devices: list[str] = []
    reservations: list[DeclaredReservation] = []
    # Booking platforms' export calendars whose stays become this space's reservations.
    ical_feeds: list[IcalFeedConfig] = []


class TimeSlotRule(_Strict):
    """A lock that only takes windows on fixed slots from local midnight (Dormakaba-style)."""

    minutes: Annotated[int, Field(ge=1, le=1440)]
    # Widen a window to the slots around it; false: such a window fails to issue.
    widen: bool = True


class AutomationsConfig(_Strict):
    """Reservation automations' rules (docs/automations.md)."""

    # Where PINs come from: the reservation's or grant's preferred code, else generated.
    pin_source: Literal["preferred", "generated"] = "preferred"
    pin_source_by_customer: dict[str, Literal["preferred", "generated"]] = {}
    # Lock id (as under `devices:`) -> its time slots.
    time_slots: dict[str, TimeSlotRule] = {}
    # An access grant whose stay ended this long ago is forgotten with its access methods (its
    # codes are off the locks by then), so years of stays do not pile up; as
    # schedule.forget_ended_codes_after_days does for codes.
    forget_ended_grants_after_days: Annotated[float, Field(ge=0)] = 30


class UpstreamConfig(_Strict):
    """The websocket to the operator's cloud (docs/upstream-protocol.md)."""

    kind: Literal["websocket"] = "websocket"
    url: Annotated[str, Field(pattern=r"^wss?://[^\s/]+")]
    # The config loader refuses a literal here: it must be written as ${ENV_VAR}.
    token: str | None = Field(default=None, repr=False)
    token_file: Path | None = None
    ca_file: Path | None = None
    half_open_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    connect_timeout_s: Annotated[float, Field(gt=0)] = 15.0
    backoff_base_s: Annotated[float, Field(gt=0)] = 1.0
    backoff_cap_s: Annotated[float, Field(gt=0)] = 300.0
    # A refused token is retried this rarely, never in a storm.
    refused_retry_s: Annotated[float, Field(gt=0)] = 600.0
    batch_events: Annotated[int, Field(ge=1, le=5000)] = 500
    window_events: Annotated[int, Field(ge=1)] = 5000
    max_unacked_events: Annotated[int, Field(ge=1)] = 500_000
    keep_acked_events: Annotated[int, Field(ge=0)] = 10_000
    max_message_bytes: Annotated[int, Field(ge=1024)] = 65536
    max_commands_in_flight: Annotated[int, Field(ge=1)] = 16

    @model_validator(mode="after")
    def _checked(self) -> UpstreamConfig:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("give exactly one of token (as ${ENV_VAR}) or token_file")
        if self.url.startswith("ws://") and self.host() not in ("127.0.0.1", "::1",
                                                                  "localhost"):
            raise ValueError("plain ws:// is allowed only to loopback; use wss://")
        if self.backoff_base_s > self.backoff_cap_s:
            raise ValueError("backoff_base_s is larger than backoff_cap_s")
        return self

    def host(self) -> str:
        """The host part of `url`, without brackets or port."""
        rest = self.url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        if rest.startswith("["):
            return rest[1:].split("]", 1)[0]
        return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
# A NATS subject token or key part: no dots, wildcards or spaces.
_NATS_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class NatsUpstreamConfig(_Strict):
    """A fleet's upstream: NATS JetStream, over its websocket listener or TCP (docs/fleet.md)."""

    kind: Literal["nats"]
    servers: Annotated[list[Annotated[str, Field(pattern=r"^(nats|tls|ws|wss)://[^\s/]+")]],
                       Field(min_length=1)]
    # Per-bridge credentials, from files only: a user and its password, an nkey seed, or a
    # decentralised-auth .creds file (JWT and seed).
    user: str | None = None
    password_file: Path | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    subject_prefix: Annotated[str, Field(pattern=_NATS_NAME)] = "lockbridge"
    events_stream: Annotated[str, Field(pattern=_NATS_NAME)] = "LOCKBRIDGE_EVENTS"
    commands_stream: Annotated[str, Field(pattern=_NATS_NAME)] = "LOCKBRIDGE_COMMANDS"
    state_bucket: Annotated[str, Field(pattern=_NATS_NAME)] = "lockbridge_state"
    connect_timeout_s: Annotated[float, Field(gt=0)] = 15.0
    publish_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    heartbeat_s: Annotated[float, Field(gt=0)] = 5.0
    # A command fetched but not acknowledged this long (the bridge died) is delivered again;
    # set when the bridge's consumer is first created.
    command_ack_wait_s: Annotated[float, Field(ge=1)] = 30.0
    backoff_base_s: Annotated[float, Field(gt=0)] = 1.0
    backoff_cap_s: Annotated[float, Field(gt=0)] = 300.0
    refused_retry_s: Annotated[float, Field(gt=0)] = 600.0
    batch_events: Annotated[int, Field(ge=1, le=5000)] = 500
    max_unacked_events: Annotated[int, Field(ge=1)] = 500_000
    keep_acked_events: Annotated[int, Field(ge=0)] = 10_000
    max_message_bytes: Annotated[int, Field(ge=1024)] = 65536
    max_commands_in_flight: Annotated[int, Field(ge=1)] = 16

    @model_validator(mode="after")
    def _checked(self) -> NatsUpstreamConfig:
        if (self.user is None) != (self.password_file is None):
            raise ValueError("user and password_file go together")
        ways = [self.user, self.nkey_seed_file, self.creds_file]
        if sum(way is not None for way in ways) > 1:
            raise ValueError("give one of user/password_file, nkey_seed_file or creds_file")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        tls = self.ca_file is not None or self.cert_file is not None
        for server in self.servers:
            scheme, rest = server.split("://", 1)
            host = rest.split("/", 1)[0].rsplit("@", 1)[-1].rsplit(":", 1)[0].strip("[]")
            if scheme in ("nats", "ws") and not tls and host not in _LOOPBACK_HOSTS:
                raise ValueError(f"{server}: plain nats:// or ws:// is allowed only to "
                                 "loopback; use tls:// or wss:// (or give ca_file)")
        if self.backoff_base_s > self.backoff_cap_s:
            raise ValueError("backoff_base_s is larger than backoff_cap_s")
        return self

    def host(self) -> str:
        """The first server's host, for logs."""
        return self.servers[0].split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]


def _upstream_kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("kind", "websocket"))
    return str(getattr(value, "kind", "websocket"))


AnyUpstreamConfig = Annotated[
    Annotated[UpstreamConfig, Tag("websocket")] | Annotated[NatsUpstreamConfig, Tag("nats")],
    Discriminator(_upstream_kind)]


class Config(_Strict):
    """The whole file."""

    bridge: BridgeIdentity = BridgeIdentity()
    state_dir: Path = Path("/var/lib/lockbridge")
    logging: LoggingConfig = LoggingConfig()
    api: ApiConfig = ApiConfig()
    store: StoreConfig = StoreConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    engine: EngineConfig = EngineConfig()
    backup_pool: BackupPoolConfig = BackupPoolConfig()
    properties: list[PropertyConfig] = []
    drivers: list[dict[str, Any]] = []
    devices: dict[str, DeviceOverride] = {}
    codes: list[DeclaredCode] = []
    spaces: list[DeclaredSpace] = []
    automations: AutomationsConfig = AutomationsConfig()
    upstream: AnyUpstreamConfig | None = None
    portal: PortalConfig = PortalConfig()


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated configuration with its drivers' own settings parsed by each driver's model."""

    path: Path
    config: Config
    drivers: tuple[BaseModel, ...]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in the file."""

    line: int
    path: str
    reason: str

    def render(self, file: Path) -> str:
        """`FILE:LINE: key.path: reason`."""
        return f"{file}:{self.line}: {self.path or '(top)'}: {self.reason}"


class ConfigError(Exception):
    """The file cannot be used; `problems` lists every reason."""

    def __init__(self, path: Path, problems: list[ConfigProblem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(p.render(path) for p in problems))


# libyaml's parser when PyYAML has it (Debian's and PyPI's wheels do): a hotel's 1,000-lock file
# parses in a tenth of the time. Both keep line numbers for the error messages.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_config(path: Path, text: str | None = None) -> LoadedConfig:
    """Read, substitute `${ENV}` references in, and validate a configuration file."""
    if text is None:
        text = _read_text(path)
    try:
        root = yaml.compose(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, [ConfigProblem(line, "", f"invalid YAML: {reason}")]) from exc
    if root is None:
        # An empty file would run a daemon on every default and no lock: surely a mistake (a
        # file truncated by a full disk, a wrong path given to -c).
        raise ConfigError(path, [ConfigProblem(1, "", "the file has no settings: write at "
                                               "least state_dir and drivers (see "
                                               "config/demo.yaml)")])
    lines: dict[tuple[str, ...], int] = {}
    problems: list[ConfigProblem] = []
    try:
        data = _Converter(lines, problems).convert(root, ())
    except _Refused as exc:
        raise ConfigError(path, [exc.problem]) from None
    if problems:
        raise ConfigError(path, problems)
    if not isinstance(data, dict):
        raise ConfigError(path, [ConfigProblem(1, "", "the file must be a mapping of settings")])
    _resolve_relative(data, path.parent)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, list(_problems(exc, (), lines))) from exc
    driver_configs: list[BaseModel] = []
    names: set[str] = set()
    for index, raw in enumerate(config.drivers):
        prefix = ("drivers", str(index))
        kind = raw.get("kind")
        model = registry.config_model(kind) if isinstance(kind, str) else None
        if model is None:
            known = ", ".join(registry.kinds())
            problems.append(
                ConfigProblem(
                    _line(lines, (*prefix, "kind")),
                    ".".join((*prefix, "kind")),
                    f"unknown driver kind {kind!r} (known: {known})",
                )
            )
            continue
        try:
            parsed = model.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_problems(exc, prefix, lines))
            continue
        name = str(getattr(parsed, "name", kind))
        if name in names:
            problems.append(
                ConfigProblem(_line(lines, (*prefix, "name")), ".".join((*prefix, "name")),
                              f"driver name {name!r} is used twice")
            )
        names.add(name)
        driver_configs.append(parsed)
    property_ids = {p.id for p in config.properties}
    for index, code in enumerate(config.codes):
        if code.type == "time_bound" and (code.starts_at is None or code.ends_at is None):
            key = ("codes", str(index), "type")
            problems.append(ConfigProblem(_line(lines, key), ".".join(key),
                                          "a time_bound code needs starts_at and ends_at"))
    for device, override in config.devices.items():
        if override.property is not None and override.property not in property_ids:
            key = ("devices", device, "property")
            problems.append(ConfigProblem(_line(lines, key), ".".join(key),
                                          f"no property {override.property!r} is defined"))
    problems.extend(_api_problems(config.api, lines))
    problems.extend(_space_problems(config.spaces, lines))
    if problems:
        raise ConfigError(path, problems)
    return LoadedConfig(path=path, config=config, drivers=tuple(driver_configs))


def parse_time_or_offset(value: str, now: datetime) -> datetime:
    """An ISO 8601 time with a zone, or an offset from now such as `+90s`, `+15m`, `+2h`, `+3d`."""
    match = re.fullmatch(r"\+(\d+(?:\.\d+)?)([smhd])", value.strip())
    if match:
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        try:
            return now + timedelta(seconds=float(match.group(1)) * scale)
        except OverflowError:
            raise ValueError(f"{value!r} is further ahead than the calendar goes") from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither an ISO 8601 time nor an offset like +15m") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone; write it in UTC with Z")
    return in_utc(parsed)


def read_secret(value: str | None, file: Path | None, what: str) -> str | None:
    """A secret from its `*_file` (first line, stripped) or the already-substituted value."""
    if file is not None:
        try:
            return file.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read {what} file {file}: {exc}") from exc
    return value


# -- internals ---------------------------------------------------------------------------------

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_KEYS = ("password", "token", "api_key", "secret", "client_secret")


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; a ConfigError with the line of the first byte that is not."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, [ConfigProblem(0, "", f"cannot read file: {exc}")]) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(path, [ConfigProblem(
            line, "", f"byte 0x{raw[exc.start]:02x} is not UTF-8: save the file as UTF-8 "
            "(an editor's \"Latin-1\" or \"Windows-1252\" encoding writes accents this way)",
        )]) from None


_STR_TAG = "tag:yaml.org,2002:str"
# Nodes YAML aliases may add beyond those written in the file. A real configuration repeats a
# broker or a lock preset a few times; "billion laughs" (aliases of aliases) repeats millions.
ALIAS_NODE_BUDGET = 10_000
# Deeper than any real configuration; keeps a deep document from exhausting Python's stack.
MAX_DEPTH = 64


class _Refused(Exception):
    """The document is refused before it is converted any further."""

    def __init__(self, problem: ConfigProblem) -> None:
        super().__init__(problem.reason)
        self.problem = problem


class _Converter:
    """Turns the composed YAML nodes into Python values, noting each key's line, checking
    secrets and substituting ${ENV}. Aliases share nodes, so a revisited node is an alias
    expansion: counted against ALIAS_NODE_BUDGET, so memory and time stay bounded."""

    def __init__(self, lines: dict[tuple[str, ...], int], problems: list[ConfigProblem]) -> None:
        self.lines = lines
        self.problems = problems
        self._seen: set[int] = set()
        self._ancestors: set[int] = set()
        self._repeats = 0
        # One loader for every scalar of the file, not one each (7 us apiece, 3,000 scalars
        # in a 1,000-lock file).
        self._loader = yaml.SafeLoader("")

    def convert(self, node: yaml.Node, path: tuple[str, ...]) -> Any:
        """The value of `node`; _Refused when aliases or nesting go beyond the limits."""
        self._count(node, path)
        self.lines[path] = node.start_mark.line + 1
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return self._scalar(node, path)
        self._ancestors.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self.convert(child, (*path, str(i))) for i, child in enumerate(node.value)]
        finally:
            self._ancestors.discard(id(node))

    def _count(self, node: yaml.Node, path: tuple[str, ...]) -> None:
        refuse = None
        if id(node) in self._ancestors:
            refuse = "a YAML alias refers to a node that contains it"
        elif len(path) > MAX_DEPTH:
            refuse = f"settings nested deeper than {MAX_DEPTH} levels"
        elif id(node) in self._seen:
            self._repeats += 1
            if self._repeats > ALIAS_NODE_BUDGET:
                refuse = (f"YAML aliases expand to more than {ALIAS_NODE_BUDGET} extra values: "
                          "write the settings out instead of nesting aliases of aliases")
        self._seen.add(id(node))
        if refuse is not None:
            raise _Refused(ConfigProblem(node.start_mark.line + 1, ".".join(path), refuse))

    def _mapping(self, node: yaml.MappingNode, path: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            sub = (*path, key)
            if key in out:
                self.problems.append(ConfigProblem(key_node.start_mark.line + 1, ".".join(sub),
                                                   "key appears twice"))
            self.lines[sub] = key_node.start_mark.line + 1
            value = self.convert(value_node, sub)
            self.lines[sub] = key_node.start_mark.line + 1
            if key in _SECRET_KEYS and isinstance(value, str) and not _ENV.search(
                str(value_node.value)
            ):
                self.problems.append(ConfigProblem(key_node.start_mark.line + 1, ".".join(sub),
                                                   "secrets may not be written in the file: "
                                                   f"use ${{ENV_VAR}} or {key}_file"))
            out[key] = value
        return out

    def _scalar(self, node: yaml.Node, path: tuple[str, ...]) -> Any:
        # A string is its node's value as it stands (what SafeLoader's constructor returns);
        # most scalars are, and the constructor's dispatch cost 3 us each. Others go through it.
        if node.tag == _STR_TAG:
            value = node.value
        else:
            value = self._loader.construct_object(node, deep=True)
        if isinstance(value, str) and "${" in value:
            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name not in os.environ:
                    self.problems.append(ConfigProblem(node.start_mark.line + 1, ".".join(path),
                                                       f"environment variable {name} is not "
                                                       "set"))
                    return ""
                return os.environ[name]

            value = _ENV.sub(substitute, value)
        return value


# Keys (at any depth) naming files the operator gives: relative to the config file. A driver's
# `state_file` is not among them: it lives in the state directory.
_CONFIG_RELATIVE_KEYS = frozenset({"state_dir", "token_file", "password_file", "ca_file",
                                   "client_secret_file", "refresh_token_file",
                                   "nkey_seed_file", "creds_file",
                                   "cert_file", "key_file", "tls_cert_file", "tls_key_file",
                                   "backup_path", "url_file", "ics_file"})


def _resolve_relative(data: Any, base: Path) -> None:
    """Relative paths in the file are relative to the file, not to the working directory."""
    if isinstance(data, list):
        for item in data:
            _resolve_relative(item, base)
        return
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        if key in _CONFIG_RELATIVE_KEYS and isinstance(value, str) and value \
                and not value.startswith("${") and not Path(value).is_absolute():
            data[key] = str((base / value).resolve())
        else:
            _resolve_relative(value, base)


def _api_problems(api: ApiConfig, lines: dict[tuple[str, ...], int]) -> Iterator[ConfigProblem]:
    """A listener other machines reach must be deliberate: TLS or plain HTTP said out loud."""
    def problem(*key: str, reason: str) -> ConfigProblem:
        return ConfigProblem(_line(lines, ("api", *key)), ".".join(("api", *key)), reason)

    if (api.tls_cert_file is None) != (api.tls_key_file is None):
        given = "tls_cert_file" if api.tls_cert_file is not None else "tls_key_file"
        yield problem(given, reason="give api.tls_cert_file and api.tls_key_file together")
    for index, route in enumerate(api.public_routes):
        if route not in OPENABLE:
            yield problem("public_routes", str(index),
                          reason=f"{route!r} cannot be opened without a key (these can: "
                                 f"{', '.join(OPENABLE)})")
    if not api.enabled or not beyond_loopback(api.host):
        return
    if api.tls_cert_file is None and not api.allow_plain_http:
        yield problem("host", reason=f"{api.host!r} lets other machines reach the API: serve "
                                     "HTTPS with api.tls_cert_file and api.tls_key_file, or set "
                                     "api.allow_plain_http: true to accept plain HTTP on this "
                                     "network (or keep host 127.0.0.1)")


def _space_problems(spaces: list[DeclaredSpace],
                    lines: dict[tuple[str, ...], int]) -> Iterator[ConfigProblem]:
    """Space keys and reservation keys used twice."""
    seen: set[str] = set()
    booked: set[str] = set()
    for index, space in enumerate(spaces):
        if space.key in seen:
            where: tuple[str, ...] = ("spaces", str(index), "key")
            yield ConfigProblem(_line(lines, where), ".".join(where),
                                f"space key {space.key!r} is used twice")
        seen.add(space.key)
        for number, stay in enumerate(space.reservations):
            if stay.key in booked:
                where = ("spaces", str(index), "reservations", str(number), "key")
                yield ConfigProblem(_line(lines, where), ".".join(where),
                                    f"reservation key {stay.key!r} is used twice")
            booked.add(stay.key)


def _line(lines: dict[tuple[str, ...], int], path: tuple[str, ...]) -> int:
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def _problems(
    exc: ValidationError, prefix: tuple[str, ...], lines: dict[tuple[str, ...], int]
) -> Iterator[ConfigProblem]:
    for err in exc.errors():
        loc = (*prefix, *(str(p) for p in err["loc"]))
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        else:
            reason = str(err["msg"])
            reason = reason.removeprefix("Value error, ")
        yield ConfigProblem(_line(lines, loc), ".".join(loc), reason)
