"""The Igloohome driver against the independent fake of the iglooaccess API
(tests/fakes/igloohome.py), each condition at the place it happens (the driver contract runs in
tests/drivers/igloohome/test_igloohome_contract.py): algoPINs per window with the lock's own
PIN, the 24-hour activation warning, no early delete, custom PINs through a bridge job queue, a
bridge offline or with too many pending jobs, a refused client, an account connected elsewhere,
token renewal, rate limits, timeouts, and no secret in the logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bridge.clock import SystemClock
from bridge.driver import (
    Availability,
    CodeWrite,
    CommandRejected,
    DriverEvent,
    LocalWindow,
    Reauthenticate,
    RejectReason,
    RetryLater,
)
from drivers.igloohome.config import Config
from drivers.igloohome.driver import IgloohomeDriver
from tests.fakes.igloohome import FakeIgloohome

CLIENT_ID = "iglooaccess-client"
SECRET = "igloo-secret-for-tests"
PADLOCK, DOOR, BRIDGE = "IGP1-padlock-01", "IGK2-door-02", "IGB1-bridge-9"
T = TypeVar("T")


@dataclass
class Rig:
    fake: FakeIgloohome
    driver: IgloohomeDriver
    tmp: Path
    events: list[DriverEvent] = field(default_factory=list)

    def requests(self, part: str) -> int:
        return sum(1 for r in self.fake.requests if part in r)


def settings(url: str, tmp: Path, **extra: Any) -> Config:
    (tmp / "igloo.secret").write_text(SECRET + "\n")
    return Config.model_validate({
        "kind": "igloohome", "name": "igloo", "auth_url": url, "url": url,
        "client_id": CLIENT_ID, "client_secret_file": str(tmp / "igloo.secret"),
        "time_zone": "Europe/Berlin", "poll_interval_s": 0.1, "request_timeout_s": 2,
        "job_poll_s": 0.02, "job_timeout_s": 3, "busy_retry_s": 0.05, "busy_retries": 2,
        "max_calls_per_s": 1000, "bridge_offline_hold_s": 0.3, **extra})


@pytest.fixture
async def rigs(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    made: list[Rig] = []

    async def make(*, settings_extra: dict[str, Any] | None = None, **switches: Any) -> Rig:
        fake = FakeIgloohome(CLIENT_ID, SECRET, **{"job_delay_s": 0.05, **switches})
        fake.add_bridge(BRIDGE)
        fake.add_lock(PADLOCK, "Padlock", battery=77)
        fake.add_lock(DOOR, "Front door", bridge=BRIDGE)
        url = await fake.start()
        driver = IgloohomeDriver(settings(url, tmp_path, **(settings_extra or {})),
                                 SystemClock(), tmp_path / "igloohome-igloo.json")
        rig = Rig(fake, driver, tmp_path)

        async def sink(event: DriverEvent) -> None:
            rig.events.append(event)

        await driver.start(sink)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        await rig.driver.stop()
        await rig.fake.stop()


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"{what} not reached"
        await asyncio.sleep(0.01)


def berlin(*args: int) -> LocalWindow:
    """A window from two tuples of wall-clock fields in Europe/Berlin."""
    return LocalWindow(datetime(*args[:5]), datetime(*args[5:]), zone="Europe/Berlin")


async def test_describes_algopin_and_bridge_locks(rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    devices = {d.external_id: d for d in rig.driver.devices()}
    assert set(devices) == {PADLOCK, DOOR}  # the bridge is no lock
    padlock, door = devices[PADLOCK], devices[DOOR]
    assert padlock.capabilities.algorithmic_pins and not padlock.capabilities.can_read
    assert padlock.capabilities.native_schedules and padlock.state is not None
    assert padlock.state.battery_percent == 77
    assert not door.capabilities.algorithmic_pins
    assert door.constraints.allowed_lengths() == range(4, 7)
    assert door.time_zone == "Europe/Berlin"
    assert rig.driver.availability(PADLOCK) is Availability.ONLINE


async def test_an_algopin_is_the_locks_own_pin_for_the_window(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    # A stay of three days from 15:30 to 11:00: widened to the hour, an hourly PIN.
    window = berlin(2026, 7, 1, 15, 30, 2026, 7, 4, 11, 0)
    result = await rig.driver.write_code(PADLOCK, CodeWrite(slot=None, pin=None, name="Guest",
                                                            window=window, key="ac_1"))
    lock = rig.fake.locks[PADLOCK]
    start = datetime(2026, 7, 1, 13, 0, tzinfo=UTC)  # 15:00 in Berlin (CEST)
    end = datetime(2026, 7, 4, 9, 0, tzinfo=UTC)
    assert result.pin == rig.fake.expected_algopin(PADLOCK, "hourly", start, end, 1)
    assert rig.fake.bodies[-1][1]["startDate"] == "2026-07-01T15:00:00+02:00"
    # The keypad opens for it in the window, not before or after.
    assert lock.opens(result.pin, start + timedelta(hours=2))
    assert not lock.opens(result.pin, start - timedelta(minutes=1))
    assert not lock.opens(result.pin, end)
    # It lasts more than a day: Seam's warning says it must be used within 24 hours.
    assert [w.code for w in result.warnings] == ["igloo_algopin_must_be_used_within_24_hours"]
    assert not lock.opens(result.pin, start + timedelta(hours=30))  # never used: dead
    # The same code again (its answer lost) is the same PIN under the same id, no new request.
    before = rig.requests("/algopin/")
    again = await rig.driver.write_code(PADLOCK, CodeWrite(
        slot=None, pin=None, name="Guest", window=window, key="ac_1",
        first_sent_at=datetime.now(UTC)))
    assert (again.slot, again.pin) == (result.slot, result.pin)
    assert rig.requests("/algopin/") == before


async def test_algopin_kinds_and_limits(rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    short = await rig.driver.write_code(PADLOCK, CodeWrite(
        None, None, "Cleaner", berlin(2026, 7, 1, 10, 0, 2026, 7, 1, 14, 0), key="a"))
    assert short.warnings == ()  # four hours: no activation rule
    # Two months: a daily PIN ending at the start's hour.
    daily = await rig.driver.write_code(PADLOCK, CodeWrite(
        None, None, "Tenant", berlin(2026, 7, 1, 14, 0, 2026, 9, 1, 10, 0), key="b"))
    path, body = rig.fake.bodies[-1]
    assert path.endswith("/algopin/daily")
    assert (body["startDate"], body["endDate"]) == ("2026-07-01T14:00:00+02:00",
                                                    "2026-09-01T14:00:00+02:00")
    assert daily.warnings
    # No window: a permanent PIN, with the activation warning.
    forever = await rig.driver.write_code(PADLOCK, CodeWrite(None, None, "Owner", key="c"))
    assert rig.fake.bodies[-1][0].endswith("/algopin/permanent") and forever.warnings
    # More than a year: no algoPIN lasts that long.
    with pytest.raises(CommandRejected) as raised:
        await rig.driver.write_code(PADLOCK, CodeWrite(
            None, None, "Too long", berlin(2026, 7, 1, 14, 0, 2027, 8, 1, 14, 0), key="d"))
    assert "367 days" in str(raised.value)
    # Two codes for the same window get different PINs (the variance).
    twin = await rig.driver.write_code(PADLOCK, CodeWrite(
        None, None, "Cleaner 2", berlin(2026, 7, 1, 10, 0, 2026, 7, 1, 14, 0), key="e"))
    assert twin.pin != short.pin and rig.fake.bodies[-1][1]["variance"] == 2


async def test_an_algopin_is_not_deleted_before_its_end(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    now = datetime.now(UTC).astimezone(UTC).replace(tzinfo=None)
    live = LocalWindow(now - timedelta(hours=1), now + timedelta(hours=3), zone="UTC")
    done = LocalWindow(now - timedelta(hours=5), now - timedelta(hours=2), zone="UTC")
    kept = await rig.driver.write_code(PADLOCK, CodeWrite(None, None, "Now", live, key="a"))
    over = await rig.driver.write_code(PADLOCK, CodeWrite(None, None, "Past", done, key="b"))
    with pytest.raises(CommandRejected) as raised:
        await rig.driver.clear_code(PADLOCK, kept.slot)
    assert raised.value.reason is RejectReason.UNSUPPORTED
    assert "cannot be deleted before its end" in str(raised.value)
    assert rig.fake.locks[PADLOCK].opens(kept.pin, datetime.now(UTC))  # still works
    # One whose end has passed is gone already: its delete succeeds.
    await rig.driver.clear_code(PADLOCK, over.slot)
    assert over.slot not in {r.slot for r in await rig.driver.list_codes(PADLOCK)}


async def test_custom_pins_go_through_the_bridge_one_job_at_a_time(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    window = berlin(2026, 7, 1, 15, 30, 2026, 7, 4, 11, 0)
    results = await asyncio.gather(*(rig.driver.write_code(DOOR, CodeWrite(
        None, pin, f"Guest {pin}", window, key=pin)) for pin in ("2468", "13579", "864200")))
    lock = rig.fake.locks[DOOR]
    assert set(lock.custom) == {"2468", "13579", "864200"}
    assert lock.custom["2468"].start == datetime(2026, 7, 1, 13, 30, tzinfo=UTC)
    assert lock.opens("2468", datetime(2026, 7, 2, tzinfo=UTC))
    # Never two jobs pending at once from the driver: the bridge's queue held at most one.
    assert rig.fake.bridges[BRIDGE].jobs_run == 3
    await rig.driver.clear_code(DOOR, results[0].slot)
    assert "2468" not in lock.custom and "13579" in lock.custom


async def test_bridge_offline_is_reported_on_the_code_and_the_lock(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    rig.fake.set_bridge_online(BRIDGE, False)
    with pytest.raises(CommandRejected) as raised:
        await rig.driver.write_code(DOOR, CodeWrite(None, "2468", "Guest", key="a"))
    assert raised.value.error_code == "igloohome_bridge_offline"
    assert rig.driver.availability(DOOR) is Availability.OFFLINE
    # The padlock needs no bridge: unaffected.
    assert rig.driver.availability(PADLOCK) is Availability.ONLINE
    rig.fake.set_bridge_online(BRIDGE, True)
    await eventually(lambda: rig.driver.availability(DOOR) is Availability.ONLINE,
                     "the door tried again after the hold")
    await rig.driver.write_code(DOOR, CodeWrite(None, "2468", "Guest", key="a"))
    assert "2468" in rig.fake.locks[DOOR].custom


async def test_a_bridge_with_too_many_pending_jobs(rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    bridge = rig.fake.bridges[BRIDGE]
    bridge.max_pending_jobs = 0  # its queue is full of other clients' jobs
    with pytest.raises(CommandRejected) as raised:
        await rig.driver.write_code(DOOR, CodeWrite(None, "2468", "Guest", key="a"))
    assert raised.value.error_code == "igloohome_bridge_too_many_pending_jobs"
    assert rig.requests("/jobs/bridges/") == 3  # asked again twice, after pauses
    # The queue clears between two tries: the code goes on.
    bridge.max_pending_jobs = 20
    rig.fake.fail_next("TooManyPendingJobs", path="/jobs/bridges/")
    await rig.driver.write_code(DOOR, CodeWrite(None, "2468", "Guest", key="a"))
    assert "2468" in rig.fake.locks[DOOR].custom


async def test_a_refused_client_disconnects_every_lock(
        rigs: Callable[..., Awaitable[Rig]], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rig = await rigs()
    await rig.driver.write_code(PADLOCK, CodeWrite(None, None, "Guest", key="a"))
    tokens = list(rig.fake.tokens)
    rig.fake.revoke_client()
    with pytest.raises(Reauthenticate):
        await rig.driver.write_code(PADLOCK, CodeWrite(None, None, "Other", key="b"))
    await eventually(lambda: all(rig.driver.availability(d) is
                                 Availability.ACCOUNT_DISCONNECTED for d in (PADLOCK, DOOR)),
                     "every lock disconnected")
    # The secret in the file is right again: the next listing brings the locks back.
    (rig.tmp / "igloo.secret").write_text(rig.fake.client_secret)
    await eventually(lambda: rig.driver.availability(DOOR) is Availability.ONLINE,
                     "the account back")
    for secret in (SECRET, rig.fake.client_secret, *tokens):
        assert secret not in caplog.text


async def test_an_expired_token_is_replaced_by_a_new_login(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    logins = rig.requests("/oauth2/token")
    rig.fake.expire_tokens()
    assert await rig.driver.probe(PADLOCK)
    assert rig.requests("/oauth2/token") == logins + 1


async def test_connected_elsewhere_is_removed_not_offline(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    rig.fake.connected_elsewhere = True
    await eventually(lambda: rig.driver.availability(PADLOCK) is Availability.REMOVED,
                     "the locks removed")
    assert rig.driver.availability(DOOR) is Availability.REMOVED
    assert not await rig.driver.probe(PADLOCK)


async def test_rate_limits_honour_retry_after(rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs(settings_extra={"poll_interval_s": 3600})
    rig.fake.fail_next("TooManyRequests", retry_after=1)
    with pytest.raises(RetryLater):
        await rig.driver.write_code(PADLOCK, CodeWrite(None, None, "Guest", key="a"))
    loop = asyncio.get_running_loop()
    began = loop.time()
    # The next call waits out Retry-After instead of hammering the cloud.
    await rig.driver.write_code(PADLOCK, CodeWrite(None, None, "Guest", key="a"))
    assert loop.time() - began >= 0.9


async def test_a_silent_cloud_times_out(rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs(settings_extra={"request_timeout_s": 0.5})
    rig.fake.latency_s = 1.5
    with pytest.raises(RetryLater):
        await asyncio.wait_for(rig.driver.write_code(
            PADLOCK, CodeWrite(None, None, "Guest", key="a")), 3)
    await eventually(lambda: rig.driver.availability(PADLOCK) is Availability.DISCONNECTED,
                     "the account unreachable")


async def test_custom_pins_survive_a_restart_sealed(rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    made = await rig.driver.write_code(DOOR, CodeWrite(None, "864209", "Guest", key="a"))
    await rig.driver.stop()
    records = rig.tmp / "igloohome-igloo.json"
    # The records hold no PIN in clear, and only the service user reads them.
    assert "864209" not in records.read_text()
    assert records.stat().st_mode & 0o077 == 0
    assert (rig.tmp / "igloohome-igloo.key").stat().st_mode & 0o077 == 0
    # A new driver (the daemon restarted) can still take the PIN off through the bridge.
    again = IgloohomeDriver(rig.driver._config, SystemClock(), records)

    async def sink(event: DriverEvent) -> None:
        pass

    await again.start(sink)
    try:
        await again.clear_code(DOOR, made.slot)
        assert "864209" not in rig.fake.locks[DOOR].custom
    finally:
        await again.stop()


async def test_a_job_the_command_gave_up_on_is_resumed_not_sent_twice(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs(settings_extra={"job_timeout_s": 0.3})
    bridge = rig.fake.bridges[BRIDGE]
    bridge.hold_jobs = True  # the bridge is slow to reach the lock
    code = CodeWrite(None, "2468", "Guest", key="a")
    with pytest.raises(RetryLater):
        await rig.driver.write_code(DOOR, code)
    bridge.hold_jobs = False
    again = await rig.driver.write_code(DOOR, CodeWrite(None, "2468", "Guest", key="a",
                                                        first_sent_at=datetime.now(UTC)))
    assert "2468" in rig.fake.locks[DOOR].custom
    assert rig.requests("/jobs/bridges/") == 1 and bridge.jobs_run == 1
    assert again.pin == "2468"


async def test_a_client_without_the_algopin_scope_is_refused_clearly(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    rig.fake.granted_scopes = frozenset({"igloohomeapi/get-devices"})
    rig.fake.expire_tokens()
    with pytest.raises(CommandRejected) as raised:
        await rig.driver.write_code(PADLOCK, CodeWrite(None, None, "Guest", key="a"))
    assert raised.value.reason is RejectReason.UNSUPPORTED and "scope" in str(raised.value)


def test_the_settings_keep_secrets_out_of_the_file(tmp_path: Path) -> None:
    base = {"kind": "igloohome", "client_id": "c"}
    with pytest.raises(ValueError, match="client_secret"):
        Config.model_validate(base)
    with pytest.raises(ValueError, match="https"):
        Config.model_validate({**base, "client_secret_file": str(tmp_path / "s"),
                               "url": "http://api.example.com"})
    Config.model_validate({**base, "client_secret_file": str(tmp_path / "s")})


async def test_a_custom_pins_new_window_goes_on_under_the_same_id(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    first = await rig.driver.write_code(DOOR, CodeWrite(
        None, "2468", "Guest", berlin(2026, 7, 1, 15, 0, 2026, 7, 4, 11, 0), key="a"))
    later = await rig.driver.write_code(DOOR, CodeWrite(
        first.slot, "2468", "Guest", berlin(2026, 7, 1, 15, 0, 2026, 7, 6, 11, 0), key="a"))
    assert later.slot == first.slot
    assert rig.fake.locks[DOOR].custom["2468"].end == datetime(2026, 7, 6, 9, 0, tzinfo=UTC)
    # A longer stay on an algoPIN lock: a new PIN for the new window, under the same id (the
    # old PIN ends inside the new window).
    algo = await rig.driver.write_code(PADLOCK, CodeWrite(
        None, None, "Guest", berlin(2026, 7, 1, 15, 0, 2026, 7, 4, 11, 0), key="b"))
    longer = await rig.driver.write_code(PADLOCK, CodeWrite(
        algo.slot, None, "Guest", berlin(2026, 7, 1, 15, 0, 2026, 7, 6, 11, 0), key="b"))
    assert longer.slot == algo.slot and longer.pin != algo.pin
    padlock = rig.fake.locks[PADLOCK]
    assert padlock.enter(longer.pin, datetime(2026, 7, 1, 14, 0, tzinfo=UTC))  # first use
    assert padlock.opens(longer.pin, datetime(2026, 7, 5, 9, 0, tzinfo=UTC))
    # A shorter one cannot be had: the PIN given keeps working to its end.
    with pytest.raises(CommandRejected, match="cannot be changed"):
        await rig.driver.write_code(PADLOCK, CodeWrite(
            algo.slot, None, "Guest", berlin(2026, 7, 1, 15, 0, 2026, 7, 2, 11, 0), key="b"))
