"""The Hubitat Maker API fake checked against Hubitat's published behaviour (sources cited in
tests/fakes/hubitat.py), with raw aiohttp requests and a small receiver for the events the hub
POSTs: no driver involved."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.hubitat import FakeHubitat, FakeHubitatThread
from tests.harness import until

TOKEN = "maker-token-1"
LOCK = 42


class Receiver:
    """The URL Maker API POSTs events to."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hubitat/events", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hubitat/events"
        return self.url

    async def _receive(self, request: web.Request) -> web.Response:
        self.events.append(await request.json())
        return web.Response(text="ok")

    def content(self, name: str | None = None) -> list[dict[str, Any]]:
        return [e["content"] for e in self.events
                if name is None or e["content"]["name"] == name]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def hub() -> AsyncIterator[FakeHubitat]:
    fake = FakeHubitat(TOKEN, app_id=7, event_delay_s=0.05)
    fake.add_lock(LOCK, "Front Door", max_codes=5, code_length=4,
                  codes={1: ("1234", "Owner")})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def get(session: aiohttp.ClientSession, hub: FakeHubitat, path: str,
              token: str = TOKEN) -> tuple[int, Any]:
    async with session.get(f"{hub.api_url}/{path}",
                           params={"access_token": token}) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


async def attribute(session: aiohttp.ClientSession, hub: FakeHubitat, name: str) -> Any:
    status, body = await get(session, hub, f"devices/{LOCK}")
    assert status == 200
    return {a["name"]: a["currentValue"] for a in body["attributes"]}[name]


async def lock_codes(session: aiohttp.ClientSession, hub: FakeHubitat) -> dict[str, Any]:
    value = await attribute(session, hub, "lockCodes")
    assert isinstance(value, str)  # the JSON as text, as Hubitat keeps it
    parsed: dict[str, Any] = json.loads(value)
    return parsed


async def subscribe(session: aiohttp.ClientSession, hub: FakeHubitat, url: str) -> None:
    status, _ = await get(session, hub, "postURL/" + quote(url, safe=""))
    assert status == 200


async def test_device_list_and_detail(hub: FakeHubitat, session: aiohttp.ClientSession) -> None:
    status, body = await get(session, hub, "devices")
    assert status == 200
    assert body == [{"id": str(LOCK), "name": "Virtual Lock", "label": "Front Door"}]
    status, body = await get(session, hub, "devices/all")
    assert status == 200
    assert body[0]["attributes"]["maxCodes"] == 5
    assert "LockCodes" in body[0]["capabilities"]
    status, body = await get(session, hub, f"devices/{LOCK}")
    attrs = {a["name"]: a for a in body["attributes"]}
    assert attrs["lockCodes"]["dataType"] == "JSON_OBJECT"
    assert attrs["lock"]["currentValue"] == "locked"
    assert attrs["codeLength"]["currentValue"] == 4
    assert json.loads(attrs["lockCodes"]["currentValue"]) == {
        "1": {"name": "Owner", "code": "1234"}}
    status, body = await get(session, hub, "devices/999")
    assert status == 404 and body["error"] is True


async def test_wrong_token_is_401(hub: FakeHubitat, session: aiohttp.ClientSession) -> None:
    status, _ = await get(session, hub, "devices", token="wrong")
    assert status == 401
    hub.token = "rotated"
    status, _ = await get(session, hub, "devices")
    assert status == 401
    status, _ = await get(session, hub, "devices", token="rotated")
    assert status == 200
    assert all("access_token" not in r and "rotated" not in r for r in hub.requests)


async def test_set_code_answers_at_once_and_reports_later(
        hub: FakeHubitat, session: aiohttp.ClientSession, receiver: Receiver) -> None:
    await subscribe(session, hub, receiver.url)
    status, body = await get(session, hub, f"devices/{LOCK}/setCode/3,0482,Guest")
    assert status == 200
    # The answer comes before the lock has the code: lockCodes still the old map.
    attrs = {a["name"]: a["currentValue"] for a in body["attributes"]}
    assert "3" not in json.loads(attrs["lockCodes"])
    assert 3 not in hub.locks[LOCK].truth()
    await until(lambda: bool(receiver.content("codeChanged")), what="codeChanged posted")
    changed = receiver.content("codeChanged")[0]
    assert changed["value"] == "added"
    assert changed["deviceId"] == str(LOCK)
    assert changed["displayName"] == "Front Door"
    assert json.loads(changed["data"]) == {"3": {"name": "Guest", "code": "0482"}}
    # lockCodes is posted first, then codeChanged (the driver's order).
    names = [c["name"] for c in receiver.content()]
    assert names.index("lockCodes") < names.index("codeChanged")
    assert hub.locks[LOCK].truth()[3] == {"name": "Guest", "code": "0482"}
    assert (await lock_codes(session, hub))["3"] == {"name": "Guest", "code": "0482"}

    await get(session, hub, f"devices/{LOCK}/setCode/3,0483,Guest")
    await until(lambda: len(receiver.content("codeChanged")) == 2, what="changed")
    assert receiver.content("codeChanged")[1]["value"] == "changed"

    await get(session, hub, f"devices/{LOCK}/deleteCode/3")
    await until(lambda: len(receiver.content("codeChanged")) == 3, what="deleted")
    deleted = receiver.content("codeChanged")[2]
    assert deleted["value"] == "deleted"
    assert json.loads(deleted["data"]) == {"3": {"name": "Guest", "code": "0483"}}
    assert "3" not in await lock_codes(session, hub)


async def test_name_defaults_and_commas_in_the_url(
        hub: FakeHubitat, session: aiohttp.ClientSession) -> None:
    await get(session, hub, f"devices/{LOCK}/setCode/2,5555")
    await get(session, hub, f"devices/{LOCK}/setCode/" + quote("4,6666,Mrs Smith"))
    await hub.settle()
    assert hub.locks[LOCK].truth()[2]["name"] == "code #2"
    assert hub.locks[LOCK].truth()[4]["name"] == "Mrs Smith"


@pytest.mark.parametrize(("secondary", "why"), [
    ("2,1234,Other", "code in use at position 1"),
    ("2,9999,Owner", "name in use at position 1"),
    ("2,12345,Long", "longer than codeLength"),
    ("6,9999,High", "position above maxCodes"),
])
async def test_refused_set_code_is_silent_by_default(
        hub: FakeHubitat, session: aiohttp.ClientSession, receiver: Receiver,
        secondary: str, why: str) -> None:
    await subscribe(session, hub, receiver.url)
    status, _ = await get(session, hub, f"devices/{LOCK}/setCode/{secondary}")
    assert status == 200, why  # the hub accepts the command; the driver refuses it
    await hub.settle()
    assert receiver.content("codeChanged") == [], why
    assert hub.locks[LOCK].truth() == {1: {"name": "Owner", "code": "1234"}}, why


async def test_refusal_event_switch_sends_failed(
        hub: FakeHubitat, session: aiohttp.ClientSession, receiver: Receiver) -> None:
    hub.refusal_event = "failed"
    await subscribe(session, hub, receiver.url)
    await get(session, hub, f"devices/{LOCK}/setCode/2,1234,Dup")
    await until(lambda: bool(receiver.content("codeChanged")), what="failed posted")
    assert receiver.content("codeChanged")[0]["value"] == "failed"
    assert "1234" not in (receiver.content("codeChanged")[0]["descriptionText"] or "")


async def test_every_position_taken(hub: FakeHubitat, session: aiohttp.ClientSession) -> None:
    for position in range(2, 6):
        await get(session, hub, f"devices/{LOCK}/setCode/{position},{position}{position}00,"
                                f"G{position}")
    await hub.settle()
    codes = await lock_codes(session, hub)
    assert len(codes) == await attribute(session, hub, "maxCodes") == 5
    await get(session, hub, f"devices/{LOCK}/setCode/6,7777,Extra")
    await hub.settle()
    assert 6 not in hub.locks[LOCK].truth()


async def test_encrypted_lock_codes(hub: FakeHubitat, session: aiohttp.ClientSession,
                                    receiver: Receiver) -> None:
    await subscribe(session, hub, receiver.url)
    hub.encrypt = True
    value = await attribute(session, hub, "lockCodes")
    assert isinstance(value, str) and not value.startswith("{")
    assert "1234" not in value
    assert json.loads(hub.decrypt_text(value)) == {"1": {"name": "Owner", "code": "1234"}}
    await get(session, hub, f"devices/{LOCK}/setCode/2,2468,Cleaner")
    await until(lambda: bool(receiver.content("codeChanged")), what="codeChanged posted")
    changed = receiver.content("codeChanged")[0]
    assert changed["value"] == "added"  # the value stays readable
    assert "2468" not in changed["data"] and not changed["data"].startswith("{")
    assert json.loads(hub.decrypt_text(changed["data"]))["2"]["name"] == "Cleaner"
    hub.encrypt = False
    assert (await lock_codes(session, hub))["2"]["code"] == "2468"


async def test_latency_before_the_event(hub: FakeHubitat, session: aiohttp.ClientSession,
                                        receiver: Receiver) -> None:
    hub.event_delay_s = 0.6
    await subscribe(session, hub, receiver.url)
    await get(session, hub, f"devices/{LOCK}/setCode/2,2222,Late")
    await get(session, hub, "devices")  # still answers while the lock works
    assert receiver.content("codeChanged") == []
    assert "2" not in await lock_codes(session, hub)
    await until(lambda: bool(receiver.content("codeChanged")), what="late event")


async def test_dropped_events_leave_polling(hub: FakeHubitat, session: aiohttp.ClientSession,
                                            receiver: Receiver) -> None:
    hub.drop_events = True
    await subscribe(session, hub, receiver.url)
    await get(session, hub, f"devices/{LOCK}/setCode/2,2222,Quiet")
    await hub.settle()
    assert receiver.events == []
    assert (await lock_codes(session, hub))["2"]["name"] == "Quiet"
    assert await attribute(session, hub, "codeChanged") == "added"


async def test_offline_lock_accepts_and_never_applies(
        hub: FakeHubitat, session: aiohttp.ClientSession, receiver: Receiver) -> None:
    hub.locks[LOCK].online = False
    await subscribe(session, hub, receiver.url)
    status, _ = await get(session, hub, f"devices/{LOCK}/setCode/2,2222,Never")
    assert status == 200
    await hub.settle()
    assert receiver.events == []
    assert 2 not in hub.locks[LOCK].truth()
    assert "2" not in await lock_codes(session, hub)


async def test_change_made_at_the_lock(hub: FakeHubitat, session: aiohttp.ClientSession,
                                       receiver: Receiver) -> None:
    await subscribe(session, hub, receiver.url)
    hub.locks[LOCK].keypad_set(5, "8080", "Made at keypad")
    hub.locks[LOCK].keypad_delete(1)
    await hub.settle()
    assert [c["value"] for c in receiver.content("codeChanged")] == ["added", "deleted"]
    assert await lock_codes(session, hub) == {"5": {"name": "Made at keypad", "code": "8080"}}


async def test_get_codes_and_lock_commands(hub: FakeHubitat, session: aiohttp.ClientSession,
                                           receiver: Receiver) -> None:
    await subscribe(session, hub, receiver.url)
    await get(session, hub, f"devices/{LOCK}/getCodes")
    await get(session, hub, f"devices/{LOCK}/unlock")
    await hub.settle()
    assert [c["name"] for c in receiver.content()] == ["lockCodes", "lock"]
    assert receiver.content("lock")[0]["value"] == "unlocked"
    assert await attribute(session, hub, "lock") == "unlocked"
    status, body = await get(session, hub, f"devices/{LOCK}/explode")
    assert status == 404 and body["error"] is True


async def test_post_url_cleared_stops_events(hub: FakeHubitat, session: aiohttp.ClientSession,
                                             receiver: Receiver) -> None:
    await subscribe(session, hub, receiver.url)
    assert hub.post_url == receiver.url
    await get(session, hub, "postURL")
    assert hub.post_url is None
    await get(session, hub, f"devices/{LOCK}/setCode/2,2222,Unheard")
    await hub.settle()
    assert receiver.events == []


async def test_hub_unreachable(hub: FakeHubitat, session: aiohttp.ClientSession) -> None:
    await hub.set_reachable(False)
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(session, hub, "devices")
    await hub.set_reachable(True)
    status, _ = await get(session, hub, "devices")
    assert status == 200


def test_thread_wrapper_serves_blocking_callers() -> None:
    fake = FakeHubitatThread(TOKEN, app_id=3, event_delay_s=0.01)
    fake.hub.add_lock(LOCK, "Back Door")  # before start: no loop runs yet
    url = fake.start()
    try:
        with urllib.request.urlopen(f"{url}/apps/api/3/devices?access_token={TOKEN}",
                                    timeout=5) as response:
            assert json.loads(response.read())[0]["label"] == "Back Door"
        fake.call(fake.hub.locks[LOCK].keypad_set, 2, "2580", "Guest")
        fake.call(fake.hub.settle)
        assert fake.call(fake.hub.locks[LOCK].truth) == {2: {"name": "Guest", "code": "2580"}}
    finally:
        fake.stop()


async def test_receiver_down_loses_the_event(hub: FakeHubitat,
                                             session: aiohttp.ClientSession) -> None:
    dead = Receiver()
    url = await dead.start()
    await dead.stop()  # nothing listens there any more
    await subscribe(session, hub, url)
    await get(session, hub, f"devices/{LOCK}/setCode/2,2222,Lost")
    await hub.settle()
    assert hub.post_errors and all(url in e for e in hub.post_errors)
    # The lock has the code all the same: only polling tells.
    assert (await lock_codes(session, hub))["2"]["name"] == "Lost"
