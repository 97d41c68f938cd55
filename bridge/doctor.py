"""`lockbridge doctor -c FILE`: checks a gateway box and says how to fix each problem it finds."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import enum
import ipaddress
import json
import os
import pwd
import socket
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel

from bridge.clock import Clock, SystemClock
from bridge.config import ConfigError, LoadedConfig, load_config
from bridge.daemon import state_db
from bridge.driver import Addressing, Availability
from bridge.listener import beyond_loopback, keyless_paths, server_tls
from bridge.model import AccessCodeErrorCode, DeviceErrorCode, DeviceWarningCode
from bridge.records import CodeRecord, DeviceRecord
from bridge.secrets import PinCipher, key_path
from bridge.startup import StartupError
from bridge.store import Reader, Store, StoreError
from bridge.timesync import RELEASE_FLOOR, clock_plausible

# Where systemd's LoadCredential=lockbridge.key finds the key (systemd/lockbridge.service).
CREDSTORE_KEY = Path("/etc/credstore/lockbridge.key")
EXIT_FAILED = 1


class Severity(enum.StrEnum):
    """How bad a finding is; any FAIL makes doctor exit non-zero."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing doctor checked, what it saw, and what to do about it."""

    severity: Severity
    check: str
    message: str
    fix: str = ""


@dataclass(slots=True)
class Report:
    """Every finding, in the order checked."""

    findings: list[Finding] = field(default_factory=list)
    config_valid: bool = True

    def add(self, severity: Severity, check: str, message: str, fix: str = "") -> None:
        """Record one finding."""
        self.findings.append(Finding(severity, check, message, fix))

    @property
    def failed(self) -> list[Finding]:
        """The findings that make doctor fail."""
        return [f for f in self.findings if f.severity is Severity.FAIL]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `doctor` to the `lockbridge` command line."""
    doctor = subparsers.add_parser(
        "doctor", help="check this box (config, state, peers, clock, locks) and say how to fix "
                       "each problem")
    doctor.add_argument("-c", "--config", type=Path, required=True)
    doctor.add_argument("--json", action="store_true")
    doctor.add_argument("--timeout", type=float, default=3.0,
                        help="seconds to wait for each network peer (default 3)")
    doctor.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print every finding; 0 when nothing failed, 2 for an invalid config, else 1."""
    report = diagnose(args.config, timeout_s=args.timeout)
    if args.json:
        print(json.dumps([asdict(f) for f in report.findings], indent=2))
    else:
        print(render(report))
    if not report.config_valid:
        from bridge.cli import EXIT_CONFIG

        return EXIT_CONFIG
    return EXIT_FAILED if report.failed else 0


def render(report: Report) -> str:
    """The findings as lines for a terminal, fixes indented under their finding."""
    lines = []
    for f in report.findings:
        label = "FAIL" if f.severity is Severity.FAIL else f.severity.value
        lines.append(f"{label:<5} {f.check:<8} {f.message}")
        if f.fix:
            lines.append(f"{'':<14} fix: {f.fix}")
    failed = len(report.failed)
    warned = sum(1 for f in report.findings if f.severity is Severity.WARN)
    lines.append(f"{failed} problem{'s' * (failed != 1)}, {warned} warning{'s' * (warned != 1)}")
    return "\n".join(lines)


def diagnose(path: Path, *, clock: Clock | None = None, timeout_s: float = 3.0,
             ntp: Callable[[], bool | None] | None = None) -> Report:
    """Run every check against the configuration at `path`."""
    report = Report()
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        report.config_valid = False
        for problem in exc.problems:
            report.add(Severity.FAIL, "config", problem.render(exc.path),
                       f"correct the file, then `lockbridge check-config {path}`")
        return report
    config = loaded.config
    report.add(Severity.OK, "config",
               f"{path} is valid: {len(loaded.drivers)} driver(s), {len(config.codes)} "
               "declared code(s)")
    key = _find_key(loaded)
    key_bytes = _check_key(key, report)
    last_seen = None
    try:
        with _as_owner_of(config.state_dir) as as_service_user:
            if as_service_user:
                _check_readable([path, *_files_of(loaded.drivers)], report)
            _check_state(loaded, report)
            last_seen = _check_store(loaded, key, key_bytes, report)
    except OSError as exc:
        report.add(Severity.FAIL, "state", f"cannot check {config.state_dir}: {exc}",
                   "run doctor as root or as the service user (sudo -u lockbridge ...)")
    _check_api(loaded, report)
    _check_peers(loaded.drivers, report, timeout_s)
    _check_clock((clock or SystemClock()).now(), last_seen,
                 config.schedule.require_synchronized_clock,
                 (ntp or ntp_synchronized)(), report)
    return report


def ntp_synchronized() -> bool | None:
    """Whether the kernel clock is NTP-synchronised: timedatectl, else adjtimex; None if unknown."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                             capture_output=True, text=True, timeout=5, check=False)
        answer = out.stdout.strip()
        if out.returncode == 0 and answer in ("yes", "no"):
            return answer == "yes"
    return _adjtimex_synchronized()


# -- state directory ---------------------------------------------------------------------------


def _check_readable(paths: Iterable[Path], report: Report) -> None:
    """As the service user: can it read the config and every secret or certificate file?"""
    for path in paths:
        try:
            with path.open("rb"):
                pass
        except FileNotFoundError:
            report.add(Severity.FAIL, "access", f"{path} does not exist",
                       "create it, or correct its path in the config")
        except OSError as exc:
            report.add(Severity.FAIL, "access",
                       f"the service user (uid {os.geteuid()}) cannot read {path}: "
                       f"{exc.strerror}",
                       f"chown root:lockbridge {path} && chmod 0640 {path} (its directory "
                       "0750 root:lockbridge)")


def _files_of(models: Iterable[BaseModel]) -> Iterator[Path]:
    """Every absolute `*_file` path in the drivers' settings, nested models included."""
    for model in models:
        for key, value in dict(model).items():
            if key.endswith("_file") and isinstance(value, Path) and value.is_absolute():
                yield value
            yield from _files_of(_models_in(value))


def _check_state(loaded: LoadedConfig, report: Report) -> None:
    state_dir = loaded.config.state_dir
    if not state_dir.exists():
        report.add(Severity.WARN, "state", f"{state_dir} does not exist yet",
                   "start the daemon once (systemd's StateDirectory= makes it), or "
                   f"`install -d -m 700 -o lockbridge -g lockbridge {state_dir}`")
        return
    if not state_dir.is_dir():
        report.add(Severity.FAIL, "state", f"{state_dir} is not a directory",
                   "point state_dir at a directory (the service expects /var/lib/lockbridge)")
        return
    st = state_dir.stat()
    problems = len(report.failed)
    if st.st_mode & 0o077:
        report.add(Severity.FAIL, "state",
                   f"{state_dir} is mode {stat.S_IMODE(st.st_mode):04o}: other users can reach "
                   "the database and the PIN key", f"chmod 700 {state_dir}")
    try:
        fd, probe = tempfile.mkstemp(dir=state_dir, prefix=".doctor-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        report.add(Severity.FAIL, "state", f"cannot write in {state_dir}: {exc.strerror}",
                   "a read-only file system is often an SD card remounted after errors: check "
                   "`dmesg`, run fsck, replace the card; otherwise "
                   f"`chown -R lockbridge:lockbridge {state_dir}`")
    db = state_db(state_dir)
    for path in [state_dir / f"{db.name}{s}" for s in ("", "-wal", "-shm")]:
        if not path.exists():
            continue
        pst = path.stat()
        if pst.st_mode & 0o077:
            report.add(Severity.FAIL, "state", _too_open(path, pst), f"chmod 600 {path}")
        if pst.st_uid != st.st_uid:
            report.add(Severity.FAIL, "state",
                       f"{path} belongs to uid {pst.st_uid}, not to the owner of {state_dir} "
                       f"(uid {st.st_uid}): the daemon cannot write it",
                       f"chown {st.st_uid}:{st.st_gid} {path}; run lockbridge commands as the "
                       "service user (sudo -u lockbridge ...)")
    if len(report.failed) == problems:
        report.add(Severity.OK, "state", f"{state_dir} is private and writable")


def _check_key(key: Path | None, report: Report) -> bytes | None:
    """The PIN key's bytes, after checking its permissions (as the invoking user: root can read
    /etc/credstore, the service user cannot)."""
    if key is None:
        return None
    try:
        pst = key.stat()
        data = key.read_bytes()
    except OSError as exc:
        report.add(Severity.FAIL, "key", f"cannot read the PIN key {key}: {exc.strerror}",
                   "run doctor as root or as the service user")
        return None
    if pst.st_mode & 0o077:
        report.add(Severity.FAIL, "key", _too_open(key, pst), f"chmod 600 {key}")
    elif len(data) != 32:
        report.add(Severity.FAIL, "key", f"{key} holds {len(data)} bytes, not 32",
                   "restore the key from the backup made with the database")
    else:
        report.add(Severity.OK, "key", f"{key} is private")
    return data


def _too_open(path: Path, st: os.stat_result) -> str:
    return (f"{path} is mode {stat.S_IMODE(st.st_mode):04o}: it holds secrets and must be "
            "readable by its owner only")


def _find_key(loaded: LoadedConfig) -> Path | None:
    config = loaded.config
    path = key_path(config.store.key_file, config.state_dir)
    if path.exists():
        return path
    if config.store.key_file is None and CREDSTORE_KEY.exists():
        return CREDSTORE_KEY
    return None


# -- locks and codes in the store --------------------------------------------------------------

_OFFLINE_FIX: dict[str, str] = {
    Availability.OFFLINE: "check the lock's batteries and that it is within radio range of its "
                          "hub or controller; the bridge keeps probing it and resumes by itself",
    # Availability.DISCONNECTED, new in the driver interface.
    "disconnected": "the bridge lost its link to the lock's network: check the broker or "
                    "Z-Wave server (see the peer checks)",
    Availability.HUB_DISCONNECTED: "check the hub's power and network connection",
    Availability.ACCOUNT_DISCONNECTED: "sign in again: the manufacturer account refused the "
                                       "bridge's credentials; update the password or token file "
                                       "and `systemctl restart lockbridge`",
}

_WARNING_FIX: dict[str, str] = {
    DeviceWarningCode.PARTIAL_BACKUP_ACCESS_CODE_POOL: "the pool refills by itself while the "
                                                        "lock is online and has free slots",
    DeviceWarningCode.MANY_ACTIVE_BACKUP_CODES: "end the stays that pulled backup codes, or "
                                                "delete backups that are no longer used",
    DeviceWarningCode.UNKNOWN_TIME_ZONE: "set properties[].time_zone or "
                                         "devices.<id>.time_zone in the config",
}


def _check_store(loaded: LoadedConfig, key: Path | None, key_bytes: bytes | None,
                 report: Report) -> datetime | None:
    """Check locks, slots and backup pools; returns the latest time the store has seen."""
    state_dir = loaded.config.state_dir
    db = state_db(state_dir)
    if not db.exists():
        report.add(Severity.WARN, "locks", f"no database in {state_dir} yet: has the daemon run?",
                   "`systemctl start lockbridge`, then run doctor again")
        return None
    if key is None:
        report.add(Severity.FAIL, "key", f"{db} exists but its PIN key does not",
                   "restore pin.key (or /etc/credstore/lockbridge.key) from the backup made with "
                   "this database; without it no stored PIN can be read")
        return None
    if key_bytes is None:
        return None
    try:
        store = Store(db, PinCipher(key_bytes))
        store.open_sync()
        devices, codes, last_seen = store.read_sync(_snapshot)
    except (OSError, ValueError, StoreError) as exc:
        report.add(Severity.FAIL, "state", f"cannot read {db}: {exc}",
                   "restore the key that belongs with this database, or the database and key "
                   "from the same backup (docs/install.md)")
        return None
    _check_locks(loaded, devices, codes, report)
    return last_seen


def _snapshot(reader: Reader) -> tuple[list[DeviceRecord], list[CodeRecord], datetime | None]:
    last = reader.count("SELECT COALESCE(MAX(seq), 0) FROM events")
    events = reader.events(after_seq=last - 1, limit=1) if last else []
    return reader.devices(), reader.codes(), events[0].occurred_at if events else None


def _check_locks(loaded: LoadedConfig, devices: list[DeviceRecord], codes: list[CodeRecord],
                 report: Report) -> None:
    problems = len(report.failed)
    live = [d for d in devices if not d.removed]
    for cfg in loaded.drivers:
        name = str(getattr(cfg, "name", getattr(cfg, "kind", "")))
        if not any(d.driver == name for d in live):
            report.add(
                Severity.FAIL, "account",
                f"driver {name} answers but shows no locks. For a cloud account the likely "
                "cause is that the manufacturer account is already connected elsewhere (another "
                "platform, integration or bridge): most manufacturers allow one active "
                "connection per account, and the other side may still say \"connection "
                "successful\". For a local radio network, no lock is paired or its gateway "
                "software (Zigbee2MQTT, Z-Wave JS) does not publish it",
                "disconnect the account from the other platform or integration, wait a few "
                "minutes, then `systemctl restart lockbridge`; if the account really has no "
                "locks, add them in the manufacturer's app first; on a local network, pair "
                "the lock and check its gateway's log")
    for d in live:
        name = d.display_name or d.external_id
        if not d.online:
            since = next((e.created_at for e in d.errors), None)
            when = f" since {since:%Y-%m-%d %H:%M}Z" if since else ""
            report.add(Severity.FAIL, "locks", f"{name} is {d.availability.value}{when}",
                       _OFFLINE_FIX.get(d.availability, "check the lock and its hub"))
        mine = [c for c in codes if c.device_id == d.device_id and not c.deleted]
        waiting = [c for c in mine if
                   c.has_error(AccessCodeErrorCode.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE)]
        caps = d.info.capabilities
        usable = caps.slot_count - len(caps.reserved_slots)
        taken = {c.slot for c in mine if c.slot is not None}
        if waiting:
            report.add(Severity.FAIL, "slots",
                       f"{name} has no free slot: {len(waiting)} code(s) wait for one",
                       "delete codes that are no longer needed (unmanaged keypad codes too), or "
                       "give these guests another lock")
        # After a JSON round trip `addressing` may be the plain string: compare by value.
        elif caps.addressing == Addressing.SLOT and len(taken) >= usable:
            report.add(Severity.WARN, "slots", f"{name}: all {usable} usable slots are taken",
                       "the next code will fail: delete codes that are no longer needed")
        for issue in d.errors:
            if issue.code == DeviceErrorCode.EMPTY_BACKUP_ACCESS_CODE_POOL:
                report.add(Severity.FAIL, "backups", f"{name}: {issue.message}",
                           "backup codes are refilled only while the lock is online and has "
                           "free slots: bring it online, free slots, and pull fewer backups")
        for issue in d.warnings:
            if issue.code == DeviceWarningCode.SYSTEM_CLOCK_UNSYNCHRONIZED:
                continue  # the clock check below says it once for the whole box
            report.add(Severity.WARN, "backups" if "backup" in issue.code else "locks",
                       f"{name}: {issue.message} ({issue.code})", _WARNING_FIX.get(issue.code, ""))
    if len(report.failed) == problems:
        online = sum(1 for d in live if d.online)
        report.add(Severity.OK, "locks", f"{online}/{len(live)} locks online, "
                   f"{len(codes)} code(s) on record")




# -- the local API ---------------------------------------------------------------------------


def _check_api(loaded: LoadedConfig, report: Report) -> None:
    """Say who can reach the local API, and what they get without a key."""
    api = loaded.config.api
    if not api.enabled:
        report.add(Severity.OK, "api", "the local API is disabled")
        return
    where = f"{api.host}:{api.port}"
    if not beyond_loopback(api.host):
        report.add(Severity.OK, "api", f"the local API listens on {where}, loopback only")
        return
    try:
        tls = server_tls(api.tls_cert_file, api.tls_key_file)
    except StartupError as exc:
        report.add(Severity.FAIL, "api", exc.what, exc.fix)
        return
    keyless = sorted(keyless_paths(api.host, api.public_routes))
    exposed = (f"the local API listens on {where}, beyond loopback: other machines on the "
               f"network reach it; without a key they get {', '.join(keyless)}; every other "
               "route needs an API key")
    fix = (f"keep api.host on 127.0.0.1 unless other machines need the API, and let a "
           f"firewall admit only those to port {api.port}")
    if tls is None:
        report.add(Severity.WARN, "exposure", f"{exposed}. It is plain HTTP "
                   "(api.allow_plain_http): API keys and answers cross the network in clear",
                   f"serve HTTPS with api.tls_cert_file and api.tls_key_file; {fix}")
    else:
        # Deliberate and encrypted: reported so the operator sees it, not counted as a problem.
        report.add(Severity.OK, "exposure", f"{exposed}. It is HTTPS with {api.tls_cert_file}",
                   fix)


# -- network peers -----------------------------------------------------------------------------

_DEFAULT_PORTS = {"ws": 80, "wss": 443, "http": 80, "https": 443, "mqtt": 1883, "mqtts": 8883}
_AUTH_FIELDS = ("username", "password", "password_file", "token", "token_file", "api_key",
                "api_key_file", "secret", "secret_file")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A TCP peer named in a driver's settings."""

    label: str
    host: str
    port: int | None
    authenticated: bool


def endpoints(model: BaseModel, label: str) -> Iterator[Endpoint]:
    """Every host/port or url in a driver's settings, nested models included."""
    auth = any(getattr(model, f, None) for f in _AUTH_FIELDS)
    values = dict(model)
    url = values.get("url")
    if isinstance(url, str) and "://" in url:
        parts = urlsplit(url)
        if parts.hostname:
            yield Endpoint(label, parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme),
                           auth or bool(parts.password))
    host = values.get("host")
    if isinstance(host, str) and host:
        port = values.get("port")
        yield Endpoint(label, host, port if isinstance(port, int) else None, auth)
    for key, value in values.items():
        for item in _models_in(value):
            yield from endpoints(item, f"{label}.{key}")


def _models_in(value: object) -> list[BaseModel]:
    """The settings models in one field's value: itself, or in its list or dict."""
    items = value.values() if isinstance(value, dict) else \
        value if isinstance(value, list | tuple) else [value]
    return [item for item in items if isinstance(item, BaseModel)]


def _check_peers(drivers: Iterable[BaseModel], report: Report, timeout_s: float) -> None:
    for cfg in drivers:
        kind = str(getattr(cfg, "kind", ""))
        name = str(getattr(cfg, "name", kind))
        if kind == "simulator":
            report.add(Severity.OK, "peers", f"driver {name}: simulated locks, nothing to reach")
            continue
        found = list(endpoints(cfg, name))
        if not found:
            report.add(Severity.OK, "peers", f"driver {name}: no network peer configured")
        for ep in found:
            _check_endpoint(ep, report, timeout_s)


def _check_endpoint(ep: Endpoint, report: Report, timeout_s: float) -> None:
    if ep.port is None:
        report.add(Severity.WARN, "peers", f"{ep.label}: {ep.host} has no port; not checked")
        return
    error = _connect(ep.host, ep.port, timeout_s)
    if error is not None:
        report.add(Severity.FAIL, "peers", f"{ep.label}: cannot connect to {ep.host}:{ep.port}: "
                   f"{error}", "check that the broker or server runs (`systemctl status ...`), "
                   "the host and port in the config, and any firewall between them")
        return
    report.add(Severity.OK, "peers", f"{ep.label}: {ep.host}:{ep.port} answers")
    if ep.authenticated:
        return
    fix = ("bind it to loopback (Mosquitto: `listener 1883 127.0.0.1`; zwave-js-server: "
           "`--host 127.0.0.1`, Z-Wave JS UI: server host 127.0.0.1), or make it require a "
           "password and set username and password_file in this driver's config")
    if not _is_loopback(ep.host):
        report.add(Severity.FAIL, "exposure",
                   f"{ep.label}: {ep.host}:{ep.port} is reached over the network without "
                   "authentication: anyone on that network can program the locks", fix)
        return
    lan = primary_address()
    if lan is not None and _connect(lan, ep.port, timeout_s) is None:
        report.add(Severity.FAIL, "exposure",
                   f"{ep.label}: port {ep.port} also answers on {lan}, without authentication: "
                   "anyone on the network can program the locks", fix)


def primary_address() -> str | None:
    """This box's address on its default route (no packet is sent), or None."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        address = str(s.getsockname()[0])
        return None if ipaddress.ip_address(address).is_loopback else address
    return None


def _connect(host: str, port: int, timeout_s: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


# -- clock -------------------------------------------------------------------------------------


def _check_clock(now: datetime, last_seen: datetime | None, require_sync: bool,
                 synchronized: bool | None, report: Report) -> None:
    fix = ("enable time sync (`timedatectl set-ntp true`; `timedatectl timesync-status` shows "
           "the server) and make sure the box reaches an NTP server; a box without a battery "
           "clock starts in the past after every power cut")
    if not clock_plausible(now, last_seen):
        before = (f"before this release ({RELEASE_FLOOR:%Y-%m-%d})" if now < RELEASE_FLOOR else
                  f"before the latest event this bridge recorded ({last_seen:%Y-%m-%d %H:%M}Z)")
        report.add(Severity.FAIL, "clock",
                   f"the system clock reads {now:%Y-%m-%d %H:%M}Z, {before}: schedules are held "
                   "until it is right", fix)
        return
    if synchronized is False:
        report.add(Severity.FAIL if require_sync else Severity.WARN, "clock",
                   "the system clock is not NTP-synchronised: time-bound codes may go on and "
                   "off at the wrong time", fix)
    elif synchronized is None:
        report.add(Severity.WARN, "clock",
                   "cannot tell whether the clock is synchronised (no timedatectl or adjtimex)",
                   "check by hand that the box's time is right")
    else:
        report.add(Severity.OK, "clock", f"synchronised: {now:%Y-%m-%d %H:%M}Z")


class _Timex(ctypes.Structure):
    # Only the fields before `status` matter; the tail leaves room for the rest of struct timex.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("_rest", ctypes.c_byte * 256)]


_TIME_ERROR = 5  # adjtimex's answer while the kernel clock is unsynchronised (STA_UNSYNC)


def _adjtimex_synchronized() -> bool | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        timex = _Timex()  # modes = 0: read only, allowed without privileges
        state = int(libc.adjtimex(ctypes.byref(timex)))
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != _TIME_ERROR


# -- privileges --------------------------------------------------------------------------------


@contextlib.contextmanager
def _as_owner_of(directory: Path) -> Iterator[bool]:
    """Run as the owner of `directory` (with its groups) when started as root, so nothing doctor
    creates there (SQLite's -wal/-shm, the write probe) ends up owned by root, and file access is
    judged as the daemon's. Yields True when it switched."""
    try:
        st = directory.stat()
    except OSError:
        st = None
    if os.geteuid() != 0 or st is None or st.st_uid == 0:
        yield False
        return
    saved = os.getgroups()
    try:
        name = pwd.getpwuid(st.st_uid).pw_name
        groups = os.getgrouplist(name, st.st_gid)
    except KeyError:
        groups = [st.st_gid]
    os.setgroups(groups)
    os.setegid(st.st_gid)
    os.seteuid(st.st_uid)
    try:
        yield True
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(saved)
