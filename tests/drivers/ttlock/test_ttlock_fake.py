"""The TTLock cloud fake checked against TTLock's published behaviour (sources cited in
tests/fakes/ttlock.py), with plain HTTP requests: no driver involved."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from bridge.clock import FakeClock
from tests.fakes.ttlock import ERRORS, FakeTTLock, FakeTTLockThread, md5_hex

CLIENT_ID = "c1ient1d"
SECRET = "s3cret"
USER = "host@example.com"
PASSWORD = "app-password"
LOCK, LONELY, SECOND = 7252408, 7252409, 7252410
GATEWAY, OTHER_GATEWAY = 347, 348
START = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)
HOUR_MS = 3_600_000


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class Client:
    """Raw calls as TTLock's pages show them: form POSTs, clientId/accessToken/date."""

    def __init__(self, session: aiohttp.ClientSession, api: FakeTTLock, url: str) -> None:
        self.session = session
        self.api = api
        self.url = url
        self.token = ""
        self.refresh = ""

    def now_ms(self) -> int:
        return int(self.api.clock.now().timestamp() * 1000)

    async def oauth(self, **form: Any) -> dict[str, Any]:
        async with self.session.post(self.url + "/oauth2/token", data=form) as response:
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            return body

    async def login(self) -> None:
        body = await self.oauth(clientId=CLIENT_ID, clientSecret=SECRET, username=USER,
                                password=md5_hex(PASSWORD))
        self.token, self.refresh = body["access_token"], body["refresh_token"]

    async def call(self, path: str, method: str = "POST", *, date: int | None = None,
                   token: str | None = None, client_id: str = CLIENT_ID,
                   **params: Any) -> tuple[dict[str, Any], aiohttp.ClientResponse]:
        fields = {"clientId": client_id, "accessToken": self.token if token is None else token,
                  "date": str(self.now_ms() if date is None else date),
                  **{k: str(v) for k, v in params.items()}}
        if method == "GET":
            request = self.session.get(self.url + path, params=fields)
        else:
            request = self.session.post(self.url + path, data=fields)
        async with request as response:
            assert response.status == 200
            return await response.json(), response

    async def v3(self, path: str, method: str = "POST", **params: Any) -> dict[str, Any]:
        body, _ = await self.call("/v3/" + path, method, **params)
        return body

    async def add(self, pin: str, *, lock: int = LOCK, add_type: int = 2,
                  start: int | None = None, end: int | None = None,
                  **extra: Any) -> dict[str, Any]:
        begin = ms(START) if start is None else start
        return await self.v3("keyboardPwd/add", lockId=lock, keyboardPwd=pin,
                             keyboardPwdName=f"Guest {pin}", startDate=begin,
                             endDate=begin + 48 * HOUR_MS if end is None else end,
                             addType=add_type, **extra)

    async def listed(self, lock: int = LOCK, **params: Any) -> list[dict[str, Any]]:
        body = await self.v3("lock/listKeyboardPwd", "GET", lockId=lock, pageNo=1,
                             pageSize=200, **params)
        rows: list[dict[str, Any]] = body["list"]
        return rows


def error(errcode: int) -> dict[str, Any]:
    errmsg, description = ERRORS[errcode]
    return {"errcode": errcode, "errmsg": errmsg, "description": description}


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def api(clock: FakeClock) -> AsyncIterator[FakeTTLock]:
    fake = FakeTTLock(CLIENT_ID, SECRET, USER, PASSWORD, clock=clock, gateway_latency_s=0.0)
    fake.add_gateway(GATEWAY)
    fake.add_gateway(OTHER_GATEWAY)
    fake.add_lock(LOCK, "Front Door", gateways=[GATEWAY], timezone_raw_offset_ms=3_600_000)
    fake.add_lock(SECOND, "Back Door", gateways=[GATEWAY])
    fake.add_lock(LONELY, "Shed")  # no gateway paired
    fake.base_url = await fake.start()  # type: ignore[attr-defined]
    yield fake
    await fake.stop()


@pytest.fixture
async def client(api: FakeTTLock) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        logged_in = Client(session, api, api.base_url)  # type: ignore[attr-defined]
        await logged_in.login()
        yield logged_in


# -- OAuth ------------------------------------------------------------------------------------


async def test_password_grant_takes_the_md5_of_the_app_password(client: Client) -> None:
    body = await client.oauth(clientId=CLIENT_ID, clientSecret=SECRET, username=USER,
                              password=md5_hex(PASSWORD))
    assert set(body) >= {"access_token", "uid", "expires_in", "refresh_token"}
    assert body["expires_in"] == 7_776_000
    # The older page's and the clients' spelling, with grant_type=password, works too.
    body = await client.oauth(client_id=CLIENT_ID, client_secret=SECRET, grant_type="password",
                              username=USER, password=md5_hex(PASSWORD))
    assert "access_token" in body


@pytest.mark.parametrize(("form", "errcode"), [
    ({"password": PASSWORD}, 10007),  # not MD5'd
    ({"password": md5_hex("wrong")}, 10007),
    ({"username": "someone-else"}, 10007),
    ({"clientSecret": "nope"}, 10001),
    ({"clientId": "nope"}, 10000),
    ({"grant_type": "client_credentials"}, 10010),
])
async def test_a_refused_login_is_an_errcode_in_an_http_200(
        client: Client, form: dict[str, str], errcode: int) -> None:
    fields = {"clientId": CLIENT_ID, "clientSecret": SECRET, "username": USER,
              "password": md5_hex(PASSWORD), **form}
    assert await client.oauth(**fields) == error(errcode)


async def test_refresh_gives_a_new_pair_and_ends_the_old_one(client: Client) -> None:
    old_token, old_refresh = client.token, client.refresh
    body = await client.oauth(clientId=CLIENT_ID, clientSecret=SECRET,
                              grant_type="refresh_token", refresh_token=old_refresh)
    assert set(body) == {"access_token", "refresh_token", "expires_in"}
    client.token = body["access_token"]
    assert "list" in await client.v3("lock/list", "GET", pageNo=1, pageSize=20)
    assert await client.v3("lock/list", "GET", token=old_token, pageNo=1,
                           pageSize=20) == error(10004)
    assert await client.oauth(clientId=CLIENT_ID, clientSecret=SECRET,
                              grant_type="refresh_token",
                              refresh_token=old_refresh) == error(10011)


async def test_refresh_can_keep_the_pair(client: Client, api: FakeTTLock) -> None:
    api.rotate_refresh_token = api.refresh_revokes_old = False
    body = await client.oauth(clientId=CLIENT_ID, clientSecret=SECRET,
                              grant_type="refresh_token", refresh_token=client.refresh)
    assert body["refresh_token"] == client.refresh
    assert "list" in await client.v3("lock/list", "GET", pageNo=1, pageSize=20)


async def test_unknown_expired_and_revoked_tokens(client: Client, api: FakeTTLock) -> None:
    assert await client.v3("lock/list", "GET", token="nope", pageNo=1,
                           pageSize=20) == error(10003)
    api.expire_tokens()
    assert await client.v3("lock/list", "GET", pageNo=1, pageSize=20) == error(10004)
    body = await client.oauth(clientId=CLIENT_ID, clientSecret=SECRET,
                              grant_type="refresh_token", refresh_token=client.refresh)
    client.token, client.refresh = body["access_token"], body["refresh_token"]
    assert "list" in await client.v3("lock/list", "GET", pageNo=1, pageSize=20)
    api.revoke_tokens()
    assert await client.v3("lock/list", "GET", pageNo=1, pageSize=20) == error(10004)
    assert await client.oauth(clientId=CLIENT_ID, clientSecret=SECRET,
                              grant_type="refresh_token",
                              refresh_token=client.refresh) == error(10011)


async def test_a_token_expires_after_expires_in(client: Client, api: FakeTTLock,
                                                clock: FakeClock) -> None:
    api.token_ttl_s = 60
    await client.login()
    await clock.advance(59)
    assert "list" in await client.v3("lock/list", "GET", pageNo=1, pageSize=20)
    await clock.advance(2)
    assert await client.v3("lock/list", "GET", pageNo=1, pageSize=20) == error(10004)


# -- every call: clientId, accessToken, date ---------------------------------------------------


async def test_date_must_be_within_five_minutes_of_ttlocks_clock(client: Client,
                                                                 api: FakeTTLock) -> None:
    now = client.now_ms()
    for date in (now - 299_000, now + 299_000):
        assert "list" in await client.v3("lock/list", "GET", date=date, pageNo=1, pageSize=20)
    for date in (now - 301_000, now + 301_000):
        assert await client.v3("lock/list", "GET", date=date, pageNo=1,
                               pageSize=20) == error(80000)
    api.clock_skew_s = 600  # TTLock's clock runs ten minutes ahead of ours
    assert await client.v3("lock/list", "GET", pageNo=1, pageSize=20) == error(80000)
    assert "list" in await client.v3("lock/list", "GET", date=now + 600_000, pageNo=1,
                                     pageSize=20)


async def test_missing_date_and_wrong_client(client: Client) -> None:
    body, _ = await client.call("/v3/lock/list", "GET", date=0, pageNo=1, pageSize=20)
    assert body == error(80000)
    assert await client.v3("lock/list", "GET", client_id="other", pageNo=1,
                           pageSize=20) == error(10000)


async def test_parameters_are_read_from_query_and_form_alike(client: Client) -> None:
    query = urllib.parse.urlencode({"clientId": CLIENT_ID, "accessToken": client.token,
                                    "date": client.now_ms()})
    async with client.session.post(f"{client.url}/v3/keyboardPwd/add?{query}", data={
            "lockId": LOCK, "keyboardPwd": "123456", "startDate": ms(START),
            "endDate": ms(START) + HOUR_MS, "addType": 2}) as response:
        assert "keyboardPwdId" in await response.json()


async def test_a_write_takes_no_get(client: Client) -> None:
    async with client.session.get(f"{client.url}/v3/keyboardPwd/add") as response:
        assert response.status == 405


# -- locks and gateways ------------------------------------------------------------------------


async def test_lock_list_and_detail(client: Client) -> None:
    body = await client.v3("lock/list", "GET", pageNo=1, pageSize=1000)
    assert body["total"] == 3 and body["pages"] == 1
    by_id = {item["lockId"]: item for item in body["list"]}
    assert by_id[LOCK]["lockAlias"] == "Front Door"
    assert by_id[LOCK]["hasGateway"] == 1 and by_id[LONELY]["hasGateway"] == 0
    detail = await client.v3("lock/detail", "GET", lockId=LOCK)
    assert detail["timezoneRawOffset"] == 3_600_000
    assert detail["electricQuantity"] == 90 and detail["hasGateway"] == 1
    assert await client.v3("lock/detail", "GET", lockId=1) == error(-1003)
    assert await client.v3("lock/detail", "GET") == error(-3)


async def test_pages_are_capped_at_the_documented_maximum(client: Client,
                                                          api: FakeTTLock) -> None:
    for lock_id in range(1, 1100):
        api.add_lock(lock_id, f"Room {lock_id}", gateways=[GATEWAY])
    body = await client.v3("lock/list", "GET", pageNo=1, pageSize=5000)
    assert body["pageSize"] == 1000 and len(body["list"]) == 1000
    assert body["total"] == 1102 and body["pages"] == 2
    last = await client.v3("lock/list", "GET", pageNo=2, pageSize=5000)
    assert len(last["list"]) == 102
    assert await client.v3("lock/list", "GET", pageNo=0, pageSize=20) == error(-3)


async def test_gateway_lists_show_online_state_and_links(client: Client,
                                                         api: FakeTTLock) -> None:
    api.gateways[OTHER_GATEWAY].online = False
    body = await client.v3("gateway/list", "GET", pageNo=1, pageSize=20, orderBy=1)
    online = {g["gatewayId"]: g["isOnline"] for g in body["list"]}
    assert online == {GATEWAY: 1, OTHER_GATEWAY: 0}
    assert {g["gatewayId"]: g["lockNum"] for g in body["list"]}[GATEWAY] == 2
    api.gateways[GATEWAY].online = False
    api.gateways[GATEWAY].reported_online = True  # unplugged, the cloud has not noticed
    body = await client.v3("gateway/list", "GET", pageNo=1, pageSize=20)
    assert {g["gatewayId"]: g["isOnline"] for g in body["list"]}[GATEWAY] == 1
    assert await client.add("111111") == error(-3002)
    by_lock = await client.v3("gateway/listByLock", "GET", lockId=LOCK)
    assert [g["gatewayId"] for g in by_lock["list"]] == [GATEWAY]
    assert (await client.v3("gateway/listByLock", "GET", lockId=LONELY))["list"] == []
    locks = await client.v3("gateway/listLock", "GET", gatewayId=GATEWAY)
    assert {lock["lockId"] for lock in locks["list"]} == {LOCK, SECOND}
    assert await client.v3("gateway/listLock", "GET", gatewayId=9) == error(-4037)


# -- custom passcodes ----------------------------------------------------------------------------


async def test_add_via_gateway_writes_the_lock_and_the_cloud(client: Client,
                                                             api: FakeTTLock) -> None:
    begin = ms(START) + 30_500  # seconds are not kept by the lock
    body = await client.add("0123456", start=begin, end=begin + 3 * HOUR_MS)
    pwd_id = body["keyboardPwdId"]
    assert set(body) == {"keyboardPwdId"}
    lock = api.locks[LOCK]
    assert lock.opens("0123456", ms(START) + HOUR_MS)
    assert not lock.opens("0123456", ms(START) - 1)
    assert lock.codes["0123456"].start_ms == ms(START)
    assert not lock.opens("0123456", begin + 3 * HOUR_MS)
    [row] = await client.listed()
    assert row["keyboardPwdId"] == pwd_id and row["keyboardPwd"] == "0123456"
    assert row["keyboardPwdName"] == "Guest 0123456" and row["keyboardPwdType"] == 3
    assert (row["startDate"], row["endDate"], row["isCustom"]) == (begin, begin + 3 * HOUR_MS, 1)
    assert api.gateways[GATEWAY].commands == 1


async def test_add_without_gateway_only_records_it_in_the_cloud(client: Client,
                                                                api: FakeTTLock) -> None:
    body = await client.v3("keyboardPwd/add", lockId=LOCK, keyboardPwd="246810",
                           startDate=ms(START), endDate=ms(START) + HOUR_MS)  # no addType
    assert "keyboardPwdId" in body
    assert [row["keyboardPwd"] for row in await client.listed()] == ["246810"]
    assert api.locks[LOCK].codes == {}
    assert api.gateways[GATEWAY].commands == 0


async def test_permanent_passcode(client: Client, api: FakeTTLock) -> None:
    body = await client.v3("keyboardPwd/add", lockId=LOCK, keyboardPwd="97531",
                           keyboardPwdType=2, addType=2)
    assert "keyboardPwdId" in body
    assert api.locks[LOCK].opens("97531", ms(START) + 10**12)


@pytest.mark.parametrize("pin", ["123", "1234567890", "12a456", ""])
async def test_a_passcode_has_four_to_nine_digits(client: Client, pin: str) -> None:
    assert await client.add(pin) == error(-3006)


async def test_four_and_nine_digits_are_accepted(client: Client) -> None:
    assert "keyboardPwdId" in await client.add("1234")
    assert "keyboardPwdId" in await client.add("123456789")


@pytest.mark.parametrize("fields", [{"startDate": ""}, {"endDate": "soon"},
                                    {"endDate": str(ms(START))}, {"addType": "3"},
                                    {"keyboardPwdType": "1"}])
async def test_bad_windows_and_types_are_invalid_parameters(client: Client,
                                                            fields: dict[str, str]) -> None:
    params: dict[str, Any] = {"lockId": LOCK, "keyboardPwd": "123456",
                              "startDate": ms(START), "endDate": ms(START) + HOUR_MS,
                              "addType": 2, **fields}
    assert await client.v3("keyboardPwd/add", **params) == error(-3)


async def test_the_same_passcode_twice_is_refused(client: Client, api: FakeTTLock) -> None:
    assert "keyboardPwdId" in await client.add("555666")
    assert await client.add("555666") == error(-3007)
    api.locks[LOCK].add_keypad_code("777888")  # on the lock, unknown to the cloud
    assert await client.add("777888") == error(-3007)
    assert "keyboardPwdId" in await client.add("555666", lock=SECOND)  # per lock


async def test_a_full_lock_refuses_the_next_custom_passcode(client: Client,
                                                            api: FakeTTLock) -> None:
    lock = api.locks[LOCK]
    lock.capacity = 3
    for pin in ("1111", "2222", "3333"):
        assert "keyboardPwdId" in await client.add(pin)
    assert await client.add("4444") == error(-3009)
    assert "4444" not in lock.codes
    assert len(await client.listed()) == 3


async def test_the_documented_capacity_is_250(client: Client, api: FakeTTLock) -> None:
    for n in range(250):
        api.locks[LOCK].add_keypad_code(f"{100000 + n}")
    assert await client.add("999999") == error(-3009)


async def test_gateway_refusals(client: Client, api: FakeTTLock) -> None:
    assert await client.add("123456", lock=LONELY) == error(-2012)
    api.gateways[GATEWAY].online = False
    assert await client.add("123456") == error(-3002)
    api.gateways[GATEWAY].online = True
    api.gateways[GATEWAY].busy = True
    assert await client.add("123456") == error(-3003)
    api.gateways[GATEWAY].busy = False
    assert api.locks[LOCK].codes == {} and await client.listed() == []


async def test_the_best_online_gateway_carries_the_command(client: Client,
                                                           api: FakeTTLock) -> None:
    api.locks[LOCK].gateway_rssi = {GATEWAY: -80, OTHER_GATEWAY: -60}
    await client.add("123456")
    assert api.gateways[OTHER_GATEWAY].commands == 1
    api.gateways[OTHER_GATEWAY].online = False
    await client.add("654321")
    assert api.gateways[GATEWAY].commands == 1


async def test_an_unreachable_lock_fails_the_command(client: Client, api: FakeTTLock) -> None:
    api.locks[LOCK].unreachable = True
    assert await client.add("123456") == error(1)
    assert api.locks[LOCK].codes == {} and await client.listed() == []


async def test_change_via_gateway_moves_pin_and_window(client: Client,
                                                       api: FakeTTLock) -> None:
    pwd_id = (await client.add("123456"))["keyboardPwdId"]
    new_start = ms(START) + 24 * HOUR_MS
    body = await client.v3("keyboardPwd/change", lockId=LOCK, keyboardPwdId=pwd_id,
                           newKeyboardPwd="654321", startDate=new_start,
                           endDate=new_start + HOUR_MS, changeType=2)
    assert body == error(0)
    lock = api.locks[LOCK]
    assert "123456" not in lock.codes
    assert lock.opens("654321", new_start) and not lock.opens("654321", ms(START))
    [row] = await client.listed()
    assert (row["keyboardPwd"], row["startDate"]) == ("654321", new_start)


async def test_change_without_gateway_leaves_the_lock_as_it_was(client: Client,
                                                                api: FakeTTLock) -> None:
    pwd_id = (await client.add("123456"))["keyboardPwdId"]
    assert await client.v3("keyboardPwd/change", lockId=LOCK, keyboardPwdId=pwd_id,
                           newKeyboardPwd="654321") == error(0)  # changeType defaults to 1
    assert "123456" in api.locks[LOCK].codes
    assert [row["keyboardPwd"] for row in await client.listed()] == ["654321"]


async def test_a_period_change_without_start_date_silently_does_nothing(
        client: Client, api: FakeTTLock) -> None:
    pwd_id = (await client.add("123456"))["keyboardPwdId"]
    end = ms(START) + 48 * HOUR_MS
    assert await client.v3("keyboardPwd/change", lockId=LOCK, keyboardPwdId=pwd_id,
                           endDate=ms(START) + 99 * HOUR_MS, changeType=2) == error(0)
    assert api.locks[LOCK].codes["123456"].end_ms == end
    assert (await client.listed())[0]["endDate"] == end


async def test_a_rename_needs_no_gateway(client: Client, api: FakeTTLock) -> None:
    pwd_id = (await client.add("123456"))["keyboardPwdId"]
    api.gateways[GATEWAY].online = False
    assert await client.v3("keyboardPwd/change", lockId=LOCK, keyboardPwdId=pwd_id,
                           keyboardPwdName="Renamed") == error(0)
    assert (await client.listed())[0]["keyboardPwdName"] == "Renamed"


async def test_change_refusals(client: Client, api: FakeTTLock) -> None:
    first = (await client.add("123456"))["keyboardPwdId"]
    await client.add("222222")
    for pin, errcode in (("222222", -3007), ("12", -3006)):
        assert await client.v3("keyboardPwd/change", lockId=LOCK, keyboardPwdId=first,
                               newKeyboardPwd=pin, changeType=2) == error(errcode)
    api.gateways[GATEWAY].busy = True
    assert await client.v3("keyboardPwd/change", lockId=LOCK, keyboardPwdId=first,
                           newKeyboardPwd="333333", changeType=2) == error(-3003)
    assert "123456" in api.locks[LOCK].codes


async def test_delete_via_gateway_and_without(client: Client, api: FakeTTLock) -> None:
    gone = (await client.add("123456"))["keyboardPwdId"]
    kept = (await client.add("222222"))["keyboardPwdId"]
    assert await client.v3("keyboardPwd/delete", lockId=LOCK, keyboardPwdId=gone,
                           deleteType=2) == error(0)
    assert "123456" not in api.locks[LOCK].codes
    assert await client.v3("keyboardPwd/delete", lockId=LOCK,
                           keyboardPwdId=kept) == error(0)  # deleteType defaults to 1
    assert await client.listed() == []
    assert api.locks[LOCK].opens("222222", ms(START) + HOUR_MS)  # the lock still opens


async def test_delete_of_an_unknown_id(client: Client, api: FakeTTLock) -> None:
    assert await client.v3("keyboardPwd/delete", lockId=LOCK, keyboardPwdId=99,
                           deleteType=2) == error(0)
    api.missing_passcode_errcode = -2009
    assert await client.v3("keyboardPwd/delete", lockId=LOCK, keyboardPwdId=99,
                           deleteType=2) == error(-2009)
    assert await client.v3("keyboardPwd/change", lockId=LOCK, keyboardPwdId=99,
                           keyboardPwdName="x") == error(-2009)
    assert api.gateways[GATEWAY].commands == 0


async def test_delete_refused_by_gateway_keeps_everything(client: Client,
                                                          api: FakeTTLock) -> None:
    pwd_id = (await client.add("123456"))["keyboardPwdId"]
    api.gateways[GATEWAY].online = False
    assert await client.v3("keyboardPwd/delete", lockId=LOCK, keyboardPwdId=pwd_id,
                           deleteType=2) == error(-3002)
    assert "123456" in api.locks[LOCK].codes and len(await client.listed()) == 1


async def test_passcode_list_pages_searches_and_orders(client: Client,
                                                       api: FakeTTLock) -> None:
    for n in range(205):
        await client.add(f"{200000 + n}", add_type=1)
    page = await client.v3("lock/listKeyboardPwd", "GET", lockId=LOCK, pageNo=1,
                           pageSize=1000)
    assert (page["pageSize"], page["total"], page["pages"]) == (200, 205, 2)
    assert page["list"][0]["keyboardPwd"] == "200204"  # newest first without orderBy
    by_name = await client.listed(orderBy=0)
    assert by_name[0]["keyboardPwdName"] == "Guest 200000"
    assert [row["keyboardPwd"] for row in await client.listed(searchStr="200007")] == \
        ["200007"]
    assert len(await client.listed(searchStr="guest 20010")) == 10
    assert await client.listed(lock=SECOND) == []


# -- the gateway: one thing at a time, answers once the lock is written --------------------------


async def test_a_gateway_call_returns_after_the_lock_is_written(client: Client,
                                                                api: FakeTTLock,
                                                                clock: FakeClock) -> None:
    api.gateway_latency_s = 4.0
    call = asyncio.create_task(client.add("123456"))
    await until(lambda: clock.pending_sleepers() > 0)
    assert not call.done() and api.locks[LOCK].codes == {}
    # Meanwhile the same gateway refuses a second command, to another lock too.
    assert await client.add("222222", lock=SECOND) == error(-3003)
    # Reads do not go through the gateway.
    assert (await client.v3("lock/detail", "GET", lockId=LOCK))["lockId"] == LOCK
    await clock.advance(4.0)
    assert "keyboardPwdId" in await call
    assert "123456" in api.locks[LOCK].codes
    assert "keyboardPwdId" in await asyncio.wait_for(
        _advancing(clock, client.add("222222", lock=SECOND)), 5)


async def test_two_gateways_work_at_once(client: Client, api: FakeTTLock,
                                         clock: FakeClock) -> None:
    api.gateway_latency_s = 4.0
    api.locks[SECOND].gateway_rssi = {OTHER_GATEWAY: -60}
    calls = [asyncio.create_task(client.add("123456")),
             asyncio.create_task(client.add("222222", lock=SECOND))]
    await until(lambda: clock.pending_sleepers() == 2)
    await clock.advance(4.0)
    assert all("keyboardPwdId" in body for body in await asyncio.gather(*calls))


async def test_a_caller_that_gives_up_still_gets_the_lock_written(client: Client,
                                                                  api: FakeTTLock,
                                                                  clock: FakeClock) -> None:
    api.gateway_latency_s = 30.0
    call = asyncio.create_task(client.add("123456"))
    await until(lambda: clock.pending_sleepers() > 0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await clock.advance(30.0)
    await until(lambda: "123456" in api.locks[LOCK].codes)
    assert not api.gateways[GATEWAY].in_flight


async def _advancing(clock: FakeClock, work: Any) -> Any:
    task = asyncio.ensure_future(work)
    while not task.done():
        await clock.advance(1.0)
        await asyncio.sleep(0.001)
    return task.result()


# -- switches -------------------------------------------------------------------------------------


async def test_latency_delays_every_answer(client: Client, api: FakeTTLock,
                                           clock: FakeClock) -> None:
    api.latency_s = 2.0
    call = asyncio.create_task(client.v3("lock/detail", "GET", lockId=LOCK))
    await until(lambda: clock.pending_sleepers() > 0)
    await asyncio.sleep(0.05)
    assert not call.done()
    await clock.advance(2.0)
    assert (await call)["lockId"] == LOCK


async def test_rate_limits(client: Client, api: FakeTTLock) -> None:
    api.rate_limit = 2
    assert "lockId" in await client.v3("lock/detail", "GET", lockId=LOCK)
    assert "lockId" in await client.v3("lock/detail", "GET", lockId=LOCK)
    body, response = await client.call("/v3/lock/detail", "GET", lockId=LOCK)
    assert body == error(30006) and "Retry-After" not in response.headers
    api.rate_limit = None
    api.rate_limited = True
    api.rate_limit_retry_after = 7
    body, response = await client.call("/v3/lock/detail", "GET", lockId=LOCK)
    assert body == error(30006) and response.headers["Retry-After"] == "7"
    api.rate_limited = False
    api.monthly_limit_reached = True
    assert await client.v3("lock/detail", "GET", lockId=LOCK) == error(30007)


async def test_the_rate_limit_window_passes(client: Client, api: FakeTTLock,
                                            clock: FakeClock) -> None:
    api.rate_limit = 1
    assert "lockId" in await client.v3("lock/detail", "GET", lockId=LOCK)
    assert await client.v3("lock/detail", "GET", lockId=LOCK) == error(30006)
    await clock.advance(1.0)
    assert "lockId" in await client.v3("lock/detail", "GET", lockId=LOCK)


@pytest.mark.parametrize("errcode", [-3002, -3003, -2012, -3009, 90000, 1, 10004])
async def test_fail_next_injects_any_published_error(client: Client, api: FakeTTLock,
                                                     errcode: int) -> None:
    api.fail_next(errcode, path="keyboardPwd/add")
    assert await client.v3("lock/detail", "GET", lockId=LOCK) != error(errcode)
    assert await client.add("123456") == error(errcode)
    assert api.locks[LOCK].codes == {} and await client.listed() == []
    assert "keyboardPwdId" in await client.add("123456")


async def test_fail_next_after_write_loses_only_the_answer(client: Client,
                                                           api: FakeTTLock) -> None:
    api.fail_next(1, path="keyboardPwd/add", after_write=True)
    assert await client.add("123456") == error(1)
    assert "123456" in api.locks[LOCK].codes
    assert [row["keyboardPwd"] for row in await client.listed()] == ["123456"]
    api.fail_next(90000, path="oauth2")
    assert await client.oauth(clientId=CLIENT_ID, clientSecret=SECRET, username=USER,
                              password=md5_hex(PASSWORD)) == error(90000)


def test_fail_next_takes_only_published_codes(api: FakeTTLock) -> None:
    with pytest.raises(ValueError):
        api.fail_next(-9999)


def test_the_threaded_fake_serves_blocking_clients() -> None:
    fake = FakeTTLockThread(CLIENT_ID, SECRET, USER, PASSWORD, gateway_latency_s=0.0)
    url = fake.start()
    try:
        fake.call(fake.api.add_lock, LOCK, "Front Door")
        form = urllib.parse.urlencode({"clientId": CLIENT_ID, "clientSecret": SECRET,
                                       "username": USER, "password": md5_hex(PASSWORD)})
        with urllib.request.urlopen(url + "/oauth2/token", data=form.encode()) as response:
            assert b"access_token" in response.read()
        assert fake.call(lambda: list(fake.api.locks)) == [LOCK]
    finally:
        fake.stop()
