"""A Nuki Web API (api.nuki.io) for tests: the keypad-code parts, built only from Nuki's
published material, each behaviour with its source in a comment next to the code.

Sources (short names used in the comments below):

* [swagger] Nuki's Swagger description "Nuki API" 3.9.0, served at
  https://api.nuki.io/static/swagger/swagger.json (read as the OpenAPI 3 conversion kept in
  github.com/doozMen/NukiOpenAPIClient, Sources/NukiOpenAPIClient/openapi.json). Operation ids
  are quoted as they appear there (e.g. SmartlockAuthsResource_put_put).
* [t/NNN] a thread of Nuki's developer forum, https://developer.nuki.io/t/<slug>/NNN; the
  answers quoted are Nuki staff's unless the comment says "reported" (a user's observation).
  t/52 Web API Authentication; t/54 Manage PIN-Codes for your Nuki Keypad; t/56 Renting a
  classroom; t/86 Fob with changing restrictions; t/1178 repeatedly updating the same keypad
  authorization; t/9746 API pricing; t/15746 rules for keypad codes; t/16794 send a pincode;
  t/22160 synchronisation issue (409); t/24449 making sure an authorization was created;
  t/29886 "HTTP code 204" but code not created; t/35593 422 creating a type 13 authorization;
  t/39051 problem creating temporary access; t/39157 ghost keypad entry; t/39789 are
  allowedFromTime/allowedUntilTime local time or UTC; t/40095 authorization update
  inconsistency (partial update removes time restrictions).
* [errors] https://docs.nuki.io/guide/endpoints/error-codes/ (Nuki's error codes).
* [iobroker#273] github.com/iobroker-community-adapters/ioBroker.nuki-extended issue 273: the
  body api.nuki.io sends with a 401.

Where Nuki publishes nothing the comment says "unpublished" and names the choice; the choice is
the stricter one, so that a client which works against the fake also works against Nuki.

The model: Nuki's server keeps a copy of a lock's authorizations and forwards changes to the
lock when it reaches it; "the authorization is stored on the smartlock and api is more or less
a read only cache" [t/1178]. So `GET /smartlock/{id}/auth` lists the SERVER's copy (with an
`operationId` on an entry while a change is on its way, and an `error` once it failed), and
`FakeSmartlock.keypad_codes()` answers what the LOCK has, which is what opens the door.

Public helpers (tests use these):

* `FakeNukiWeb(token, apply_delay_s=0.2, **switches)`; `await start()` -> base URL; `await
  stop()`; `port`; `requests` (every "METHOD /path" received); `locks` {smartlockId: lock};
  `token` (assign another value to destroy the old token: it then answers 401).
* `add_lock(smartlock_id, name, *, keypad=True, keypad2=False)` -> `FakeSmartlock`.
* `add_token(token, scopes)`: another accepted bearer token with only these scopes (the
  constructor's token has all of them); `revoke_token(token)`.
* `fail_next(status, *, method=None, path=None, times=1, retry_after=None)`: the next matching
  request(s) answer `status` with the body Nuki sends for it (an "each error" switch).
* `complete_operations(smartlock_id=None)`: the lock receives every pending change now (if
  online and not refusing); `visible(...)`: the entries a GET would list.
* `FakeSmartlock` attributes: `smartlock_id`, `name`, `online`, `busy`, `keypad`, `keypad2`,
  `refuse_operations` (an error text: the lock refuses every change with it), `auths` (the
  server's copy, {id: fields}; tests may insert entries directly: those count as on the lock
  too), `device` (the lock's copy where it differs), `operations` (pending changes);
  methods `keypad_codes()` ({PIN: name} the lock opens for), `device_auths()`,
  `add_app_code(code, name, **fields)` -> id (a code created in the Nuki app: on the lock and on
  the server, not made by the bridge), `set_online(flag)`.
* `FakeNukiWebThread(token, apply_delay_s=0.2, **switches)`: the same on its own loop in a
  thread, `.api`, `.url`, `start()`, `call(fn, *args)`, `stop()`.

Switches (constructor keywords, also plain attributes to change while running):

* `latency_s` (0): every answer waits this long first.
* `list_delay_s` (0.05): after an accepted create, how long until the entry shows in the list
  (with its `operationId`); a create answers 204 without the id in any case. A value of at
  least `apply_delay_s` lists an entry only once the lock has it.
* `apply_delay_s` (0.2): how long a change stays pending (operationId set) before an online lock
  has it; an offline lock keeps it pending.
* `operation_timeout_s` (None): after this long a change the lock did not get fails: the
  operationId goes and `error` is set on the entry; None keeps it pending until the lock is back.
* `offline_error` / per lock `refuse_operations`: the text put in `error` when a change fails.
* `busy` on a lock: updates and deletes answer 423 Locked.
* `update_clears_window` (True): a POST update clears the time-window fields it does not name
  (reported in t/40095); False keeps them (what t/86 shows).
* `strict_schema` (True): require what [swagger] marks required even where Nuki's own
  examples leave it out (`remoteAllowed` on create, `name` on update).
* `missing_scope_status` (403): what a token without the needed scope gets; 401 is what
  clients report seeing (kvj/hass_nuki_ng issues 21 and 175).
* `operation_id_format` ("object"): `operationId` on an authorization as [swagger] types it
  (an ObjectId object); "string" gives the 24-hex form of Nuki's other ids.
* `rate_limit` (None) requests per `rate_limit_window_s` (60) per token, and `rate_limited`
  (False) to answer 429 to everything; `rate_limit_retry_after` (None) adds a Retry-After header
  of that many seconds. Nuki publishes no limit (see `_rate_limit_check`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedFake

KEYPAD_CODE = 13
_CODE = re.compile(r"^[1-9]{6}$")

# [swagger] components.securitySchemes.oauth: the scopes; each operation names the ones it needs.
ALL_SCOPES = frozenset({"account", "notification", "smartlock", "smartlock.readOnly",
                        "smartlock.action", "smartlock.auth", "smartlock.config",
                        "smartlock.log", "smartlock.create"})
# [swagger] SmartlocksResource_get_get / SmartlockResource_get_get: security oauth
# ["smartlock", "smartlock.readOnly"]; every /smartlock/{id}/auth operation: ["smartlock.auth"].
_READ_LOCKS = frozenset({"smartlock", "smartlock.readOnly"})
_AUTHS = frozenset({"smartlock.auth"})

# The time-window fields of an authorization [swagger] SmartlockAuthUpdate.
WINDOW_FIELDS = ("allowedFromDate", "allowedUntilDate", "allowedWeekDays", "allowedFromTime",
                 "allowedUntilTime")

# Unpublished: the text Nuki puts in `error` when a change never reached the lock. [errors]
# gives the code a webhook carries for it ("errorCode": "ff", 0xFF ERROR_UNKNOWN: "Device is
# most likely offline or not reachable"); the fake uses that name.
OFFLINE_ERROR = "ERROR_UNKNOWN (0xff): device offline or not reachable"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    """Dates leave the API in UTC (t/39789: "Dates are always UTC"). The exact format of
    Nuki's output is unpublished; the fake writes milliseconds and Z, so a client must parse
    dates rather than compare strings."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"


def _parse_date(value: object) -> datetime | None:
    """[swagger] allowedFromDate/allowedUntilDate are `date-time`; t/55 and t/56 give the form
    YYYY-MM-DDTHH:MM:SSZ (also YYYY-MM-DDTHH:MMZ). Raises ValueError for anything else."""
    if not isinstance(value, str):
        raise ValueError(value)
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:  # unpublished: a date without zone is refused (stricter)
        raise ValueError(value)
    return moment.astimezone(UTC)


@dataclass
class Operation:
    """A change the server accepted and has not yet got onto the lock."""

    kind: str  # "create" | "update" | "delete"
    accepted: float
    due: float  # when an online lock has it
    visible_at: float  # when a created entry first shows in the list
    deadline: float | None  # when it fails if the lock did not get it
    oid: str = field(default_factory=lambda: secrets.token_hex(12))


@dataclass
class FakeSmartlock:
    smartlock_id: int
    name: str
    online: bool = True
    # The server's copy of the authorizations: {id: fields as the API lists them}.
    auths: dict[str, dict[str, Any]] = field(default_factory=dict)
    keypad: bool = True
    keypad2: bool = False
    busy: bool = False
    refuse_operations: str | None = None
    # The lock's copy where it differs from `auths`: None = the lock does not have it.
    device: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    _next_auth_id: int = 1

    def device_auths(self) -> dict[str, dict[str, Any]]:
        """What the lock itself holds. An entry a test put straight into `auths` (not through
        the API) counts as on the lock as listed."""
        held: dict[str, dict[str, Any]] = {}
        for auth_id, auth in self.auths.items():
            if auth_id in self.device:
                on_lock = self.device[auth_id]
                if on_lock is not None:
                    held[auth_id] = on_lock
            else:
                held[auth_id] = auth
        return held

    def keypad_codes(self) -> dict[str, str]:
        """{PIN: name} of the enabled keypad codes the LOCK has: what opens the door."""
        return {str(a["code"]): a["name"] for a in self.device_auths().values()
                if a.get("type") == KEYPAD_CODE and a.get("enabled", True)}

    def set_online(self, online: bool) -> None:
        self.online = online

    def add_app_code(self, code: int, name: str, **fields: Any) -> str:
        """A keypad code made in the Nuki app (not by the bridge): the app writes it to the
        lock over Bluetooth and the server learns it on sync, so it is on both, with no
        operation pending, and shows in the list like any other (t/39157: codes created in
        the app are listed by /smartlock/{id}/auth)."""
        auth_id = secrets.token_hex(12)
        moment = _iso(_now())
        auth: dict[str, Any] = {"type": KEYPAD_CODE, "name": name, "code": code,
                                "enabled": True, "remoteAllowed": False, "lockCount": 0,
                                "allowedWeekDays": 127, "authId": self._take_auth_id(),
                                "creationDate": moment, "updateDate": moment}
        auth.update(fields)
        self.auths[auth_id] = auth
        self.device[auth_id] = copy.deepcopy(auth)
        return auth_id

    def _take_auth_id(self) -> int:
        # [swagger] SmartlockAuth.authId: "The smartlock authorization id", an int the lock
        # gives (the t/29886 webhook example shows "authId": 1).
        value = self._next_auth_id
        self._next_auth_id += 1
        return value


class FakeNukiWeb:
    """The API on a loopback port; tests reach into `locks` to play the lock or the app."""

    def __init__(self, token: str, apply_delay_s: float = 0.2, *, latency_s: float = 0.0,
                 list_delay_s: float = 0.05, operation_timeout_s: float | None = None,
                 offline_error: str = OFFLINE_ERROR, update_clears_window: bool = True,
                 strict_schema: bool = True, missing_scope_status: int = 403,
                 operation_id_format: str = "object", rate_limit: int | None = None,
                 rate_limit_window_s: float = 60.0, rate_limited: bool = False,
                 rate_limit_retry_after: int | None = None) -> None:
        self.tokens: dict[str, frozenset[str]] = {}
        self._token = ""
        self.token = token
        self.apply_delay_s = apply_delay_s
        self.latency_s = latency_s
        self.list_delay_s = list_delay_s
        self.operation_timeout_s = operation_timeout_s
        self.offline_error = offline_error
        self.update_clears_window = update_clears_window
        self.strict_schema = strict_schema
        self.missing_scope_status = missing_scope_status
        self.operation_id_format = operation_id_format
        self.rate_limit = rate_limit
        self.rate_limit_window_s = rate_limit_window_s
        self.rate_limited = rate_limited
        self.rate_limit_retry_after = rate_limit_retry_after
        self.locks: dict[int, FakeSmartlock] = {}
        self.requests: list[str] = []
        self._injected: list[dict[str, Any]] = []
        self._hits: dict[str, list[float]] = {}
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.port = 0

    # -- set-up -------------------------------------------------------------------------------

    @property
    def token(self) -> str:
        """The account's token with every right; assigning another value replaces it (the old
        one then answers 401, as a destroyed token does, t/52)."""
        return self._token

    @token.setter
    def token(self, value: str) -> None:
        self.tokens.pop(self._token, None)
        self._token = value
        self.tokens[value] = ALL_SCOPES

    def add_lock(self, smartlock_id: int, name: str, *, keypad: bool = True,
                 keypad2: bool = False) -> FakeSmartlock:
        lock = FakeSmartlock(smartlock_id, name, keypad=keypad, keypad2=keypad2)
        # Every lock has its owner's app authorization (type 0 .. app [swagger]
        # SmartlockAuth.type); it is not a keypad code.
        moment = _iso(_now())
        lock.auths[secrets.token_hex(12)] = {
            "type": 0, "name": "Owner", "enabled": True, "remoteAllowed": True,
            "lockCount": 0, "authId": lock._take_auth_id(), "creationDate": moment,
            "updateDate": moment}
        self.locks[smartlock_id] = lock
        return lock

    def add_token(self, token: str, scopes: set[str] | frozenset[str]) -> None:
        """An API token with only these rights (t/52: a token "gives permanent access to all
        rights you did grant to it"; the rights are the oauth scopes of [swagger])."""
        self.tokens[token] = frozenset(scopes)

    def revoke_token(self, token: str) -> None:
        """t/52: "API tokens do not expire, but they are destroyed when the password of the
        corresponding Nuki Web account changes"."""
        self.tokens.pop(token, None)

    def fail_next(self, status: int, *, method: str | None = None, path: str | None = None,
                  times: int = 1, retry_after: int | None = None) -> None:
        """The next `times` requests matching `method` and `path` (a regex on the path; None
        matches all) answer `status` with Nuki's body for it, before any other check."""
        self._injected.append({"status": status, "method": method, "path": path,
                               "times": times, "retry_after": retry_after})

    async def start(self) -> str:
        app = web.Application(middlewares=[self._gate])
        app.router.add_get("/smartlock", self._list_locks)
        app.router.add_get("/smartlock/{lock}", self._get_lock)
        app.router.add_get("/smartlock/{lock}/auth", self._list_auths)
        app.router.add_put("/smartlock/{lock}/auth", self._create)
        app.router.add_get("/smartlock/{lock}/auth/{auth}", self._get_auth)
        app.router.add_post("/smartlock/{lock}/auth/{auth}", self._update)
        app.router.add_delete("/smartlock/{lock}/auth/{auth}", self._delete)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])
        self._ticker = asyncio.get_running_loop().create_task(self._tick(),
                                                              name="fake-nuki-web-sync")
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the server forwarding changes to the lock ------------------------------------------

    async def _tick(self) -> None:
        while True:
            self._sync(time.monotonic())
            await asyncio.sleep(0.01)

    def complete_operations(self, smartlock_id: int | None = None) -> None:
        """Every pending change reaches its lock now (as far as the lock is online and does
        not refuse it)."""
        for lock in self.locks.values():
            if smartlock_id is None or lock.smartlock_id == smartlock_id:
                for operation in lock.operations.values():
                    operation.due = operation.visible_at = 0.0
        self._sync(time.monotonic())

    def _sync(self, now: float) -> None:
        """t/24449: "When the auth is created through the API, there is a fast sync which
        syncs it on the device immediately. If this fails for some reason, then there is a
        daily sync"; t/29886: the server "will try to reach the Smart Lock and create the
        code (all the codes are stored on the Smart Lock itself). This usually takes some
        seconds, and the device should be online"; "The auths may not be created successfully
        if the devices were not online during this time". So a change waits while the lock is
        offline and fails (with `error` on the entry) after `operation_timeout_s`."""
        for lock in self.locks.values():
            for auth_id, operation in list(lock.operations.items()):
                if now < operation.due:
                    continue
                if lock.refuse_operations is not None:
                    self._fail(lock, auth_id, lock.refuse_operations)
                elif lock.online:
                    self._apply(lock, auth_id, operation)
                elif operation.deadline is not None and now >= operation.deadline:
                    self._fail(lock, auth_id, self.offline_error)

    @staticmethod
    def _apply(lock: FakeSmartlock, auth_id: str, operation: Operation) -> None:
        del lock.operations[auth_id]
        auth = lock.auths.get(auth_id)
        if auth is None:
            return
        if operation.kind == "delete":
            # t/22160 and t/39157 (reported): after a 204 to DELETE the entry stays listed
            # until the lock has dropped it.
            del lock.auths[auth_id]
            lock.device.pop(auth_id, None)
            return
        if "authId" not in auth:
            auth["authId"] = lock._take_auth_id()
        auth.pop("error", None)
        lock.device[auth_id] = copy.deepcopy(auth)

    @staticmethod
    def _fail(lock: FakeSmartlock, auth_id: str, error: str) -> None:
        """[swagger] SmartlockAuth.error: "In case of any error, it contains the error
        message". Unpublished: what happens to the entry; the fake keeps it listed (t/39157,
        reported: a code that never reached the lock stays listed and blocks its PIN) and the
        lock keeps what it had."""
        del lock.operations[auth_id]
        if auth_id in lock.auths:
            lock.auths[auth_id]["error"] = error

    # -- the gate every request passes -----------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        injected = self._take_injected(request)
        if injected is not None:
            return _error(injected["status"], retry_after=injected["retry_after"])
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else None
        # Unpublished: the order of the checks; the fake limits before it looks at the token.
        limited = self._rate_limit_check(token or request.remote or "")
        if limited is not None:
            return limited
        # t/52: "The bearer token ... needs to be present in each request to the API";
        # [swagger] every operation: 401 "Not authorized". Body as api.nuki.io sends it
        # [iobroker#273].
        if token is None or token not in self.tokens:
            return _error(401)
        needed = _READ_LOCKS if request.match_info.get("auth") is None and \
            not request.path.endswith("/auth") else _AUTHS
        if not needed & self.tokens[token]:
            # [swagger]: the auth operations need scope smartlock.auth and list 403
            # "Forbidden". Reported (kvj/hass_nuki_ng issues 21, 175): a token without
            # "manage authorizations" got 401 on the auth list. `missing_scope_status`.
            return _error(self.missing_scope_status)
        try:
            response: web.StreamResponse = await handler(request)
        except _NotFound:
            return _error(404)
        return response

    def _take_injected(self, request: web.Request) -> dict[str, Any] | None:
        for rule in self._injected:
            if rule["method"] is not None and rule["method"].upper() != request.method:
                continue
            if rule["path"] is not None and not re.search(rule["path"], request.path):
                continue
            rule["times"] -= 1
            if rule["times"] <= 0:
                self._injected.remove(rule)
            return rule
        return None

    def _rate_limit_check(self, who: str) -> web.Response | None:
        """Unpublished: Nuki staff say the Web API is "Free and not limited (but there are
        some SPAM/abuse protection measures in place)" (t/9746); no status, limit or header is
        published. The fake answers 429 Too Many Requests, with Retry-After only when
        `rate_limit_retry_after` is set (a client must cope without it)."""
        if self.rate_limited:
            return _error(429, retry_after=self.rate_limit_retry_after)
        if self.rate_limit is None:
            return None
        now = time.monotonic()
        hits = [t for t in self._hits.get(who, []) if now - t < self.rate_limit_window_s]
        if len(hits) >= self.rate_limit:
            self._hits[who] = hits
            return _error(429, retry_after=self.rate_limit_retry_after)
        hits.append(now)
        self._hits[who] = hits
        return None

    # -- smartlocks ---------------------------------------------------------------------------

    async def _list_locks(self, request: web.Request) -> web.Response:
        # [swagger] SmartlocksResource_get_get: 200, an array of Smartlock.
        return web.json_response([self._lock_json(lock) for lock in self.locks.values()])

    async def _get_lock(self, request: web.Request) -> web.Response:
        # [swagger] SmartlockResource_get_get: 200 Smartlock; 404 "Not found".
        return web.json_response(self._lock_json(self._find(request)))

    @staticmethod
    def _lock_json(lock: FakeSmartlock) -> dict[str, Any]:
        """[swagger] schema Smartlock (required: accountId, adminPinState, authId, favorite,
        name, serverState, smartlockId, type), Smartlock.Config and Smartlock.State."""
        body: dict[str, Any] = {
            "smartlockId": lock.smartlock_id, "accountId": 1,
            "type": 4,  # "4 .. smartlock 3.0/4. Gen"
            "authId": 1, "name": lock.name, "favorite": False,
            # "The server state: 0 .. ok, 1 .. unregistered, 2 .. auth uuid invalid, 3 .. auth
            # invalid, 4 .. offline"
            "serverState": 0 if lock.online else 4,
            "adminPinState": 0,  # "0 .. ok, 1 .. missing, 2 .. invalid"
            "config": {
                "name": lock.name, "latitude": 0.0, "longitude": 0.0,
                "advertisingMode": 0, "singleLock": False, "timezoneId": 0,
                "timezoneOffset": 0,
                # "True if a keypad is paired with the smartlock" / "keypad 2"
                "keypadPaired": lock.keypad, "keypad2Paired": lock.keypad2,
            },
            "state": {
                # mode "2 .. door (default)"; state "1 .. locked"; trigger "0 .. system";
                # doorState "0 .. unavailable/not paired"
                "mode": 2, "state": 1, "trigger": 0, "lastAction": 2,
                "batteryCritical": False, "doorState": 0, "ringToOpenTimer": 0,
                "nightMode": False,
            },
        }
        if lock.keypad or lock.keypad2:
            # "True if the battery of a paired Keypad is critical (only available for
            # supported devices)"
            body["state"]["keypadBatteryCritical"] = False
        if lock.busy:
            # Smartlock.operationId: "The operation id - if set it's locked for another
            # operation"
            body["operationId"] = secrets.token_hex(12)
        return body

    # -- authorizations: reading --------------------------------------------------------------

    def visible(self, lock: FakeSmartlock) -> list[tuple[str, dict[str, Any]]]:
        now = time.monotonic()
        return [(auth_id, auth) for auth_id, auth in lock.auths.items()
                if auth_id not in lock.operations
                or lock.operations[auth_id].visible_at <= now]

    async def _list_auths(self, request: web.Request) -> web.Response:
        """[swagger] SmartlockAuthsResource_get_get: 200, an array of SmartlockAuth; query
        `types` "comma-separated eg: 0,2,3". The list is the server's copy (t/1178: "api is
        more or less a read only cache"; t/24449, t/29886: check the list to see whether a
        create happened)."""
        lock = self._find(request)
        wanted: set[int] | None = None
        if "types" in request.query:
            try:
                wanted = {int(t) for t in request.query["types"].split(",") if t.strip()}
            except ValueError:
                return _invalid("types", request.query["types"])
        return web.json_response([self._auth_json(lock, auth_id, auth)
                                  for auth_id, auth in self.visible(lock)
                                  if wanted is None or auth.get("type") in wanted])

    async def _get_auth(self, request: web.Request) -> web.Response:
        # [swagger] SmartlockAuthResource_get_get: 200 SmartlockAuth. Unpublished: an unknown
        # id (only 401/403 are listed); the fake answers 404.
        lock = self._find(request)
        auth_id = request.match_info["auth"]
        for visible_id, auth in self.visible(lock):
            if visible_id == auth_id:
                return web.json_response(self._auth_json(lock, auth_id, auth))
        return _error(404)

    def _auth_json(self, lock: FakeSmartlock, auth_id: str,
                   auth: dict[str, Any]) -> dict[str, Any]:
        """[swagger] schema SmartlockAuth (required: enabled, id, lockCount, name,
        remoteAllowed, smartlockId, type). Unset fields are left out (unpublished whether Nuki
        sends null; leaving them out is what a client must be ready for)."""
        body: dict[str, Any] = {"id": auth_id, "smartlockId": lock.smartlock_id,
                                "enabled": True, "remoteAllowed": False, "lockCount": 0}
        body.update({k: v for k, v in auth.items() if v is not None})
        operation = lock.operations.get(auth_id)
        if operation is not None:
            # t/1178: "As long the operation is running further modifications on the same
            # authorizations are locked. If you query the authorization you can check the
            # existance of the operationId." [swagger] types it as ObjectId.
            body["operationId"] = self._operation_id(operation)
        return body

    def _operation_id(self, operation: Operation) -> Any:
        if self.operation_id_format == "string":
            return operation.oid
        # [swagger] components.schemas.ObjectId: timestamp, counter, time, date,
        # machineIdentifier, processIdentifier, timeSecond.
        seconds = int(time.time())
        return {"timestamp": seconds, "counter": int(operation.oid[-6:], 16),
                "time": seconds * 1000, "date": _iso(_now()),
                "machineIdentifier": int(operation.oid[8:14], 16),
                "processIdentifier": int(operation.oid[14:18], 16), "timeSecond": seconds}

    # -- authorizations: writing --------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        """[swagger] SmartlockAuthsResource_put_put "Creates asynchronous a smartlock
        authorization": 204 "Ok" (no body, so no id: t/54 "If the PIN is created correctly
        you get an empty reply. In order to access the PIN later on you got to get its authId"
        from the list), 400 "Bad parameter", 409 "Parameter conflicts". A 204 means "your api
        call has correct values and is queued to be transferred to the smartlock" (t/1178)."""
        lock = self._find(request)
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _invalid("body", body)
        # [swagger] SmartlockAuthCreate.type: "0 .. app (default), 2 .. fob, 13 .. keypad".
        # The fake models keypad codes only and refuses the other types.
        kind = body.get("type", 0)
        if kind != KEYPAD_CODE:
            return _invalid("type", kind)
        # The code is checked before the keypad: t/39051 (reported) a lock without keypad
        # answers "The supplied value 'null' for parameter 'code' is not valid" when the code
        # is missing and "... '13' for parameter 'type' ..." when it is valid.
        problem = self._check_code(lock, body.get("code"), None)
        if problem is not None:
            return problem
        if not (lock.keypad or lock.keypad2):
            # t/15746, t/16794, t/39051: type 13 on a lock without a paired keypad is
            # "The supplied value '13' for parameter 'type' is not valid" (400).
            return _invalid("type", kind)
        problem = self._check_name(body.get("name"))
        if problem is None and self.strict_schema and not isinstance(
                body.get("remoteAllowed"), bool):
            # [swagger] SmartlockAuthCreate required: ["name", "remoteAllowed"] (Nuki's own
            # keypad example t/54 leaves remoteAllowed out; `strict_schema=False` allows it).
            problem = _invalid("remoteAllowed", body.get("remoteAllowed"))
        if problem is None:
            problem = self._check_window(body)
        if problem is not None:
            return problem
        moment = _iso(_now())
        auth: dict[str, Any] = {"type": KEYPAD_CODE, "name": body["name"], "code": body["code"],
                                "enabled": True,
                                "remoteAllowed": bool(body.get("remoteAllowed", False)),
                                "lockCount": 0, "creationDate": moment, "updateDate": moment}
        auth.update(self._window(body, {}))
        auth_id = secrets.token_hex(12)  # ids are 24-hex strings (t/29886: "65219648fe...")
        lock.auths[auth_id] = auth
        lock.device[auth_id] = None  # the lock does not have it yet
        self._queue(lock, auth_id, "create")
        return web.Response(status=204)

    async def _update(self, request: web.Request) -> web.Response:
        """[swagger] SmartlockAuthResource_post_post "Updates asynchronous a smartlock
        authorization": 204, 400, 401, 403, 409 "Parameter conflicts", 423 "Locked"."""
        lock = self._find(request)
        auth_id = request.match_info["auth"]
        auth = dict(self.visible(lock)).get(auth_id)
        if auth is None:
            return _error(404)  # unpublished for this operation; the fake answers 404
        locked = self._locked(lock, auth_id)
        if locked is not None:
            return locked
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _invalid("body", body)
        if self.strict_schema or "name" in body:
            # [swagger] SmartlockAuthUpdate required: ["name"] (t/54 and t/86 examples
            # leave it out; `strict_schema=False` allows that).
            problem = self._check_name(body.get("name"))
            if problem is not None:
                return problem
        if "code" in body:
            if auth.get("type") != KEYPAD_CODE:
                return _invalid("code", body["code"])
            problem = self._check_code(lock, body["code"], auth_id)
            if problem is not None:
                return problem
        # Unpublished: whether the window is checked against the fields kept; the fake checks
        # the window the entry will have.
        merged = self._window(body, {} if self.update_clears_window else auth)
        if "enabled" in body and not isinstance(body["enabled"], bool):
            return _invalid("enabled", body["enabled"])
        problem = self._check_window(merged)
        if problem is not None:
            return problem
        if auth_id not in lock.device:
            lock.device[auth_id] = copy.deepcopy(auth)  # the lock keeps the old values
        for key in ("name", "code", "enabled", "remoteAllowed"):
            if key in body and body[key] is not None:
                auth[key] = body[key]
        for key in WINDOW_FIELDS:
            auth.pop(key, None)
        auth.update(merged)
        auth.pop("error", None)
        auth["updateDate"] = _iso(_now())
        self._queue(lock, auth_id, "update")
        return web.Response(status=204)

    async def _delete(self, request: web.Request) -> web.Response:
        """[swagger] SmartlockAuthResource_delete_delete "Deletes asynchronous a smartlock
        authorization": 204, 401, 403, 423 "Locked". The entry stays listed (with its
        operationId) until the lock has dropped it (t/22160, reported: "deleting some created
        PIN code will return a 204 success, but the PIN code still exist")."""
        lock = self._find(request)
        auth_id = request.match_info["auth"]
        if auth_id not in dict(self.visible(lock)):
            return _error(404)  # unpublished for this operation; the fake answers 404
        locked = self._locked(lock, auth_id)
        if locked is not None:
            return locked
        if auth_id not in lock.device:
            lock.device[auth_id] = copy.deepcopy(lock.auths[auth_id])
        # Also for an entry that never reached the lock: the server still has to sync the
        # deletion (t/39157, reported: such an entry answered 204 and stayed listed).
        self._queue(lock, auth_id, "delete")
        return web.Response(status=204)

    # -- checks ---------------------------------------------------------------------------------

    def _locked(self, lock: FakeSmartlock, auth_id: str) -> web.Response | None:
        """t/1178: while an operation on the authorization runs, "further modifications on the
        same authorizations are locked": 423 with body {"stackTrace": [],
        "suppressedExceptions": []}. A lock busy with another operation (`busy`) likewise."""
        if auth_id in lock.operations or lock.busy:
            return web.json_response({"stackTrace": [], "suppressedExceptions": []},
                                     status=423)
        return None

    @staticmethod
    def _check_code(lock: FakeSmartlock, code: object, own_id: str | None) -> web.Response | None:
        # t/15746 (staff): "Needs to be a 6 digit number. Can not start with "12" and can not
        # contain "0"", answered 400 {"detailMessage": "The supplied value '129999' for
        # parameter 'code' is not valid", ...}. [swagger] code is an integer (int32); a string
        # is refused (unpublished whether Nuki coerces "123456"; stricter).
        if isinstance(code, bool) or not isinstance(code, int) or not _CODE.match(str(code)) \
                or str(code).startswith("12"):
            return _invalid("code", code)
        # t/54: "not already used by another PIN_NAME (each PIN may only occur once in the
        # system!)"; t/22160: "409 error occurs only when you have a KP code already (not
        # possible to create two different auths with the same KP code)". The server checks
        # its own copy, entries that never reached the lock included (t/39157). Body
        # unpublished.
        for auth_id, other in lock.auths.items():
            if auth_id != own_id and other.get("type") == KEYPAD_CODE and \
                    other.get("code") == code:
                return web.json_response({"detailMessage": "Parameter conflicts",
                                          "stackTrace": [], "suppressedExceptions": []},
                                         status=409)
        return None

    @staticmethod
    def _check_name(name: object) -> web.Response | None:
        if not isinstance(name, str) or not name:
            return _invalid("name", name)
        # t/54: a keypad PIN name is "up to 20 characters"; t/35593 (staff): "The name for a
        # Keypad code must not exceed 20 chars", the reported answer being 422 Unprocessable
        # Entity ([swagger] only says "max 32 chars").
        if len(name) > 20:
            return _error(422)
        return None

    @staticmethod
    def _window(body: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
        """The time window an entry gets from a create or update body.

        A field named replaces the old value; a field named with null clears it (t/86: "To
        remove an allowedUntilDate again you have to set it to Null"). A field not named is
        kept by the caller passing `kept`, or cleared (t/40095, reported: sending only name
        and code "silently removes allowedFromDate, allowedUntilDate, allowedWeekDays,
        allowedFromTime, allowedUntilTime")."""
        window: dict[str, Any] = {}
        for key in WINDOW_FIELDS:
            value = body[key] if key in body else kept.get(key)
            if value is None:
                continue
            if key in ("allowedFromDate", "allowedUntilDate") and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    value = _iso(_parse_date(value) or _now())
            window[key] = value
        # t/56: "Not setting a value also allows all weekdays" -> 127 when unset.
        window.setdefault("allowedWeekDays", 127)
        return window

    @staticmethod
    def _check_window(body: dict[str, Any]) -> web.Response | None:
        dates: dict[str, datetime] = {}
        for key in ("allowedFromDate", "allowedUntilDate"):
            value = body.get(key)
            if value is None:
                continue
            try:
                parsed = _parse_date(value)
            except ValueError:
                return _invalid(key, value)
            if parsed is not None:
                dates[key] = parsed
        # Unpublished: an end not after the start; the fake refuses it (stricter).
        if len(dates) == 2 and dates["allowedUntilDate"] <= dates["allowedFromDate"]:
            return _invalid("allowedUntilDate", body["allowedUntilDate"])
        days = body.get("allowedWeekDays")
        # [swagger] allowedWeekDays "bitmask: 64 .. monday, ... 1 .. sunday", 0..127.
        if days is not None and (isinstance(days, bool) or not isinstance(days, int)
                                 or not 0 <= days <= 127):
            return _invalid("allowedWeekDays", days)
        for key in ("allowedFromTime", "allowedUntilTime"):
            # [swagger] "(in minutes from midnight)"; t/39789 (staff): "Times are always
            # relative to the local time of the lock" while "Dates are always UTC". The range
            # is unpublished; the fake takes 0..1439 (stricter).
            value = body.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value <= 1439):
                return _invalid(key, value)
        return None

    def _queue(self, lock: FakeSmartlock, auth_id: str, kind: str) -> None:
        now = time.monotonic()
        visible_at = now + self.list_delay_s if kind == "create" else now
        deadline = None if self.operation_timeout_s is None else now + self.operation_timeout_s
        lock.operations[auth_id] = Operation(kind, now, now + self.apply_delay_s, visible_at,
                                             deadline)

    def _find(self, request: web.Request) -> FakeSmartlock:
        try:
            return self.locks[int(request.match_info["lock"])]
        except (KeyError, ValueError):
            # [swagger] SmartlockResource_get_get: 404 "Not found". Unpublished for the auth
            # operations (they list 401/403 only); the fake answers 404 there too.
            raise _NotFound from None


# -- answers ----------------------------------------------------------------------------------

# Bodies: api.nuki.io answers errors in two shapes. The application's own refusals carry
# {"detailMessage": ..., "stackTrace": [], "suppressedExceptions": []} (t/15746, t/16794 for
# 400; [iobroker#273] for 401: "Your access token is not authorized"); statuses raised by the
# web framework carry {"code", "description", "homeRef", "reasonPhrase", "uri"} (t/35593 for
# 422). Which shape 403, 404 and 429 use is unpublished; the fake uses the framework's.
_FRAMEWORK = {
    403: ("Forbidden", "The server understood the request, but is refusing to fulfill it",
          "http://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html#sec10.4.4"),
    404: ("Not Found", "The server has not found anything matching the request URI",
          "http://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html#sec10.4.5"),
    422: ("Unprocessable Entity", "The server understands the content type of the request "
          "entity and the syntax of the request entity is correct but was unable to process "
          "the contained instructions", "http://www.webdav.org/specs/rfc2518.html#STATUS_422"),
    429: ("Too Many Requests", "The user has sent too many requests in a given amount of time",
          "https://tools.ietf.org/html/rfc6585#section-4"),
}


def _error(status: int, *, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if status == 401:
        body: dict[str, Any] = {"detailMessage": "Your access token is not authorized",
                                "stackTrace": [], "suppressedExceptions": []}
    elif status == 423:
        body = {"stackTrace": [], "suppressedExceptions": []}  # t/1178
    elif status in _FRAMEWORK:
        reason, description, uri = _FRAMEWORK[status]
        body = {"code": status, "description": description, "homeRef": "/",
                "reasonPhrase": reason, "uri": uri}
    else:
        body = {"detailMessage": f"HTTP {status}", "stackTrace": [],
                "suppressedExceptions": []}
    return web.json_response(body, status=status, headers=headers)


class _NotFound(Exception):
    """An unknown smartlock: the gate answers 404."""


def _invalid(parameter: str, value: object) -> web.Response:
    """t/15746, t/16794, t/39051: 400 {"detailMessage": "The supplied value 'X' for parameter
    'P' is not valid", "stackTrace": [], "suppressedExceptions": []} (None shows as 'null')."""
    shown = "null" if value is None else value
    return web.json_response({"detailMessage": f"The supplied value '{shown}' for parameter "
                                               f"'{parameter}' is not valid",
                              "stackTrace": [], "suppressedExceptions": []}, status=400)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


class FakeNukiWebThread(ThreadedFake[FakeNukiWeb]):
    """The fake on its own event loop in a thread, for tests that drive a daemon process with
    blocking calls."""

    def __init__(self, token: str, apply_delay_s: float = 0.2, **switches: Any) -> None:
        super().__init__(FakeNukiWeb(token, apply_delay_s, **switches), "fake-nuki-web")
