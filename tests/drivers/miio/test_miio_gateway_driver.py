"""The miIO driver's Aqara gateway locks against an Aqara gateway simulator
(tests/fakes/miio_gateway.py, built from python-miio's source and published dumps by someone who
had not read the driver), one loopback address per gateway because python-miio always uses
port 54321: at driver level, and one lock through the daemon's API."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import SystemClock
from bridge.driver import (
    Availability,
    CodeWrite,
    CommandRejected,
    DriverEvent,
    DriverEventKind,
    LockState,
    RejectReason,
)
from drivers.miio.config import Config
from drivers.miio.driver import MiioDriver
from tests.api_helpers import assert_valid
from tests.contract import ContractSubject, DriverContract
from tests.fakes.miio_gateway import GATEWAY_MGL03, GATEWAY_V3, FakeAqaraGateway
from tests.harness import until
from tests.inprocess import RunningDaemon, running_daemon
from tests.loopback import LOOPBACK

TOKEN = "00112233445566778899aabbccddeeff"
# Apart from the other miIO tests' addresses (127.0.0.2-9 and 20 on).
_ADDRESSES = (f"{LOOPBACK}{n}" for n in itertools.count(60))

pytestmark = pytest.mark.slow


def _token_file(tmp_path: Path, token: str = TOKEN) -> Path:
    path = tmp_path / f"token-{token[:4]}"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def _driver(tmp_path: Path, address: str, model: str = GATEWAY_V3, token: str = TOKEN,
            names: dict[str, str] | None = None) -> MiioDriver:
    config = Config.model_validate({"kind": "miio", "name": "mi", "poll_interval_s": 60,
                                    "timeout_s": 1, "gateways": [{
                                        "id": "hall", "host": address, "model": model,
                                        "token_file": str(_token_file(tmp_path, token)),
                                        "names": names or {}}]})
    return MiioDriver(config, SystemClock(), tmp_path / "miio-mi.json")


class _Events:
    """A driver's event sink that keeps what it was given."""

    def __init__(self) -> None:
        self.seen: list[DriverEvent] = []

    async def __call__(self, event: DriverEvent) -> None:
        self.seen.append(event)

    def of(self, kind: DriverEventKind, external_id: str | None = None) -> list[DriverEvent]:
        return [e for e in self.seen if e.kind is kind
                and (external_id is None or e.external_id == external_id)]


class TestAqaraGatewayLock(DriverContract):
    @pytest.fixture
    async def subject(self, tmp_path: Path) -> AsyncIterator[ContractSubject]:
        address = next(_ADDRESSES)
        async with FakeAqaraGateway(address, TOKEN, GATEWAY_V3) as gateway:
            lock = gateway.add_lock("lumi.lock.acn03")
            driver = _driver(tmp_path, address)
            events = _Events()

            async def silence() -> None:
                gateway.online = False

            await driver.start(events)
            try:
                # python-miio's handshake tries 4 times, 1 s each here, for a silent gateway.
                yield ContractSubject(driver, lock.sid, lambda: {}, silence,
                                      answer_bound_s=15.0, events=events.seen)
            finally:
                await driver.stop()


async def test_gateway_locks_are_watched_with_their_battery_and_door(tmp_path: Path) -> None:
    address = next(_ADDRESSES)
    events = _Events()
    async with FakeAqaraGateway(address, TOKEN, GATEWAY_V3) as gateway:
        pro = gateway.add_lock("lumi.lock.acn03", battery=64, door_open=False)
        s1 = gateway.add_lock("lumi.lock.aq1", battery=31, locked=False)
        driver = _driver(tmp_path, address, names={pro.sid: "Front door"})
        await driver.start(events)
        try:
            infos = {info.external_id: info for info in driver.devices()}
            assert set(infos) == {pro.sid, s1.sid}
            front = infos[pro.sid]
            assert front.display_name == "Front door" and front.device_type == "aqara_lock"
            assert front.model == "lumi.lock.acn03" and front.hub_id == "hall"
            assert not front.capabilities.programs_codes
            assert front.state == LockState(locked=True, door_open=False, battery_percent=64)
            # The S1 has no published bat_percent: the v3 gateway's get_battery tells it.
            assert infos[s1.sid].state == LockState(locked=False, battery_percent=31)
            assert all(driver.availability(sid) is Availability.ONLINE for sid in infos)
            with pytest.raises(CommandRejected) as refused:
                await driver.write_code(pro.sid, CodeWrite(slot=1, pin="1234", name="G"))
            assert refused.value.reason is RejectReason.UNSUPPORTED
            assert "app or cloud" in str(refused.value)

            pro.unlock("fingerprint", user_id=65536)
            pro.door_open = True
            assert await driver.probe(pro.sid)
            await until(lambda: events.of(DriverEventKind.UNLOCKED), what="the unlock")
            # Who opened it and how is not readable over miIO: reported without either.
            [unlocked] = events.of(DriverEventKind.UNLOCKED)
            assert (unlocked.external_id, unlocked.detail) == (pro.sid, {"method": "unknown"})
            assert unlocked.slot is None
            await until(lambda: events.of(DriverEventKind.DEVICES_CHANGED),
                        what="the new state reported")
            [front] = [i for i in driver.devices() if i.external_id == pro.sid]
            assert front.state == LockState(locked=False, door_open=True, battery_percent=64)
            methods = {r.get("method") for r in gateway.requests}
            assert not methods & {"set_device_prop", "set_device_prop_exp"}  # only read
        finally:
            await driver.stop()


async def test_an_mgl03_lists_its_locks_another_way_and_has_no_get_battery(
        tmp_path: Path) -> None:
    address = next(_ADDRESSES)
    async with FakeAqaraGateway(address, TOKEN, GATEWAY_MGL03) as gateway:
        s2 = gateway.add_lock("lumi.lock.acn02", battery=12)
        s1 = gateway.add_lock("lumi.lock.aq1", battery=50)
        driver = _driver(tmp_path, address, model=GATEWAY_MGL03)
        await driver.start(_Events())
        try:
            infos = {info.external_id: info for info in driver.devices()}
            assert infos[s2.sid].state == LockState(locked=True, battery_percent=12)
            # An S1 behind an mgl03: no published way to its battery, so none is shown.
            assert infos[s1.sid].state == LockState(locked=True)
            assert all(driver.availability(sid) is Availability.ONLINE for sid in infos)
            assert "get_device_list" in {r.get("method") for r in gateway.requests}
            assert "get_battery" not in {r.get("method") for r in gateway.requests}
        finally:
            await driver.stop()


async def test_a_lost_lock_is_offline_an_unpaired_one_removed_a_new_one_found(
        tmp_path: Path) -> None:
    address = next(_ADDRESSES)
    events = _Events()
    async with FakeAqaraGateway(address, TOKEN, GATEWAY_V3) as gateway:
        kept = gateway.add_lock("lumi.lock.acn02")
        gone = gateway.add_lock("lumi.lock.acn03")
        driver = _driver(tmp_path, address)
        await driver.start(events)
        try:
            kept.online = False  # out of the gateway's reach: it reads alive 0
            gateway.remove_lock(gone.sid)
            assert not await driver.probe(kept.sid)
            assert driver.availability(kept.sid) is Availability.OFFLINE
            assert driver.availability(gone.sid) is Availability.REMOVED
            assert [i.external_id for i in driver.devices()] == [kept.sid]
            await until(lambda: any(e.availability is Availability.REMOVED for e in
                                    events.of(DriverEventKind.AVAILABILITY, gone.sid)),
                        what="the unpaired lock's removal reported")

            kept.online = True
            new = gateway.add_lock("lumi.lock.v1")
            before = len(events.of(DriverEventKind.DEVICES_CHANGED))
            assert await driver.probe(kept.sid)
            assert driver.availability(kept.sid) is Availability.ONLINE
            assert new.sid in {i.external_id for i in driver.devices()}
            await until(lambda: len(events.of(DriverEventKind.DEVICES_CHANGED)) > before,
                        what="the newly paired lock reported")
        finally:
            await driver.stop()


async def test_a_silent_gateway_and_a_wrong_token(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    address = next(_ADDRESSES)
    async with FakeAqaraGateway(address, TOKEN, GATEWAY_V3) as gateway:
        lock = gateway.add_lock("lumi.lock.acn02")
        driver = _driver(tmp_path, address)
        await driver.start(_Events())
        try:
            gateway.online = False
            assert not await asyncio.wait_for(driver.probe(lock.sid), 15)
            # The gateway is the hub between lockbridge and its locks.
            assert driver.availability(lock.sid) is Availability.HUB_DISCONNECTED
        finally:
            await driver.stop()
        # Restarted with another token: the locks it remembers are served, and the log says
        # to check the token.
        other = _driver(tmp_path, address, token="ffeeddccbbaa99887766554433221100")
        gateway.online = True
        with caplog.at_level(logging.WARNING):
            await other.start(_Events())
        try:
            assert [i.external_id for i in other.devices()] == [lock.sid]
            assert other.availability(lock.sid) is Availability.HUB_DISCONNECTED
            assert any("check its token" in r.getMessage() for r in caplog.records)
            assert gateway.bad_token_count > 0
        finally:
            await other.stop()


async def test_one_exchange_at_a_time_per_gateway(tmp_path: Path) -> None:
    address = next(_ADDRESSES)
    async with FakeAqaraGateway(address, TOKEN, GATEWAY_V3) as gateway:
        first = gateway.add_lock("lumi.lock.acn02")
        second = gateway.add_lock("lumi.lock.acn03")
        driver = _driver(tmp_path, address)
        await driver.start(_Events())
        try:
            gateway.latency = 0.1
            gateway.requests.clear()
            assert all(await asyncio.gather(driver.probe(first.sid), driver.probe(second.sid)))
            # Two polls asked at once ran one after the other: list, read, read; list, ...
            methods = [r["method"] for r in gateway.requests if r["method"] != "miIO.info"]
            listing = ["get_device_prop", "get_device_prop_exp", "get_device_prop_exp"]
            assert methods == listing * 2
        finally:
            await driver.stop()


CONFIG = """\
bridge: {{id: miio-gateway-test}}
state_dir: {state}
api: {{port: 0}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: miio
    name: mi
    poll_interval_s: 1
    timeout_s: 1
    gateways:
      - {{id: hall, host: "{address}", token_file: "{token}", model: lumi.gateway.v3,
         names: {{"{sid}": Front door}}}}
"""


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[RunningDaemon, Any]]:
    address = next(_ADDRESSES)
    async with FakeAqaraGateway(address, TOKEN, GATEWAY_V3) as gateway:
        lock = gateway.add_lock("lumi.lock.acn03", battery=18, door_open=True, locked=True)
        config = tmp_path / "lockbridge.yaml"
        config.write_text(CONFIG.format(state=tmp_path / "state", address=address,
                                        token=_token_file(tmp_path), sid=lock.sid))
        async with running_daemon(config) as running:
            yield running, lock


async def test_through_the_api_a_gateway_lock_shows_its_battery_and_door(
        daemon: tuple[RunningDaemon, Any]) -> None:
    running, lock = daemon
    post = running.post
    status, body = await post("/devices/list", {})
    [listed] = body["devices"]
    assert listed["display_name"] == "Front door"
    assert listed["can_program_online_access_codes"] is False
    status, body = await post("/devices/get", {"device_id": listed["device_id"]})
    assert status == 200, body
    assert_valid("/devices/get", "post", body)
    props = body["device"]["properties"]
    assert props["online"] is True and props["locked"] is True and props["door_open"] is True
    assert props["battery_level"] == 0.18
    assert props["battery"] == {"level": 0.18, "status": "low"}
    assert body["device"]["device_type"] == "aqara_lock"

    status, refused = await post("/access_codes/create", {"device_id": listed["device_id"],
                                                          "name": "Guest", "code": "1234"})
    assert status == 400 and "app or cloud" in refused["error"]["message"], refused

    lock.unlock("password", user_id=65537)
    lock.door_open = False

    engine = running.bridge.engine
    await until(lambda: engine.devices[listed["device_id"]].info.state
                == LockState(locked=False, door_open=False, battery_percent=18),
                timeout=30, what="the unlock and the closed door polled")
    _, body = await post("/devices/get", {"device_id": listed["device_id"]})
    assert_valid("/devices/get", "post", body)
    props = body["device"]["properties"]
    assert props["locked"] is False and props["door_open"] is False
    _, events = await post("/events/list", {"event_types": ["lock.unlocked"]})
    [unlocked] = events["events"]
    assert unlocked["device_id"] == listed["device_id"] and unlocked["method"] == "unknown"
    assert "access_code_id" not in unlocked


def test_python_miios_warnings_about_unknown_sub_devices_are_said_once(
        caplog: pytest.LogCaptureFixture) -> None:
    # python-miio warns at every discover_devices (every poll) about a sub-device it cannot
    # name; the driver (imported above) lets each such warning through once.
    library = logging.getLogger("miio.gateway.gateway")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            library.warning("Unknown subdevice discovered, could not match type_id '%i'", 999)
    assert len([r for r in caplog.records if "999" in r.getMessage()]) == 1


@pytest.mark.parametrize(("gateway", "why"), [
    ({"model": "lumi.gateway.mieu01"}, "lumi.gateway.v3"),  # python-miio cannot list its locks
    ({"host": "192.168.1.60:54321"}, "without a port"),
    ({"names": {"front": "Front door"}}, "names"),  # not a sub-device id
])
def test_a_gateway_python_miio_cannot_list_or_a_bad_entry_is_refused(
        tmp_path: Path, gateway: dict[str, Any], why: str) -> None:
    entry = {"id": "hall", "host": "192.168.1.60", "model": "lumi.gateway.v3",
             "token_file": str(tmp_path / "token"), **gateway}
    with pytest.raises(ValueError, match=why):
        Config.model_validate({"kind": "miio", "gateways": [entry]})


def test_a_miio_driver_with_nothing_to_watch_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one lock or one gateway"):
        Config.model_validate({"kind": "miio"})
