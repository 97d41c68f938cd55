"""The Nuki Web API fake checked against Nuki's published behaviour (sources cited in
tests/fakes/nuki_web.py), with plain HTTP requests: no driver involved."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.fakes.nuki_web import KEYPAD_CODE, FakeNukiWeb, FakeNukiWebThread

TOKEN = "t0ken-all-rights"
LOCK = 17001
NO_KEYPAD = 17002
FROM = "2026-03-01T14:00:00Z"
UNTIL = "2026-03-03T10:00:00Z"


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: str = TOKEN) -> None:
        self.session = session
        self.url = url
        self.token = token

    async def call(self, method: str, path: str, body: Any = None, *,
                   token: str | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {"Accept": "application/json"}
        used = self.token if token is None else token
        if used:
            headers["Authorization"] = f"Bearer {used}"
        async with self.session.request(method, self.url + path, json=body,
                                        headers=headers) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None), response

    async def auths(self, lock: int = LOCK) -> list[dict[str, Any]]:
        status, body, _ = await self.call("GET", f"/smartlock/{lock}/auth")
        assert status == 200
        return [a for a in body if a["type"] == KEYPAD_CODE]

    async def create(self, code: int, name: str = "Guest", lock: int = LOCK,
                     **fields: Any) -> tuple[int, Any]:
        body = {"type": KEYPAD_CODE, "name": name, "code": code, "remoteAllowed": False,
                **fields}
        status, answer, _ = await self.call("PUT", f"/smartlock/{lock}/auth", body)
        return status, answer


async def wait_for(check: Callable[[], Any], timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


@pytest.fixture
async def api() -> AsyncIterator[FakeNukiWeb]:
    fake = FakeNukiWeb(TOKEN, apply_delay_s=0.15, list_delay_s=0.05)
    fake.add_lock(LOCK, "Front door")
    fake.add_lock(NO_KEYPAD, "Back door", keypad=False)
    fake.base_url = await fake.start()  # type: ignore[attr-defined]
    yield fake
    await fake.stop()


@pytest.fixture
async def client(api: FakeNukiWeb) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, api.base_url)  # type: ignore[attr-defined]


async def created(client: Client, code: int) -> dict[str, Any]:
    """Wait until the server lists the code and return its entry."""
    async def find() -> dict[str, Any] | None:
        return next((a for a in await client.auths() if a["code"] == code), None)
    entry: dict[str, Any] = await wait_for(find)
    return entry


async def on_lock(client: Client, code: int) -> dict[str, Any]:
    """Wait until the entry has no pending operation (the lock has it)."""
    async def find() -> dict[str, Any] | None:
        entry = next((a for a in await client.auths() if a["code"] == code), None)
        return entry if entry is not None and "operationId" not in entry else None
    entry: dict[str, Any] = await wait_for(find)
    return entry


# -- 1. smartlocks -------------------------------------------------------------------------------

async def test_smartlock_list_and_single(api: FakeNukiWeb, client: Client) -> None:
    status, locks, _ = await client.call("GET", "/smartlock")
    assert status == 200
    by_id = {lock["smartlockId"]: lock for lock in locks}
    front = by_id[LOCK]
    for key in ("accountId", "adminPinState", "authId", "favorite", "name", "serverState",
                "smartlockId", "type"):
        assert key in front  # [swagger] Smartlock required
    assert front["serverState"] == 0
    assert front["config"]["keypadPaired"] is True
    for key in ("mode", "state", "trigger", "lastAction", "batteryCritical", "doorState",
                "nightMode", "ringToOpenTimer"):
        assert key in front["state"]  # [swagger] Smartlock.State required
    back = by_id[NO_KEYPAD]
    assert back["config"]["keypadPaired"] is False
    assert back["config"]["keypad2Paired"] is False
    assert "keypadBatteryCritical" not in back["state"]

    status, single, _ = await client.call("GET", f"/smartlock/{LOCK}")
    assert status == 200 and single["smartlockId"] == LOCK and single["name"] == "Front door"
    api.locks[LOCK].online = False
    _, single, _ = await client.call("GET", f"/smartlock/{LOCK}")
    assert single["serverState"] == 4  # "4 .. offline"


async def test_unknown_lock_is_404(client: Client) -> None:
    for method, path in (("GET", "/smartlock/999"), ("GET", "/smartlock/999/auth"),
                         ("PUT", "/smartlock/999/auth")):
        status, body, _ = await client.call(method, path, {"name": "x"})
        assert status == 404, path
        assert body["reasonPhrase"] == "Not Found"


# -- 2. the authorization list -------------------------------------------------------------------

async def test_list_shows_an_app_code_with_its_fields(api: FakeNukiWeb, client: Client) -> None:
    auth_id = api.locks[LOCK].add_app_code(456789, "Cleaner", allowedFromTime=480,
                                           allowedUntilTime=1020, allowedWeekDays=124)
    status, everything, _ = await client.call("GET", f"/smartlock/{LOCK}/auth")
    assert status == 200
    assert {a["type"] for a in everything} == {0, 13}  # the owner's app auth and the code
    [entry] = await client.auths()
    assert entry["id"] == auth_id and entry["smartlockId"] == LOCK
    assert entry["code"] == 456789 and entry["name"] == "Cleaner" and entry["enabled"] is True
    assert entry["allowedFromTime"] == 480 and entry["allowedUntilTime"] == 1020
    assert entry["allowedWeekDays"] == 124
    assert entry["creationDate"].endswith("Z") and entry["updateDate"].endswith("Z")
    assert isinstance(entry["authId"], int)
    assert "operationId" not in entry and "error" not in entry
    assert api.locks[LOCK].keypad_codes() == {"456789": "Cleaner"}
    status, only_keypad, _ = await client.call("GET", f"/smartlock/{LOCK}/auth?types=13")
    assert [a["id"] for a in only_keypad] == [auth_id]
    status, single, _ = await client.call("GET", f"/smartlock/{LOCK}/auth/{auth_id}")
    assert status == 200 and single["code"] == 456789


# -- 3. create ----------------------------------------------------------------------------------

async def test_create_is_asynchronous(api: FakeNukiWeb, client: Client) -> None:
    status, body = await client.create(345678, "Guest", allowedFromDate=FROM,
                                       allowedUntilDate="2026-03-03T12:00:00+02:00",
                                       allowedFromTime=600, allowedUntilTime=720)
    assert status == 204 and body is None  # no id in the answer
    assert await client.auths() == []  # not listed at once
    entry = await created(client, 345678)
    assert "operationId" in entry and "authId" not in entry  # the lock does not have it yet
    assert isinstance(entry["operationId"], dict)  # [swagger] ObjectId
    assert api.locks[LOCK].keypad_codes() == {}
    assert entry["allowedFromDate"] == "2026-03-01T14:00:00.000Z"
    assert entry["allowedUntilDate"] == "2026-03-03T10:00:00.000Z"  # kept in UTC
    assert entry["allowedFromTime"] == 600 and entry["allowedUntilTime"] == 720
    assert entry["allowedWeekDays"] == 127
    done = await on_lock(client, 345678)
    assert isinstance(done["authId"], int)
    assert api.locks[LOCK].keypad_codes() == {"345678": "Guest"}


async def test_list_delay_switch(api: FakeNukiWeb, client: Client) -> None:
    api.list_delay_s = 0.0
    api.apply_delay_s = 5.0
    assert (await client.create(345679))[0] == 204
    [entry] = await client.auths()
    assert "operationId" in entry
    api.complete_operations(LOCK)
    [entry] = await client.auths()
    assert "operationId" not in entry


# -- 4. update ----------------------------------------------------------------------------------

async def test_partial_update_clears_the_window_it_does_not_name(
        api: FakeNukiWeb, client: Client) -> None:
    await client.create(456123, "Guest", allowedFromDate=FROM, allowedUntilDate=UNTIL,
                        allowedWeekDays=96, allowedFromTime=480, allowedUntilTime=1020)
    entry = await on_lock(client, 456123)
    status, body, _ = await client.call("POST", f"/smartlock/{LOCK}/auth/{entry['id']}",
                                        {"name": "Renamed", "code": 456124})
    assert status == 204 and body is None
    [pending] = await client.auths()
    assert "operationId" in pending
    assert pending["name"] == "Renamed" and pending["code"] == 456124
    for key in ("allowedFromDate", "allowedUntilDate", "allowedFromTime", "allowedUntilTime"):
        assert key not in pending
    assert pending["allowedWeekDays"] == 127
    # The lock keeps the old values until it has the change.
    assert api.locks[LOCK].keypad_codes() == {"456123": "Guest"}
    await on_lock(client, 456124)
    assert api.locks[LOCK].keypad_codes() == {"456124": "Renamed"}
    assert "allowedFromDate" not in api.locks[LOCK].device_auths()[entry["id"]]


async def test_update_replaces_named_fields_and_null_clears(
        api: FakeNukiWeb, client: Client) -> None:
    api.update_clears_window = False
    await client.create(567123, "Guest", allowedFromDate=FROM, allowedUntilDate=UNTIL)
    entry = await on_lock(client, 567123)
    status, _, _ = await client.call("POST", f"/smartlock/{LOCK}/auth/{entry['id']}",
                                     {"name": "Guest", "allowedUntilDate": None,
                                      "enabled": False})
    assert status == 204
    done = await on_lock(client, 567123)
    assert done["allowedFromDate"] == "2026-03-01T14:00:00.000Z"
    assert "allowedUntilDate" not in done and done["enabled"] is False
    assert api.locks[LOCK].keypad_codes() == {}  # disabled codes do not open


async def test_update_or_delete_while_an_operation_runs_is_423(
        api: FakeNukiWeb, client: Client) -> None:
    api.apply_delay_s = 5.0
    await client.create(678123)
    entry = await created(client, 678123)
    status, body, _ = await client.call("POST", f"/smartlock/{LOCK}/auth/{entry['id']}",
                                        {"name": "Other"})
    assert status == 423 and body == {"stackTrace": [], "suppressedExceptions": []}
    status, _, _ = await client.call("DELETE", f"/smartlock/{LOCK}/auth/{entry['id']}")
    assert status == 423


async def test_busy_lock_is_423(api: FakeNukiWeb, client: Client) -> None:
    auth_id = api.locks[LOCK].add_app_code(789123, "App")
    api.locks[LOCK].busy = True
    _, lock, _ = await client.call("GET", f"/smartlock/{LOCK}")
    assert "operationId" in lock
    status, _, _ = await client.call("POST", f"/smartlock/{LOCK}/auth/{auth_id}",
                                     {"name": "App"})
    assert status == 423
    api.locks[LOCK].busy = False
    status, _, _ = await client.call("POST", f"/smartlock/{LOCK}/auth/{auth_id}",
                                     {"name": "App"})
    assert status == 204


async def test_update_needs_a_name_when_strict(api: FakeNukiWeb, client: Client) -> None:
    auth_id = api.locks[LOCK].add_app_code(789124, "App")
    status, body, _ = await client.call("POST", f"/smartlock/{LOCK}/auth/{auth_id}",
                                        {"enabled": False})
    assert status == 400 and "'name'" in body["detailMessage"]
    api.strict_schema = False
    status, _, _ = await client.call("POST", f"/smartlock/{LOCK}/auth/{auth_id}",
                                     {"enabled": False})
    assert status == 204


# -- 5. delete ----------------------------------------------------------------------------------

async def test_delete_is_asynchronous(api: FakeNukiWeb, client: Client) -> None:
    auth_id = api.locks[LOCK].add_app_code(891234, "App")
    status, body, _ = await client.call("DELETE", f"/smartlock/{LOCK}/auth/{auth_id}")
    assert status == 204 and body is None
    [still] = await client.auths()
    assert still["id"] == auth_id and "operationId" in still
    assert api.locks[LOCK].keypad_codes() == {"891234": "App"}
    await wait_for(lambda: not api.locks[LOCK].keypad_codes())
    assert await client.auths() == []


# -- 6. errors ----------------------------------------------------------------------------------

async def test_bad_or_missing_token_is_401(client: Client) -> None:
    for token in ("wrong", ""):
        status, body, _ = await client.call("GET", "/smartlock", token=token)
        assert status == 401
        assert body["detailMessage"] == "Your access token is not authorized"


async def test_token_without_the_scope_is_403(api: FakeNukiWeb, client: Client) -> None:
    api.add_token("read-only", {"smartlock.readOnly"})
    assert (await client.call("GET", "/smartlock", token="read-only"))[0] == 200
    assert (await client.call("GET", f"/smartlock/{LOCK}/auth", token="read-only"))[0] == 403
    api.add_token("codes-only", {"smartlock.auth"})
    assert (await client.call("GET", f"/smartlock/{LOCK}/auth", token="codes-only"))[0] == 200
    assert (await client.call("GET", "/smartlock", token="codes-only"))[0] == 403
    api.missing_scope_status = 401
    assert (await client.call("GET", "/smartlock", token="codes-only"))[0] == 401
    api.revoke_token("codes-only")
    assert (await client.call("GET", f"/smartlock/{LOCK}/auth", token="codes-only"))[0] == 401


async def test_unknown_authorization_is_404(client: Client) -> None:
    for method in ("GET", "POST", "DELETE"):
        status, _, _ = await client.call(method, f"/smartlock/{LOCK}/auth/{'ab' * 12}",
                                         {"name": "x"})
        assert status == 404, method


async def test_duplicate_code_is_409(api: FakeNukiWeb, client: Client) -> None:
    app_id = api.locks[LOCK].add_app_code(912345, "App")
    assert (await client.create(912345))[0] == 409
    api.apply_delay_s = 5.0
    assert (await client.create(923456))[0] == 204
    assert (await client.create(923456, "Again"))[0] == 409  # pending entries count
    status, _, _ = await client.call("POST", f"/smartlock/{LOCK}/auth/{app_id}",
                                     {"name": "App", "code": 923456})
    assert status == 409
    assert (await client.create(912345, lock=NO_KEYPAD))[0] == 400  # other lock, no keypad


@pytest.mark.parametrize("code", [129999, 123456, 345670, 34567, 3456789, "345678", None,
                                  True, 0])
async def test_invalid_code_is_400(client: Client, code: Any) -> None:
    status, body = await client.create(code)
    assert status == 400
    assert body["detailMessage"] == (
        f"The supplied value '{'null' if code is None else code}' for parameter 'code' "
        "is not valid")
    assert body["stackTrace"] == [] and body["suppressedExceptions"] == []


async def test_code_ending_in_12_is_valid(client: Client) -> None:
    assert (await client.create(999912))[0] == 204


async def test_lock_without_keypad_refuses_type_13(client: Client) -> None:
    status, body = await client.create(345678, lock=NO_KEYPAD)
    assert status == 400
    assert body["detailMessage"] == "The supplied value '13' for parameter 'type' is not valid"
    status, body = await client.create(None, lock=NO_KEYPAD)  # type: ignore[arg-type]
    assert "'code'" in body["detailMessage"]  # the code is checked first


async def test_name_rules(api: FakeNukiWeb, client: Client) -> None:
    status, body = await client.create(345678, "x" * 21)
    assert status == 422 and body["reasonPhrase"] == "Unprocessable Entity"
    assert (await client.create(345678, ""))[0] == 400
    assert (await client.create(345678, "x" * 20))[0] == 204


async def test_remote_allowed_is_required_when_strict(api: FakeNukiWeb, client: Client) -> None:
    body = {"type": KEYPAD_CODE, "name": "Guest", "code": 345678}
    status, answer, _ = await client.call("PUT", f"/smartlock/{LOCK}/auth", body)
    assert status == 400 and "'remoteAllowed'" in answer["detailMessage"]
    api.strict_schema = False
    assert (await client.call("PUT", f"/smartlock/{LOCK}/auth", body))[0] == 204


@pytest.mark.parametrize("fields", [
    {"allowedWeekDays": 128}, {"allowedFromTime": 1440}, {"allowedUntilTime": -1},
    {"allowedFromDate": "tomorrow"}, {"allowedFromDate": "2026-03-01T14:00:00"},
    {"allowedFromDate": UNTIL, "allowedUntilDate": FROM}])
async def test_invalid_window_is_400(client: Client, fields: dict[str, Any]) -> None:
    assert (await client.create(345678, **fields))[0] == 400


async def test_rate_limit_is_429(api: FakeNukiWeb, client: Client) -> None:
    api.rate_limited = True
    status, _, response = await client.call("GET", "/smartlock")
    assert status == 429 and "Retry-After" not in response.headers
    api.rate_limit_retry_after = 30
    status, _, response = await client.call("GET", "/smartlock")
    assert status == 429 and response.headers["Retry-After"] == "30"
    api.rate_limited = False
    api.rate_limit = 2
    statuses = [(await client.call("GET", "/smartlock"))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_fail_next_injects_each_error(api: FakeNukiWeb, client: Client) -> None:
    api.fail_next(503, method="GET", path=r"/auth$", times=2)
    api.fail_next(429, method="PUT", retry_after=7)
    assert (await client.call("GET", "/smartlock"))[0] == 200
    assert (await client.call("GET", f"/smartlock/{LOCK}/auth"))[0] == 503
    assert (await client.call("GET", f"/smartlock/{LOCK}/auth"))[0] == 503
    assert (await client.call("GET", f"/smartlock/{LOCK}/auth"))[0] == 200
    status, _ = await client.create(345678)
    assert status == 429
    assert (await client.create(345678))[0] == 204


# -- 7. switches --------------------------------------------------------------------------------

async def test_latency(api: FakeNukiWeb, client: Client) -> None:
    api.latency_s = 0.2
    started = time.monotonic()
    assert (await client.call("GET", "/smartlock"))[0] == 200
    assert time.monotonic() - started >= 0.2


async def test_offline_lock_keeps_changes_pending(api: FakeNukiWeb, client: Client) -> None:
    api.locks[LOCK].set_online(False)
    assert (await client.create(345678))[0] == 204  # the server keeps accepting
    entry = await created(client, 345678)
    await asyncio.sleep(0.3)  # longer than apply_delay_s
    [entry] = await client.auths()
    assert "operationId" in entry and api.locks[LOCK].keypad_codes() == {}
    api.locks[LOCK].set_online(True)
    await on_lock(client, 345678)
    assert api.locks[LOCK].keypad_codes() == {"345678": "Guest"}


async def test_operation_timeout_puts_an_error_on_the_entry(
        api: FakeNukiWeb, client: Client) -> None:
    api.operation_timeout_s = 0.2
    api.locks[LOCK].online = False
    await client.create(345678)

    async def failed() -> dict[str, Any] | None:
        entries = await client.auths()
        return entries[0] if entries and "error" in entries[0] else None
    entry = await wait_for(failed)
    assert "operationId" not in entry and "authId" not in entry
    assert api.locks[LOCK].keypad_codes() == {}
    assert (await client.create(345678, "Again"))[0] == 409  # the ghost still holds the PIN
    api.locks[LOCK].online = True
    status, _, _ = await client.call("DELETE", f"/smartlock/{LOCK}/auth/{entry['id']}")
    assert status == 204
    await wait_for(lambda: not api.locks[LOCK].operations)
    assert await client.auths() == []


async def test_lock_refusing_a_change(api: FakeNukiWeb, client: Client) -> None:
    auth_id = api.locks[LOCK].add_app_code(345678, "App")
    api.locks[LOCK].refuse_operations = "K_ERROR_CODE_ALREADY_EXISTS (0x2a)"
    await client.call("POST", f"/smartlock/{LOCK}/auth/{auth_id}",
                      {"name": "App", "code": 456789})

    async def failed() -> dict[str, Any] | None:
        entries = await client.auths()
        return entries[0] if "error" in entries[0] else None
    entry = await wait_for(failed)
    assert entry["error"].startswith("K_ERROR_CODE_ALREADY_EXISTS")
    assert entry["code"] == 456789  # the server's copy
    assert api.locks[LOCK].keypad_codes() == {"345678": "App"}  # the lock's


async def test_operation_id_as_string(api: FakeNukiWeb, client: Client) -> None:
    api.operation_id_format = "string"
    await client.create(345678)
    entry = await created(client, 345678)
    assert isinstance(entry["operationId"], str) and len(entry["operationId"]) == 24


async def test_entries_put_straight_into_auths_count_as_on_the_lock(api: FakeNukiWeb) -> None:
    api.locks[LOCK].auths["x" * 24] = {"type": KEYPAD_CODE, "name": "Legacy", "code": 345678}
    assert api.locks[LOCK].keypad_codes() == {"345678": "Legacy"}


async def test_thread_wrapper() -> None:
    fake = FakeNukiWebThread(TOKEN, apply_delay_s=0.05, list_delay_s=0.0)
    url = fake.start()
    try:
        fake.call(fake.api.add_lock, LOCK, "Front door")
        request = urllib.request.Request(f"{url}/smartlock",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, lambda: urllib.request.urlopen(request).read())
        assert json.loads(body)[0]["smartlockId"] == LOCK
    finally:
        fake.stop()


async def test_replacing_the_token_destroys_the_old_one(api: FakeNukiWeb, client: Client) -> None:
    api.token = "new-token"
    assert (await client.call("GET", "/smartlock"))[0] == 401
    assert (await client.call("GET", "/smartlock", token="new-token"))[0] == 200


async def test_list_delay_past_apply_lists_only_what_the_lock_has(
        api: FakeNukiWeb, client: Client) -> None:
    api.list_delay_s = 99.0
    api.apply_delay_s = 0.1
    await client.create(345678)
    assert await client.auths() == []
    entry = await created(client, 345678)
    assert "operationId" not in entry and api.locks[LOCK].keypad_codes() == {"345678": "Guest"}
