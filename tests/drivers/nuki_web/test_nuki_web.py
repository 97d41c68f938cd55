"""The Nuki Web driver against a fake of Nuki's published Web API on loopback: locks, keypad
codes with their UTC validity, asynchronous creates, refusals, an offline lock and a refused
token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.clock import SystemClock
from bridge.driver import (
    Availability,
    CodeWrite,
    CommandRejected,
    DriverEvent,
    DriverEventKind,
    FixConfig,
    LocalWindow,
    Reauthenticate,
    RejectReason,
    RetryLater,
    SlotState,
)
from drivers.nuki_web.config import Config
from drivers.nuki_web.driver import NukiWebDriver
from tests.fakes.nuki_web import FakeNukiWeb

Rig = tuple[FakeNukiWeb, NukiWebDriver, list[DriverEvent], Path]
TOKEN = "nuki-api-token-for-tests"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    fake = FakeNukiWeb(TOKEN, apply_delay_s=0.1)
    fake.add_lock(101, "Front door")
    url = await fake.start()
    token_file = tmp_path / "nuki.token"
    token_file.write_text(TOKEN + "\n")
    config = Config.model_validate({
        "kind": "nuki_web", "name": "nuki", "url": url, "token_file": str(token_file),
        "time_zone": "Europe/Berlin", "poll_interval_s": 0.2, "create_poll_s": 0.05,
        "create_wait_s": 1.0, "confirmation_window_s": 0, "command_spacing_s": 0})
    events: list[DriverEvent] = []

    async def sink(event: DriverEvent) -> None:
        events.append(event)

    driver = NukiWebDriver(config, SystemClock())
    await driver.start(sink)
    try:
        yield fake, driver, events, token_file
    finally:
        await driver.stop()
        await fake.stop()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_codes_go_on_with_their_window_in_utc_and_come_off(rig: Rig) -> None:
    fake, driver, _, _ = rig
    (lock,) = driver.devices()
    assert lock.external_id == "101" and lock.display_name == "Front door"
    assert lock.constraints.allowed_lengths() == range(6, 7)
    assert lock.capabilities.native_schedules and lock.capabilities.name_max_length == 20
    # Berlin is UTC+1 in December: the lock's 15:00 is 14:00 UTC.
    window = LocalWindow(datetime(2026, 12, 24, 15, 0), datetime(2026, 12, 27, 11, 0))
    made = await driver.write_code("101", CodeWrite(slot=None, pin="456789",
                                                    name="Guest with a rather long name",
                                                    window=window))
    assert made.confirmed and made.pin == "456789"
    front = fake.locks[101]
    assert front.keypad_codes() == {"456789": "Guest with a rather "}
    (auth,) = [a for a in front.auths.values() if a["type"] == 13]
    assert (auth["allowedFromDate"], auth["allowedUntilDate"]) == (
        "2026-12-24T14:00:00.000Z", "2026-12-27T10:00:00.000Z")

    (listed,) = await driver.list_codes("101")  # the owner's app authorization is no code
    # Read back as Nuki keeps it: in UTC, and saying so.
    assert (listed.slot, listed.pin, listed.window) == (made.slot, "456789", LocalWindow(
        datetime(2026, 12, 24, 14, 0), datetime(2026, 12, 27, 10, 0), zone="UTC"))
    assert not listed.pending and not listed.failed
    known, empty = await driver.read_slots("101", [made.slot, 999])
    assert known.state is SlotState.KNOWN and empty.state is SlotState.EMPTY

    changed = await driver.write_code("101", CodeWrite(slot=made.slot, pin="456781",
                                                       name="Guest", window=None))
    assert changed.slot == made.slot and not changed.confirmed  # Nuki applies it later
    await until(lambda: front.keypad_codes() == {"456781": "Guest"})
    await driver.clear_code("101", made.slot)
    await until(lambda: front.keypad_codes() == {})
    await driver.clear_code("101", made.slot)  # already gone: nothing to do, no error


async def test_refusals_and_a_create_that_is_retried(rig: Rig) -> None:
    fake, driver, _, _ = rig
    with pytest.raises(CommandRejected) as starts_with_12:
        await driver.write_code("101", CodeWrite(slot=None, pin="123456", name="x"))
    assert starts_with_12.value.reason is RejectReason.INVALID_PIN
    assert "123456" not in str(starts_with_12.value)  # Nuki quotes the PIN back; we do not
    sent_at = datetime.now(UTC)
    first = await driver.write_code("101", CodeWrite(slot=None, pin="456789", name="A"))
    # The same create again, its answer lost: the code is ours only with the proof that Nuki
    # made it since the first attempt went out; an equal PIN alone is someone else's code.
    again = await driver.write_code("101", CodeWrite(slot=None, pin="456789", name="A",
                                                     first_sent_at=sent_at))
    assert again.slot == first.slot and list(fake.locks[101].keypad_codes()) == ["456789"]
    with pytest.raises(CommandRejected) as not_ours:
        await driver.write_code("101", CodeWrite(slot=None, pin="456789", name="A"))
    assert not_ours.value.reason is RejectReason.DUPLICATE_PIN
    other = await driver.write_code("101", CodeWrite(slot=None, pin="987654", name="B"))
    with pytest.raises(CommandRejected) as duplicate:
        await driver.write_code("101", CodeWrite(slot=other.slot, pin="456789", name="B"))
    assert duplicate.value.reason is RejectReason.DUPLICATE_PIN


async def test_an_offline_lock_and_a_refused_token(rig: Rig) -> None:
    fake, driver, events, token_file = rig
    fake.locks[101].online = False
    await until(lambda: driver.availability("101") is Availability.OFFLINE)
    assert (DriverEventKind.AVAILABILITY, Availability.OFFLINE) in [
        (e.kind, e.availability) for e in events]
    # Nuki accepts the code but cannot reach the lock: it never appears, and we say so.
    with pytest.raises(RetryLater) as late:
        await driver.write_code("101", CodeWrite(slot=None, pin="456789", name="A"))
    assert "online" in str(late.value)
    assert fake.locks[101].keypad_codes() == {}
    assert await driver.probe("101") is False
    fake.locks[101].online = True
    assert await driver.probe("101") is True

    fake.token = "a-new-token"  # the old token was revoked in the Nuki Web console
    await until(lambda: driver.availability("101") is Availability.ACCOUNT_DISCONNECTED)
    with pytest.raises(Reauthenticate):
        await driver.write_code("101", CodeWrite(slot=None, pin="456789", name="A"))
    token_file.write_text("a-new-token\n")  # read again on every call: no restart needed
    await until(lambda: driver.availability("101") is Availability.ONLINE)


async def test_only_locks_with_a_keypad_and_a_token_without_rights(rig: Rig) -> None:
    fake, driver, events, token_file = rig
    fake.add_lock(102, "Garage", keypad=False)
    fake.add_lock(103, "Shed", keypad=False, keypad2=True)
    await until(lambda: "103" in [d.external_id for d in driver.devices()])
    # A lock without a paired keypad cannot take codes: it is not offered.
    assert [d.external_id for d in driver.devices()] == ["101", "103"]

    # A token that may read the locks but not manage authorizations: a configuration to fix,
    # not an account to reconnect.
    fake.add_token("read-only", {"smartlock.readOnly"})
    token_file.write_text("read-only\n")
    with pytest.raises(FixConfig) as lacking:
        await driver.write_code("101", CodeWrite(slot=None, pin="456789", name="A"))
    assert "403" in str(lacking.value)
    with pytest.raises(FixConfig):
        await driver.list_codes("101")
    await asyncio.sleep(0.5)  # a few polls of the account's locks
    assert driver.availability("101") is Availability.ONLINE
    assert Availability.ACCOUNT_DISCONNECTED not in [e.availability for e in events]


async def test_updates_send_every_field_and_wait_for_the_one_before(rig: Rig) -> None:
    fake, driver, _, _ = rig
    window = LocalWindow(datetime(2026, 12, 24, 15, 0), datetime(2026, 12, 27, 11, 0),
                         zone="Europe/Berlin")
    made = await driver.write_code("101", CodeWrite(slot=None, pin="456789", name="Guest",
                                                    window=window))
    front = fake.locks[101]
    # A rename right after a change of the end: the second waits for the first to reach the
    # lock (Nuki answers 423 meanwhile), and neither loses the window.
    later = LocalWindow(window.starts_at, datetime(2026, 12, 28, 11, 0), zone="Europe/Berlin")
    await driver.write_code("101", CodeWrite(slot=made.slot, pin="456789", name="Guest",
                                             window=later))
    await driver.write_code("101", CodeWrite(slot=made.slot, pin="456789", name="Guest Smith",
                                             window=later))
    await until(lambda: not front.operations)
    (auth,) = [a for a in front.device_auths().values() if a["type"] == 13]
    assert (auth["name"], auth["allowedUntilDate"]) == ("Guest Smith", "2026-12-28T10:00:00.000Z")
    (read,) = await driver.read_slots("101", [made.slot])
    assert read.window == LocalWindow(datetime(2026, 12, 24, 14, 0),
                                      datetime(2026, 12, 28, 10, 0), zone="UTC")
