"""A TTLock Open Platform cloud (euapi.ttlock.com) for tests: OAuth, locks, gateways and custom
passcodes, built only from TTLock's published material, each behaviour with its source in a
comment next to the code. Nothing here comes from, or knows about, lockbridge's driver.

Sources (short names used in the comments below; pages under https://euopen.ttlock.com/):

* [token] document-pages/en/cloud/userPasswordEncryptedWithRSA/getUserPasswordPublicKey and
  document-pages/cloud/oauth2/getAccessToken ("Get access token"); older page doc/oauth2.
* [refresh] document-pages/en/cloud/oauth2/refreshAccessToken ("Refresh access token").
* [errors] document-pages/en/cloud/errorCode (English table, also kept as a markdown copy that
  names it, and in github.com/sunnyphp/ttlock src/Exception/*.php); document-pages/cloud/
  errorCode (Chinese table, the `description`); doc/api/error (older table with an `errmsg`
  column: "invalid token", "invalid grant", ...).
* [lock-list] document-pages/en/cloud/lock/list; [lock-detail] document/doc?urlName=
  cloud%2Flock%2FdetailEn.html; [gw-list] document-pages/en/cloud/gateway/list;
  [gw-by-lock] document-pages/en/cloud/gateway/listByLock; [gw-locks] document-pages/en/
  cloud/gateway/listLock; [gw-detail] document-pages/cloud/gateway/detail; [gw-guide]
  documentPages/htmlPages/userGuide/gatewayEn.html.
* [pwd-add] document-pages/cloud/passcode/add (Chinese, current) and doc/api/v3/keyboardPwd/add
  (English, older); [pwd-change] document-pages/en/cloud/passcode/update and document-pages/
  cloud/passcode/update; [pwd-delete] document-pages/en/cloud/passcode/delete;
  [pwd-list] document-pages/en/cloud/passcode/list.
* Reported (what clients saw, not TTLock's word): [hass#54] github.com/jbergler/hass-ttlock
  issue 54 (the body of a 10004); [hass#252] same repo issue 252 (errcode 1 body); [hass-api]
  same repo custom_components/ttlock/api.py (auth fields in the query, data in the form body,
  no orderBy, client_id/client_secret on refresh); [hass-const] same repo tests/const.py (a
  real lock/detail answer); [ttlockio#12] github.com/tonyldo/ttlockio issue 12 (a password sent
  without MD5 gets 10007); [accesscode] the homebridge-ttlock-accesscode plugin (src/api),
  which retries on errmsg "The gateway is busy. Please try again later."; [seam-busy]
  help.getseam.com article "Why am I getting gateway busy errors with TTLock devices?";
  [jobelhome] sites.google.com/jobelhome.com/platform/home/guidelines/ttlock-guidelines
  (change/delete of an id that does not exist still answer errcode 0).

Where TTLock publishes nothing, the comment says "unpublished" and names the choice: the
stricter one where that makes a client that works here also work against TTLock, otherwise the
least surprising one. No error code is made up: every errcode below is in [errors].

The model. The CLOUD keeps a record of each passcode (what lock/listKeyboardPwd lists); the
LOCK keeps what its keypad accepts (`FakeTTLockLock.codes`, the truth tests read). They differ
whenever a write did not go "via gateway" (addType/changeType/deleteType 1 only touch the
cloud, [pwd-add]: "the passcode only exists in the cloud, not on the lock, it cannot open"),
and when a gateway write failed. A gateway write answers only once the lock has it; each
gateway does one command at a time; a second command meanwhile gets -3003 ([seam-busy]).

Public helpers (tests use these):

* `FakeTTLock(client_id, client_secret, username, password, *, clock=None, **switches)`;
  `await start()` -> base URL (use it for both `/oauth2/token` and `/v3/...`); `await stop()`;
  `requests` (every "METHOD /path" received); `calls` (the decoded parameters of each).
* `add_gateway(gateway_id, name=..., online=True)` -> `FakeGateway`;
  `add_lock(lock_id, alias, *, gateways=(...), battery=..., timezone_raw_offset_ms=...)` ->
  `FakeTTLockLock`; `locks` {lockId: lock}; `gateways` {gatewayId: gateway}; `passcodes`
  {keyboardPwdId: CloudPasscode} (the cloud's records). Deleting a lock from `locks` plays a
  lock that left the account (transferred, deleted in the app): its calls answer -1003.
* Tokens: `issue_token()` -> (access, refresh) without a request; `expire_tokens()` (every
  access token answers 10004, as an expired one does); `revoke_tokens()` (same, and refresh
  tokens answer 10011); `access_tokens` / `refresh_tokens` (tests may inspect).
* `fail_next(errcode, *, path=None, times=1, after_write=False)`: the next matching call(s)
  answer `errcode` with TTLock's text; with `after_write` a gateway write still reaches the
  lock first (the answer is lost, the lock has it).
* `FakeTTLockLock`: `codes` {PIN: LockCode}, `opens(pin, at_ms)`, `add_keypad_code(...)` (a
  code put on the lock by hand, unknown to the cloud), `unreachable` (the gateway cannot reach
  the lock: a gateway command fails with errcode 1), `capacity` (250 custom passcodes).
* `FakeGateway`: `online`, `busy` (every command answers -3003), `reported_online` (what
  gateway/list shows; None = follows `online`; [gw-detail] says the cloud keeps showing a
  gateway online for minutes after it is unplugged), `commands` (how many it ran).
* `FakeTTLockThread(...)`: the same on its own loop in a thread (`.api`, `.url`, `start()`,
  `call(fn, *args)`, `stop()`), for tests that drive a daemon process.

Switches (constructor keywords, also plain attributes to change while running):

* `latency_s` (0): every answer waits this long first (on the fake's clock).
* `gateway_latency_s` (0.5): how long a gateway command takes before it answers (the lock is
  written by then). A command already sent completes even if the caller gave up (unpublished;
  the gateway has it, so the lock ends up written: a client must reconcile by listing).
* `clock_skew_s` (0): TTLock's clock minus the fake's clock; `date_window_s` (300): the
  accepted distance of `date` (80000 outside it).
* `token_ttl_s` (7_776_000): `expires_in` of new access tokens.
* `rotate_refresh_token` (True), `refresh_revokes_old` (True): see `_refresh`.
* `rate_limit` (None) calls per `rate_limit_window_s` (1.0) per clientId, `rate_limited`
  (False): every call answers 30006; `monthly_limit_reached` (False): 30007;
  `rate_limit_retry_after` (None): a Retry-After header on those (none by default).
* `missing_passcode_errcode` (0): the errcode change/delete answer for an unknown
  keyboardPwdId ([jobelhome] reports 0; -2009 "Invalid Password" is the table's code).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bridge.clock import Clock, SystemClock
from tests.fakes.threaded import ThreadedFake

# [pwd-add]: "最多只能写入250个自定义密码,超过个数限制会返回-3009" (at most 250 custom passcodes).
CUSTOM_PASSCODE_CAPACITY = 250
# [pwd-add]: "向锁里写入一个4-9位的自定义限期密码" (a custom passcode of 4 to 9 digits).
_PASSCODE = re.compile(r"^[0-9]{4,9}$")
# [pwd-add] keyboardPwdType: "2-永久,3-限期,不传默认为3" (2 permanent, 3 period, default 3).
PERMANENT, PERIOD = 2, 3
# [token] expires_in: "the default value is 7776000 seconds. That is expired in 90 days".
DEFAULT_TOKEN_TTL_S = 7_776_000
# [errors] 80000 "date must be current time, in 5 minutes".
DATE_WINDOW_S = 300.0
# [lock-list] pageSize "max 1000"; [pwd-list] and [gw-list] pageSize "max 200".
_MAX_PAGE = {"lock": 1000, "passcode": 200, "gateway": 200}

# errcode -> (errmsg, description). errmsg: the older [errors] table's errmsg column where it
# has the code (clients report exactly that text: "invalid grant" [hass#54], "invalid token"
# [tonyldo/tonyldo-hassio-addons issue 17]), else the English [errors] table's text (clients
# report that too: "failed or means no" [hass#252], "The gateway is busy. Please try again
# later." [accesscode]). description: the Chinese [errors] table, as TTLock sends it ([hass#54]).
ERRORS: dict[int, tuple[str, str]] = {
    0: ("none error message", "表示成功或是"),
    1: ("failed or means no", "表示失败或否"),
    -3: ("Invalid Parameter.", "参数不合法"),
    10000: ("invalid client_id", "client_id不存在"),
    10001: ("invalid client", "无效的client,client_id或client_secret错"),
    10003: ("invalid token", "token不存在"),
    10004: ("invalid grant", "token无授权,token已失效或被撤销授权"),
    10007: ("invalid account or invalid password", "username或password错误"),
    10010: ("unsupported grant_type", "请求的grant_type类型未被支持"),
    10011: ("invalid refresh_token", "refresh_token无效"),
    30006: ("exceeds the restrictions of API call number", "超过接口调用次数限制"),
    30007: ("exceeded the monthty limit for API calls. Upgrade your developer account to get "
            "more calls", "本月调用平台接口的次数已经超限"),
    80000: ("date must be current time, in 5 minutes", "请求时间必需为当前时间前后五分钟以内"),
    90000: ("internal server error", "系统内部错误"),
    -1003: ("Lock does not exist", "锁不存在"),
    -2009: ("Invalid Password", "密码不存在"),
    -3006: ("Invalid Passcode. Passcode should be between 6 - 9 Digits in length",
            "密码长度非法,必需为4-9位"),
    -3007: ("The same passcode already exists. Please use another one", "已存在相同的密码,请更换"),
    -3008: ("A Passcode that has never been used on the Lock cannot be changed",
            "无法修改从未在锁上使用过的密码"),
    -3009: ("There is NO SPACE to store Customized Passcodes. Please Delete Un-Used Customized "
            "Passcodes and try again", "自定义密码空间已满,请删除无用密码后再试"),
    -2012: ("The Lock is not connected to any Gateway.", "锁附近没有可用的网关"),
    -3002: ("The gateway is offline. Please check and try again.", "网关离线,请检查后再试"),
    -3003: ("The gateway is busy. Please try again later.", "网关正忙,请稍后再试"),
    -4037: ("No such Gateway exists.", "网关不存在"),
    -4056: ("Run out of memory", "存储空间已满,操作失败"),
}


# What the gate hands on to the handlers: the merged parameters and an `after_write` injection.
_PARAMS: web.RequestKey[dict[str, str]] = web.RequestKey("params")
_INJECTED: web.RequestKey[dict[str, Any] | None] = web.RequestKey("injected")


def md5_hex(password: str) -> str:
    """[token] password: "Password(32 chars, low case, md5 encrypted)"."""
    return hashlib.md5(password.encode("utf-8")).hexdigest()


def _floor_minute(ms: int) -> int:
    """[pwd-add]: a custom passcode's validity "可以精确到分钟" (is accurate to the minute).
    Unpublished: how the lock treats seconds; the fake's lock keeps the start and end floored
    to the minute, so a client must not expect second precision."""
    return ms - ms % 60_000


@dataclass
class LockCode:
    """A passcode as the lock holds it: what its keypad accepts, and when."""

    start_ms: int  # 0 for a permanent passcode
    end_ms: int  # 0 for a permanent passcode


@dataclass
class CloudPasscode:
    """The cloud's record of a passcode: one row of lock/listKeyboardPwd."""

    keyboard_pwd_id: int
    lock_id: int
    pin: str
    name: str
    pwd_type: int
    start_ms: int
    end_ms: int
    send_ms: int
    sender: str


@dataclass
class FakeGateway:
    gateway_id: int
    name: str
    mac: str
    online: bool = True
    busy: bool = False
    reported_online: bool | None = None
    version: int = 2  # [gw-list] gatewayVersion "1-G1,2-G2,3-G3(wired gateway),4-G4"
    network_name: str = "guest-wifi"
    commands: int = 0
    in_flight: bool = False


@dataclass
class FakeTTLockLock:
    lock_id: int
    alias: str
    name: str
    mac: str
    battery: int = 90
    timezone_raw_offset_ms: int = 0
    # lockId -> rssi per gateway the lock is linked to ([gw-by-lock]: many to many; "The
    # gateway server will choose the gateway with the best RSSI").
    gateway_rssi: dict[int, int] = field(default_factory=dict)
    capacity: int = CUSTOM_PASSCODE_CAPACITY
    unreachable: bool = False
    codes: dict[str, LockCode] = field(default_factory=dict)
    init_ms: int = 0

    def opens(self, pin: str, at_ms: int) -> bool:
        """Whether the keypad opens for `pin` at `at_ms` (UTC ms): the truth tests assert."""
        code = self.codes.get(pin)
        if code is None:
            return False
        if code.start_ms == 0 and code.end_ms == 0:
            return True
        return code.start_ms <= at_ms < code.end_ms

    def add_keypad_code(self, pin: str, start_ms: int = 0, end_ms: int = 0) -> None:
        """A code put on the lock by hand (Bluetooth, keypad): the cloud does not know it."""
        self.codes[pin] = LockCode(_floor_minute(start_ms), _floor_minute(end_ms))


class TTLockError(Exception):
    def __init__(self, errcode: int) -> None:
        super().__init__(errcode)
        self.errcode = errcode


def _answer(errcode: int, *, headers: dict[str, str] | None = None) -> web.Response:
    """[errors], [hass#54]: errors come as HTTP 200 with {"errcode", "errmsg", "description"};
    [pwd-delete]: a write that worked answers the same shape with errcode 0."""
    errmsg, description = ERRORS[errcode]
    return web.json_response({"errcode": errcode, "errmsg": errmsg,
                              "description": description}, headers=headers)


class FakeTTLock:
    """The cloud on a loopback port; tests reach into `locks` / `gateways` to play the world."""

    def __init__(self, client_id: str, client_secret: str, username: str, password: str, *,
                 clock: Clock | None = None, latency_s: float = 0.0,
                 gateway_latency_s: float = 0.5, clock_skew_s: float = 0.0,
                 date_window_s: float = DATE_WINDOW_S, token_ttl_s: int = DEFAULT_TOKEN_TTL_S,
                 rotate_refresh_token: bool = True, refresh_revokes_old: bool = True,
                 rate_limit: int | None = None, rate_limit_window_s: float = 1.0,
                 rate_limited: bool = False, monthly_limit_reached: bool = False,
                 rate_limit_retry_after: int | None = None,
                 missing_passcode_errcode: int = 0) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.username = username
        self.password_md5 = md5_hex(password)
        self.clock: Clock = clock or SystemClock()
        self.latency_s = latency_s
        self.gateway_latency_s = gateway_latency_s
        self.clock_skew_s = clock_skew_s
        self.date_window_s = date_window_s
        self.token_ttl_s = token_ttl_s
        self.rotate_refresh_token = rotate_refresh_token
        self.refresh_revokes_old = refresh_revokes_old
        self.rate_limit = rate_limit
        self.rate_limit_window_s = rate_limit_window_s
        self.rate_limited = rate_limited
        self.monthly_limit_reached = monthly_limit_reached
        self.rate_limit_retry_after = rate_limit_retry_after
        self.missing_passcode_errcode = missing_passcode_errcode
        self.uid = 2340  # [token] example "uid": 2340
        # access token -> expiry (server ms); refresh token -> the access token it made.
        self.access_tokens: dict[str, int] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.locks: dict[int, FakeTTLockLock] = {}
        self.gateways: dict[int, FakeGateway] = {}
        self.passcodes: dict[int, CloudPasscode] = {}
        self.requests: list[str] = []
        self.calls: list[tuple[str, dict[str, str]]] = []
        self._injected: list[dict[str, Any]] = []
        self._hits: dict[str, list[float]] = {}
        self._pwd_ids = itertools.count(10_236)  # [pwd-add] example ids are small ints
        self._runner: web.AppRunner | None = None
        self._operations: set[asyncio.Task[Any]] = set()
        self.port = 0

    # -- set-up ---------------------------------------------------------------------------

    def server_ms(self) -> int:
        """TTLock's clock, in ms: the fake's clock plus `clock_skew_s`."""
        return int((self.clock.now().timestamp() + self.clock_skew_s) * 1000)

    def add_gateway(self, gateway_id: int, name: str | None = None, *,
                    online: bool = True) -> FakeGateway:
        gateway = FakeGateway(gateway_id, name or f"G2_{gateway_id:06d}",
                              _mac(gateway_id), online=online)
        self.gateways[gateway_id] = gateway
        return gateway

    def add_lock(self, lock_id: int, alias: str, *, gateways: Iterable[int] = (),
                 battery: int = 90, timezone_raw_offset_ms: int = 0) -> FakeTTLockLock:
        lock = FakeTTLockLock(lock_id, alias, f"S31_{lock_id % 0xFFFFFF:06x}", _mac(lock_id),
                              battery=battery, timezone_raw_offset_ms=timezone_raw_offset_ms,
                              init_ms=self.server_ms())
        for rank, gateway_id in enumerate(gateways):
            lock.gateway_rssi[gateway_id] = -60 - 5 * rank
        self.locks[lock_id] = lock
        return lock

    def issue_token(self) -> tuple[str, str]:
        """A fresh (access_token, refresh_token) pair, as a password grant would give."""
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        self.access_tokens[access] = self.server_ms() + self.token_ttl_s * 1000
        self.refresh_tokens[refresh] = access
        return access, refresh

    def expire_tokens(self) -> None:
        """Every access token now answers 10004 ([token]: "request with expired access token
        will get 10004 error code"); refresh tokens still work."""
        for token in self.access_tokens:
            self.access_tokens[token] = 0

    def revoke_tokens(self) -> None:
        """The grant is gone (e.g. the app password changed; unpublished what TTLock does then):
        access tokens answer 10004 ("token is invalide or revoked" [errors]) and refresh tokens
        10011 ("invalid refresh_token")."""
        self.expire_tokens()
        self.refresh_tokens.clear()

    def fail_next(self, errcode: int, *, path: str | None = None, times: int = 1,
                  after_write: bool = False) -> None:
        """The next `times` calls whose path matches `path` (a regex; None matches all) answer
        `errcode`. Without `after_write` nothing else happens; with it, a gateway write first
        reaches the lock and the cloud (the answer is what is lost)."""
        if errcode not in ERRORS:
            raise ValueError(f"errcode {errcode} is not in TTLock's table")
        self._injected.append({"errcode": errcode, "path": path, "times": times,
                               "after_write": after_write})

    async def start(self) -> str:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/oauth2/token", self._token)
        reads: dict[str, Callable[[dict[str, str]], Awaitable[web.Response]]] = {
            "/v3/lock/list": self._lock_list,
            "/v3/lock/detail": self._lock_detail,
            "/v3/gateway/list": self._gateway_list,
            "/v3/gateway/listByLock": self._gateway_list_by_lock,
            "/v3/gateway/listLock": self._gateway_list_lock,
            "/v3/lock/listKeyboardPwd": self._passcode_list,
        }
        writes: dict[str, Callable[[dict[str, str]], Awaitable[web.Response]]] = {
            "/v3/keyboardPwd/add": self._passcode_add,
            "/v3/keyboardPwd/change": self._passcode_change,
            "/v3/keyboardPwd/delete": self._passcode_delete,
        }
        # The documents show reads as GET with a query and writes as form POSTs; [lock-list]
        # says "POST, ContentType:application/x-www-form-urlencoded" above a GET example, so
        # reads take both. Unpublished: a GET to a write; the fake has no route for it (405).
        for path, read in reads.items():
            app.router.add_get(path, self._api(read))
            app.router.add_post(path, self._api(read))
        for path, write in writes.items():
            app.router.add_post(path, self._api(write))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        for task in list(self._operations):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TTLockError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the gate every request passes ------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if self.latency_s:
            await self.clock.sleep(self.latency_s)
        # [hass-api] sends clientId/accessToken/date in the query of a POST and the data in its
        # form body, and that works against TTLock: the server reads parameters from both.
        params: dict[str, str] = dict(request.query)
        if request.method == "POST":
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        request[_PARAMS] = params
        self.calls.append((request.path, params))
        injected = self._take_injected(request.path)
        if injected is not None and not injected["after_write"]:
            return _answer(injected["errcode"])
        request[_INJECTED] = injected
        limited = self._rate_limit_check(params.get("clientId") or params.get("client_id")
                                         or "")
        if limited is not None:
            return limited
        response: web.StreamResponse = await handler(request)
        return response

    def _take_injected(self, path: str) -> dict[str, Any] | None:
        for rule in self._injected:
            if rule["path"] is not None and not re.search(rule["path"], path):
                continue
            rule["times"] -= 1
            if rule["times"] <= 0:
                self._injected.remove(rule)
            return rule
        return None

    def _rate_limit_check(self, who: str) -> web.Response | None:
        """[errors] 30006 "exceeds the restrictions of API call number" and 30007 (the monthly
        quota). Unpublished: the per-second limit, whether it counts per clientId (the fake
        counts per clientId, the monthly quota being per application), and any Retry-After
        header (none unless `rate_limit_retry_after` is set: a client must cope without)."""
        headers = ({"Retry-After": str(self.rate_limit_retry_after)}
                   if self.rate_limit_retry_after is not None else None)
        if self.monthly_limit_reached:
            return _answer(30007, headers=headers)
        if self.rate_limited:
            return _answer(30006, headers=headers)
        if self.rate_limit is None:
            return None
        now = self.clock.monotonic()
        hits = [t for t in self._hits.get(who, []) if now - t < self.rate_limit_window_s]
        if len(hits) >= self.rate_limit:
            self._hits[who] = hits
            return _answer(30006, headers=headers)
        hits.append(now)
        self._hits[who] = hits
        return None

    def _api(self, handler: Callable[[dict[str, str]], Awaitable[web.Response]]
             ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Every /v3 call carries clientId, accessToken and date ([pwd-add] and every other
        page: "clientId ... Y", "accessToken ... Y", "date | Long | Y | Current time (timestamp
        in millisecond)"). Unpublished: the order of the checks; the fake checks the client,
        then the token, then the date."""
        async def run(request: web.Request) -> web.Response:
            params: dict[str, str] = request[_PARAMS]
            if params.get("clientId") != self.client_id:
                return _answer(10000)  # [errors] 10000 "client_id does not exist"
            token = params.get("accessToken", "")
            if token not in self.access_tokens:
                return _answer(10003)  # [errors] 10003 "token does not exist"
            if self.access_tokens[token] <= self.server_ms():
                return _answer(10004)  # [token]: an expired token gets 10004
            date = _int(params.get("date"))
            if date is None:
                return _answer(-3)
            # [errors] 80000 "date must be current time, in 5 minutes" (Chinese: "前后五分钟以内",
            # within five minutes before or after).
            if abs(date - self.server_ms()) > self.date_window_s * 1000:
                return _answer(80000)
            try:
                response = await handler(params)
            except TTLockError as error:
                response = _answer(error.errcode)
            injected = request[_INJECTED]
            if injected is not None:
                # The write happened (or was refused on its own); only the answer is lost.
                return _answer(injected["errcode"])
            return response
        return run

    # -- OAuth ------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        """[token] POST /oauth2/token, form: clientId, clientSecret, username, password (MD5,
        32 lower-case hex). The current page spells the client fields clientId/clientSecret,
        the older one and the clients in use client_id/client_secret ([hass-api],
        [accesscode]); the fake takes both. grant_type: absent or "password" for a login
        ([accesscode] sends "password", [token] sends none), "refresh_token" for [refresh]."""
        params: dict[str, str] = request[_PARAMS]
        injected = request[_INJECTED]
        if injected is not None:
            return _answer(injected["errcode"])
        client_id = params.get("clientId") or params.get("client_id")
        secret = params.get("clientSecret") or params.get("client_secret")
        if client_id != self.client_id:
            return _answer(10000)
        if secret != self.client_secret:
            return _answer(10001)  # [errors] "invalid client,wrong client_id or client_secret"
        grant = params.get("grant_type", "password")
        if grant == "refresh_token":
            return self._refresh(params.get("refresh_token", ""))
        if grant != "password":
            return _answer(10010)  # older [errors] table: "unsupported grant_type"
        # [token]: "username ... User account of TTLock APP"; a wrong password, or one sent
        # without MD5, is 10007 ([errors]; [ttlockio#12] for the plain-text case).
        if params.get("username") != self.username or params.get("password") != \
                self.password_md5:
            return _answer(10007)
        access, refresh = self.issue_token()
        # [token] 1.4 Response: access_token, uid, expires_in, scope ("user,key,room"),
        # refresh_token. (A client reported also openid and token_type "Bearer".)
        return web.json_response({"access_token": access, "uid": self.uid,
                                  "expires_in": self.token_ttl_s, "scope": "user,key,room",
                                  "refresh_token": refresh})

    def _refresh(self, refresh_token: str) -> web.Response:
        """[refresh]: grant_type=refresh_token, refresh_token; answers access_token,
        refresh_token, expires_in; "the valid period of refresh token is 10 years". An unknown
        one is 10011 ([errors] "invalid refresh_token"). Unpublished: whether the old access
        token keeps working and whether the refresh token changes (the example returns the
        same one). The fake, stricter: `refresh_revokes_old` ends the old access token (10004)
        and `rotate_refresh_token` returns a new refresh token and ends the old one, so only a
        client that keeps the returned pair keeps working."""
        if refresh_token not in self.refresh_tokens:
            return _answer(10011)
        old_access = self.refresh_tokens[refresh_token]
        if self.refresh_revokes_old and old_access in self.access_tokens:
            self.access_tokens[old_access] = 0  # revoked: 10004, "invalide or revoked"
        access = secrets.token_hex(16)
        self.access_tokens[access] = self.server_ms() + self.token_ttl_s * 1000
        if self.rotate_refresh_token:
            del self.refresh_tokens[refresh_token]
            refresh_token = secrets.token_hex(16)
        self.refresh_tokens[refresh_token] = access
        return web.json_response({"access_token": access, "refresh_token": refresh_token,
                                  "expires_in": self.token_ttl_s})

    # -- locks and gateways -----------------------------------------------------------------

    def _lock(self, params: dict[str, str]) -> FakeTTLockLock:
        lock_id = _int(params.get("lockId"))
        if lock_id is None:
            raise TTLockError(-3)
        lock = self.locks.get(lock_id)
        if lock is None:
            raise TTLockError(-1003)  # [errors] -1003 "Lock does not exist"
        return lock

    async def _lock_list(self, params: dict[str, str]) -> web.Response:
        """[lock-list]: pageNo, pageSize (max 1000), optional lockAlias (fuzzy); answers list,
        pageNo, pageSize, pages, total. Only the locks this account administers."""
        alias = params.get("lockAlias")
        locks = [lock for lock in self.locks.values()
                 if alias is None or alias.lower() in lock.alias.lower()]
        return _page(params, "lock", [self._lock_item(lock) for lock in locks])

    def _lock_item(self, lock: FakeTTLockLock) -> dict[str, Any]:
        """[lock-list] "The objects in the list": lockId, lockName, lockAlias, lockMac,
        electricQuantity, featureValue, hasGateway (1 yes, 0 no), lockData, groupId,
        groupName, date; a real answer also carries timezoneRawOffset and keyboardPwdVersion
        (reported in hass-ttlock issue 43). `lockData` is a secret ("used to operate lock")."""
        return {"lockId": lock.lock_id, "lockName": lock.name, "lockAlias": lock.alias,
                "lockMac": lock.mac, "electricQuantity": lock.battery,
                "featureValue": "F44354CD5F3", "hasGateway": 1 if lock.gateway_rssi else 0,
                "lockData": f"fake-lockdata-{lock.lock_id}", "groupId": 0, "groupName": "",
                "date": lock.init_ms, "timezoneRawOffset": lock.timezone_raw_offset_ms,
                "keyboardPwdVersion": 4}

    async def _lock_detail(self, params: dict[str, str]) -> web.Response:
        """[lock-detail]: lockId, lockName, lockAlias, lockMac, noKeyPwd (the super passcode:
        a secret), electricQuantity, featureValue, timezoneRawOffset ("difference between the
        lock's time zone and UTC, in milliseconds"), modelNum, hardwareRevision,
        firmwareRevision, autoLockTime, lockSound, soundVolume, hasGateway, privacyLock,
        tamperAlert, resetButton, openDirection, passageMode, passageModeAutoUnlock, date.
        Values shaped like the real answer in [hass-const]."""
        lock = self._lock(params)
        return web.json_response({
            "lockId": lock.lock_id, "lockName": lock.name, "lockAlias": lock.alias,
            "lockMac": lock.mac, "noKeyPwd": "8412305", "electricQuantity": lock.battery,
            "featureValue": "F44354CD5F3", "timezoneRawOffset": lock.timezone_raw_offset_ms,
            "modelNum": "SN9206_PV53", "hardwareRevision": "1.6",
            "firmwareRevision": "6.0.6.210622", "autoLockTime": 60, "lockSound": 2,
            "soundVolume": 5, "hasGateway": 1 if lock.gateway_rssi else 0, "privacyLock": 2,
            "tamperAlert": 1, "resetButton": 1, "openDirection": 0, "passageMode": 2,
            "passageModeAutoUnlock": 2, "keyboardPwdVersion": 4, "date": lock.init_ms})

    def _gateway_online(self, gateway: FakeGateway) -> bool:
        return gateway.online if gateway.reported_online is None else gateway.reported_online

    async def _gateway_list(self, params: dict[str, str]) -> web.Response:
        """[gw-list]: pageNo, pageSize (max 200), orderBy; items gatewayId, gatewayMac,
        gatewayName, gatewayVersion, networkName, networkMac, lockNum, isOnline (0 no, 1 yes;
        [gw-detail]: it stays 1 for minutes after a gateway is unplugged, "heartbeat currently
        8 minutes": `reported_online`)."""
        items = [{"gatewayId": g.gateway_id, "gatewayMac": g.mac, "gatewayName": g.name,
                  "gatewayVersion": g.version, "networkName": g.network_name,
                  "networkMac": "AA:BB:CC:00:11:22",
                  "lockNum": sum(1 for lock in self.locks.values()
                                 if g.gateway_id in lock.gateway_rssi),
                  "isOnline": 1 if self._gateway_online(g) else 0}
                 for g in self.gateways.values()]
        return _page(params, "gateway", items)

    async def _gateway_list_by_lock(self, params: dict[str, str]) -> web.Response:
        """[gw-by-lock]: lockId; list of gatewayId, gatewayMac, gatewayName, rssi."""
        lock = self._lock(params)
        items = [{"gatewayId": gid, "gatewayMac": self.gateways[gid].mac,
                  "gatewayName": self.gateways[gid].name, "rssi": rssi}
                 for gid, rssi in lock.gateway_rssi.items() if gid in self.gateways]
        return web.json_response({"list": items})

    async def _gateway_list_lock(self, params: dict[str, str]) -> web.Response:
        """[gw-locks]: gatewayId; list of lockId, lockMac, lockName, lockAlias, rssi,
        updateDate. An unknown gateway: -4037 "No such Gateway exists." ([errors])."""
        gateway_id = _int(params.get("gatewayId"))
        if gateway_id is None:
            raise TTLockError(-3)
        if gateway_id not in self.gateways:
            raise TTLockError(-4037)
        items = [{"lockId": lock.lock_id, "lockMac": lock.mac, "lockName": lock.name,
                  "lockAlias": lock.alias, "rssi": lock.gateway_rssi[gateway_id],
                  "updateDate": self.server_ms()}
                 for lock in self.locks.values() if gateway_id in lock.gateway_rssi]
        return web.json_response({"list": items})

    # -- passcodes: reading -------------------------------------------------------------------

    async def _passcode_list(self, params: dict[str, str]) -> web.Response:
        """[pwd-list]: lockId, searchStr ("fuzzy search by passcode name or precise match by
        passcode"), pageNo, pageSize (max 200), orderBy ("0-by name, 1-reverse order by time,
        2-reverse order by name"; listed as required, yet [hass-api] sends none and works:
        unpublished default, the fake uses 1). Items: keyboardPwdId, lockId, keyboardPwd
        (a String: may start with 0), keyboardPwdName, keyboardPwdType, startDate, endDate,
        sendDate, isCustom, senderUsername. This is the CLOUD's record, not the lock's."""
        lock = self._lock(params)
        search = params.get("searchStr")
        rows = [p for p in self.passcodes.values() if p.lock_id == lock.lock_id and (
            not search or search.lower() in p.name.lower() or search == p.pin)]
        order = _int(params.get("orderBy", "1"))
        if order == 0:
            rows.sort(key=lambda p: p.name)
        elif order == 2:
            rows.sort(key=lambda p: p.name, reverse=True)
        else:
            rows.sort(key=lambda p: (p.send_ms, p.keyboard_pwd_id), reverse=True)
        items = [{"keyboardPwdId": p.keyboard_pwd_id, "lockId": p.lock_id,
                  "keyboardPwd": p.pin, "keyboardPwdName": p.name,
                  "keyboardPwdType": p.pwd_type, "startDate": p.start_ms,
                  "endDate": p.end_ms, "sendDate": p.send_ms, "isCustom": 1,
                  "senderUsername": p.sender} for p in rows]
        return _page(params, "passcode", items)

    # -- passcodes: writing -------------------------------------------------------------------

    async def _passcode_add(self, params: dict[str, str]) -> web.Response:
        """[pwd-add] POST keyboardPwd/add: lockId, keyboardPwd, keyboardPwdName (optional),
        keyboardPwdType (2 permanent, 3 period, default 3), startDate/endDate (ms, "required
        for a period passcode"), addType ("default addType = 1": 1 = already added over
        Bluetooth, only recorded in the cloud, "the passcode only exists in the cloud and is not
        on the lock, it cannot unlock!"; 2 = "via gateway or WiFi lock"). Answers
        {"keyboardPwdId": N}."""
        lock = self._lock(params)
        pin = params.get("keyboardPwd", "")
        if not _PASSCODE.match(pin):
            raise TTLockError(-3006)  # [errors] -3006 "Invalid Passcode ..." (4-9 digits)
        pwd_type, start, end = self._window(params, None)
        add_type = _int(params.get("addType", "1"))
        if add_type not in (1, 2):
            # Unpublished for a gateway lock: 3 (NB-IoT) and 4 (WiFi, power saving); -3.
            raise TTLockError(-3)
        # [errors] -3007 "The same passcode already exists. Please use another one".
        # Unpublished: what counts; the fake refuses a PIN the cloud has for this lock
        # (expired ones included) or the lock itself holds.
        if any(p.lock_id == lock.lock_id and p.pin == pin for p in self.passcodes.values()) \
                or pin in lock.codes:
            raise TTLockError(-3007)

        def write() -> None:
            if pin not in lock.codes and self._custom_count(lock) >= lock.capacity:
                raise TTLockError(-3009)  # [pwd-add]: over 250, -3009 "space is full"
            lock.codes[pin] = LockCode(_floor_minute(start), _floor_minute(end))

        if add_type == 2:
            await self._via_gateway(lock, write, params)
        pwd_id = next(self._pwd_ids)
        self.passcodes[pwd_id] = CloudPasscode(
            pwd_id, lock.lock_id, pin, params.get("keyboardPwdName", ""), pwd_type, start, end,
            self.server_ms(), self.username)
        return web.json_response({"keyboardPwdId": pwd_id})

    async def _passcode_change(self, params: dict[str, str]) -> web.Response:
        """[pwd-change] POST keyboardPwd/change: lockId, keyboardPwdId, keyboardPwdName,
        newKeyboardPwd, startDate, endDate, changeType (1 Bluetooth, already done, cloud only;
        default 1; 2 via gateway). "When you want to change passcode name, only keyboardPwdName
        parameter is needed, changeType is not needed"; "修改有效期startDate和endDate必传, 如果不传
        startDate,即使API请求成功也不会生效" (without startDate the period change does not take
        effect even though the call succeeds)."""
        lock = self._lock(params)
        record = self._record(lock, params)
        if record is None:
            return _answer(self.missing_passcode_errcode)
        new_pin = params.get("newKeyboardPwd")
        if new_pin is not None:
            if not _PASSCODE.match(new_pin):
                raise TTLockError(-3006)
            if new_pin != record.pin and (new_pin in lock.codes or any(
                    p.lock_id == lock.lock_id and p.pin == new_pin
                    for p in self.passcodes.values())):
                raise TTLockError(-3007)
        start, end = record.start_ms, record.end_ms
        if "startDate" in params:
            _, start, end = self._window(params | {"keyboardPwdType": str(PERIOD)}, record)
        change_type = _int(params.get("changeType", "1"))
        if change_type not in (1, 2):
            raise TTLockError(-3)
        touches_lock = new_pin is not None or "startDate" in params
        if change_type == 2 and touches_lock:
            old_pin = record.pin

            def write() -> None:
                if old_pin not in lock.codes:
                    # Unpublished: a gateway change of a code the lock does not hold; the fake
                    # answers the generic failure, errcode 1 "failed or means no".
                    raise TTLockError(1)
                code = lock.codes.pop(old_pin)
                code.start_ms, code.end_ms = _floor_minute(start), _floor_minute(end)
                lock.codes[new_pin or old_pin] = code

            await self._via_gateway(lock, write, params)
        if "keyboardPwdName" in params:
            record.name = params["keyboardPwdName"]
        if new_pin is not None:
            record.pin = new_pin
        if "startDate" in params:
            record.start_ms, record.end_ms = start, end
            record.pwd_type = PERIOD
        return _answer(0)

    async def _passcode_delete(self, params: dict[str, str]) -> web.Response:
        """[pwd-delete] POST keyboardPwd/delete: lockId, keyboardPwdId, deleteType ("1-delete
        with App via Bluetooth, you should delete via bluetooth first", the default; "2-delete
        via WiFi gateway"). With 1 only the cloud record goes: the lock keeps opening."""
        lock = self._lock(params)
        record = self._record(lock, params)
        if record is None:
            return _answer(self.missing_passcode_errcode)
        delete_type = _int(params.get("deleteType", "1"))
        if delete_type not in (1, 2):
            raise TTLockError(-3)
        if delete_type == 2:
            pin = record.pin

            def write() -> None:
                # Unpublished: deleting a code the lock does not hold; nothing to do there.
                lock.codes.pop(pin, None)

            await self._via_gateway(lock, write, params)
        self.passcodes.pop(record.keyboard_pwd_id, None)
        return _answer(0)

    def _record(self, lock: FakeTTLockLock, params: dict[str, str]) -> CloudPasscode | None:
        pwd_id = _int(params.get("keyboardPwdId"))
        if pwd_id is None:
            raise TTLockError(-3)
        record = self.passcodes.get(pwd_id)
        if record is None or record.lock_id != lock.lock_id:
            return None
        return record

    def _window(self, params: dict[str, str],
                record: CloudPasscode | None) -> tuple[int, int, int]:
        """The passcode type and window from startDate/endDate (ms). Unpublished: what is
        refused; the fake answers -3 ("Invalid Parameter") for a period passcode without both
        dates, a non-number, or an end not after the start."""
        pwd_type = _int(params.get("keyboardPwdType", str(PERIOD)))
        if pwd_type == PERMANENT:
            return PERMANENT, 0, 0
        if pwd_type != PERIOD:
            raise TTLockError(-3)
        start = _int(params.get("startDate"))
        end = _int(params.get("endDate", str(record.end_ms) if record else None))
        if start is None or end is None or end <= start:
            raise TTLockError(-3)
        return PERIOD, start, end

    @staticmethod
    def _custom_count(lock: FakeTTLockLock) -> int:
        return len(lock.codes)

    # -- the gateway ----------------------------------------------------------------------------

    def _pick_gateway(self, lock: FakeTTLockLock) -> FakeGateway:
        """[gw-guide]: "The gateway server will choose the gateway with the best RSSI to
        communication with the lock"; [seam-busy]: there is no way to choose it. No gateway
        linked: -2012 "The Lock is not connected to any Gateway."; none online: -3002 "The
        gateway is offline"; the chosen one busy: -3003 "The gateway is busy" ([errors])."""
        linked = [(rssi, self.gateways[gid]) for gid, rssi in lock.gateway_rssi.items()
                  if gid in self.gateways]
        if not linked:
            raise TTLockError(-2012)
        online = [(rssi, g) for rssi, g in linked if g.online]
        if not online:
            raise TTLockError(-3002)
        _, gateway = max(online, key=lambda pair: pair[0])
        if gateway.busy or gateway.in_flight:
            raise TTLockError(-3003)
        return gateway

    def _finished(self, task: asyncio.Task[Any]) -> None:
        """A command whose caller went away still ends; its outcome is only on the lock."""
        self._operations.discard(task)
        if not task.cancelled():
            task.exception()

    async def _via_gateway(self, lock: FakeTTLockLock, write: Callable[[], None],
                           params: dict[str, str]) -> None:
        """One command through the lock's gateway. [seam-busy]: "TTLock gateways can only
        process one command at a time ... sending requests to different locks within a short
        timeframe will cause the second request to fail with a 'gateway busy' error": the
        gateway is held for the whole command and a second one gets -3003 at once (not
        queued). The call answers after the lock is written (`gateway_latency_s`). The command
        runs in its own task: a caller that gives up does not stop it (unpublished)."""
        gateway = self._pick_gateway(lock)
        gateway.in_flight = True
        gateway.commands += 1

        async def command() -> None:
            try:
                await self.clock.sleep(self.gateway_latency_s)
                if lock.unreachable:
                    # Unpublished which code a gateway gives when the lock does not answer;
                    # clients report errcode 1 "failed or means no" on remote commands
                    # ([hass#252]).
                    raise TTLockError(1)
                write()
            finally:
                gateway.in_flight = False

        task = asyncio.get_running_loop().create_task(command(), name="fake-ttlock-gateway")
        self._operations.add(task)
        task.add_done_callback(self._finished)
        await asyncio.shield(task)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _mac(seed: int) -> str:
    raw = f"{seed * 2654435761 % (1 << 48):012X}"
    return ":".join(raw[i:i + 2] for i in range(0, 12, 2))


def _page(params: dict[str, str], kind: str, items: list[dict[str, Any]]) -> web.Response:
    """[lock-list], [pwd-list], [gw-list]: pageNo "start from 1", pageSize with a maximum;
    answers list, pageNo, pageSize, pages, total. Unpublished: a pageSize over the maximum;
    the fake serves the maximum (and says so in pageSize), so a client that asks for more and
    reads one page misses rows; a missing or bad pageNo/pageSize is -3."""
    page_no = _int(params.get("pageNo"))
    page_size = _int(params.get("pageSize"))
    if page_no is None or page_size is None or page_no < 1 or page_size < 1:
        raise TTLockError(-3)
    page_size = min(page_size, _MAX_PAGE[kind])
    total = len(items)
    pages = math.ceil(total / page_size) if total else 0
    chunk = items[(page_no - 1) * page_size:page_no * page_size]
    return web.json_response({"list": chunk, "pageNo": page_no, "pageSize": page_size,
                              "pages": pages, "total": total})


class FakeTTLockThread(ThreadedFake[FakeTTLock]):
    """The fake on its own event loop in a thread, for tests that drive a daemon process with
    blocking calls."""

    def __init__(self, client_id: str, client_secret: str, username: str, password: str,
                 **switches: Any) -> None:
        super().__init__(FakeTTLock(client_id, client_secret, username, password, **switches),
                         "fake-ttlock")
