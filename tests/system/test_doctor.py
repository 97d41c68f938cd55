"""`lockbridge doctor`: each problem of the issue set up for real, found, and given its fix."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge import doctor
from bridge.clock import FakeClock
from bridge.doctor import Finding, Report, Severity, diagnose
from bridge.driver import Availability
from bridge.model import (
    AccessCodeErrorCode,
    DeviceErrorCode,
    DeviceWarningCode,
    Event,
    EventType,
    Issue,
)
from bridge.records import CodeRecord, DeviceRecord
from bridge.secrets import PinCipher, load_or_create_key
from bridge.store import Store, Tx
from drivers import registry
from drivers.simulator.lock import SimLock, SimLockSpec

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

SIM = """\
  - kind: simulator
    name: sim
    locks:
      - {id: front, name: Front door}
"""


def write_config(tmp_path: Path, drivers: str = SIM, require_sync: bool = False,
                 extra: str = "") -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(f"state_dir: {state}\n"
                    f"schedule: {{require_synchronized_clock: {str(require_sync).lower()}}}\n"
                    f"{extra}drivers:\n{drivers}")
    return path


def device(lock_id: str = "front", name: str = "Front door", driver: str = "sim",
           slot_count: int = 30, **fields: object) -> DeviceRecord:
    info = SimLock(SimLockSpec(lock_id, name, slot_count=slot_count),
                   clock=None).info()  # type: ignore[arg-type]
    return DeviceRecord(f"dev-{lock_id}", driver, lock_id, info, START, display_name=name,
                        **fields)  # type: ignore[arg-type]


def code(code_id: str, device_id: str = "dev-front", **fields: object) -> CodeRecord:
    return CodeRecord(code_id, device_id, START, **fields)  # type: ignore[arg-type]


async def seed(config: Path, devices: Iterable[DeviceRecord] = (device(),),
               codes: Iterable[CodeRecord] = (), events: Iterable[Event] = ()) -> None:
    """A state directory as the daemon leaves it: key, database, records."""
    state = config.parent / "state"
    store = Store(state / "lockbridge.db", PinCipher(load_or_create_key(state / "pin.key")))
    await store.open()

    def fill(tx: Tx) -> None:
        for d in devices:
            tx.put_device(d)
        for c in codes:
            tx.put_code(c)
        for e in events:
            tx.add_event(e)

    await store.write(fill)
    await store.close()


def check(config: Path, *, now: datetime = START, ntp: bool | None = True,
          timeout_s: float = 1.0) -> Report:
    return diagnose(config, clock=FakeClock(now), ntp=lambda: ntp, timeout_s=timeout_s)


def found(report: Report, check_name: str,
          severity: Severity = Severity.FAIL) -> list[Finding]:
    return [f for f in report.findings if f.check == check_name and f.severity is severity]


def one(report: Report, check_name: str, severity: Severity = Severity.FAIL) -> Finding:
    matches = found(report, check_name, severity)
    assert len(matches) == 1, doctor.render(report)
    return matches[0]


# -- the whole command -------------------------------------------------------------------------


async def test_healthy_box_passes_through_the_cli_parser(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    await seed(config, codes=[code("c1", slot=1, code="482915")])
    report = check(config)
    assert not report.failed, doctor.render(report)
    assert {f.check for f in report.findings} >= {"config", "key", "state", "locks", "peers",
                                                  "clock"}
    parser = argparse.ArgumentParser(prog="lockbridge")
    doctor.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["doctor", "-c", str(config), "--timeout", "1"])
    # The real clock and NTP state of this machine: warnings at most, since the config does not
    # require a synchronised clock.
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "0 problems" in out and "482915" not in out


def test_invalid_config_exits_2_with_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, extra="bogus: 1\n")
    assert doctor.run(argparse.Namespace(config=config, json=False, timeout=1.0)) == 2
    out = capsys.readouterr().out
    assert f"{config}:3: bogus: unknown key" in out
    assert "fix: correct the file" in out


async def test_a_failure_exits_1_and_json_lists_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    await seed(config)
    (tmp_path / "state").chmod(0o755)
    assert doctor.run(argparse.Namespace(config=config, json=True, timeout=1.0)) == 1
    assert '"severity": "fail"' in capsys.readouterr().out


# -- state directory and key -------------------------------------------------------------------


async def test_state_dir_open_to_others(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    await seed(config)
    (tmp_path / "state").chmod(0o755)
    finding = one(check(config), "state")
    assert "mode 0755" in finding.message
    assert finding.fix == f"chmod 700 {tmp_path / 'state'}"


async def test_database_and_key_open_to_others(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    await seed(config)
    (tmp_path / "state" / "lockbridge.db").chmod(0o644)
    (tmp_path / "state" / "pin.key").chmod(0o640)
    report = check(config)
    assert one(report, "state").fix == f"chmod 600 {tmp_path / 'state' / 'lockbridge.db'}"
    assert one(report, "key").fix == f"chmod 600 {tmp_path / 'state' / 'pin.key'}"


async def test_database_without_its_key(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    await seed(config)
    (tmp_path / "state" / "pin.key").unlink()
    finding = one(check(config), "key")
    assert "its PIN key does not" in finding.message and "backup" in finding.fix
    assert not (tmp_path / "state" / "pin.key").exists(), "doctor must never make a key"


async def test_wrong_key(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    await seed(config, codes=[code("c1", slot=1, code="482915")])
    (tmp_path / "state" / "pin.key").write_bytes(os.urandom(32))
    finding = one(check(config), "state")
    assert "wrong key" in finding.message and "restore" in finding.fix


def test_no_state_yet_is_only_a_warning(tmp_path: Path) -> None:
    report = check(write_config(tmp_path))
    assert not report.failed
    assert "has the daemon run?" in one(report, "locks", Severity.WARN).message


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing file owners needs root")


@needs_root
async def test_file_owned_by_someone_else(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    await seed(config)
    db = tmp_path / "state" / "lockbridge.db"
    os.chown(db, 54321, 54321)
    finding = one(check(config), "state")
    assert "belongs to uid 54321" in finding.message and f"chown 0:0 {db}" in finding.fix


@pytest.fixture
def passable_dir() -> Iterator[Path]:
    """Like /var/lib or /etc: a directory anybody may pass through (pytest's tmp_path is not)."""
    path = Path(tempfile.mkdtemp(prefix="lockbridge-doctor-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path)


def hand_to_service_user(tmp_path: Path, uid: int = 54321) -> None:
    state = tmp_path / "state"
    for path in (state, *state.iterdir()):
        os.chown(path, uid, uid)


@needs_root
async def test_run_as_root_leaves_nothing_owned_by_root(passable_dir: Path) -> None:
    config = write_config(passable_dir)
    await seed(config, codes=[code("c1", slot=1, code="482915")])
    hand_to_service_user(passable_dir)
    report = check(config)
    # The key is read as root; the database as its owner; the config is world-readable here.
    assert not report.failed, doctor.render(report)
    assert os.geteuid() == 0
    state = passable_dir / "state"
    assert {p.stat().st_uid for p in (state, *state.iterdir())} == {54321}


@needs_root
@pytest.mark.usefixtures("tcpfake")
async def test_files_the_service_user_cannot_read(passable_dir: Path) -> None:
    secret = passable_dir / "broker.password"
    secret.write_text("hunter2\n")
    secret.chmod(0o640)  # root:root, as `cp -p` of root's copy leaves it
    drivers = SIM + ("  - kind: tcpfake\n    name: mqtt\n    broker: {host: 127.0.0.1, port: "
                     f"{closed_port()}, username: bridge, password_file: {secret}}}\n")
    config = write_config(passable_dir, drivers)
    config.chmod(0o640)
    await seed(config)
    hand_to_service_user(passable_dir)
    groups = os.getgroups()
    found_ = found(check(config), "access")
    assert [f.message for f in found_] == [
        f"the service user (uid 54321) cannot read {config}: Permission denied",
        f"the service user (uid 54321) cannot read {secret}: Permission denied",
    ]
    assert found_[0].fix.startswith(f"chown root:lockbridge {config} && chmod 0640 {config}")
    assert os.getgroups() == groups and os.geteuid() == 0 and os.getegid() == 0


# -- network peers -----------------------------------------------------------------------------


@pytest.fixture
def tcpfake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._KINDS, "tcpfake", "tests.fake_tcp_driver")


@contextlib.contextmanager
def listening(host: str) -> Iterator[int]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def closed_port() -> int:
    with listening("127.0.0.1") as port:
        return port


def broker(host: str, port: int, auth: bool = False) -> str:
    creds = ", username: bridge, password_file: /etc/lockbridge/broker.pw" if auth else ""
    return f"""\
  - kind: tcpfake
    name: mqtt
    broker: {{host: "{host}", port: {port}{creds}}}
"""


def peer_findings(config: Path) -> Report:
    report = check(config)
    report.findings = [f for f in report.findings if f.check in ("peers", "exposure")]
    return report


@pytest.mark.usefixtures("tcpfake")
def test_unreachable_peer(tmp_path: Path) -> None:
    port = closed_port()
    finding = one(peer_findings(write_config(tmp_path, broker("127.0.0.1", port))), "peers")
    assert f"mqtt.broker: cannot connect to 127.0.0.1:{port}" in finding.message
    assert "systemctl status" in finding.fix


@pytest.mark.usefixtures("tcpfake")
def test_loopback_only_peer_without_auth_is_fine(tmp_path: Path) -> None:
    with listening("127.0.0.1") as port:
        report = peer_findings(write_config(tmp_path, broker("127.0.0.1", port)))
    assert not report.failed, doctor.render(report)
    assert "answers" in one(report, "peers", Severity.OK).message


@pytest.mark.usefixtures("tcpfake")
def test_url_peer(tmp_path: Path) -> None:
    with listening("127.0.0.1") as port:
        drivers = f"  - {{kind: tcpfake, name: zwave, url: 'ws://localhost:{port}'}}\n"
        report = peer_findings(write_config(tmp_path, drivers))
    assert f"zwave: localhost:{port} answers" == one(report, "peers", Severity.OK).message


lan = doctor.primary_address()
needs_lan = pytest.mark.skipif(lan is None, reason="this machine has no non-loopback address")


@needs_lan
@pytest.mark.usefixtures("tcpfake")
def test_peer_on_all_interfaces_without_auth(tmp_path: Path) -> None:
    with listening("0.0.0.0") as port:
        report = peer_findings(write_config(tmp_path, broker("127.0.0.1", port)))
    finding = one(report, "exposure")
    assert f"port {port} also answers on {lan}, without authentication" in finding.message
    assert "listener 1883 127.0.0.1" in finding.fix and "password_file" in finding.fix


@needs_lan
@pytest.mark.usefixtures("tcpfake")
def test_peer_on_the_network_without_auth(tmp_path: Path) -> None:
    assert lan is not None
    with listening("0.0.0.0") as port:
        report = peer_findings(write_config(tmp_path, broker(lan, port)))
        with_auth = peer_findings(write_config(tmp_path, broker(lan, port, auth=True)))
    assert "reached over the network without authentication" in one(report, "exposure").message
    assert not with_auth.failed, doctor.render(with_auth)


# -- clock -------------------------------------------------------------------------------------


async def test_clock_before_the_release(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    await seed(config)
    finding = one(check(config, now=datetime(2024, 1, 1, tzinfo=UTC)), "clock")
    assert "2024-01-01" in finding.message and "timedatectl set-ntp true" in finding.fix


async def test_clock_behind_what_the_bridge_has_seen(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    later = START + timedelta(days=3)
    await seed(config, events=[Event("e1", EventType.DEVICE_CONNECTED, later, "dev-front")])
    finding = one(check(config), "clock")
    assert "before the latest event this bridge recorded (2026-03-04 12:00Z)" in finding.message


@pytest.mark.parametrize(("require", "ntp", "severity"), [
    (True, False, Severity.FAIL),
    (False, False, Severity.WARN),
    (True, None, Severity.WARN),
    (True, True, Severity.OK),
])
async def test_clock_not_synchronised(tmp_path: Path, require: bool, ntp: bool | None,
                                      severity: Severity) -> None:
    config = write_config(tmp_path, require_sync=require)
    await seed(config)
    [finding] = [f for f in check(config, ntp=ntp).findings if f.check == "clock"]
    assert finding.severity is severity


def test_adjtimex_answers_here() -> None:
    assert doctor.ntp_synchronized() in (True, False, None)


# -- locks, slots, backup pools, accounts ------------------------------------------------------


def issue(code_: str, message: str) -> Issue:
    return Issue(code_, message, START)


async def test_lock_offline(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    await seed(config, devices=[device(
        availability=Availability.OFFLINE,
        errors=(issue(DeviceErrorCode.DEVICE_OFFLINE, "Device is offline"),))])
    finding = one(check(config), "locks")
    assert finding.message == "Front door is offline since 2026-03-01 12:00Z"
    assert "batteries" in finding.fix


async def test_account_disconnected(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    await seed(config, devices=[device(availability=Availability.ACCOUNT_DISCONNECTED)])
    finding = one(check(config), "locks")
    assert "account_disconnected" in finding.message and "sign in again" in finding.fix


async def test_full_slots(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    waiting = code("c3", status="setting", errors=(
        issue(AccessCodeErrorCode.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE, "No space"),))
    await seed(config, devices=[device(slot_count=2)],
               codes=[code("c1", slot=1), code("c2", slot=2), waiting])
    finding = one(check(config), "slots")
    assert finding.message == "Front door has no free slot: 1 code(s) wait for one"
    assert "delete codes" in finding.fix


async def test_all_slots_taken_is_a_warning(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    await seed(config, devices=[device(slot_count=2)],
               codes=[code("c1", slot=1), code("c2", slot=2)])
    report = check(config)
    assert not report.failed
    assert "all 2 usable slots are taken" in one(report, "slots", Severity.WARN).message


async def test_empty_and_partial_backup_pools(tmp_path: Path) -> None:
    config = write_config(tmp_path, SIM + "      - {id: back, name: Back door}\n")
    empty = device(backup_pool_enabled=True, errors=(issue(
        DeviceErrorCode.EMPTY_BACKUP_ACCESS_CODE_POOL, "Backup access code pool is empty"),))
    partial_ = device("back", "Back door", backup_pool_enabled=True, warnings=(issue(
        DeviceWarningCode.PARTIAL_BACKUP_ACCESS_CODE_POOL, "Backup pool is partially filled"),))
    await seed(config, devices=[empty, partial_])
    report = check(config)
    assert one(report, "backups").message == "Front door: Backup access code pool is empty"
    warning = one(report, "backups", Severity.WARN)
    assert warning.message.startswith("Back door: Backup pool is partially filled")
    assert "refills" in warning.fix


async def test_account_that_shows_no_locks(tmp_path: Path) -> None:
    config = write_config(tmp_path, SIM + "  - {kind: simulator, name: rental-account}\n")
    await seed(config)
    finding = one(check(config), "account")
    assert finding.message.startswith("driver rental-account answers but shows no locks")
    assert "already connected elsewhere" in finding.message
    assert "disconnect the account from the other platform" in finding.fix


async def test_finds_what_the_engine_recorded(
        tmp_path: Path, harness_factory: Callable[..., object]) -> None:
    h = await harness_factory([SimLockSpec("front", "Front door")])  # type: ignore[misc]
    await h.driver.set_availability("front", Availability.OFFLINE)
    await h.settle()
    (tmp_path / "key").chmod(0o600)
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {tmp_path}\nstore: {{key_file: {tmp_path / 'key'}}}\n"
                      f"drivers:\n{SIM}")
    finding = one(check(config), "locks")
    assert finding.message.startswith("Front door is offline")

