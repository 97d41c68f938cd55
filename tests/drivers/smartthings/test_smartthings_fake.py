"""The SmartThings cloud fake checked against SmartThings' published behaviour and its Edge lock
drivers (sources cited in tests/fakes/smartthings.py), with plain HTTP calls: no driver."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from bridge.clock import FakeClock
from tests.fakes.smartthings import FakeLock, FakeSmartThings, FakeSmartThingsThread

CLIENT_ID = "c1ient-id"
SECRET = "s3cret"
START = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)
DELAY = 2.0


class Client:
    """Raw calls as SmartThings' API reference and SDKs show them."""

    def __init__(self, session: aiohttp.ClientSession, cloud: FakeSmartThings) -> None:
        self.session = session
        self.cloud = cloud
        self.token, self.refresh = cloud.issue_token()

    async def call(self, method: str, path: str, *, body: Any = None,
                   token: str | None = None, **query: Any) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {self.token if token is None else token}"}
        async with self.session.request(method, self.cloud.base_url + path, json=body,
                                        params=query or None, headers=headers) as response:
            text = await response.text()
            is_json = response.content_type == "application/json"
            return response.status, json.loads(text) if is_json else text, response.headers

    async def get(self, path: str, **query: Any) -> Any:
        status, body, _ = await self.call("GET", path, **query)
        assert status == 200, body
        return body

    async def send(self, device_id: str, command: str, *args: Any,
                   capability: str = "lockCodes") -> tuple[int, Any]:
        body = {"commands": [{"component": "main", "capability": capability,
                              "command": command, "arguments": list(args)}]}
        status, answer, _ = await self.call("POST", f"/v1/devices/{device_id}/commands",
                                            body=body)
        return status, answer

    async def token_call(self, form: dict[str, str], *, user: str = CLIENT_ID,
                         password: str = SECRET, path: str = "/oauth/token",
                         ) -> tuple[int, dict[str, Any]]:
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        async with self.session.post(self.cloud.base_url + path, data=form,
                                     headers={"Authorization": f"Basic {basic}"}) as response:
            return response.status, await response.json()

    async def lock_codes(self, device_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.get(
            f"/v1/devices/{device_id}/components/main/capabilities/lockCodes/status")
        return body


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def cloud(clock: FakeClock) -> AsyncIterator[FakeSmartThings]:
    fake = FakeSmartThings(CLIENT_ID, SECRET, clock=clock, command_delay_s=DELAY)
    fake.add_location("loc-1", "Beach House")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def door(cloud: FakeSmartThings) -> FakeLock:
    return cloud.add_lock("Front Door", location_id="loc-1", max_codes=5)


@pytest.fixture
async def client(cloud: FakeSmartThings) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, cloud)


async def set_code(client: Client, clock: FakeClock, lock: FakeLock, slot: int, pin: str,
                   name: str) -> None:
    status, answer = await client.send(lock.device_id, "setCode", slot, pin, name)
    assert status == 200 and answer["results"][0]["status"] == "ACCEPTED"
    await clock.advance(DELAY)


# -- OAuth ------------------------------------------------------------------------------------


async def test_refresh_replaces_both_tokens_and_refuses_the_used_ones(
        client: Client) -> None:
    status, body = await client.token_call({"grant_type": "refresh_token",
                                            "refresh_token": client.refresh,
                                            "client_id": CLIENT_ID})
    assert status == 200
    assert set(body) >= {"access_token", "token_type", "refresh_token", "expires_in", "scope"}
    assert body["expires_in"] == 86_399 and body["token_type"] == "bearer"
    assert body["refresh_token"] != client.refresh
    status, again = await client.token_call({"grant_type": "refresh_token",
                                             "refresh_token": client.refresh})
    assert status == 400 and again["error"] == "invalid_grant"
    assert (await client.call("GET", "/v1/devices"))[0] == 401  # the old access token
    assert (await client.call("GET", "/v1/devices", token=body["access_token"]))[0] == 200
    status, _ = await client.token_call({"grant_type": "refresh_token",
                                         "refresh_token": body["refresh_token"]},
                                        password="wrong")
    assert status == 401
    status, newer = await client.token_call({"grant_type": "refresh_token",
                                             "refresh_token": body["refresh_token"]},
                                            path="/v1/oauth/token")
    assert status == 200 and newer["access_token"] != body["access_token"]


async def test_a_refresh_token_lasts_thirty_days(client: Client, cloud: FakeSmartThings,
                                                 clock: FakeClock) -> None:
    await clock.advance(30 * 86_400)
    cloud.refused_refresh_status = 401  # what the how-to page says, against clients' 400
    status, body = await client.token_call({"grant_type": "refresh_token",
                                            "refresh_token": client.refresh})
    assert status == 401 and body["error"] == "invalid_grant"


async def test_an_expired_access_token_is_401_and_a_refresh_recovers(
        client: Client, cloud: FakeSmartThings, clock: FakeClock) -> None:
    await clock.advance(86_398)
    assert (await client.call("GET", "/v1/devices"))[0] == 200
    await clock.advance(1)
    status, body, _ = await client.call("GET", "/v1/devices")
    assert status == 401 and "401 Authorization Required" in body  # an HTML page, not JSON
    status, fresh = await client.token_call({"grant_type": "refresh_token",
                                             "refresh_token": client.refresh})
    assert status == 200
    assert (await client.call("GET", "/v1/devices", token=fresh["access_token"]))[0] == 200
    assert (await client.call("GET", "/v1/devices", token="not-a-token"))[0] == 401


async def test_a_revoked_grant_refuses_both_tokens(client: Client,
                                                   cloud: FakeSmartThings) -> None:
    cloud.revoke_refresh_tokens()
    assert (await client.call("GET", "/v1/locations"))[0] == 401
    status, body = await client.token_call({"grant_type": "refresh_token",
                                            "refresh_token": client.refresh})
    assert status == 400 and body["error"] == "invalid_grant"


# -- reads --------------------------------------------------------------------------------------


async def test_devices_are_listed_by_capability_and_location_with_paging(
        client: Client, cloud: FakeSmartThings, door: FakeLock) -> None:
    back = cloud.add_lock("Back Door", location_id="loc-1")
    cloud.add_location("loc-2", "City Flat")
    cloud.add_lock("Flat", location_id="loc-2")
    cloud.page_size = 1
    body = await client.get("/v1/devices", capability="lockCodes", locationId="loc-1")
    seen = [body["items"][0]["deviceId"]]
    assert body["items"][0]["components"][0]["id"] == "main"
    async with client.session.get(body["_links"]["next"]["href"], headers={
            "Authorization": f"Bearer {client.token}"}) as response:
        page_two = await response.json()
    seen.append(page_two["items"][0]["deviceId"])
    assert seen == [door.device_id, back.device_id] and page_two["_links"] == {}
    assert [loc["locationId"] for loc in (await client.get("/v1/locations"))["items"]] == [
        "loc-1", "loc-2"]


async def test_status_shows_lock_codes_without_pins_and_health(
        client: Client, door: FakeLock) -> None:
    codes = await client.lock_codes(door.device_id)
    assert codes["maxCodes"]["value"] == 5 and codes["lockCodes"]["value"] == "{}"
    assert codes["minCodeLength"]["value"] == 4 and codes["maxCodeLength"]["value"] == 8
    status = await client.get(f"/v1/devices/{door.device_id}/status")
    assert status["components"]["main"]["lock"]["lock"]["value"] == "locked"
    health = await client.get(f"/v1/devices/{door.device_id}/health")
    assert health["state"] == "ONLINE" and health["deviceId"] == door.device_id


# -- setCode and its outcome ----------------------------------------------------------------


async def test_set_code_is_accepted_at_once_and_confirmed_later(
        client: Client, door: FakeLock, clock: FakeClock) -> None:
    status, answer = await client.send(door.device_id, "setCode", 1, "4821", "Guest Ada")
    assert status == 200 and answer["results"][0]["status"] == "ACCEPTED"
    assert (await client.lock_codes(door.device_id))["lockCodes"]["value"] == "{}"
    assert door.slots == {}
    await clock.advance(DELAY)
    codes = await client.lock_codes(door.device_id)
    assert codes["codeChanged"]["value"] == "1 set"
    assert codes["codeChanged"]["data"] == {"codeName": "Guest Ada"}
    assert json.loads(codes["lockCodes"]["value"]) == {"1": "Guest Ada"}
    assert "4821" not in json.dumps(codes)  # the cloud never shows a PIN
    assert door.slots[1].pin == "4821"


async def test_change_delete_and_unset(client: Client, door: FakeLock,
                                       clock: FakeClock) -> None:
    await set_code(client, clock, door, 2, "1111", "Cleaner")
    await set_code(client, clock, door, 2, "2222", "Cleaner B")
    assert door.slots[2].pin == "2222" and door.codes_changed() == ["2 set", "2 changed"]
    assert door.lock_codes_attribute() == {"2": "Cleaner B"}
    await client.send(door.device_id, "deleteCode", 2)
    await clock.advance(DELAY)
    await client.send(door.device_id, "deleteCode", 3)
    await clock.advance(DELAY)
    assert door.codes_changed()[-2:] == ["2 deleted", "3 unset"]
    assert door.lock_codes_attribute() == {} and door.slots == {}


async def test_a_duplicate_pin_fails_and_leaves_lock_codes_alone(
        client: Client, door: FakeLock, clock: FakeClock) -> None:
    await set_code(client, clock, door, 1, "4821", "Guest")
    await set_code(client, clock, door, 2, "4821", "Other")
    assert door.codes_changed() == ["1 set", "2 failed"]
    assert door.lock_codes_attribute() == {"1": "Guest"} and 2 not in door.slots
    assert "data" not in door.attributes[("lockCodes", "codeChanged")]


async def test_a_write_the_lock_refuses_fails(client: Client, door: FakeLock,
                                              clock: FakeClock) -> None:
    door.fail_next_sets = 1
    await set_code(client, clock, door, 1, "4821", "Guest")
    await set_code(client, clock, door, 1, "4821", "Guest")
    await set_code(client, clock, door, 2, "12", "Too short")
    assert door.codes_changed() == ["1 failed", "1 set", "2 failed"]


async def test_a_full_lock_shows_max_codes_and_ignores_a_slot_beyond(
        client: Client, cloud: FakeSmartThings, clock: FakeClock) -> None:
    small = cloud.add_lock("Shed", location_id="loc-1", max_codes=2)
    small.keypad_set(1, "1000")
    small.keypad_set(2, "2000")
    codes = await client.lock_codes(small.device_id)
    assert codes["maxCodes"]["value"] == 2
    assert json.loads(codes["lockCodes"]["value"]) == {"1": "Code 1", "2": "Code 2"}
    before = len(small.events)
    await set_code(client, clock, small, 3, "3000", "Guest")
    assert len(small.events) == before and 3 not in small.slots


async def test_name_slot_and_an_empty_pin_rename_a_known_slot_only(
        client: Client, door: FakeLock, clock: FakeClock) -> None:
    await set_code(client, clock, door, 1, "4821", "Guest")
    await set_code(client, clock, door, 1, "", "Guest (late)")
    await client.send(door.device_id, "nameSlot", 4, "Nobody")
    await clock.advance(DELAY)
    assert door.codes_changed() == ["1 set", "1 renamed"]
    assert door.lock_codes_attribute() == {"1": "Guest (late)"} and door.slots[1].pin == "4821"


# -- the keypad and reloads -------------------------------------------------------------------


async def test_keypad_changes_are_reported_with_default_names(
        client: Client, door: FakeLock, clock: FakeClock) -> None:
    door.keypad_set(3, "9999")
    assert door.codes_changed() == ["3 set"] and door.lock_codes_attribute() == {"3": "Code 3"}
    door.keypad_delete(3)
    assert door.codes_changed()[-1] == "3 deleted" and door.lock_codes_attribute() == {}
    door.online = False
    door.keypad_set(4, "8888")  # the cloud does not hear of it
    door.online = True
    assert door.lock_codes_attribute() == {}
    await client.send(door.device_id, "reloadAllCodes")
    await clock.advance(DELAY)
    assert door.lock_codes_attribute() == {"4": "Code 4"}
    scans = [e["value"] for e in door.events if e["attribute"] == "scanCodes"]
    assert scans == ["Scanning", "Complete"]
    assert "4 set" in door.codes_changed() and "1 unset" in door.codes_changed()


# -- faults ----------------------------------------------------------------------------------


async def test_an_offline_device_accepts_commands_that_never_happen(
        client: Client, door: FakeLock, clock: FakeClock) -> None:
    door.online = False
    assert (await client.get(f"/v1/devices/{door.device_id}/health"))["state"] == "OFFLINE"
    status, answer = await client.send(door.device_id, "setCode", 1, "4821", "Guest")
    assert status == 200 and answer["results"][0]["status"] == "ACCEPTED"
    await clock.advance(DELAY * 5)
    door.online = True
    await clock.advance(DELAY * 5)
    assert door.slots == {} and door.codes_changed() == [] and len(door.dropped) == 1


async def test_a_busy_hub_holds_commands_in_order(client: Client, door: FakeLock,
                                                  clock: FakeClock) -> None:
    door.hub_busy = True
    await client.send(door.device_id, "setCode", 1, "1111", "A")
    await client.send(door.device_id, "deleteCode", 1)
    await clock.advance(DELAY * 10)
    assert door.codes_changed() == []
    door.hub_busy = False
    await clock.advance(1.0)
    assert door.codes_changed() == ["1 set"]
    await clock.advance(DELAY)
    assert door.codes_changed() == ["1 set", "1 deleted"]


async def test_run_pending_skips_the_delay(client: Client, cloud: FakeSmartThings,
                                           door: FakeLock) -> None:
    await client.send(door.device_id, "setCode", 1, "1111", "A")
    await client.send(door.device_id, "setCode", 2, "2222", "B")
    await cloud.run_pending()
    assert door.codes_changed() == ["1 set", "2 set"]


async def test_rate_limit_answers_429_with_the_wait_in_the_details(
        client: Client, cloud: FakeSmartThings, clock: FakeClock) -> None:
    cloud.rate_limit = 2
    assert (await client.call("GET", "/v1/devices"))[0] == 200
    await clock.advance(10)
    assert (await client.call("GET", "/v1/devices"))[0] == 200
    status, body, headers = await client.call("GET", "/v1/devices")
    assert status == 429 and body["error"]["code"] == "TooManyRequestError"
    assert "retry in 50000 millis" in body["error"]["details"][0]["message"]
    assert "Retry-After" not in headers and body["requestId"]
    cloud.retry_after_header = True
    status, _, headers = await client.call("GET", "/v1/devices")
    assert status == 429 and headers["Retry-After"] == "50"
    await clock.advance(61)
    assert (await client.call("GET", "/v1/devices"))[0] == 200
    cloud.rate_limit, cloud.rate_limited = None, True
    assert (await client.call("GET", "/v1/locations"))[0] == 429


async def test_malformed_commands_are_422(client: Client, door: FakeLock) -> None:
    status, body = await client.send(door.device_id, "setCode", "1", "4821", "Guest")
    assert status == 422 and body["error"]["code"] == "ConstraintViolationError"
    assert body["error"]["details"][0]["target"] == "commands[0].arguments[0]"
    assert (await client.send(door.device_id, "setCode", 1, "4821"))[0] == 422
    assert (await client.send(door.device_id, "openSesame"))[0] == 422
    many = {"commands": [{"component": "main", "capability": "lockCodes",
                          "command": "reloadAllCodes", "arguments": []}] * 11}
    status, _, _ = await client.call("POST", f"/v1/devices/{door.device_id}/commands",
                                     body=many)
    assert status == 422 and door.dropped == []


async def test_a_removed_device_is_gone(client: Client, cloud: FakeSmartThings,
                                        door: FakeLock) -> None:
    cloud.remove_device(door.device_id)
    assert (await client.get("/v1/devices"))["items"] == []
    status, body, _ = await client.call("GET", f"/v1/devices/{door.device_id}/status")
    assert status == 403 and body["error"]["code"] == "ForbiddenError"
    assert (await client.send(door.device_id, "reloadAllCodes"))[0] == 403
    cloud.missing_device_status = 404
    assert (await client.call("GET", f"/v1/devices/{door.device_id}/health"))[0] == 404


async def test_connected_elsewhere_keeps_the_token_but_lists_nothing(
        client: Client, cloud: FakeSmartThings, door: FakeLock) -> None:
    cloud.connect_elsewhere("loc-1")
    assert (await client.get("/v1/locations"))["items"] == []
    assert (await client.get("/v1/devices"))["items"] == []
    assert (await client.call("GET", f"/v1/devices/{door.device_id}"))[0] == 403
    assert door.device_id in cloud.devices  # still exists, just not for this account


async def test_history_lists_the_outcomes_in_order(client: Client, door: FakeLock,
                                                   clock: FakeClock) -> None:
    await set_code(client, clock, door, 1, "4821", "Guest")
    await set_code(client, clock, door, 2, "4821", "Dup")
    body = await client.get("/v1/history/devices", locationId="loc-1",
                            deviceId=door.device_id, oldestFirst="true")
    changes = [(row["value"], row["data"]) for row in body["items"]
               if row["attribute"] == "codeChanged"]
    assert changes == [("1 set", {"codeName": "Guest"}), ("2 failed", {})]
    assert (await client.call("GET", "/v1/history/devices"))[0] == 422


async def test_latency_delays_every_answer(client: Client, cloud: FakeSmartThings,
                                           clock: FakeClock) -> None:
    cloud.latency_s = 5.0
    call = asyncio.ensure_future(client.call("GET", "/v1/locations"))
    for _ in range(200):
        await asyncio.sleep(0.005)
        if clock.pending_sleepers():
            break
    assert not call.done()
    await clock.advance(5.0)
    status, _, _ = await asyncio.wait_for(call, 5.0)
    assert status == 200


async def test_the_other_lock_codes_commands(client: Client, door: FakeLock,
                                            clock: FakeClock) -> None:
    door.keypad_set(2, "2468")
    await client.send(door.device_id, "requestCode", 2)
    await client.send(door.device_id, "requestCode", 4)
    await client.send(door.device_id, "updateCodes", {"code3": "1357", "code2": ""})
    await client.send(door.device_id, "setCodeLength", 6)
    await client.send(door.device_id, "unlock", capability="lock")
    await clock.advance(DELAY * 5)
    assert door.codes_changed() == ["2 set", "2 changed", "4 unset", "3 set", "2 deleted"]
    assert door.slots == {3: door.slots[3]} and door.slots[3].pin == "1357"
    assert door.lock_codes_attribute() == {"3": "Code 3"}
    codes = await client.lock_codes(door.device_id)
    assert codes["codeLength"]["value"] == 6 and codes["codeReport"] == {"value": None}
    status = await client.get(f"/v1/devices/{door.device_id}/status")
    assert status["components"]["main"]["lock"]["lock"]["value"] == "unlocked"


async def test_a_hub_runs_one_command_at_a_time_and_hubs_run_apart(
        client: Client, cloud: FakeSmartThings, door: FakeLock, clock: FakeClock) -> None:
    same_hub = cloud.add_lock("Garage", location_id="loc-1")
    other_hub = cloud.add_lock("Cabin", location_id="loc-1", hub_id="hub-2")
    for lock in (door, same_hub, other_hub):
        await client.send(lock.device_id, "setCode", 1, "1111", "A")
    await clock.advance(DELAY)
    assert (len(door.events), len(same_hub.events), len(other_hub.events)) == (2, 0, 2)
    await clock.advance(DELAY)
    assert same_hub.codes_changed() == ["1 set"]


async def test_run_pending_leaves_a_busy_hub_alone(client: Client, cloud: FakeSmartThings,
                                                   door: FakeLock) -> None:
    door.hub_busy = True
    await client.send(door.device_id, "setCode", 1, "1111", "A")
    await cloud.run_pending()
    assert door.codes_changed() == []
    door.hub_busy = False
    await cloud.run_pending()
    assert door.codes_changed() == ["1 set"]


def test_the_fake_runs_in_its_own_thread_for_daemon_tests() -> None:
    fake = FakeSmartThingsThread(CLIENT_ID, SECRET)
    url = fake.start()
    try:
        lock = fake.call(fake.api.add_lock, "Front Door")
        token, _ = fake.call(fake.api.issue_token)
        body = json.dumps({"commands": [{"component": "main", "capability": "lockCodes",
                                         "command": "setCode",
                                         "arguments": [1, "4821", "Guest"]}]}).encode()
        request = urllib.request.Request(
            f"{url}/v1/devices/{lock.device_id}/commands", data=body, method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["results"][0]["status"] == "ACCEPTED"
        fake.run(fake.api.run_pending)
        assert fake.call(lambda: lock.codes_changed()) == ["1 set"]
    finally:
        fake.stop()
