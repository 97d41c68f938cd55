"""The SmartThings driver against the independent fake of SmartThings' cloud on loopback: the
driver contract, codes confirmed by the lock's codeChanged and lockCodes, SmartThings' three
error codes of Seam's list at their causes, OAuth refresh-token rotation kept across restarts,
a refused grant, a lock no longer listed (connected elsewhere), an offline lock, rate limits and
timeouts, and a lock moved to lockUsers/lockCredentials."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import SystemClock
from bridge.driver import (
    Availability,
    CodeWrite,
    CommandRejected,
    DriverEvent,
    Reauthenticate,
    RejectReason,
    RetryLater,
    SlotState,
)
from drivers.smartthings.config import Config
from drivers.smartthings.driver import SmartThingsDriver
from tests.contract import ContractSubject, DriverContract
from tests.fakes.smartthings import CAPABILITIES, FakeLock, FakeSmartThings

CLIENT_ID, SECRET = "lb-smartthings", "client-secret-in-a-file"


class Rig:
    """A fake cloud with one lock, and a started driver."""

    def __init__(self, cloud: FakeSmartThings, tmp: Path, lock: FakeLock) -> None:
        self.cloud, self.tmp, self.lock = cloud, tmp, lock
        self.events: list[DriverEvent] = []
        self.drivers: list[SmartThingsDriver] = []

    @property
    def memory(self) -> Path:
        return self.tmp / "state" / "smartthings.json"

    async def driver(self, **settings: Any) -> SmartThingsDriver:
        config = Config.model_validate({
            "kind": "smartthings", "url": self.cloud.base_url, "client_id": CLIENT_ID,
            "client_secret_file": str(self.tmp / "client.secret"),
            "refresh_token_file": str(self.tmp / "refresh.token"),
            "poll_interval_s": 0.2, "request_timeout_s": 1.0, "confirm_wait_s": 0.6,
            "confirm_poll_s": 0.05, "set_retries": 1, "max_calls_per_s": 200,
            "rate_limit_backoff_s": 0.2, **settings})

        async def sink(event: DriverEvent) -> None:
            self.events.append(event)

        driver = SmartThingsDriver(config, SystemClock(), self.memory)
        self.drivers.append(driver)
        await driver.start(sink)
        return driver

    def truth(self, lock: FakeLock | None = None) -> dict[int, str]:
        return {slot: code.pin for slot, code in (lock or self.lock).slots.items()}

    def authorize(self) -> str:
        """A new authorization: its refresh token in the file the driver reads."""
        _, refresh = self.cloud.issue_token()
        (self.tmp / "refresh.token").write_text(refresh + "\n")
        return refresh

    async def close(self) -> None:
        for driver in self.drivers:
            await driver.stop()
        await self.cloud.stop()


async def make_rig(tmp_path: Path, cloud: FakeSmartThings | None = None,
                   **lock: Any) -> Rig:
    cloud = cloud or FakeSmartThings(CLIENT_ID, SECRET, command_delay_s=0.02)
    cloud.add_location("home")
    fake_lock = cloud.add_lock("Front door", location_id="home", device_id="front", **lock)
    await cloud.start()
    (tmp_path / "client.secret").write_text(SECRET + "\n")
    rig = Rig(cloud, tmp_path, fake_lock)
    rig.authorize()
    return rig


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    made = await make_rig(tmp_path)
    try:
        yield made
    finally:
        await made.close()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


class TestSmartThings(DriverContract):
    @pytest.fixture
    async def subject(self, tmp_path: Path) -> AsyncIterator[ContractSubject]:
        made = await make_rig(tmp_path)
        driver = await made.driver()

        async def silence() -> None:
            made.lock.online = False

        try:
            yield ContractSubject(driver, "front", made.truth, silence, answer_bound_s=3.0,
                                  events=made.events)
        finally:
            await made.close()


async def test_a_code_is_confirmed_by_the_lock_and_read_back_by_slot_and_name(
        rig: Rig) -> None:
    driver = await rig.driver()
    (info,) = driver.devices()
    assert (info.display_name, info.device_type, info.hub_id) == \
        ("Front door", "smartthings_lock", "smartthings:hub-1")
    caps = info.capabilities
    assert (caps.slot_count, caps.masks_pins_on_read, caps.native_schedules) == (30, True, False)
    result = await driver.write_code("front", CodeWrite(slot=3, pin="4711", name="Guest"))
    assert (result.slot, result.pin, result.confirmed) == (3, "4711", True)
    assert rig.truth() == {3: "4711"} and rig.lock.lock_codes_attribute() == {"3": "Guest"}
    assert rig.lock.codes_changed() == ["3 set"]
    [read, empty] = await driver.read_slots("front", [3, 4])
    assert (read.state, read.pin, read.name) == (SlotState.UNREADABLE, None, "Guest")
    assert empty.state is SlotState.EMPTY
    # A new PIN in the same slot: "3 changed".
    await driver.write_code("front", CodeWrite(slot=3, pin="4712", name="Guest"))
    assert rig.truth() == {3: "4712"} and rig.lock.codes_changed()[-1] == "3 changed"
    await driver.clear_code("front", 3)
    assert rig.truth() == {} and rig.lock.codes_changed()[-1] == "3 deleted"


async def test_a_code_the_lock_refuses_is_smartthings_failed_to_set_access_code(
        rig: Rig) -> None:
    driver = await rig.driver()
    rig.lock.fail_next_sets = 1
    with pytest.raises(CommandRejected) as raised:
        await driver.write_code("front", CodeWrite(slot=1, pin="2580", name="Guest"))
    assert raised.value.error_code == "smartthings_failed_to_set_access_code"
    # The same PIN typed in at the keypad: the lock refuses it as a duplicate ("N failed").
    rig.lock.keypad_set(7, "1593")
    with pytest.raises(CommandRejected) as raised:
        await driver.write_code("front", CodeWrite(slot=2, pin="1593", name="Guest"))
    assert raised.value.error_code == "smartthings_failed_to_set_access_code"
    assert rig.truth() == {7: "1593"}
    assert rig.lock.codes_changed()[-1] == "2 failed"
    # Refused once, not sent again: retrying cannot help while the duplicate is there.
    assert [c["command"] for _, c in rig.cloud.commands].count("setCode") == 2


async def test_a_write_that_never_confirms_is_failed_after_multiple_retries(rig: Rig) -> None:
    driver = await rig.driver()
    rig.lock.hub_busy = True  # accepted, never run
    with pytest.raises(CommandRejected) as raised:
        await driver.write_code("front", CodeWrite(slot=1, pin="2580", name="Guest"))
    assert raised.value.error_code == "smartthings_failed_to_set_after_multiple_retries"
    sent = [(c["command"], c["arguments"]) for _, c in rig.cloud.commands]
    assert sent == [("setCode", [1, "2580", "Guest"])] * 2 + [("deleteCode", [1])]
    # The hub runs them late: the code it gave up on is withdrawn too.
    rig.lock.hub_busy = False
    await rig.cloud.run_pending()
    assert rig.truth() == {}


async def test_a_full_lock_is_smartthings_no_free_slots_available(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path, max_codes=3)
    try:
        driver = await rig.driver()
        for slot in (1, 2, 3):
            rig.lock.keypad_set(slot, f"{slot}{slot}{slot}{slot}")
        with pytest.raises(CommandRejected) as raised:
            await driver.write_code("front", CodeWrite(slot=1, pin="9753", name="Guest"))
        assert raised.value.reason is RejectReason.NO_SPACE
        assert raised.value.error_code == "smartthings_no_free_slots_available"
        assert "3 of them" in str(raised.value)
        assert rig.cloud.commands == []
    finally:
        await rig.close()


async def test_a_pin_another_slot_holds_is_refused_before_sending(rig: Rig) -> None:
    driver = await rig.driver()
    await driver.write_code("front", CodeWrite(slot=1, pin="2468", name="One"))
    with pytest.raises(CommandRejected) as raised:
        await driver.write_code("front", CodeWrite(slot=2, pin="2468", name="Two"))
    assert raised.value.reason is RejectReason.DUPLICATE_PIN
    assert len(rig.cloud.commands) == 1


async def test_rotated_refresh_tokens_are_kept_across_restarts(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    first = (rig.tmp / "refresh.token").read_text().strip()
    driver = await rig.driver()
    kept = json.loads(rig.memory.read_text())["refresh_token"]
    assert kept != first and kept in rig.cloud.refresh_tokens
    assert rig.memory.stat().st_mode & 0o777 == 0o600
    assert first not in rig.cloud.refresh_tokens  # used: SmartThings no longer takes it
    # The access token expires: the next call refreshes, and the new pair is kept.
    rig.cloud.expire_tokens()
    assert await driver.probe("front")
    again = json.loads(rig.memory.read_text())["refresh_token"]
    assert again != kept and again in rig.cloud.refresh_tokens
    await driver.stop()
    # A restart goes on from the kept token, not from the file's spent one.
    restarted = await rig.driver()
    assert restarted.availability("front") is Availability.ONLINE
    assert await restarted.probe("front")
    secrets = [SECRET, first, kept, again, *rig.cloud.access_tokens]
    assert not [s for s in secrets if s in caplog.text]


async def test_a_refused_grant_disconnects_every_lock_until_a_new_token_is_given(
        rig: Rig) -> None:
    rig.cloud.add_lock("Back door", location_id="home", device_id="back")
    driver = await rig.driver()
    assert {d.external_id for d in driver.devices()} == {"back", "front"}
    rig.cloud.revoke_refresh_tokens()
    with pytest.raises(Reauthenticate):
        await driver.read_slots("front", [1])
    for lock in ("front", "back"):
        assert driver.availability(lock) is Availability.ACCOUNT_DISCONNECTED
    # Nothing more is sent with the refused grant.
    asked = rig.cloud.requests.count("POST /oauth/token") + \
        rig.cloud.requests.count("POST /v1/oauth/token")
    await asyncio.sleep(0.5)
    assert rig.cloud.requests.count("POST /v1/oauth/token") + \
        rig.cloud.requests.count("POST /oauth/token") == asked
    # The user authorizes again: the new refresh token in the file reconnects the account.
    rig.authorize()
    await until(lambda: driver.availability("front") is Availability.ONLINE
                and driver.availability("back") is Availability.ONLINE)


async def test_locks_no_longer_listed_are_removed_not_offline(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.cloud.add_location("cabin")
    rig.cloud.add_lock("Cabin", location_id="cabin", device_id="cabin")
    driver = await rig.driver()
    rig.cloud.connect_elsewhere("home")
    await until(lambda: driver.availability("front") is Availability.REMOVED)
    assert driver.availability("cabin") is Availability.ONLINE
    assert [d.external_id for d in driver.devices()] == ["cabin"]
    with pytest.raises(RetryLater):
        await driver.write_code("front", CodeWrite(slot=1, pin="2468", name="x"))
    assert "no longer lists lock front" in caplog.text
    # Nothing listed at all while the token works: said in the log, not silent.
    rig.cloud.connect_elsewhere("cabin")
    await until(lambda: driver.availability("cabin") is Availability.REMOVED)
    await until(lambda: "lists no lock" in caplog.text)


async def test_an_offline_lock_is_offline_and_takes_no_command(rig: Rig) -> None:
    driver = await rig.driver()
    rig.lock.online = False
    await until(lambda: driver.availability("front") is Availability.OFFLINE)
    with pytest.raises(RetryLater):
        await driver.write_code("front", CodeWrite(slot=1, pin="2468", name="x"))
    assert rig.cloud.commands == []
    rig.lock.online = True
    await until(lambda: driver.availability("front") is Availability.ONLINE)


async def test_the_wait_smartthings_states_in_a_429_is_kept(rig: Rig) -> None:
    driver = await rig.driver(poll_interval_s=60, max_calls_per_s=40, rate_limit_backoff_s=0.5)
    rig.cloud.rate_limit, rig.cloud.rate_limit_window_s = 4, 0.5
    before = len(rig.cloud.requests)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(6):
        assert [r.state for r in await driver.read_slots("front", [1])] == [SlotState.EMPTY]
    # 12 calls answered at 4 per half second, with few refusals: after each 429 the driver
    # waited as told instead of asking again at once.
    assert loop.time() - started >= 1.0
    assert len(rig.cloud.requests) - before <= 12 + 4


async def test_the_account_budget_paces_calls(rig: Rig) -> None:
    driver = await rig.driver(poll_interval_s=60, max_calls_per_s=20)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(30):
        await driver.probe("front")
    # 20 a second with a second's worth at once: the last 10 of 30 calls wait their turn.
    assert loop.time() - started >= 0.4


async def test_a_cloud_that_does_not_answer_in_time_disconnects(rig: Rig) -> None:
    driver = await rig.driver(request_timeout_s=0.3)
    rig.cloud.latency_s = 1.0
    with pytest.raises(RetryLater):
        await asyncio.wait_for(driver.read_slots("front", [1]), 3.0)
    assert driver.availability("front") is Availability.DISCONNECTED
    rig.cloud.latency_s = 0.0
    await until(lambda: driver.availability("front") is Availability.ONLINE)


class _MigratedCloud(FakeSmartThings):
    """The cloud of an account whose lock's driver moved it to lockUsers/lockCredentials
    (the fake models lockCodes only: the listing is changed, as SmartThings would show it)."""

    def _device_item(self, lock: FakeLock) -> dict[str, Any]:
        item = super()._device_item(lock)
        if lock.device_id == "front":
            caps = [{"id": cap, "version": 1} for cap in CAPABILITIES if cap != "lockCodes"]
            item["components"][0]["capabilities"] = [
                *caps, {"id": "lockUsers", "version": 1}, {"id": "lockCredentials", "version": 1}]
        return item


async def test_a_lock_without_lock_codes_is_refused_clearly(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path, _MigratedCloud(CLIENT_ID, SECRET, command_delay_s=0.02))
    try:
        driver = await rig.driver()
        (info,) = driver.devices()
        assert not info.capabilities.programs_codes
        with pytest.raises(CommandRejected) as raised:
            await driver.write_code("front", CodeWrite(slot=1, pin="2468", name="x"))
        assert raised.value.reason is RejectReason.UNSUPPORTED
        assert "lockCredentials" in str(raised.value)
        assert await driver.list_codes("front") == []
        assert rig.cloud.commands == []
    finally:
        await rig.close()


async def test_a_long_stated_wait_stops_every_call_of_the_account(rig: Rig) -> None:
    driver = await rig.driver(poll_interval_s=60)
    rig.cloud.rate_limited, rig.cloud.rate_limit_window_s = True, 30.0
    with pytest.raises(RetryLater):
        await driver.read_slots("front", [1])
    asked = len(rig.cloud.requests)
    rig.cloud.rate_limited = False
    # "retry in ~30000 millis": nothing is sent before then, by any call of the account.
    with pytest.raises(RetryLater, match="calls resume in"):
        await driver.write_code("front", CodeWrite(slot=1, pin="2468", name="x"))
    assert not await driver.probe("front")
    assert len(rig.cloud.requests) == asked


async def test_a_code_changed_at_the_keypad_is_reported_by_slot(rig: Rig) -> None:
    driver = await rig.driver()
    await driver.write_code("front", CodeWrite(slot=2, pin="2468", name="Guest"))
    rig.events.clear()
    # Between two polls: a new PIN in our slot (only "2 changed" says so), then a new code.
    rig.lock.keypad_set(2, "1111")
    rig.lock.keypad_set(5, "9999")
    await until(lambda: {e.slot for e in rig.events if e.kind.value == "slot_changed"}
                >= {2, 5})
    reads = {r.slot: r for r in await driver.read_slots("front", [2, 5])}
    assert (reads[5].state, reads[5].name) == (SlotState.UNREADABLE, "Code 5")
    # The PIN the driver knew for slot 2 is forgotten: the same code is sent again.
    await driver.write_code("front", CodeWrite(slot=2, pin="2468", name="Guest"))
    assert rig.truth() == {2: "2468", 5: "9999"}


def test_tokens_only_cross_the_network_encrypted(tmp_path: Path) -> None:
    base = {"kind": "smartthings", "client_id": "c", "client_secret": "x",
            "refresh_token_file": str(tmp_path / "t")}
    Config.model_validate({**base, "url": "http://127.0.0.1:8080"})
    with pytest.raises(ValueError, match="https"):
        Config.model_validate({**base, "url": "http://api.smartthings.com"})
    with pytest.raises(ValueError, match="exactly one"):
        Config.model_validate({**base, "client_secret_file": str(tmp_path / "s")})


async def test_calls_that_find_the_token_expired_refresh_it_once(rig: Rig) -> None:
    driver = await rig.driver(poll_interval_s=60)
    rig.cloud.expire_tokens()
    refreshes = rig.cloud.requests.count("POST /v1/oauth/token")
    # Two refreshes of one refresh token would break the grant: one refresher per account.
    assert all(await asyncio.gather(*(driver.probe("front") for _ in range(5))))
    assert rig.cloud.requests.count("POST /v1/oauth/token") == refreshes + 1
    assert driver.availability("front") is Availability.ONLINE
