"""The Hubitat Maker API driver against the independent fake of the Maker API on loopback: the
driver contract, codes confirmed through the events the hub posts and by polling when none come,
an encrypted lockCodes, the two Hubitat errors of Seam's error list at their causes, a refused
token, an unreachable hub, and events anyone on the LAN can post."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from bridge.clock import SystemClock
from bridge.driver import (
    Availability,
    CodeWrite,
    CommandRejected,
    DriverEvent,
    DriverEventKind,
    Reauthenticate,
    RejectReason,
    RetryLater,
    SlotState,
)
from drivers.hubitat.config import Config
from drivers.hubitat.driver import HubitatDriver
from tests.contract import ContractSubject, DriverContract
from tests.fakes.hubitat import FakeHubitat

TOKEN = "maker-api-token-for-tests"
APP = 7


class Rig:
    """A fake hub with one lock, and a started driver listening for the hub's events."""

    def __init__(self, hub: FakeHubitat, driver: HubitatDriver, events: list[DriverEvent],
                 token_file: Path) -> None:
        self.hub, self.driver, self.events, self.token_file = hub, driver, events, token_file

    @property
    def lock(self) -> Any:
        return self.hub.locks[12]


async def make_rig(tmp_path: Path, *, listen: bool = True, max_codes: int = 20,
                   codes: dict[int, tuple[str, str]] | None = None,
                   **switches: Any) -> tuple[FakeHubitat, HubitatDriver, list[DriverEvent],
                                             Path]:
    hub = FakeHubitat(TOKEN, APP, event_delay_s=0.05, **switches)
    hub.add_lock(12, "Front door", max_codes=max_codes, codes=codes)
    url = await hub.start()
    token_file = tmp_path / "hubitat.token"
    token_file.write_text(TOKEN + "\n")
    # request_timeout_s is generous: two test processes share two cores (1 s timed out once
    # under load), and no test here waits for a request to time out.
    settings: dict[str, Any] = {
        "kind": "hubitat", "url": url, "app_id": APP, "token_file": str(token_file),
        "poll_interval_s": 0.2, "request_timeout_s": 5.0, "confirm_wait_s": 1.0,
        "confirm_poll_s": 0.1, "command_spacing_s": 0}
    if listen:
        settings.update(listen_host="127.0.0.1", listen_port=0)
    events: list[DriverEvent] = []

    async def sink(event: DriverEvent) -> None:
        events.append(event)

    driver = HubitatDriver(Config.model_validate(settings), SystemClock())
    await driver.start(sink)
    return hub, driver, events, token_file


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    hub, driver, events, token_file = await make_rig(tmp_path)
    try:
        yield Rig(hub, driver, events, token_file)
    finally:
        await driver.stop()
        await hub.stop()


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def pins_of(rig: Rig) -> dict[int, str]:
    return {pos: entry["code"] for pos, entry in rig.lock.truth().items()}


class TestHubitat(DriverContract):
    @pytest.fixture(params=[True, False], ids=["events", "polling"])
    async def subject(self, request: pytest.FixtureRequest,
                      tmp_path: Path) -> AsyncIterator[ContractSubject]:
        # With events the hub posts each change; without, the driver finds it by reading.
        hub, driver, events, _ = await make_rig(tmp_path, listen=request.param,
                                                drop_events=not request.param)

        async def silence() -> None:
            await hub.set_reachable(False)

        try:
            yield ContractSubject(driver, "12", lambda: {
                pos: e["code"] for pos, e in hub.locks[12].truth().items()}, silence,
                answer_bound_s=3.0, events=events)
        finally:
            await driver.stop()
            await hub.stop()


async def test_a_code_goes_on_through_the_hub_and_comes_off(rig: Rig) -> None:
    (info,) = rig.driver.devices()
    assert (info.external_id, info.display_name, info.device_type) == \
        ("12", "Front door", "hubitat_lock")
    assert info.capabilities.slots() == range(1, 21)
    assert info.constraints.allowed_lengths() == range(4, 5)
    made = await rig.driver.write_code("12", CodeWrite(slot=3, pin="0123", name="Guest, Smith"))
    assert (made.slot, made.pin, made.confirmed) == (3, "0123", True)
    # A comma would split the command's parameters: it never reaches the hub.
    assert rig.lock.truth() == {3: {"name": "Guest  Smith", "code": "0123"}}
    # The driver told the hub where to post, and the hub's events reached it.
    assert rig.hub.post_url == rig.driver.post_url and rig.hub.posted
    assert not rig.hub.post_errors
    [read] = await rig.driver.read_slots("12", [3])
    assert (read.state, read.pin) == (SlotState.KNOWN, "0123")
    await rig.driver.clear_code("12", 3)
    assert rig.lock.truth() == {}
    # The token never appears in a request the hub logged, nor in the driver's post URL.
    assert all(TOKEN not in r for r in rig.hub.requests)


async def test_a_full_lock_is_hubitat_no_free_positions_available(tmp_path: Path) -> None:
    hub, driver, _, _ = await make_rig(tmp_path, max_codes=2,
                                       codes={1: ("1111", "Owner"), 2: ("2222", "Cleaner")})
    try:
        with pytest.raises(CommandRejected) as raised:
            await driver.write_code("12", CodeWrite(slot=2, pin="3333", name="Guest"))
        assert raised.value.reason is RejectReason.NO_SPACE
        assert raised.value.error_code == "hubitat_no_free_positions_available"
        assert not any("setCode" in r for r in hub.requests)
        # Our own code on a full lock can still change.
        hub.locks[12].keypad_set(2, "2222", "Guest")
        await hub.settle()
        made = await driver.write_code("12", CodeWrite(slot=2, pin="3333", name="Guest"))
        assert made.slot == 2 and hub.locks[12].truth()[2] == {"name": "Guest", "code": "3333"}
    finally:
        await driver.stop()
        await hub.stop()


async def test_a_lock_that_never_confirms_is_hubitat_device_programming_delay(
        rig: Rig) -> None:
    rig.lock.online = False  # the hub takes every command; the lock never gets it
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CommandRejected) as raised:
        await rig.driver.write_code("12", CodeWrite(slot=1, pin="4321", name="Guest"))
    assert raised.value.error_code == "hubitat_device_programming_delay"
    assert 1.0 <= loop.time() - started < 3.0
    # The unconfirmed code was withdrawn: a late lock does not keep it.
    assert rig.hub.requests[-1].endswith("/deleteCode/1")
    rig.lock.online = True
    made = await rig.driver.write_code("12", CodeWrite(slot=1, pin="4321", name="Guest"))
    assert made.confirmed and pins_of(rig) == {1: "4321"}


async def test_what_the_hub_refuses_silently_is_refused_before_sending(rig: Rig) -> None:
    rig.lock.keypad_set(5, "5555", "Owner")
    await rig.hub.settle()
    with pytest.raises(CommandRejected) as raised:
        await rig.driver.write_code("12", CodeWrite(slot=1, pin="5555", name="Guest"))
    assert raised.value.reason is RejectReason.DUPLICATE_PIN
    with pytest.raises(CommandRejected) as raised:
        await rig.driver.write_code("12", CodeWrite(slot=1, pin="12345", name="Guest"))
    assert raised.value.reason is RejectReason.INVALID_PIN
    assert not any("setCode" in r for r in rig.hub.requests)
    # A name another position holds would be refused by the hub: the driver makes it unique.
    await rig.driver.write_code("12", CodeWrite(slot=1, pin="1234", name="Owner"))
    assert rig.lock.truth()[1] == {"name": "Owner #1", "code": "1234"}


async def test_a_code_the_lock_refuses_is_refused_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A lock driver that reports a refusal as codeChanged "failed" (the capability's enum).
    hub, driver, _, _ = await make_rig(tmp_path, refusal_event="failed")
    send = driver._command

    async def typed_meanwhile(lock: Any, command: str, secondary: str) -> None:
        # Someone keys the same code in at the lock between the driver's look and its command.
        hub.locks[12].keypad_set(9, "4444", "Owner")
        await send(lock, command, secondary)

    monkeypatch.setattr(driver, "_command", typed_meanwhile)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(CommandRejected) as raised:
            await driver.write_code("12", CodeWrite(slot=1, pin="4444", name="Guest"))
        assert "failed" in str(raised.value) and raised.value.error_code is None
        assert loop.time() - started < 1.0  # not left to the confirmation's bound
        assert 1 not in hub.locks[12].truth()
    finally:
        await driver.stop()
        await hub.stop()


async def test_an_encrypted_lockcodes_leaves_the_bridge_its_own_record(tmp_path: Path) -> None:
    hub, driver, _, _ = await make_rig(tmp_path, encrypt=True)
    try:
        (info,) = driver.devices()
        assert info.capabilities.masks_pins_on_read
        made = await driver.write_code("12", CodeWrite(slot=2, pin="2468", name="Guest"))
        assert made.confirmed and hub.locks[12].truth()[2]["code"] == "2468"
        # Written again (a replay): known as ours, nothing sent.
        sent = len(hub.requests)
        assert await driver.write_code("12", CodeWrite(slot=2, pin="2468", name="Guest")) == made
        assert not any("setCode" in r for r in hub.requests[sent:])
        [read] = await driver.read_slots("12", [2])
        assert (read.state, read.reason) == (SlotState.UNREADABLE, "encrypted")
        assert await driver.list_codes("12") == []
        await driver.clear_code("12", 2)
        assert hub.locks[12].truth() == {}
    finally:
        await driver.stop()
        await hub.stop()


async def test_a_change_at_the_lock_is_reported_by_position(rig: Rig) -> None:
    rig.lock.keypad_set(4, "9876", "Neighbour")
    await until(lambda: any(e.kind is DriverEventKind.SLOT_CHANGED and e.slot == 4
                            for e in rig.events))
    listed = await rig.driver.list_codes("12")
    assert [(r.slot, r.pin, r.name) for r in listed] == [(4, "9876", "Neighbour")]


async def test_a_posted_event_is_only_a_hint(rig: Rig) -> None:
    """Anyone on the LAN can POST to the event URL: the driver reads the hub, never the post."""
    assert rig.driver.post_url is not None
    forged = {"content": {"name": "codeChanged", "value": "added", "deviceId": "12",
                          "displayName": "Front door", "descriptionText": None, "unit": None,
                          "data": '{"1":{"name":"Intruder","code":"7777"}}'}}
    async with aiohttp.ClientSession() as session:
        async with session.post(rig.driver.post_url, json=forged) as answer:
            assert answer.status == 204
        async with session.post(rig.driver.post_url, data=b"not json") as answer:
            assert answer.status == 400
    assert await rig.driver.list_codes("12") == []
    [read] = await rig.driver.read_slots("12", [1])
    assert read.state is SlotState.EMPTY
    # Posting in a loop does not make the driver hammer the hub.
    before = sum(r.endswith("/devices/all") for r in rig.hub.requests)
    async with aiohttp.ClientSession() as session:
        for _ in range(50):
            async with session.post(rig.driver.post_url, json=forged) as answer:
                assert answer.status == 204
    await asyncio.sleep(0.5)
    assert sum(r.endswith("/devices/all") for r in rig.hub.requests) - before <= 3


async def test_a_refused_token_disconnects_the_account_until_the_file_has_the_new_one(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rig.hub.add_lock(13, "Back door")  # found at the next poll
    await until(lambda: len(rig.driver.devices()) == 2)
    rig.hub.token = "a-new-token"
    with pytest.raises(Reauthenticate):
        await rig.driver.read_slots("12", [1])
    # The token is the account's: every lock of the hub is disconnected, not only this one.
    assert rig.driver.availability("12") is Availability.ACCOUNT_DISCONNECTED
    assert rig.driver.availability("13") is Availability.ACCOUNT_DISCONNECTED
    await until(lambda: any(e.availability is Availability.ACCOUNT_DISCONNECTED
                            for e in rig.events))
    rig.token_file.write_text("a-new-token\n")
    await until(lambda: rig.driver.availability("12") is Availability.ONLINE
                and rig.driver.availability("13") is Availability.ONLINE)
    assert TOKEN not in caplog.text and "a-new-token" not in caplog.text


async def test_an_unreachable_hub_disconnects_its_locks(rig: Rig) -> None:
    await rig.hub.set_reachable(False)
    with pytest.raises(RetryLater):
        await rig.driver.write_code("12", CodeWrite(slot=1, pin="1234", name="Guest"))
    assert rig.driver.availability("12") is Availability.DISCONNECTED
    assert not await rig.driver.probe("12")
    await rig.hub.set_reachable(True)
    await until(lambda: rig.driver.availability("12") is Availability.ONLINE)
    assert await rig.driver.probe("12")


@pytest.mark.parametrize("url", ["http://hub.example.com", "http://8.8.8.8",
                                 "https://cloud.hubitat.com"])
def test_the_token_goes_only_to_a_hub_on_the_lan(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="LAN"):
        Config.model_validate({"kind": "hubitat", "url": url, "app_id": 1,
                               "token_file": str(tmp_path / "t")})
    for lan in ("http://192.168.1.20", "http://hubitat.local", "http://hubitat",
                "http://[fe80::1]", "http://127.0.0.1:8080"):
        Config.model_validate({"kind": "hubitat", "url": lan, "app_id": 1,
                               "token_file": str(tmp_path / "t")})


async def test_locks_selected_or_unselected_in_the_maker_api_come_and_go(rig: Rig) -> None:
    rig.hub.add_lock(13, "Back door", max_codes=8, code_length=6)
    await until(lambda: "13" in [d.external_id for d in rig.driver.devices()])
    back = next(d for d in rig.driver.devices() if d.external_id == "13")
    assert back.capabilities.slots() == range(1, 9)
    assert back.constraints.allowed_lengths() == range(4, 7)
    del rig.hub.locks[13]
    await until(lambda: rig.driver.availability("13") is Availability.REMOVED)
    assert [d.external_id for d in rig.driver.devices()] == ["12"]
    assert any(e.kind is DriverEventKind.AVAILABILITY and e.external_id == "13"
               and e.availability is Availability.REMOVED for e in rig.events)
