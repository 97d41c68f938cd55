"""A SmartThings cloud (api.smartthings.com + its OAuth token endpoint) with locks that carry the
`lockCodes` capability, for tests. Built only from SmartThings' published material and from
SmartThings' own Edge lock drivers; each behaviour names its source in a comment. Nothing here
comes from, or knows about, lockbridge's driver.

Sources (short names used below; docs/drivers/smartthings-api-facts.md has the full list):

* [cap] the `lockCodes` capability definition, SmartThings' lua libs
  `st/capabilities/generated/lockCodes.lua` (copy in github.com/jshessen/SmartThingsEdgeDrivers
  `external/lua_libs-api_v3/`).
* [zw-defaults] `st/zwave/defaults/lockCodes.lua`, same copy: the stock Z-Wave handling of
  setCode / deleteCode / reloadAllCodes / nameSlot and of the lock's reports.
* [zb-legacy] SmartThingsCommunity/SmartThingsEdgeDrivers `drivers/SmartThings/zigbee-lock/src/
  legacy-handlers/init.lua` and `legacy_lock_utils.lua`; [zb-yale] `.../legacy-handlers/yale/
  init.lua`; [zw-alarm] `drivers/SmartThings/zwave-lock/src/legacy-handlers/zwave-alarm-v1-lock/
  init.lua`; [zw-samsung] `.../samsung-lock/init.lua`; [zw-schlage] `.../schlage-lock/init.lua`;
  [zw-test] `drivers/SmartThings/zwave-lock/src/test/test_zwave_lock_legacy.lua`.
* [sdk-devices], [sdk-auth], [sdk-history], [sdk-types]: SmartThingsCommunity/
  smartthings-core-sdk `src/endpoint/devices.ts`, `src/authenticator.ts` +
  `src/endpoint-client.ts`, `src/endpoint/history.ts`, `src/types.ts`.
* [tokens] developer.smartthings.com/docs/service-integrations/token-management (expires_in
  "typically 86399 seconds"; an expired token gets 401; refresh = POST /v1/oauth/token with
  Basic client auth; "Both the access token and refresh token are new values"; "Once a refresh
  token is used, it is no longer valid"); [refresh-howto] smartthings.developer.samsung.com/
  docs/how-to/refresh-token.html ("An access token expires in 24 hours. A refresh token
  expires in 30 days."; token URL https://auth-global.api.smartthings.com/oauth/token);
  [community-refresh] community.smartthings.com/t/280271 (SmartThings staff: after a refresh
  the old access and refresh tokens "both get replaced").
* [actuate] developer.smartthings.com/docs/connected-services/actuate-commands ("Commands are
  asynchronous ... only indicating that the command is valid").
* [limits] developer.smartthings.com/docs/getting-started/rate-limits (and the older
  smartthings.developer.samsung.com/docs/guides/smartapps/rate-limits.html): "Guardrail 10
  Commands to a device per request".
* [pyst] andrewsayre/pysmartthings `pysmartthings/api.py` (token URL
  https://auth-global.api.smartthings.com/oauth/token, Basic client auth, 400 = invalid grant),
  `errors.py` (403 "authenticated but does not have appropriate permissions, or a requested
  resource is not found"; 422 ConstraintViolationError), `tests/json/token_response.json`,
  `tests/json/token_invalid_response.json`.
* Reported by clients (observations, not SmartThings' word): [429] o-lukas/
  homebridge-smartthings-tv issue 466 (a 429 body); [refresh-400] aziz66/homebridge-smartthings
  issue 14 (invalid_grant after 24 h); [401-html] TA2k/ioBroker.smartthings issue 52 (401 with
  an openresty HTML page); [pat-24h] thibautsabot/streamdeck-plugin-smartthings issue 13 and
  daltskin/SmartThingsNet issue 24 (tokens now live 24 h); [malformed] a SmartThings device-SDK
  document ("Request Violation"): 422 ConstraintViolationError "The request is malformed.".

Where nothing is published the comment says "unpublished" and names the choice, preferring the
stricter one (a client that works here should also work against SmartThings).

The model. Each `FakeLock` keeps `slots` {slot: SlotCode(pin, name)}: what its keypad accepts
(the truth tests read). The cloud keeps, per device, the attributes the lock's Edge driver last
reported (`lockCodes` = JSON slot -> name, never PINs [cap][zw-defaults]) and a history of
events. A command is ACCEPTED at once [sdk-devices][actuate]; the hub runs the device's
commands one at a time after `command_delay_s` (on the fake's clock), and only then do
`codeChanged` / `lockCodes` change.

Public helpers (tests use these):

* `FakeSmartThings(client_id, client_secret, *, clock=None, **switches)`; `await start()` ->
  base URL (serves `/oauth/token` and `/v1/...`); `await stop()`; `requests` ("METHOD /path").
* `add_location(location_id=None, name=...)`, `add_lock(label, *, location_id=None, ...)` ->
  `FakeLock`; `devices` {deviceId: FakeLock}.
* Tokens: `issue_token()` -> (access, refresh); `expire_tokens()` (access tokens answer 401,
  refresh tokens still work); `revoke_refresh_tokens()` (refresh answers `refused_refresh_status`
  invalid_grant); `access_tokens` / `refresh_tokens` (tests may inspect).
* World: `remove_device(device_id)` (gone from the account); `connect_elsewhere(location_id)`
  (the token still works, the location and its devices are no longer listed or reachable);
  `FakeLock.online` (health OFFLINE; commands ACCEPTED and never run); `FakeLock.hub_busy`
  (commands wait until it clears); `FakeLock.fail_next_sets` (the lock refuses the next N
  setCode: "N failed"); `FakeLock.max_codes`.
* Reading: `FakeLock.slots`, `lock_codes_attribute()` (the cloud's slot -> name), `events`
  (every event, oldest first), `codes_changed()` (the `codeChanged` values).
* Keypad: `FakeLock.keypad_set(slot, pin)`, `keypad_delete(slot)` (a change made at the lock).
* `await run_pending()`: let every queued command finish now, skipping the delay.
* `FakeSmartThingsThread(...)`: the same on its own loop in a thread (`.api`, `.url`,
  `start()`, `call(fn, *args)`, `run(coroutine_fn, *args)`, `stop()`), for tests that drive a
  daemon process with blocking calls.

Switches (constructor keywords, also attributes to change while running): `latency_s` (0),
`command_delay_s` (2.0), `token_ttl_s` (86_399), `refresh_ttl_s` (30 days),
`rotate_refresh_token` (True), `refresh_revokes_old` (True), `refused_refresh_status` (400),
`rate_limit` (None) calls per `rate_limit_window_s` (60) per account, `rate_limited` (False:
every call answers 429), `retry_after_header` (False), `missing_device_status` (403),
`page_size` (200).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.clock import Clock, SystemClock
from tests.fakes.threaded import ThreadedFake

# [tokens]: expires_in "typically 86399 seconds, approximately 24 hours"; [refresh-howto]: a
# refresh token "expires in 30 days". (Personal access tokens also live 24 h now [pat-24h].)
TOKEN_TTL_S = 86_399
REFRESH_TTL_S = 30 * 86_400
# [limits]: "Guardrail 10 Commands to a device per request".
MAX_COMMANDS_PER_REQUEST = 10
# [cap]: every command of `lockCodes` and its arguments (name, JSON type).
LOCK_CODES_COMMANDS: dict[str, tuple[tuple[str, type], ...]] = {
    "setCode": (("codeSlot", int), ("codePIN", str), ("codeName", str)),
    "deleteCode": (("codeSlot", int),),
    "nameSlot": (("codeSlot", int), ("codeName", str)),
    "requestCode": (("codeSlot", int),),
    "reloadAllCodes": (),
    "updateCodes": (("codes", dict),),
    "setCodeLength": (("length", int),),
    "lock": (),
    "unlock": (),
    "unlockWithTimeout": (),
}
# [cap]: the attributes of `lockCodes` (it has its own `lock` too); the others' are their
# definitions' in the same lua libs.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "lockCodes": ("codeChanged", "codeLength", "codeReport", "lock", "lockCodes",
                  "maxCodeLength", "maxCodes", "minCodeLength", "scanCodes"),
    "lock": ("lock",),
    "battery": ("battery",),
    "refresh": (),
}
# The capabilities a lock device exposes here and the commands the fake takes for each.
CAPABILITIES: dict[str, dict[str, tuple[tuple[str, type], ...]]] = {
    "lockCodes": LOCK_CODES_COMMANDS,
    "lock": {"lock": (), "unlock": ()},
    "battery": {},
    "refresh": {"refresh": ()},
}


@dataclass
class SlotCode:
    """A code as the lock holds it."""

    pin: str
    name: str


@dataclass
class FakeLock:
    """One lock device behind a hub: its slots (truth) and what the cloud was last told."""

    device_id: str
    label: str
    location_id: str
    hub_id: str
    max_codes: int = 30
    min_code_length: int = 4
    max_code_length: int = 8
    online: bool = True
    hub_busy: bool = False
    fail_next_sets: int = 0
    slots: dict[int, SlotCode] = field(default_factory=dict)
    # The Edge driver's own slot -> name map (its `lockCodes` field [zw-defaults]).
    known: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    cloud: FakeSmartThings | None = None

    def lock_codes_attribute(self) -> dict[str, str]:
        """The cloud's `lockCodes` attribute, decoded: slot (a string) -> name."""
        raw = self.attributes.get(("lockCodes", "lockCodes"), {}).get("value") or "{}"
        decoded: dict[str, str] = json.loads(raw)
        return decoded

    def codes_changed(self) -> list[str]:
        """Every `codeChanged` value, oldest first."""
        return [e["value"] for e in self.events if e["attribute"] == "codeChanged"]

    def keypad_set(self, slot: int, pin: str) -> None:
        """A code programmed at the lock. [zw-defaults] NEW_USER_CODE_ADDED: "N set" (or
        "N changed" for a slot it knew) named "Code N" unless it knew a name; [zw-test] shows
        "5 set" with codeName "Code 5" and lockCodes {"5": "Code 5"}. Unpublished: a change
        made while the device is offline; the fake's cloud never hears of it."""
        name = self.known.get(str(slot), f"Code {slot}")
        self.slots[slot] = SlotCode(pin, name)
        if self.online:
            self._report_set(slot, name)

    def keypad_delete(self, slot: int) -> None:
        """A code removed at the lock: [zw-defaults] SINGLE_USER_CODE_DELETED: "N deleted" and
        a lockCodes without it, only for a slot the driver knew."""
        self.slots.pop(slot, None)
        if self.online and str(slot) in self.known:
            self._report_deleted(slot)

    # -- what the Edge driver emits (called by the hub simulation) ---------------------------

    def emit(self, capability: str, attribute: str, value: Any,
             data: dict[str, Any] | None = None) -> None:
        now = self._now()
        state: dict[str, Any] = {"value": value, "timestamp": iso(now)}
        if data is not None:
            state["data"] = data
        self.attributes[(capability, attribute)] = state
        self.events.append({"capability": capability, "attribute": attribute, "value": value,
                            "data": data or {}, "time": now,
                            "epoch": int(now.timestamp() * 1000)})

    def _emit_lock_codes(self) -> None:
        # [zw-defaults] code_set_event / reload_all_codes: the attribute is json.encode of the
        # slot -> name table; slots are strings. Sorted here for stable output (unpublished).
        ordered = dict(sorted(self.known.items(), key=lambda kv: int(kv[0])))
        self.emit("lockCodes", "lockCodes", json.dumps(ordered))

    def _report_set(self, slot: int, name: str) -> None:
        key = str(slot)
        change = " changed" if key in self.known else " set"
        self.known[key] = name
        self._emit_lock_codes()
        self.emit("lockCodes", "codeChanged", f"{slot}{change}", {"codeName": name})

    def _report_deleted(self, slot: int) -> None:
        key = str(slot)
        name = self.known.pop(key, f"Code {slot}")
        self.emit("lockCodes", "codeChanged", f"{slot} deleted", {"codeName": name})
        self._emit_lock_codes()

    def _now(self) -> datetime:
        return self.cloud.clock.now() if self.cloud else datetime.now(UTC)


class FakeSmartThings:
    """The cloud on a loopback port; tests reach into `devices` to play the world."""

    def __init__(self, client_id: str, client_secret: str, *, clock: Clock | None = None,
                 latency_s: float = 0.0, command_delay_s: float = 2.0,
                 token_ttl_s: int = TOKEN_TTL_S, refresh_ttl_s: int = REFRESH_TTL_S,
                 rotate_refresh_token: bool = True, refresh_revokes_old: bool = True,
                 refused_refresh_status: int = 400,
                 rate_limit: int | None = None, rate_limit_window_s: float = 60.0,
                 rate_limited: bool = False, retry_after_header: bool = False,
                 missing_device_status: int = 403, page_size: int = 200) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock: Clock = clock or SystemClock()
        self.latency_s = latency_s
        self.command_delay_s = command_delay_s
        self.token_ttl_s = token_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.rotate_refresh_token = rotate_refresh_token
        self.refresh_revokes_old = refresh_revokes_old
        self.refused_refresh_status = refused_refresh_status
        self.rate_limit = rate_limit
        self.rate_limit_window_s = rate_limit_window_s
        self.rate_limited = rate_limited
        self.retry_after_header = retry_after_header
        self.missing_device_status = missing_device_status
        self.page_size = page_size
        self.locations: dict[str, str] = {}
        self.hidden_locations: set[str] = set()
        self.devices: dict[str, FakeLock] = {}
        self.access_tokens: dict[str, float] = {}  # token -> expiry (monotonic seconds)
        # refresh token -> (expiry in monotonic seconds, the access token issued with it)
        self.refresh_tokens: dict[str, tuple[float, str]] = {}
        self.requests: list[str] = []
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self._hits: list[float] = []
        self._hub_locks: dict[str, asyncio.Lock] = {}
        self._jobs: dict[asyncio.Task[None], FakeLock] = {}
        self._skip_delay = asyncio.Event()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- set-up -------------------------------------------------------------------------------

    def add_location(self, location_id: str | None = None, name: str = "Home") -> str:
        location = location_id or str(uuid.uuid4())
        self.locations[location] = name
        return location

    def add_lock(self, label: str, *, location_id: str | None = None,
                 hub_id: str = "hub-1", max_codes: int = 30, min_code_length: int = 4,
                 max_code_length: int = 8, device_id: str | None = None) -> FakeLock:
        """A lock that has been through its driver's start-up: [zb-legacy] do_configure and
        [zw-defaults] reload_all_codes report maxCodes, min/maxCodeLength, scanCodes and an
        empty lockCodes before anything else."""
        location = location_id or next(iter(self.locations), None) or self.add_location()
        lock = FakeLock(device_id or str(uuid.uuid4()), label, location, hub_id,
                        max_codes=max_codes, min_code_length=min_code_length,
                        max_code_length=max_code_length, cloud=self)
        lock.emit("lockCodes", "maxCodes", max_codes)
        lock.emit("lockCodes", "minCodeLength", min_code_length)
        lock.emit("lockCodes", "maxCodeLength", max_code_length)
        lock.emit("lockCodes", "lockCodes", "{}")
        lock.emit("lockCodes", "scanCodes", "Complete")
        lock.emit("lock", "lock", "locked")
        lock.emit("battery", "battery", 90, None)
        lock.attributes[("battery", "battery")]["unit"] = "%"
        lock.events.clear()
        self.devices[lock.device_id] = lock
        return lock

    def issue_token(self) -> tuple[str, str]:
        """A fresh (access_token, refresh_token) pair, as an authorization-code grant gives."""
        return self._new_pair()

    def _new_pair(self) -> tuple[str, str]:
        # [tokens] example: both tokens are UUIDs.
        access, refresh = str(uuid.uuid4()), str(uuid.uuid4())
        now = self.clock.monotonic()
        self.access_tokens[access] = now + self.token_ttl_s
        self.refresh_tokens[refresh] = (now + self.refresh_ttl_s, access)
        return access, refresh

    def expire_tokens(self) -> None:
        """Every access token is past its lifetime: API calls answer 401."""
        for token in self.access_tokens:
            self.access_tokens[token] = float("-inf")

    def revoke_refresh_tokens(self) -> None:
        """The grant is gone (user removed the app, password changed: unpublished which):
        access tokens answer 401 and refresh tokens 400 invalid_grant [pyst][refresh-400]."""
        self.expire_tokens()
        self.refresh_tokens.clear()

    def remove_device(self, device_id: str) -> None:
        """The device left the account (deleted or moved): it is no longer listed and its own
        URLs answer `missing_device_status`."""
        self.devices.pop(device_id, None)

    def connect_elsewhere(self, location_id: str) -> None:
        """The token still works but the location and its devices are no longer visible
        (the account was connected to another integration / the location was shared away).
        Unpublished how SmartThings shows this; the fake lists neither, and the devices'
        URLs answer `missing_device_status`, as for a removed device."""
        self.hidden_locations.add(location_id)

    async def run_pending(self, timeout: float = 10.0) -> None:
        """Let every queued command finish now (skipping `command_delay_s`), then return;
        commands held by a busy hub stay queued."""
        self._skip_delay.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while self._jobs and loop.time() < deadline:
                done, _ = await asyncio.wait(set(self._jobs), timeout=0.1)
                if not done and all(lock.hub_busy for lock in self._jobs.values()):
                    return
        finally:
            self._skip_delay.clear()

    async def start(self) -> str:
        app = web.Application(middlewares=[self._gate])
        # [refresh-howto] auth-global.api.smartthings.com/oauth/token; [tokens]
        # api.smartthings.com/v1/oauth/token: the fake serves both paths.
        app.router.add_post("/oauth/token", self._token)
        app.router.add_post("/v1/oauth/token", self._token)
        routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]]] = [
            ("GET", "/v1/locations", self._locations),
            ("GET", "/v1/devices", self._device_list),
            ("GET", "/v1/devices/{device_id}", self._device),
            ("GET", "/v1/devices/{device_id}/status", self._status),
            ("GET", "/v1/devices/{device_id}/components/{component}/status",
             self._component_status),
            ("GET",
             "/v1/devices/{device_id}/components/{component}/capabilities/{capability}/status",
             self._capability_status),
            ("GET", "/v1/devices/{device_id}/health", self._health),
            ("POST", "/v1/devices/{device_id}/commands", self._commands),
            ("GET", "/v1/history/devices", self._history),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._authorized(handler))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = int(self._runner.addresses[0][1])
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        for job in list(self._jobs):
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the gate every request passes ---------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if self.latency_s:
            await self.clock.sleep(self.latency_s)
        response: web.StreamResponse = await handler(request)
        return response

    def _authorized(self, handler: Callable[[web.Request], Awaitable[web.Response]]
                    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Bearer token on every /v1 call [pyst][sdk-auth]. A missing, unknown or expired token
        is 401 ([sdk-auth] endpoint-client refreshes on exactly that status); the body is
        unpublished and clients have seen an openresty HTML page [401-html], so the fake sends
        that: act on the status, never on the body. Rate limiting is checked after the token
        (unpublished order) and counts per account."""
        async def run(request: web.Request) -> web.Response:
            header = request.headers.get("Authorization", "")
            token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") \
                else ""
            expiry = self.access_tokens.get(token)
            if expiry is None or expiry <= self.clock.monotonic():
                return _unauthorized()
            limited = self._rate_limit_check()
            if limited is not None:
                return limited
            return await handler(request)
        return run

    def _rate_limit_check(self) -> web.Response | None:
        """[429]: HTTP 429 with {"requestId", "error": {"code": "TooManyRequestError",
        "message": "Too Many Requests", "details": [{"code": "TooManyRequestError", "message":
        "attempt 20 limit 10 - retry in 43074 millis", "details": []}]}}. [limits] publishes
        per-API limits but not the device API's nor a Retry-After header: the wait is only in
        that detail text unless `retry_after_header` is set (unpublished either way)."""
        now = self.clock.monotonic()
        self._hits = [t for t in self._hits if now - t < self.rate_limit_window_s]
        self._hits.append(now)
        if not self.rate_limited and (self.rate_limit is None
                                      or len(self._hits) <= self.rate_limit):
            return None
        oldest = self._hits[0]
        wait_ms = max(1, int((oldest + self.rate_limit_window_s - now) * 1000))
        detail = (f"attempt {len(self._hits)} limit {self.rate_limit or 0} - retry in "
                  f"{wait_ms} millis")
        body = _error_body("TooManyRequestError", "Too Many Requests",
                           [{"code": "TooManyRequestError", "message": detail,
                             "details": []}])
        headers = {"Retry-After": str(-(-wait_ms // 1000))} if self.retry_after_header \
            else None
        return web.json_response(body, status=429, headers=headers)

    # -- OAuth ----------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        """[tokens], [refresh-howto], [sdk-auth], [pyst]: POST form grant_type=refresh_token,
        refresh_token (client_id optional), client credentials as HTTP Basic auth. Answer:
        access_token, token_type "bearer", refresh_token, expires_in, scope (+ access_tier,
        installed_app_id, ... [tokens]). Both tokens are new; the used refresh token stops
        working [tokens], and so does the old access token [community-refresh] (switches
        `rotate_refresh_token`, `refresh_revokes_old`). An unknown, used or expired refresh
        token: {"error": "invalid_grant", "error_description": "Invalid refresh token: <t>"}
        ([pyst token_invalid_response.json]) with status 400 as clients report ([pyst] api.py
        treats 400 as an invalid grant; [refresh-400]) although [refresh-howto] says 401:
        `refused_refresh_status`. Wrong client credentials: unpublished; 401 invalid_client
        (RFC 6749 section 5.2)."""
        form = await request.post()
        if not self._client_ok(request.headers.get("Authorization", "")):
            return web.json_response({"error": "invalid_client",
                                      "error_description": "Bad client credentials"},
                                     status=401)
        grant = str(form.get("grant_type", ""))
        if grant != "refresh_token":
            # The authorization-code grant needs a browser login; tests start from
            # `issue_token()`. RFC 6749 section 5.2 names the error.
            return web.json_response({"error": "unsupported_grant_type",
                                      "error_description": f"Unsupported grant: {grant}"},
                                     status=400)
        refresh = str(form.get("refresh_token", ""))
        known = self.refresh_tokens.get(refresh)
        if known is None or known[0] <= self.clock.monotonic():
            return web.json_response({"error": "invalid_grant",
                                      "error_description": f"Invalid refresh token: {refresh}"},
                                     status=self.refused_refresh_status)
        if self.refresh_revokes_old and known[1] in self.access_tokens:
            self.access_tokens[known[1]] = float("-inf")
        if self.rotate_refresh_token:
            del self.refresh_tokens[refresh]
            access, refresh = self._new_pair()
        else:
            access, spare = self._new_pair()
            del self.refresh_tokens[spare]
            self.refresh_tokens[refresh] = (known[0], access)
        return web.json_response({"access_token": access, "token_type": "bearer",
                                  "refresh_token": refresh, "expires_in": self.token_ttl_s,
                                  "scope": "r:devices:* x:devices:* r:locations:*",
                                  "access_tier": 0, "installed_app_id": str(uuid.uuid4())})

    def _client_ok(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            return False
        return decoded == f"{self.client_id}:{self.client_secret}"

    # -- reads -------------------------------------------------------------------------------

    def _visible(self, lock: FakeLock) -> bool:
        return lock.location_id not in self.hidden_locations

    def _lock(self, request: web.Request) -> FakeLock | web.Response:
        """A device this token can see, or the answer for one it cannot: [pyst errors.py]
        403 means "authenticated but does not have appropriate permissions, or a requested
        resource is not found"; [sdk-devices] getHealth maps 404 to UNKNOWN. Which of the two
        a removed device gives is unpublished: `missing_device_status` (403 by default)."""
        lock = self.devices.get(request.match_info["device_id"])
        if lock is None or not self._visible(lock):
            status = self.missing_device_status
            code = "ForbiddenError" if status == 403 else "NotFoundError"
            # Unpublished: the error code strings; the shape is [429]'s and [malformed]'s.
            return web.json_response(_error_body(code, "Access is denied"
                                                 if status == 403 else "Not found"),
                                     status=status)
        return lock

    async def _locations(self, request: web.Request) -> web.Response:
        items = [{"locationId": lid, "name": name} for lid, name in self.locations.items()
                 if lid not in self.hidden_locations]
        return web.json_response({"items": items, "_links": {}})

    async def _device_list(self, request: web.Request) -> web.Response:
        """[sdk-devices] list: query capability, locationId, deviceId (repeatable); answers
        {"items": [...], "_links": {"next": {"href"}}} ([sdk-types] Links; [pyst] follows
        `_links.next.href`). Page size unpublished (`page_size`)."""
        wanted_caps = request.query.getall("capability", [])
        wanted_locs = request.query.getall("locationId", [])
        wanted_ids = request.query.getall("deviceId", [])
        locks = [lock for lock in self.devices.values() if self._visible(lock)
                 and (not wanted_locs or lock.location_id in wanted_locs)
                 and (not wanted_ids or lock.device_id in wanted_ids)
                 and all(cap in CAPABILITIES for cap in wanted_caps)]
        page = int(request.query.get("page", "0") or 0)
        chunk = locks[page * self.page_size:(page + 1) * self.page_size]
        links: dict[str, Any] = {}
        if (page + 1) * self.page_size < len(locks):
            query = dict(request.query) | {"page": str(page + 1)}
            links["next"] = {"href": str(request.url.with_query(query))}
        return web.json_response({"items": [self._device_item(lock) for lock in chunk],
                                  "_links": links})

    def _device_item(self, lock: FakeLock) -> dict[str, Any]:
        """[sdk-devices] Device: deviceId, name, label, manufacturerName, presentationId,
        locationId, components [{id, capabilities: [{id, version}]}], type; Edge devices carry
        EDGE_CHILD / ZWAVE details. Values here are illustrative."""
        return {"deviceId": lock.device_id, "name": "Z-Wave Lock", "label": lock.label,
                "manufacturerName": "SmartThingsCommunity", "presentationId": "ST_lock",
                "locationId": lock.location_id, "ownerId": "owner-1",
                "components": [{"id": "main", "label": "main", "capabilities": [
                    {"id": cap, "version": 1} for cap in CAPABILITIES]}],
                "createTime": "2026-01-01T00:00:00.000Z", "type": "ZWAVE",
                "zwave": {"networkId": "0A", "driverId": "zwave-lock", "hubId": lock.hub_id},
                "restrictionTier": 0}

    async def _device(self, request: web.Request) -> web.Response:
        found = self._lock(request)
        return found if isinstance(found, web.Response) else \
            web.json_response(self._device_item(found))

    def _component(self, lock: FakeLock) -> dict[str, dict[str, Any]]:
        """[sdk-devices] ComponentStatus: capability -> attribute -> {value, unit?, data?,
        timestamp}. Every attribute appears, `{"value": null}` before it has one ([pyst]
        tests/json/device_status.json shows such entries)."""
        status: dict[str, dict[str, Any]] = {
            cap: {attr: {"value": None} for attr in attrs} for cap, attrs in ATTRIBUTES.items()}
        for (cap, attr), state in lock.attributes.items():
            status[cap][attr] = dict(state)
        return status

    async def _status(self, request: web.Request) -> web.Response:
        found = self._lock(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response({"components": {"main": self._component(found)}})

    async def _component_status(self, request: web.Request) -> web.Response:
        found = self._lock(request)
        if isinstance(found, web.Response):
            return found
        if request.match_info["component"] != "main":
            return _malformed("componentId", "component is not a valid value.")
        return web.json_response(self._component(found))

    async def _capability_status(self, request: web.Request) -> web.Response:
        found = self._lock(request)
        if isinstance(found, web.Response):
            return found
        capability = request.match_info["capability"]
        if request.match_info["component"] != "main" or capability not in CAPABILITIES:
            return _malformed("capabilityId", f"{capability} is not a valid value.")
        return web.json_response(self._component(found)[capability])

    async def _health(self, request: web.Request) -> web.Response:
        """[sdk-devices] DeviceHealth: deviceId, state ONLINE | OFFLINE | UNKNOWN,
        lastUpdatedDate."""
        found = self._lock(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response({"deviceId": found.device_id,
                                  "state": "ONLINE" if found.online else "OFFLINE",
                                  "lastUpdatedDate": iso(self.clock.now())})

    async def _history(self, request: web.Request) -> web.Response:
        """[sdk-history] GET /history/devices: locationId (required), deviceId, limit,
        oldestFirst; items deviceId, deviceName, locationId, locationName, time, text,
        component, capability, attribute, value, data, epoch, hash; newest first by default.
        Paging parameters are not served (unpublished page size; `limit` caps the answer)."""
        location = request.query.get("locationId")
        if not location:
            return _malformed("locationId", "locationId must not be null")
        ids = request.query.getall("deviceId", [])
        limit = int(request.query.get("limit", "100") or 100)
        rows: list[dict[str, Any]] = []
        for lock in self.devices.values():
            if lock.location_id != location or not self._visible(lock) or \
                    (ids and lock.device_id not in ids):
                continue
            for number, event in enumerate(lock.events):
                rows.append({"deviceId": lock.device_id, "deviceName": lock.label,
                             "locationId": lock.location_id,
                             "locationName": self.locations.get(lock.location_id, ""),
                             "time": iso(event["time"]),
                             "text": f"{lock.label} {event['attribute']} is {event['value']}",
                             "component": "main", "componentLabel": "main",
                             "capability": event["capability"],
                             "attribute": event["attribute"], "value": event["value"],
                             "data": event["data"], "epoch": event["epoch"],
                             "hash": hash((lock.device_id, number)) & 0x7FFFFFFF})
        oldest_first = request.query.get("oldestFirst", "false") == "true"
        rows.sort(key=lambda r: r["epoch"], reverse=not oldest_first)
        return web.json_response({"items": rows[:limit], "_links": {}})

    # -- commands -----------------------------------------------------------------------------

    async def _commands(self, request: web.Request) -> web.Response:
        """[sdk-devices] POST /devices/{id}/commands {"commands": [{component, capability,
        command, arguments}]} -> {"results": [{"id", "status"}]}, status ACCEPTED | COMPLETED |
        FAILED; [actuate]: the answer only says the command is valid, events follow when the
        device acts. A malformed command is 422 ConstraintViolationError ([pyst] errors.py,
        [malformed]). The fake answers ACCEPTED for a lock command, also while the device is
        OFFLINE (unpublished; [actuate] implies acceptance says nothing about the device)."""
        found = self._lock(request)
        if isinstance(found, web.Response):
            return found
        try:
            body = await request.json()
        except ValueError:
            return _malformed("body", "body is not valid JSON")
        commands = body.get("commands") if isinstance(body, dict) else None
        if not isinstance(commands, list) or not commands:
            return _malformed("commands", "commands must not be empty")
        if len(commands) > MAX_COMMANDS_PER_REQUEST:
            return _malformed("commands", f"size must be between 1 and "
                              f"{MAX_COMMANDS_PER_REQUEST}")
        for index, command in enumerate(commands):
            problem = _check_command(command)
            if problem is not None:
                return _malformed(f"commands[{index}].{problem[0]}", problem[1])
        results = []
        for command in commands:
            command_id = str(uuid.uuid4())
            self.commands.append((found.device_id, command))
            job = asyncio.get_running_loop().create_task(
                self._run(found, command), name=f"fake-smartthings-{next(self._ids)}")
            self._jobs[job] = found
            job.add_done_callback(lambda done: self._jobs.pop(done, None))
            results.append({"id": command_id, "status": "ACCEPTED"})
        return web.json_response({"results": results})

    async def _run(self, lock: FakeLock, command: dict[str, Any]) -> None:
        """One command on the hub. Unpublished: how a hub orders work; the fake runs a hub's
        commands one at a time, in the order accepted, each after `command_delay_s`
        ([zw-defaults] spaces its own writes 2.2 s apart). `hub_busy` holds the queue. A
        command that reaches an OFFLINE device is dropped: no event ever follows
        (unpublished whether the hub replays it later; the fake does not)."""
        hub = self._hub_locks.setdefault(lock.hub_id, asyncio.Lock())
        async with hub:
            await self._delay()
            while lock.hub_busy:
                await self._delay(0.5)
            if not lock.online or lock.device_id not in self.devices:
                lock.dropped.append(command)
                return
            _apply(lock, str(command["command"]), list(command.get("arguments") or []))

    async def _delay(self, seconds: float | None = None) -> None:
        if self._skip_delay.is_set():
            await asyncio.sleep(0 if seconds is None else 0.005)
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(
            self.command_delay_s if seconds is None else seconds))
        skipper = asyncio.ensure_future(self._skip_delay.wait())
        try:
            await asyncio.wait({sleeper, skipper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            skipper.cancel()


# -- the lock and its Edge driver ---------------------------------------------------------------


def _apply(lock: FakeLock, command: str, args: list[Any]) -> None:
    """What the lock and its Edge driver do with one command, reported as events."""
    if command == "setCode":
        _set_code(lock, int(args[0]), str(args[1]), str(args[2]))
    elif command == "deleteCode":
        _delete_code(lock, int(args[0]))
    elif command == "nameSlot":
        _name_slot(lock, int(args[0]), str(args[1]))
    elif command == "requestCode":
        _report_slot(lock, int(args[0]))
    elif command == "reloadAllCodes":
        _reload_all(lock)
    elif command == "updateCodes":
        _update_codes(lock, dict(args[0]))
    elif command == "setCodeLength":
        # [cap] codeLength's setter; what the lock does with it is unpublished.
        lock.emit("lockCodes", "codeLength", int(args[0]))
    elif command in ("lock", "unlock"):
        lock.emit("lock", "lock", "locked" if command == "lock" else "unlocked",
                  {"method": "command"})
    elif command == "unlockWithTimeout":
        lock.emit("lock", "lock", "unlocked with timeout", {"method": "command"})
    # "refresh": nothing changes that the fake models.


def _set_code(lock: FakeLock, slot: int, pin: str, name: str) -> None:
    """[zw-defaults] set_code: an empty codePIN is a nameSlot; otherwise the driver keeps
    the name until the lock confirms, then "N set" (new slot) or "N changed" (a slot it knew)
    with data {"codeName"} and a new lockCodes. The lock refuses a PIN another slot holds:
    "N failed" and lockCodes unchanged ([zw-defaults] NEW_USER_CODE_NOT_ADDED_DUE_TO_
    DUPLICATE_CODE, [zw-alarm] alarm 34 "duplicate lock code", [zw-samsung]). A refusal for
    another reason is also "N failed" ([zw-schlage] STATUS_NOT_AVAILABLE, [zb-yale] the code
    read back differs): `fail_next_sets`. Unpublished: a PIN outside min/maxCodeLength (the
    fake's lock refuses it: "N failed") and a slot outside 1..maxCodes (the Z-Wave lock
    ignores an unsupported user identifier: no event at all)."""
    if pin == "":
        _name_slot(lock, slot, name)
        return
    if not 1 <= slot <= lock.max_codes:
        return
    duplicate = any(code.pin == pin for other, code in lock.slots.items() if other != slot)
    bad_length = not (lock.min_code_length <= len(pin) <= lock.max_code_length
                      and pin.isdigit())
    if lock.fail_next_sets > 0 or duplicate or bad_length:
        if lock.fail_next_sets > 0:
            lock.fail_next_sets -= 1
        # [zw-defaults], [zb-yale]: "failed" carries no codeName.
        lock.emit("lockCodes", "codeChanged", f"{slot} failed")
        return
    lock.slots[slot] = SlotCode(pin, name)
    lock._report_set(slot, name)


def _delete_code(lock: FakeLock, slot: int) -> None:
    """[zw-defaults] delete_code clears the slot and reads it back: a slot the driver knew
    gives "N deleted" (data codeName) and a lockCodes without it; an unknown empty slot gives
    "N unset"."""
    lock.slots.pop(slot, None)
    if str(slot) in lock.known:
        lock._report_deleted(slot)
    else:
        lock.emit("lockCodes", "codeChanged", f"{slot} unset")


def _name_slot(lock: FakeLock, slot: int, name: str) -> None:
    """[zw-defaults] name_slot: only a slot the driver knows is renamed: new lockCodes and
    "N renamed"; otherwise nothing happens. The lock itself holds no names."""
    key = str(slot)
    if key not in lock.known:
        return
    lock.known[key] = name
    if slot in lock.slots:
        lock.slots[slot].name = name
    lock._emit_lock_codes()
    lock.emit("lockCodes", "codeChanged", f"{slot} renamed")


def _report_slot(lock: FakeLock, slot: int) -> None:
    """[zw-defaults] user_code_report_handler: an occupied slot is "N set" ("N changed" if
    known; a new one is named "Code N" and added to lockCodes); an empty known slot is
    "N deleted"; an empty unknown slot is "N unset"."""
    key = str(slot)
    if slot in lock.slots:
        name = lock.known.get(key, f"Code {slot}")
        if key not in lock.known:
            lock.known[key] = name
            lock._emit_lock_codes()
            lock.emit("lockCodes", "codeChanged", f"{slot} set", {"codeName": name})
        else:
            lock.emit("lockCodes", "codeChanged", f"{slot} changed", {"codeName": name})
    elif key in lock.known:
        lock._report_deleted(slot)
    else:
        lock.emit("lockCodes", "codeChanged", f"{slot} unset")


def _reload_all(lock: FakeLock) -> None:
    """[zw-defaults] reload_all_codes: lockCodes as known, scanCodes "Scanning", then every
    slot 1..maxCodes read back as in requestCode, then scanCodes "Complete"."""
    lock._emit_lock_codes()
    lock.emit("lockCodes", "scanCodes", "Scanning")
    for slot in range(1, lock.max_codes + 1):
        _report_slot(lock, slot)
    lock.emit("lockCodes", "scanCodes", "Complete")


def _update_codes(lock: FakeLock, codes: dict[str, Any]) -> None:
    """[zw-defaults] update_codes: keys "code<N>"; a non-empty value other than "0" sets slot
    N (named as the driver knows it, else "Code N"), "" or "0" deletes it."""
    for key, value in codes.items():
        digits = key.removeprefix("code")
        if not digits.isdigit():
            continue
        slot = int(digits)
        if value not in (None, "", "0"):
            _set_code(lock, slot, str(value), lock.known.get(str(slot), f"Code {slot}"))
        else:
            _delete_code(lock, slot)


# -- wire helpers ------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """[sdk-history] "IS0-8601 date time strings in UTC". Unpublished: the exact form; the
    fake writes milliseconds and "Z"."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _check_command(command: Any) -> tuple[str, str] | None:
    """(target, message) of the first problem of one command against [cap], or None."""
    if not isinstance(command, dict):
        return "", "must be an object"
    if command.get("component", "main") != "main":
        return "component", f"{command.get('component')} is not a valid value."
    capability = command.get("capability")
    if capability not in CAPABILITIES:
        return "capability", f"{capability} is not a valid value."
    name = command.get("command")
    spec = CAPABILITIES[str(capability)].get(str(name))
    if spec is None:
        return "command", f"{name} is not a valid value."
    args = command.get("arguments") or []
    if not isinstance(args, list) or len(args) != len(spec):
        return "arguments", f"{name} takes {len(spec)} arguments"
    for index, ((arg_name, kind), value) in enumerate(zip(spec, args, strict=True)):
        valid = isinstance(value, kind) and not isinstance(value, bool)
        if kind is int and valid and value < 0:
            valid = False  # [cap] codeSlot and length are PositiveInteger
        if not valid:
            return f"arguments[{index}]", f"{arg_name} is not a valid {kind.__name__}"
    return None


def _error_body(code: str, message: str,
                details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """[429], [malformed]: {"requestId", "error": {"code", "message", "details"}}."""
    return {"requestId": str(secrets.randbits(62)),
            "error": {"code": code, "message": message, "details": details or []}}


def _malformed(target: str, message: str) -> web.Response:
    """[malformed]: 422 ConstraintViolationError "The request is malformed." with one detail
    naming the target ([pyst] errors.py reads `details[].code` and `target`)."""
    return web.json_response(_error_body(
        "ConstraintViolationError", "The request is malformed.",
        [{"code": "UnprocessableEntityError", "target": target, "message": message,
          "details": []}]), status=422)


def _unauthorized() -> web.Response:
    """[401-html]: the 401 page clients have logged (openresty)."""
    page = ("<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n"
            "<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>openresty"
            "</center>\r\n</body>\r\n</html>\r\n")
    return web.Response(status=401, text=page, content_type="text/html")


class FakeSmartThingsThread(ThreadedFake[FakeSmartThings]):
    """The fake on its own event loop in a thread, for tests that drive a daemon process."""

    def __init__(self, client_id: str, client_secret: str, **switches: Any) -> None:
        super().__init__(FakeSmartThings(client_id, client_secret, **switches),
                         "fake-smartthings")
