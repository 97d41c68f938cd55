"""The TTLock driver against the fake of TTLock's published Open API (tests/fakes/ttlock.py),
each of TTLock's conditions at the place it happens (the driver contract runs in
tests/drivers/ttlock/test_ttlock_contract.py): custom passcodes through the gateway with their
window to the
minute, a busy gateway and one queue per gateway, a lock paired to no gateway, an offline
gateway, a refused account, a lock the account no longer lists, token refresh, rate limits,
timeouts, and no secret in the logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bridge.clock import Clock, FakeClock, SystemClock
from bridge.driver import (
    Addressing,
    Availability,
    CodeWrite,
    CommandRejected,
    DriverEvent,
    DriverEventKind,
    LocalWindow,
    Reauthenticate,
    RejectReason,
    RetryLater,
    SlotState,
)
from drivers.ttlock.config import Config
from drivers.ttlock.driver import TTLockDriver
from tests.fakes.ttlock import FakeTTLock, md5_hex
from tests.harness import until

CLIENT_ID = "lockbridge-client-id"
SECRET = "client-secret-for-tests"
USER = "host@example.com"
PASSWORD = "app-password-for-tests"
FRONT, BACK, SHED = 7252408, 7252409, 7252410
GATEWAY = 347
T = TypeVar("T")


@dataclass
class Rig:
    fake: FakeTTLock
    driver: TTLockDriver
    clock: Clock
    tmp: Path
    events: list[DriverEvent] = field(default_factory=list)

    async def run(self, call: Awaitable[T], timeout: float = 10.0) -> T:
        """Await a driver call, moving a fake clock through the short sleeps it takes."""
        task = asyncio.ensure_future(call)
        if isinstance(self.clock, FakeClock):
            await until(task.done, clock=self.clock, timeout=timeout, what="the driver call")
        return await asyncio.wait_for(task, timeout)

    def requests(self, path: str) -> int:
        return sum(1 for r in self.fake.requests if r.endswith(path))


def settings(url: str, tmp: Path, **extra: Any) -> Config:
    (tmp / "client.secret").write_text(SECRET + "\n")
    (tmp / "ttlock.password").write_text(PASSWORD + "\n")
    return Config.model_validate({
        "kind": "ttlock", "name": "ttlock", "url": url, "client_id": CLIENT_ID,
        "client_secret_file": str(tmp / "client.secret"), "username": USER,
        "password_file": str(tmp / "ttlock.password"), "poll_interval_s": 0.1,
        "request_timeout_s": 2, "gateway_timeout_s": 3, "busy_retry_s": 0.05,
        "busy_retries": 3, "max_calls_per_s": 1000, **extra})


@pytest.fixture
async def rigs(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    made: list[Rig] = []

    async def make(clock: Clock | None = None, *, settings_extra: dict[str, Any] | None = None,
                   **switches: Any) -> Rig:
        clock = clock or SystemClock()
        fake = FakeTTLock(CLIENT_ID, SECRET, USER, PASSWORD, clock=clock,
                          **{"gateway_latency_s": 0.02 if not isinstance(clock, FakeClock)
                             else 0.0, **switches})
        fake.add_gateway(GATEWAY)
        fake.add_lock(FRONT, "Apartment 1", gateways=[GATEWAY], battery=81,
                      timezone_raw_offset_ms=3_600_000)
        fake.add_lock(BACK, "Apartment 2", gateways=[GATEWAY])
        fake.add_lock(SHED, "Shed")  # paired to no gateway
        url = await fake.start()
        driver = TTLockDriver(settings(url, tmp_path, **(settings_extra or {})), clock)
        rig = Rig(fake, driver, clock, tmp_path)

        async def sink(event: DriverEvent) -> None:
            rig.events.append(event)

        await rig.run(driver.start(sink))
        made.append(rig)
        return rig

    yield make
    for rig in made:
        await rig.driver.stop()
        await rig.fake.stop()


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def test_describes_the_accounts_locks(rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    front, back, shed = rig.driver.devices()
    assert (front.external_id, front.display_name, front.device_type) == (
        str(FRONT), "Apartment 1", "ttlock_lock")
    assert front.capabilities.addressing is Addressing.ID
    assert front.capabilities.native_schedules and front.capabilities.slot_count == 250
    assert front.constraints.allowed_lengths() == range(4, 10)
    # TTLock gives the lock's offset from UTC (no daylight saving): a fixed zone.
    assert front.time_zone == "Etc/GMT-1" and back.time_zone == "UTC"
    assert front.model == "SN9206_PV53"  # from lock/detail
    assert rig.driver.battery(str(FRONT)) == 81
    assert rig.driver.availability(str(FRONT)) is Availability.ONLINE
    assert await rig.driver.probe(str(FRONT))
    assert front.errors == () and shed.errors[0].code == "ttlock_lock_not_paired_to_gateway"


async def test_probes_of_several_locks_share_one_listing(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs(settings_extra={"poll_interval_s": 3600})
    listed = rig.requests("/v3/lock/list")
    assert await asyncio.gather(rig.driver.probe(str(FRONT)), rig.driver.probe(str(BACK)),
                                rig.driver.probe(str(SHED))) == [True, True, False]
    assert rig.requests("/v3/lock/list") == listed + 1
    # A probe asked after a listing began waits for a fresh one.
    rig.fake.gateways[GATEWAY].online = False
    assert not await rig.driver.probe(str(FRONT))
    assert rig.requests("/v3/lock/list") == listed + 2


async def test_passcodes_go_through_the_gateway_with_their_window_to_the_minute(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    lock = rig.fake.locks[FRONT]
    # A permanent code, with a leading zero.
    made = await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="0815",
                                                             name="Staff"))
    assert made.confirmed and lock.codes["0815"].start_ms == 0
    # Written through the gateway, not only recorded in the cloud.
    adds = [p for path, p in rig.fake.calls if path == "/v3/keyboardPwd/add"]
    assert adds[-1]["addType"] == "2" and adds[-1]["clientId"] == CLIENT_ID
    assert abs(int(adds[-1]["date"]) - rig.fake.server_ms()) < 60_000
    # A time-bound code: the window is in the zone the engine names, seconds dropped.
    window = LocalWindow(datetime(2026, 12, 24, 15, 0, 30), datetime(2026, 12, 27, 11, 0, 45),
                         zone="Europe/Berlin")
    guest = await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="123456789",
                                                              name="Guest", window=window))
    start, end = ms(datetime(2026, 12, 24, 14, 0, tzinfo=UTC)), ms(
        datetime(2026, 12, 27, 10, 0, tzinfo=UTC))
    assert (lock.codes["123456789"].start_ms, lock.codes["123456789"].end_ms) == (start, end)
    assert lock.opens("123456789", start) and not lock.opens("123456789", end)

    listed = {r.slot: r for r in await rig.driver.list_codes(str(FRONT))}
    assert set(listed) == {made.slot, guest.slot} and listed[made.slot].pin == "0815"
    assert listed[guest.slot].window == LocalWindow(datetime(2026, 12, 24, 14, 0),
                                                    datetime(2026, 12, 27, 10, 0), zone="UTC")
    known, empty = await rig.driver.read_slots(str(FRONT), [guest.slot, 99])
    assert known.state is SlotState.KNOWN and empty.state is SlotState.EMPTY

    # The same code again changes nothing and sends nothing to the gateway.
    commands = rig.fake.gateways[GATEWAY].commands
    again = await rig.driver.write_code(str(FRONT), CodeWrite(
        slot=guest.slot, pin="123456789", name="Guest", window=window))
    assert again == guest and rig.fake.gateways[GATEWAY].commands == commands
    # A later end: both dates go, through the gateway; a rename stays in the cloud.
    later = LocalWindow(window.starts_at, datetime(2026, 12, 28, 11, 0), zone="Europe/Berlin")
    await rig.driver.write_code(str(FRONT), CodeWrite(slot=guest.slot, pin="123456789",
                                                      name="Guest Smith", window=later))
    changes = [p for path, p in rig.fake.calls if path == "/v3/keyboardPwd/change"]
    assert changes[-2]["changeType"] == "2" and "startDate" in changes[-2]
    assert "changeType" not in changes[-1] and changes[-1]["keyboardPwdName"] == "Guest Smith"
    assert lock.codes["123456789"].end_ms == ms(datetime(2026, 12, 28, 10, 0, tzinfo=UTC))
    assert rig.fake.gateways[GATEWAY].commands == commands + 1

    # Deleted through the gateway: exactly that one, the lock stops opening; twice is fine.
    await rig.driver.clear_code(str(FRONT), guest.slot)
    assert set(lock.codes) == {"0815"}
    deletes = [p for path, p in rig.fake.calls if path == "/v3/keyboardPwd/delete"]
    assert deletes[-1]["deleteType"] == "2"
    await rig.driver.clear_code(str(FRONT), guest.slot)
    assert set(lock.codes) == {"0815"}


async def test_refusals(rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    front = rig.fake.locks[FRONT]
    with pytest.raises(CommandRejected) as short:
        await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="123", name="x"))
    assert short.value.reason is RejectReason.INVALID_PIN
    # A PIN put on the lock by hand: TTLock refuses it (-3007), a duplicate.
    front.add_keypad_code("246810")
    with pytest.raises(CommandRejected) as duplicate:
        await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="246810", name="x"))
    assert duplicate.value.reason is RejectReason.DUPLICATE_PIN
    assert "246810" not in str(duplicate.value)
    # A PIN the cloud lists in a code lockbridge did not make: refused before sending.
    other = await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="97531",
                                                              name="Owner"))
    with pytest.raises(CommandRejected) as listed:
        await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="97531", name="x"))
    assert listed.value.reason is RejectReason.DUPLICATE_PIN
    # The lock's passcode storage is full (-3009).
    front.capacity = len(front.codes)
    with pytest.raises(CommandRejected) as full:
        await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="8642", name="x"))
    assert full.value.reason is RejectReason.NO_SPACE
    assert set(front.codes) == {"246810", "97531"} and other.slot > 0


async def test_a_create_whose_answer_was_lost_is_taken_once(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    first_sent = datetime.now(UTC)
    # The gateway writes the lock, the answer is lost (TTLock's internal error instead).
    rig.fake.fail_next(90000, path="keyboardPwd/add", after_write=True)
    with pytest.raises(RetryLater):
        await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="55501", name="G"))
    again = await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="55501",
                                                              name="G",
                                                              first_sent_at=first_sent))
    assert list(rig.fake.locks[FRONT].codes) == ["55501"]
    assert [r.slot for r in await rig.driver.list_codes(str(FRONT))] == [again.slot]


async def test_a_command_given_up_on_still_lands_and_is_taken_once(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    # The gateway takes longer than the driver waits: TTLock completes the command anyway.
    rig = await rigs(gateway_latency_s=0.6, settings_extra={"gateway_timeout_s": 0.2})
    first_sent = datetime.now(UTC)
    with pytest.raises(RetryLater):
        await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="55502", name="G"))
    await until(lambda: "55502" in rig.fake.locks[FRONT].codes, what="the lock written")
    again = await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="55502",
                                                              name="G",
                                                              first_sent_at=first_sent))
    assert again.confirmed and rig.requests("keyboardPwd/add") == 1
    assert [r.slot for r in await rig.driver.list_codes(str(FRONT))] == [again.slot]


async def test_a_busy_gateway_is_asked_again_and_runs_one_command_at_a_time(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs(gateway_latency_s=0.2)
    gateway = rig.fake.gateways[GATEWAY]
    # Two locks on one gateway at once: the driver queues them (no -3003 reaches the gateway).
    await asyncio.gather(
        rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="1111", name="a")),
        rig.driver.write_code(str(BACK), CodeWrite(slot=None, pin="2222", name="b")))
    assert "1111" in rig.fake.locks[FRONT].codes and "2222" in rig.fake.locks[BACK].codes
    assert gateway.commands == 2 and rig.requests("keyboardPwd/add") == 2
    # Busy for another client's command: asked again after a pause, then it works.
    gateway.busy = True
    task = asyncio.create_task(rig.driver.write_code(str(FRONT), CodeWrite(
        slot=None, pin="3333", name="c")))
    await until(lambda: rig.requests("keyboardPwd/add") >= 4, what="a second try")
    gateway.busy = False
    await asyncio.wait_for(task, 5)
    assert "3333" in rig.fake.locks[FRONT].codes
    # Busy for good: RetryLater after the retries, never an endless wait.
    gateway.busy = True
    with pytest.raises(RetryLater) as busy:
        await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="4444", name="d"))
    assert "-3003" in str(busy.value)
    assert rig.driver.availability(str(FRONT)) is Availability.ONLINE


async def test_a_lock_paired_to_no_gateway(rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    shed = next(d for d in rig.driver.devices() if d.external_id == str(SHED))
    assert [e.code for e in shed.errors] == ["ttlock_lock_not_paired_to_gateway"]
    assert rig.driver.availability(str(SHED)) is Availability.OFFLINE
    with pytest.raises(RetryLater) as unpaired:
        await rig.driver.write_code(str(SHED), CodeWrite(slot=None, pin="1357", name="x"))
    assert "not paired to a gateway" in str(unpaired.value)
    assert rig.requests("keyboardPwd/add") == 0
    # Paired in the TTLock app: the next listing clears the error, the lock is online.
    rig.fake.locks[SHED].gateway_rssi[GATEWAY] = -70
    await until(lambda: rig.driver.availability(str(SHED)) is Availability.ONLINE)
    shed = next(d for d in rig.driver.devices() if d.external_id == str(SHED))
    assert shed.errors == ()
    await rig.driver.write_code(str(SHED), CodeWrite(slot=None, pin="1357", name="x"))
    assert "1357" in rig.fake.locks[SHED].codes
    # A command TTLock answers with -2012 ("not connected to any gateway") says so at once.
    rig.fake.fail_next(-2012, path="keyboardPwd/add")
    with pytest.raises(RetryLater):
        await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="2468", name="x"))
    front = next(d for d in rig.driver.devices() if d.external_id == str(FRONT))
    assert [e.code for e in front.errors] == ["ttlock_lock_not_paired_to_gateway"]
    assert (DriverEventKind.DEVICES_CHANGED, "") in [(e.kind, e.external_id)
                                                     for e in rig.events]


async def test_an_offline_gateway_makes_its_locks_offline(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs(settings_extra={"poll_interval_s": 3600})
    gateway = rig.fake.gateways[GATEWAY]
    gateway.online = False
    # One listing (a probe's) tells every lock of the gateway.
    assert not await rig.driver.probe(str(FRONT))
    assert rig.driver.availability(str(BACK)) is Availability.OFFLINE
    await until(lambda: (DriverEventKind.AVAILABILITY, str(BACK), Availability.OFFLINE) in [
        (e.kind, e.external_id, e.availability) for e in rig.events], what="the event")
    gateway.online = True
    assert await rig.driver.probe(str(FRONT))
    # Unplugged, but TTLock lists it online for minutes: the command's -3002 is believed.
    gateway.online, gateway.reported_online = False, True
    with pytest.raises(RetryLater) as offline:
        await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="1357", name="x"))
    assert "-3002" in str(offline.value)
    assert rig.driver.availability(str(FRONT)) is Availability.OFFLINE
    # Listings that still show the gateway online do not bring the lock back.
    assert not await rig.driver.probe(str(FRONT))
    assert not await rig.driver.probe(str(BACK))
    assert all(d.errors == () for d in rig.driver.devices() if d.external_id != str(SHED))


async def test_a_refused_account_disconnects_every_lock_until_it_is_fixed(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs(settings_extra={"refused_retry_s": 3600})
    # The app password was changed: the tokens are gone and the old password is refused.
    rig.fake.password_md5 = md5_hex("a-new-password")
    rig.fake.revoke_tokens()
    await until(lambda: all(rig.driver.availability(str(i)) is
                            Availability.ACCOUNT_DISCONNECTED for i in (FRONT, BACK, SHED)))
    with pytest.raises(Reauthenticate):
        await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="1357", name="x"))
    # The refused password is not sent again and again (TTLock may lock the app account).
    logins = rig.requests("/oauth2/token")
    await asyncio.sleep(0.3)
    assert rig.requests("/oauth2/token") == logins
    (rig.tmp / "ttlock.password").write_text("a-new-password\n")
    await until(lambda: rig.driver.availability(str(FRONT)) is Availability.ONLINE)
    assert rig.driver.availability(str(SHED)) is Availability.OFFLINE  # still no gateway


async def test_a_lock_the_account_no_longer_lists_is_removed_not_offline(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    del rig.fake.locks[BACK]  # transferred to another account
    await until(lambda: rig.driver.availability(str(BACK)) is Availability.REMOVED)
    assert rig.driver.availability(str(FRONT)) is Availability.ONLINE
    assert str(BACK) not in [d.external_id for d in rig.driver.devices()]
    with pytest.raises(RetryLater):
        await rig.driver.write_code(str(BACK), CodeWrite(slot=None, pin="1357", name="x"))
    assert Availability.OFFLINE not in [e.availability for e in rig.events
                                        if e.external_id == str(BACK)]


async def test_the_token_is_refreshed_before_it_expires(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    clock = FakeClock(datetime.now(UTC))
    rig = await rigs(clock, settings_extra={"poll_interval_s": 10 * 86_400})
    assert rig.requests("/oauth2/token") == 1
    await rig.run(rig.driver.list_codes(str(FRONT)))
    # A day before the 90 days end, the next call refreshes first and keeps the new pair.
    await clock.advance(7_776_000 - 86_400 + 60)
    await rig.run(rig.driver.list_codes(str(FRONT)))
    grants = [p.get("grant_type") for path, p in rig.fake.calls if path == "/oauth2/token"]
    assert grants == ["password", "refresh_token"]
    # Expired early anyway (TTLock's 10004): one refresh and the call goes through.
    rig.fake.expire_tokens()
    await rig.run(rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="1357",
                                                              name="x")))
    grants = [p.get("grant_type") for path, p in rig.fake.calls if path == "/oauth2/token"]
    assert grants == ["password", "refresh_token", "refresh_token"]
    assert "1357" in rig.fake.locks[FRONT].codes


async def test_rate_limits_pause_the_account(rigs: Callable[..., Awaitable[Rig]]) -> None:
    clock = FakeClock(datetime.now(UTC))
    rig = await rigs(clock, settings_extra={"poll_interval_s": 3600,
                                            "rate_limit_backoff_s": 30})
    rig.fake.rate_limited, rig.fake.rate_limit_retry_after = True, 90
    with pytest.raises(RetryLater) as limited:
        await rig.run(rig.driver.list_codes(str(FRONT)))
    assert "resume in 90 s" in str(limited.value)
    # Nothing is sent before TTLock's Retry-After has passed.
    rig.fake.rate_limited = False
    sent = len(rig.fake.requests)
    with pytest.raises(RetryLater):
        await rig.run(rig.driver.list_codes(str(FRONT)))
    assert len(rig.fake.requests) == sent
    await clock.advance(91)
    await rig.run(rig.driver.list_codes(str(FRONT)))
    # Without a Retry-After: the driver's own backoff, doubling.
    rig.fake.rate_limited, rig.fake.rate_limit_retry_after = True, None
    for wait in (30, 60):
        with pytest.raises(RetryLater) as again:
            await rig.run(rig.driver.list_codes(str(FRONT)))
        assert f"resume in {wait} s" in str(again.value)
        await clock.advance(wait + 1)
    # The monthly quota: an hour.
    rig.fake.rate_limited, rig.fake.monthly_limit_reached = False, True
    with pytest.raises(RetryLater) as monthly:
        await rig.run(rig.driver.list_codes(str(FRONT)))
    assert "monthly quota" in str(monthly.value)


async def test_calls_keep_to_the_accounts_budget(rigs: Callable[..., Awaitable[Rig]]) -> None:
    clock = FakeClock(datetime.now(UTC))
    rig = await rigs(clock, settings_extra={"poll_interval_s": 3600, "max_calls_per_s": 2})
    await clock.advance(10)  # the budget refills: two calls at once, then one each 0.5 s
    sent = rig.requests("listKeyboardPwd")
    tasks = [asyncio.create_task(rig.driver.list_codes(str(FRONT))) for _ in range(4)]
    await until(lambda: rig.requests("listKeyboardPwd") == sent + 2, what="two at once")
    await asyncio.sleep(0.05)
    assert rig.requests("listKeyboardPwd") == sent + 2
    await clock.advance(0.5)
    await until(lambda: rig.requests("listKeyboardPwd") == sent + 3, what="the third")
    await clock.advance(0.5)
    await until(lambda: rig.requests("listKeyboardPwd") == sent + 4, what="the fourth")
    await asyncio.gather(*tasks)


async def test_a_cloud_that_stops_answering_is_given_up_on_within_the_bound(
        rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs(settings_extra={"request_timeout_s": 0.3, "gateway_timeout_s": 0.5})
    made = await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="1357", name="x"))
    rig.fake.latency_s = 5.0
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="2468", name="x")),
        lambda: rig.driver.read_slots(str(FRONT), [made.slot]),
        lambda: rig.driver.clear_code(str(FRONT), made.slot)]
    for call in calls:
        with pytest.raises(RetryLater):
            await asyncio.wait_for(call(), 2.0)
    assert not await asyncio.wait_for(rig.driver.probe(str(FRONT)), 2.0)
    assert rig.driver.availability(str(FRONT)) is Availability.DISCONNECTED


async def test_a_clock_ttlock_refuses_is_named(rigs: Callable[..., Awaitable[Rig]]) -> None:
    rig = await rigs()
    rig.fake.clock_skew_s = 600
    with pytest.raises(RetryLater) as skewed:
        await rig.driver.list_codes(str(FRONT))
    assert "clock" in str(skewed.value) and "80000" in str(skewed.value)


async def test_no_secret_reaches_the_logs(rigs: Callable[..., Awaitable[Rig]],
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rig = await rigs()
    await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="86420", name="x"))
    rig.fake.expire_tokens()
    await rig.driver.list_codes(str(FRONT))
    rig.fake.locks[FRONT].add_keypad_code("97531")
    with pytest.raises(CommandRejected):
        await rig.driver.write_code(str(FRONT), CodeWrite(slot=None, pin="97531", name="x"))
    tokens = [*rig.fake.access_tokens, *rig.fake.refresh_tokens]
    rig.fake.password_md5 = md5_hex("changed")
    rig.fake.revoke_tokens()
    await until(lambda: rig.driver.availability(str(FRONT)) is
                Availability.ACCOUNT_DISCONNECTED)
    text = caplog.text
    assert "ttlock" in text
    secrets = [SECRET, PASSWORD, md5_hex(PASSWORD), "fake-lockdata", "8412305", "86420",
               "97531", *tokens]
    assert [s for s in secrets if s in text] == []
