"""The Igloohome cloud fake checked against the published behaviour (sources cited in
tests/fakes/igloohome.py), with plain HTTP requests: no driver involved."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bridge.clock import FakeClock
from tests.fakes.igloohome import (
    JOB_DONE,
    JOB_FAILED,
    FakeIgloohome,
    FakeIgloohomeThread,
    error_body,
)

CLIENT_ID = "igl00client"
SECRET = "igl00secret"
FRONT, BACK, SHED = "IGK330c7db37", "IGK345f18e62", "IGP1a2b3c4d5"  # SHED: no bridge
BRIDGE, OTHER_BRIDGE = "IGB4f00d0001", "IGB4f00d0002"
START = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def stamp(moment: datetime, offset: str = "+00:00") -> str:
    """An algoPIN date as Igloohome wants it: on the hour, with an explicit offset."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + offset


class Client:
    """Raw calls as the published clients make them: Basic auth for the token, Bearer and
    JSON for the API."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.token = ""

    async def oauth(self, form: dict[str, str], *,
                    basic: tuple[str, str] | None = (CLIENT_ID, SECRET)
                    ) -> tuple[int, dict[str, Any]]:
        headers = {}
        if basic is not None:
            raw = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {raw}"
        async with self.session.post(self.url + "/oauth2/token", data=form,
                                     headers=headers) as response:
            return response.status, await response.json()

    async def login(self, scope: str | None = None) -> None:
        form = {"grant_type": "client_credentials"}
        if scope is not None:
            form["scope"] = scope
        status, body = await self.oauth(form)
        assert status == 200, body
        self.token = body["access_token"]

    async def call(self, method: str, path: str, body: Any = None, *,
                   token: str | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {"Authorization": f"Bearer {self.token if token is None else token}",
                   "Accept": "application/json"}
        async with self.session.request(method, self.url + "/igloohome" + path, json=body,
                                        headers=headers) as response:
            return response.status, await response.json(), response

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        status, body, _ = await self.call("GET", path, **kw)
        return status, body

    async def post(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        status, answer, _ = await self.call("POST", path, body, **kw)
        return status, answer

    async def hourly(self, start: datetime, end: datetime, *, device: str = FRONT,
                     variance: Any = 1, **extra: Any) -> tuple[int, Any]:
        return await self.post(f"/devices/{device}/algopin/hourly",
                               {"variance": variance, "startDate": stamp(start),
                                "endDate": stamp(end), "accessName": "Guest", **extra})

    async def job(self, job_type: int, data: dict[str, Any], *, device: str = FRONT,
                  bridge: str = BRIDGE) -> tuple[int, Any]:
        return await self.post(f"/devices/{device}/jobs/bridges/{bridge}",
                               {"jobType": job_type, "jobData": data})

    async def create_pin(self, pin: str, start: datetime = START,
                         end: datetime = START + 2 * DAY, **kw: Any) -> tuple[int, Any]:
        return await self.job(4, {"accessName": "Guest", "pin": pin, "pinType": 4,
                                  "startDate": stamp(start), "endDate": stamp(end)}, **kw)

    async def status(self, job_id: str) -> dict[str, Any]:
        status, body = await self.get(f"/jobs/{job_id}")
        assert status == 200, body
        result: dict[str, Any] = body
        return result


def error(code: str, message: str | None = None) -> dict[str, str]:
    return error_body(code, message)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def api(clock: FakeClock) -> AsyncIterator[FakeIgloohome]:
    fake = FakeIgloohome(CLIENT_ID, SECRET, clock=clock, job_delay_s=2.0)
    fake.add_bridge(BRIDGE)
    fake.add_bridge(OTHER_BRIDGE)
    fake.add_lock(FRONT, "Front Door", bridge=BRIDGE)
    fake.add_lock(BACK, "Back Door", bridge=BRIDGE, battery=40)
    fake.add_lock(SHED, "Shed Padlock", battery=None)
    fake.base_url = await fake.start()  # type: ignore[attr-defined]
    yield fake
    await fake.stop()


@pytest.fixture
async def client(api: FakeIgloohome) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        logged_in = Client(session, api.base_url)  # type: ignore[attr-defined]
        await logged_in.login()
        yield logged_in


# -- OAuth --------------------------------------------------------------------------------------


async def test_client_credentials_with_basic_auth(client: Client) -> None:
    status, body = await client.oauth({"grant_type": "client_credentials",
                                       "scope": "igloohomeapi/get-devices"})
    assert status == 200
    assert set(body) == {"access_token", "expires_in", "token_type"}
    assert (body["expires_in"], body["token_type"]) == (3600, "Bearer")
    # Some clients put the credentials in the form; that works too.
    status, body = await client.oauth({"grant_type": "client_credentials",
                                       "client_id": CLIENT_ID, "client_secret": SECRET},
                                      basic=None)
    assert status == 200 and body["access_token"]


async def test_token_refusals(client: Client) -> None:
    assert await client.oauth({"grant_type": "client_credentials"}, basic=(CLIENT_ID, "wrong")) \
        == (400, {"error": "invalid_client"})
    assert await client.oauth({"grant_type": "password"}) == \
        (400, {"error": "unsupported_grant_type"})
    assert await client.oauth({"grant_type": "client_credentials",
                               "scope": "igloohomeapi/get-devices igloohomeapi/not-granted"}) \
        == (400, {"error": "invalid_request"})


async def test_a_token_carries_only_the_scopes_asked_for(client: Client) -> None:
    await client.login("igloohomeapi/algopin-hourly")
    assert await client.get("/devices") == (403, error("Forbidden"))
    assert (await client.hourly(START, START + 2 * HOUR))[0] == 200
    await client.login()  # no scope: everything the client was granted
    assert (await client.get("/devices"))[0] == 200


async def test_missing_unknown_and_expired_tokens_are_401(client: Client,
                                                          api: FakeIgloohome) -> None:
    unauthorized = (401, {"message": "Unauthorized"})
    assert await client.get("/devices", token="") == unauthorized
    assert await client.get("/devices", token="not-a-token") == unauthorized
    api.expire_tokens()
    assert await client.get("/devices") == unauthorized
    await client.login()  # a new token works again
    assert (await client.get("/devices"))[0] == 200


async def test_tokens_expire_after_their_lifetime(client: Client, api: FakeIgloohome,
                                                  clock: FakeClock) -> None:
    await clock.advance(3599)
    assert (await client.get("/devices"))[0] == 200
    await clock.advance(1)
    assert (await client.get("/devices"))[0] == 401


async def test_a_revoked_client_can_neither_call_nor_log_in(client: Client,
                                                            api: FakeIgloohome) -> None:
    api.revoke_client()
    assert (await client.get("/devices"))[0] == 401
    assert await client.oauth({"grant_type": "client_credentials"}) == \
        (400, {"error": "invalid_client"})


# -- devices ------------------------------------------------------------------------------------


async def test_device_list_shows_locks_with_and_without_a_bridge(client: Client) -> None:
    status, body = await client.get("/devices")
    assert status == 200 and body["nextCursor"] == ""
    devices = {d["deviceId"]: d for d in body["payload"]}
    assert set(devices) == {FRONT, BACK, SHED, BRIDGE, OTHER_BRIDGE}
    front = devices[FRONT]
    assert set(front) == {"id", "type", "deviceId", "deviceName", "pairedAt", "homeId",
                          "linkedDevices", "batteryLevel"}
    assert (front["type"], front["deviceName"], front["batteryLevel"]) == \
        ("Lock", "Front Door", 90)
    assert front["linkedDevices"] == [{"type": "Bridge", "deviceId": BRIDGE}]
    assert devices[SHED]["linkedDevices"] == [] and devices[SHED]["batteryLevel"] is None
    assert devices[BRIDGE]["type"] == "Bridge"
    assert devices[BRIDGE]["linkedDevices"] == [{"type": "Lock", "deviceId": FRONT},
                                                {"type": "Lock", "deviceId": BACK}]
    assert devices[OTHER_BRIDGE]["linkedDevices"] == []


async def test_device_detail_and_unknown_device(client: Client) -> None:
    status, body = await client.get(f"/devices/{BACK}")
    assert status == 200 and (body["deviceId"], body["batteryLevel"]) == (BACK, 40)
    status, body = await client.get(f"/devices/{BRIDGE}")
    assert status == 200 and body["type"] == "Bridge"
    assert await client.get("/devices/IGK000000000") == (404, error("NotFound"))


async def test_device_list_pages_when_asked(client: Client, api: FakeIgloohome) -> None:
    api.devices_page_size = 2
    seen: list[str] = []
    cursor = ""
    for _ in range(5):
        status, body = await client.get("/devices" + (f"?cursor={cursor}" if cursor else ""))
        assert status == 200 and len(body["payload"]) <= 2
        seen += [d["deviceId"] for d in body["payload"]]
        cursor = body["nextCursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted([FRONT, BACK, SHED, BRIDGE, OTHER_BRIDGE])


async def test_a_removed_lock_is_gone_from_the_account(client: Client,
                                                       api: FakeIgloohome) -> None:
    api.remove_lock(BACK)
    _, body = await client.get("/devices")
    assert BACK not in {d["deviceId"] for d in body["payload"]}
    bridge = next(d for d in body["payload"] if d["deviceId"] == BRIDGE)
    assert bridge["linkedDevices"] == [{"type": "Lock", "deviceId": FRONT}]
    assert await client.hourly(START, START + HOUR, device=BACK) == (404, error("NotFound"))
    assert (await client.create_pin("1234", device=BACK))[0] == 404


async def test_an_account_connected_elsewhere_logs_in_but_lists_nothing(
        client: Client, api: FakeIgloohome) -> None:
    api.connected_elsewhere = True
    await client.login()
    assert await client.get("/devices") == (200, {"nextCursor": "", "payload": []})
    assert (await client.hourly(START, START + HOUR))[0] == 404
    assert (await client.create_pin("1234"))[0] == 404


def test_a_bridge_links_at_most_five_locks(api: FakeIgloohome) -> None:
    for n in range(3):
        api.add_lock(f"IGK9{n:07d}", f"Room {n}", bridge=BRIDGE)
    with pytest.raises(ValueError):
        api.add_lock("IGK99999999", "Room 9", bridge=BRIDGE)


# -- algoPINs -----------------------------------------------------------------------------------


async def test_hourly_algopin_is_what_the_lock_computes(client: Client,
                                                        api: FakeIgloohome) -> None:
    start, end = START + 2 * HOUR, START + 5 * HOUR
    status, body = await client.hourly(start, end)
    assert status == 200 and set(body) == {"pin", "pinId"}
    pin = body["pin"]
    assert len(pin) == 9 and pin.isdigit()
    assert pin == api.expected_algopin(FRONT, "hourly", start, end, 1)
    lock = api.locks[FRONT]
    assert not lock.opens(pin, start - timedelta(minutes=1))
    assert lock.opens(pin, start) and lock.opens(pin, end - timedelta(seconds=1))
    assert not lock.opens(pin, end)
    assert not api.locks[BACK].opens(pin, start)  # another lock computes other PINs
    assert lock.custom == {}  # nothing was written to the lock


async def test_the_same_request_gives_the_same_pin_and_variance_another(
        client: Client) -> None:
    first = (await client.hourly(START, START + 3 * HOUR))[1]
    again = (await client.hourly(START, START + 3 * HOUR))[1]
    other = (await client.hourly(START, START + 3 * HOUR, variance="2"))[1]
    assert first["pin"] == again["pin"] and first["pinId"] != again["pinId"]
    assert other["pin"] != first["pin"]


@pytest.mark.parametrize("variance", [0, 4, "x", None, True])
async def test_hourly_variance_is_one_to_three(client: Client, variance: Any) -> None:
    status, body = await client.hourly(START, START + HOUR, variance=variance)
    assert (status, body) == (400, error("BadRequest", "'variance' must be between 1 and 3"))


@pytest.mark.parametrize("start", ["2026-03-01T14:30:00+00:00", "2026-03-01T14:00:00Z",
                                   "2026-03-01T14:00:00", "2026-03-01 14:00:00+00:00", 5])
async def test_algopin_dates_are_on_the_hour_with_an_offset(client: Client,
                                                           start: Any) -> None:
    status, body = await client.post(f"/devices/{FRONT}/algopin/hourly",
                                     {"variance": 1, "startDate": start,
                                      "endDate": stamp(START + 3 * HOUR), "accessName": "G"})
    assert status == 400
    assert body["message"] == "'startDate' must be in format YYYY-MM-DDTHH:00:00+hh:mm"


async def test_offsets_are_honoured(client: Client, api: FakeIgloohome) -> None:
    body = {"variance": 1, "startDate": "2026-03-01T16:00:00+02:00",
            "endDate": "2026-03-01T18:00:00+02:00", "accessName": "Guest"}
    status, answer = await client.post(f"/devices/{FRONT}/algopin/hourly", body)
    assert status == 200
    assert api.locks[FRONT].opens(answer["pin"], START) and \
        not api.locks[FRONT].opens(answer["pin"], START + 2 * HOUR)


async def test_hourly_lasts_one_to_672_hours(client: Client) -> None:
    assert (await client.hourly(START, START + 672 * HOUR))[0] == 200
    assert (await client.hourly(START, START + 673 * HOUR))[1] == \
        error("BadRequest", "An hourly PIN lasts 1 to 672 hours")
    assert (await client.hourly(START, START))[0] == 400
    assert (await client.hourly(START, START - HOUR))[0] == 400


async def test_a_long_algopin_must_be_used_within_24_hours_of_its_start(
        client: Client, api: FakeIgloohome) -> None:
    start, end = START, START + 72 * HOUR
    used = (await client.hourly(start, end))[1]["pin"]
    unused = (await client.hourly(start, end, variance=2))[1]["pin"]
    lock = api.locks[FRONT]
    assert lock.enter(used, start + 23 * HOUR)  # activated in time
    assert lock.opens(used, start + 60 * HOUR)
    assert lock.opens(unused, start + 23 * HOUR)
    assert not lock.opens(unused, start + 24 * HOUR)  # never activated: dead
    assert not lock.enter(unused, start + 30 * HOUR)


async def test_a_day_long_algopin_needs_no_activation(client: Client,
                                                      api: FakeIgloohome) -> None:
    pin = (await client.hourly(START, START + 24 * HOUR))[1]["pin"]
    assert api.locks[FRONT].enter(pin, START + 23 * HOUR + timedelta(minutes=59))


async def test_daily_algopin_whole_days_29_to_367(client: Client, api: FakeIgloohome) -> None:
    async def daily(start: str, end: str) -> tuple[int, Any]:
        return await client.post(f"/devices/{FRONT}/algopin/daily",
                                 {"variance": 1, "startDate": start, "endDate": end,
                                  "accessName": "Long stay"})

    status, body = await daily(stamp(START), stamp(START + 30 * DAY))
    assert status == 200
    assert body["pin"] == api.expected_algopin(FRONT, "daily", START, START + 30 * DAY, 1)
    lock = api.locks[FRONT]
    assert lock.enter(body["pin"], START + HOUR)
    assert lock.opens(body["pin"], START + 29 * DAY) and \
        not lock.opens(body["pin"], START + 30 * DAY)
    assert (await daily(stamp(START), stamp(START + 28 * DAY)))[1] == \
        error("BadRequest", "A daily PIN lasts 29 to 367 days")
    assert (await daily(stamp(START), stamp(START + 368 * DAY)))[0] == 400
    assert (await daily(stamp(START), stamp(START + 367 * DAY)))[0] == 200
    assert (await daily(stamp(START), stamp(START + 30 * DAY + 2 * HOUR)))[1] == \
        error("BadRequest", "A daily PIN's start and end time must match")


async def test_one_time_algopin_opens_once_within_24_hours(client: Client,
                                                           api: FakeIgloohome) -> None:
    async def onetime(variance: Any) -> tuple[int, Any]:
        return await client.post(f"/devices/{FRONT}/algopin/onetime",
                                 {"variance": variance, "startDate": stamp(START),
                                  "accessName": "Plumber"})

    status, body = await onetime(5)
    assert status == 200
    pin = body["pin"]
    assert pin == api.expected_algopin(FRONT, "onetime", START, None, 5)
    lock = api.locks[FRONT]
    assert lock.opens(pin, START + 23 * HOUR) and not lock.opens(pin, START + 24 * HOUR)
    assert lock.enter(pin, START + HOUR)
    assert not lock.enter(pin, START + 2 * HOUR)  # used up
    assert (await onetime(6))[0] == 400


async def test_permanent_algopin_must_be_used_within_24_hours(client: Client,
                                                              api: FakeIgloohome) -> None:
    async def permanent(variance: int) -> str:
        status, body = await client.post(f"/devices/{FRONT}/algopin/permanent",
                                         {"variance": variance, "startDate": stamp(START),
                                          "accessName": "Owner"})
        assert status == 200
        pin: str = body["pin"]
        return pin

    kept, lapsed = await permanent(1), await permanent(2)
    lock = api.locks[FRONT]
    assert lock.enter(kept, START + 2 * HOUR)
    assert lock.opens(kept, START + 3000 * DAY)
    assert not lock.opens(lapsed, START + 25 * HOUR)


@pytest.mark.parametrize("name", ["", "x" * 61, None, 7])
async def test_access_name_is_one_to_sixty_characters(client: Client, name: Any) -> None:
    assert await client.hourly(START, START + HOUR, accessName=name) == \
        (400, error("BadRequest", "'accessName' must be 1 to 60 characters"))


async def test_bad_bodies_and_kinds(client: Client) -> None:
    status, _, _ = await client.call("POST", f"/devices/{FRONT}/algopin/hourly", None)
    assert status == 400
    assert (await client.post(f"/devices/{FRONT}/algopin/weekly", {}))[0] == 404


async def test_there_is_no_call_to_delete_an_algopin(client: Client,
                                                     api: FakeIgloohome) -> None:
    body = (await client.hourly(START, START + 3 * HOUR))[1]
    async with client.session.delete(
            f"{client.url}/igloohome/devices/{FRONT}/algopin/{body['pinId']}",
            headers={"Authorization": f"Bearer {client.token}"}) as response:
        assert response.status in (404, 405)
    # A bridge delete job cannot name it either: a custom PIN has 4 to 6 digits.
    assert (await client.job(5, {"pin": body["pin"]}))[0] == 400
    assert api.locks[FRONT].opens(body["pin"], START)


# -- bridge jobs --------------------------------------------------------------------------------


async def test_create_pin_job_reaches_the_lock_after_the_bridge_ran_it(
        client: Client, api: FakeIgloohome, clock: FakeClock) -> None:
    start = START + timedelta(minutes=5)
    status, body = await client.create_pin("4821", start, START + 2 * DAY)
    assert status == 200 and set(body) == {"jobId"}
    job_id = body["jobId"]
    lock = api.locks[FRONT]
    assert await client.status(job_id) == {"jobId": job_id, "jobType": 4, "completed": False,
                                           "jobResponse": None}
    assert not lock.opens("4821", START + HOUR)
    await clock.advance(1.9)
    assert (await client.status(job_id))["completed"] is False
    await clock.advance(0.1)
    assert await client.status(job_id) == {"jobId": job_id, "jobType": 4, "completed": True,
                                           "jobResponse": {"jobStatus": JOB_DONE}}
    assert not lock.opens("4821", start - timedelta(seconds=1))
    assert lock.opens("4821", start) and not lock.opens("4821", START + 2 * DAY)
    assert api.bridges[BRIDGE].jobs_run == 1


async def test_delete_pin_job_takes_it_off_the_lock(client: Client, api: FakeIgloohome,
                                                    clock: FakeClock) -> None:
    await client.create_pin("4821")
    status, body = await client.job(5, {"pin": "4821"})
    assert status == 200
    await clock.advance(2)
    assert api.locks[FRONT].opens("4821", START + HOUR)
    await clock.advance(2)
    assert (await client.status(body["jobId"]))["completed"] is True
    assert not api.locks[FRONT].opens("4821", START + HOUR)


async def test_deleting_a_pin_the_lock_does_not_hold_fails(client: Client,
                                                           clock: FakeClock) -> None:
    _, body = await client.job(5, {"pin": "999999"})
    await clock.advance(2)
    assert await client.status(body["jobId"]) == {
        "jobId": body["jobId"], "jobType": 5, "completed": False,
        "jobResponse": {"jobStatus": JOB_FAILED}}


async def test_a_bridge_runs_one_job_at_a_time_in_order(client: Client, api: FakeIgloohome,
                                                        clock: FakeClock) -> None:
    first = (await client.create_pin("1111"))[1]["jobId"]
    second = (await client.create_pin("2222", device=BACK))[1]["jobId"]
    await clock.advance(2)
    assert (await client.status(first))["completed"] is True
    assert (await client.status(second))["completed"] is False
    await clock.advance(2)
    assert (await client.status(second))["completed"] is True
    assert api.locks[BACK].opens("2222", START + HOUR)


async def test_bridge_offline_and_unlinked_lock_are_refused(client: Client,
                                                            api: FakeIgloohome) -> None:
    api.bridges[BRIDGE].online = False
    assert await client.create_pin("1234") == (409, error("BridgeOffline"))
    api.bridges[BRIDGE].online = True
    assert await client.create_pin("1234", device=SHED) == \
        (409, error("LockNotLinkedToBridge"))
    assert await client.create_pin("1234", bridge=OTHER_BRIDGE) == \
        (409, error("LockNotLinkedToBridge"))
    assert (await client.create_pin("1234", bridge="IGB000000000"))[0] == 404
    assert api.jobs == {}


async def test_an_offline_bridge_keeps_its_queue_until_it_is_back(
        client: Client, api: FakeIgloohome, clock: FakeClock) -> None:
    job = (await client.create_pin("5555"))[1]["jobId"]
    api.set_bridge_online(BRIDGE, False)
    await clock.advance(10)
    assert (await client.status(job))["jobResponse"] is None
    api.set_bridge_online(BRIDGE, True)
    await clock.advance(1)
    assert (await client.status(job))["jobResponse"] is None
    await clock.advance(1)
    assert (await client.status(job))["completed"] is True


async def test_twenty_pending_jobs_fill_a_bridge(client: Client, api: FakeIgloohome,
                                                 clock: FakeClock) -> None:
    bridge = api.bridges[BRIDGE]
    bridge.hold_jobs = True
    for n in range(20):
        assert (await client.create_pin(f"{1000 + n}"))[0] == 200
    assert await client.create_pin("9999") == (409, error("TooManyPendingJobs"))
    assert await client.create_pin("9999", device=BACK) == (409, error("TooManyPendingJobs"))
    bridge.hold_jobs = False
    api.run_jobs()  # released now (else at the fake's next request)
    await clock.advance(2)
    assert (await client.create_pin("9999"))[0] == 200
    assert len(bridge.queue) == 20


@pytest.mark.parametrize("why", ["unreachable", "duplicate", "full", "unlinked"])
async def test_jobs_that_fail_at_the_lock(client: Client, api: FakeIgloohome,
                                          clock: FakeClock, why: str) -> None:
    lock = api.locks[FRONT]
    if why == "duplicate":
        lock.add_keypad_code("7777", START, START + DAY)
    lock.unreachable = why == "unreachable"
    if why == "full":
        lock.capacity = 0
    job = (await client.create_pin("7777"))[1]["jobId"]
    if why == "unlinked":
        api.unlink(FRONT)
    await clock.advance(2)
    assert (await client.status(job))["jobResponse"] == {"jobStatus": JOB_FAILED}
    assert lock.custom.get("7777") is None or why == "duplicate"


@pytest.mark.parametrize("data", [
    {"pin": "123"}, {"pin": "1234567"}, {"pin": 1234}, {"pin": "12a4"},
    {"pinType": 1}, {"accessName": ""}, {"startDate": "2026-03-01T14:00:00Z"},
    {"endDate": "2026-03-01T13:00:00+00:00"}, {"startDate": None}])
async def test_create_pin_job_validation(client: Client, api: FakeIgloohome,
                                         data: dict[str, Any]) -> None:
    full = {"accessName": "Guest", "pin": "1234", "pinType": 4, "startDate": stamp(START),
            "endDate": stamp(START + DAY), **data}
    status, body = await client.job(4, full)
    assert status == 400 and body["error"] == "BadRequest"
    assert api.jobs == {}


async def test_only_pin_jobs_are_modelled(client: Client) -> None:
    assert (await client.job(2, {}))[0] == 400
    status, _ = await client.post(f"/devices/{FRONT}/jobs/bridges/{BRIDGE}",
                                  {"jobType": 4, "jobData": "1234"})
    assert status == 400


async def test_job_scopes_and_unknown_job(client: Client) -> None:
    await client.login("igloohomeapi/create-pin-bridge-proxied-job")
    job = (await client.create_pin("2468"))[1]["jobId"]
    assert (await client.job(5, {"pin": "2468"})) == (403, error("Forbidden"))
    assert await client.get(f"/jobs/{job}") == (403, error("Forbidden"))
    await client.login()
    assert await client.get("/jobs/job-nope") == (404, error("JobNotFound"))


# -- switches -----------------------------------------------------------------------------------


async def test_rate_limit_answers_429(client: Client, api: FakeIgloohome,
                                      clock: FakeClock) -> None:
    api.rate_limit = 2
    assert (await client.get("/devices"))[0] == 200
    assert (await client.get("/devices"))[0] == 200
    status, body, response = await client.call("GET", "/devices")
    assert (status, body) == (429, error("TooManyRequests"))
    assert "Retry-After" not in response.headers
    await clock.advance(1)
    assert (await client.get("/devices"))[0] == 200
    api.rate_limited, api.rate_limit_retry_after = True, 30
    status, _, response = await client.call("GET", "/devices")
    assert status == 429 and response.headers["Retry-After"] == "30"


async def test_fail_next_answers_the_status_once(client: Client, api: FakeIgloohome) -> None:
    api.fail_next(503, path="/algopin/")
    assert await client.get("/devices") != (503, error("ServiceUnavailable"))
    assert await client.hourly(START, START + HOUR) == (503, error("ServiceUnavailable"))
    assert (await client.hourly(START, START + HOUR))[0] == 200
    api.fail_next(429, retry_after=7)
    status, _, response = await client.call("GET", "/devices")
    assert status == 429 and response.headers["Retry-After"] == "7"
    api.fail_next("TooManyPendingJobs", path="/jobs/bridges/")
    assert await client.create_pin("1234") == (409, error("TooManyPendingJobs"))
    assert api.jobs == {}
    with pytest.raises(ValueError):
        api.fail_next(418)


async def test_latency_delays_every_answer(client: Client, api: FakeIgloohome,
                                           clock: FakeClock) -> None:
    api.latency_s = 5
    call = asyncio.ensure_future(client.get("/devices"))
    await until(lambda: clock.pending_sleepers() == 1)
    assert not call.done()
    await clock.advance(5)
    assert (await asyncio.wait_for(call, 10))[0] == 200


def test_threaded_fake_serves_blocking_clients() -> None:
    fake = FakeIgloohomeThread(CLIENT_ID, SECRET, job_delay_s=0.0)
    url = fake.start()
    try:
        fake.call(fake.api.add_lock, FRONT, "Front Door")
        raw = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
        request = urllib.request.Request(
            url + "/oauth2/token", data=b"grant_type=client_credentials",
            headers={"Authorization": f"Basic {raw}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            token = json.load(response)["access_token"]
        request = urllib.request.Request(url + "/igloohome/devices",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert [d["deviceId"] for d in json.load(response)["payload"]] == [FRONT]
    finally:
        fake.stop()
