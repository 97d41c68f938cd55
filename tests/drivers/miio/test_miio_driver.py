"""The miIO driver against a miIO UDP lock simulator (tests/fakes/miio_lock.py, built from
python-miio's protocol code and the published MiOT lock spec by someone who had not read the
driver), one loopback address per lock because python-miio always uses port 54321."""

from __future__ import annotations

import asyncio
import itertools
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
from tests.fakes.miio_lock import FakeMiioLock
from tests.harness import until
from tests.inprocess import RunningDaemon, running_daemon
from tests.loopback import LOOPBACK

TOKEN = "00112233445566778899aabbccddeeff"
_ADDRESSES = (f"{LOOPBACK}{n}" for n in itertools.count(20))

pytestmark = pytest.mark.slow


def _token_file(tmp_path: Path, token: str = TOKEN) -> Path:
    path = tmp_path / f"token-{token[:4]}"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def _driver(tmp_path: Path, address: str, token: str = TOKEN) -> MiioDriver:
    config = Config.model_validate({"kind": "miio", "name": "mi", "poll_interval_s": 60,
                                    "timeout_s": 1, "locks": [{
                                        "id": "front", "name": "Front door", "host": address,
                                        "token_file": str(_token_file(tmp_path, token)),
                                        "model": "loock.lock.v5"}]})
    return MiioDriver(config, SystemClock())


class TestMiio(DriverContract):
    @pytest.fixture
    async def subject(self, tmp_path: Path) -> AsyncIterator[ContractSubject]:
        address = next(_ADDRESSES)
        async with FakeMiioLock(address, TOKEN, "loock.lock.v5") as lock:
            driver = _driver(tmp_path, address)
            events: list[DriverEvent] = []

            async def sink(event: DriverEvent) -> None:
                events.append(event)

            async def silence() -> None:
                lock.online = False

            await driver.start(sink)
            try:
                # python-miio's handshake waits 5 s for a lock that does not answer.
                yield ContractSubject(driver, "front", lambda: {}, silence,
                                      answer_bound_s=15.0, events=events)
            finally:
                await driver.stop()


async def test_the_lock_is_watched_and_never_given_codes(tmp_path: Path) -> None:
    address = next(_ADDRESSES)
    events: list[DriverEvent] = []

    async def sink(event: DriverEvent) -> None:
        events.append(event)

    async with FakeMiioLock(address, TOKEN, "loock.lock.v5", locked=True) as lock:
        driver = _driver(tmp_path, address)
        await driver.start(sink)
        try:
            [info] = driver.devices()
            assert not info.capabilities.programs_codes
            assert driver.availability("front") is Availability.ONLINE
            with pytest.raises(CommandRejected) as refused:
                await driver.write_code("front", CodeWrite(slot=1, pin="1234", name="G"))
            assert refused.value.reason is RejectReason.UNSUPPORTED
            assert "Xiaomi" in str(refused.value)
            lock.unlock(method="fingerprint", user_id=3)
            assert await driver.probe("front")
            await until(lambda: any(e.kind is DriverEventKind.UNLOCKED for e in events),
                        what="the unlock seen by polling")
            unlocked = [e for e in events if e.kind is DriverEventKind.UNLOCKED]
            # How it was opened is sent only to Xiaomi's cloud: the method is unknown locally.
            assert [e.detail["method"] for e in unlocked] == ["unknown"]
            assert lock.sets_refused == 0  # nothing was ever written to the lock
        finally:
            await driver.stop()


async def test_an_unreachable_lock_and_a_wrong_token(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    address = next(_ADDRESSES)
    async with FakeMiioLock(address, TOKEN, "loock.lock.v5") as lock:
        driver = _driver(tmp_path, address, token="ffeeddccbbaa99887766554433221100")
        await driver.start(lambda event: asyncio.sleep(0))
        try:
            assert driver.availability("front") is Availability.OFFLINE
            assert any("check its token" in r.getMessage() for r in caplog.records)
            assert lock.bad_token_count > 0
        finally:
            await driver.stop()


CONFIG = """\
bridge: {{id: miio-test}}
state_dir: {state}
api: {{port: 0}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: miio
    name: mi
    poll_interval_s: 1
    timeout_s: 1
    locks:
      - {{id: front, name: Front door, host: "{address}", token_file: "{token}",
         model: loock.lock.v5}}
"""


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[RunningDaemon, FakeMiioLock]]:
    address = next(_ADDRESSES)
    config = tmp_path / "lockbridge.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state", address=address,
                                    token=_token_file(tmp_path)))
    async with FakeMiioLock(address, TOKEN, "loock.lock.v5", locked=True) as lock, \
            running_daemon(config) as running:
        yield running, lock


async def test_through_the_api_codes_are_refused_up_front_and_unlocks_are_events(
        daemon: tuple[RunningDaemon, FakeMiioLock]) -> None:
    running, lock = daemon
    post = running.post

    status, body = await post("/devices/list", {})
    [device] = body["devices"]
    assert device["can_program_online_access_codes"] is False
    assert device["capabilities_supported"] == ["lock"]
    # What the lock publishes of itself is in Seam's properties (the fake: 87 % by default).
    status, body = await post("/devices/get", {"device_id": device["device_id"]})
    assert_valid("/devices/get", "post", body)
    props = body["device"]["properties"]
    assert (props["locked"], props["door_open"], props["battery_level"]) == (True, False, 0.87)
    assert props["battery"] == {"level": 0.87, "status": "good"}
    status, body = await post("/access_codes/create", {"device_id": device["device_id"],
                                                       "name": "Guest", "code": "1234"})
    assert status == 400, body
    assert "Xiaomi" in body["error"]["message"] or "app or cloud" in body["error"]["message"]
    lock.unlock(method="nfc", user_id=2)

    async def unlocked() -> list[Any]:
        _, events = await post("/events/list", {"event_types": ["lock.unlocked"]})
        return list(events["events"])

    found: list[Any] = []
    for _ in range(200):  # bounded: the driver polls every second
        found = await unlocked()
        if found:
            break
        await asyncio.sleep(0.1)
    assert found and found[0]["method"] == "unknown"
    engine = running.bridge.engine
    await until(lambda: engine.devices[device["device_id"]].info.state
                == LockState(locked=False, door_open=False, battery_percent=87),
                timeout=30, what="the unlocked state kept")
    _, body = await post("/devices/get", {"device_id": device["device_id"]})
    assert body["device"]["properties"]["locked"] is False
