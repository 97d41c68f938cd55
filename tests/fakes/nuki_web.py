"""A Nuki Web API for tests, built from Nuki's published API and its developer forum's answers:
bearer token, `GET /smartlock`, keypad codes as authorizations of type 13 with a six-digit code
of digits 1-9 not starting with 12, validity in UTC, and writes that are accepted at once (204)
but happen only when Nuki reaches the lock (here after `apply_delay_s`, and not at all while the
lock is offline)."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

KEYPAD_CODE = 13
_CODE = re.compile(r"^[1-9]{6}$")


@dataclass
class FakeSmartlock:
    smartlock_id: int
    name: str
    online: bool = True
    auths: dict[str, dict[str, Any]] = field(default_factory=dict)

    def keypad_codes(self) -> dict[str, str]:
        """{PIN: name} of the enabled keypad codes: what opens the door."""
        return {str(a["code"]): a["name"] for a in self.auths.values()
                if a["type"] == KEYPAD_CODE and a.get("enabled", True)}


class FakeNukiWeb:
    """The API on a loopback port; tests reach into `locks` to play the lock or the app."""

    def __init__(self, token: str, apply_delay_s: float = 0.2) -> None:
        self.token = token
        self.apply_delay_s = apply_delay_s
        self.locks: dict[int, FakeSmartlock] = {}
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None
        self._pending: set[asyncio.TimerHandle] = set()
        self.port = 0

    def add_lock(self, smartlock_id: int, name: str) -> FakeSmartlock:
        lock = FakeSmartlock(smartlock_id, name)
        # Every lock has its owner's app authorization; it is not a keypad code.
        lock.auths[secrets.token_hex(12)] = {"type": 0, "name": "Owner", "enabled": True}
        self.locks[smartlock_id] = lock
        return lock

    async def start(self) -> str:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/smartlock", self._list_locks)
        app.router.add_get("/smartlock/{lock}", self._get_lock)
        app.router.add_get("/smartlock/{lock}/auth", self._list_auths)
        app.router.add_put("/smartlock/{lock}/auth", self._create)
        app.router.add_post("/smartlock/{lock}/auth/{auth}", self._update)
        app.router.add_delete("/smartlock/{lock}/auth/{auth}", self._delete)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        for handle in self._pending:
            handle.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the API ----------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"code": 401, "description": "Not authorized"},
                                     status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _list_locks(self, request: web.Request) -> web.Response:
        return web.json_response([self._lock_json(lock) for lock in self.locks.values()])

    async def _get_lock(self, request: web.Request) -> web.Response:
        return web.json_response(self._lock_json(self._find(request)))

    async def _list_auths(self, request: web.Request) -> web.Response:
        lock = self._find(request)
        return web.json_response([{"id": auth_id, "smartlockId": lock.smartlock_id, **auth}
                                  for auth_id, auth in lock.auths.items()])

    async def _create(self, request: web.Request) -> web.Response:
        lock = self._find(request)
        body = await request.json()
        if body.get("type") != KEYPAD_CODE:
            return _invalid("type", body.get("type"))
        problem = self._check(lock, body, None)
        if problem is not None:
            return problem
        auth = {"type": KEYPAD_CODE, "name": body["name"], "code": body["code"],
                "enabled": True, "allowedFromDate": body.get("allowedFromDate"),
                "allowedUntilDate": body.get("allowedUntilDate"),
                "allowedWeekDays": body.get("allowedWeekDays", 127)}
        self._later(lock, lambda: lock.auths.__setitem__(secrets.token_hex(12), auth))
        return web.Response(status=204)

    async def _update(self, request: web.Request) -> web.Response:
        lock = self._find(request)
        auth_id = request.match_info["auth"]
        if auth_id not in lock.auths:
            raise web.HTTPNotFound()
        body = await request.json()
        problem = self._check(lock, {**lock.auths[auth_id], **body}, auth_id)
        if problem is not None:
            return problem
        changes = {k: v for k, v in body.items() if k in (
            "name", "code", "enabled", "allowedFromDate", "allowedUntilDate", "allowedWeekDays")}
        self._later(lock, lambda: lock.auths.get(auth_id, {}).update(changes))
        return web.Response(status=204)

    async def _delete(self, request: web.Request) -> web.Response:
        lock = self._find(request)
        auth_id = request.match_info["auth"]
        if auth_id not in lock.auths:
            raise web.HTTPNotFound()
        self._later(lock, lambda: lock.auths.pop(auth_id, None))
        return web.Response(status=204)

    # -- helpers ------------------------------------------------------------------------------

    def _find(self, request: web.Request) -> FakeSmartlock:
        try:
            return self.locks[int(request.match_info["lock"])]
        except (KeyError, ValueError):
            raise web.HTTPNotFound() from None

    def _check(self, lock: FakeSmartlock, auth: dict[str, Any],
               own_id: str | None) -> web.Response | None:
        code = auth.get("code")
        if not isinstance(code, int) or not _CODE.match(str(code)) or str(code).startswith("12"):
            return _invalid("code", code)
        name = auth.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= 20:
            return _invalid("name", name)
        for auth_id, other in lock.auths.items():
            if auth_id != own_id and other.get("code") == code:
                return web.json_response({"detailMessage": f"The code {code} is already in "
                                          "use on this device"}, status=409)
        return None

    def _later(self, lock: FakeSmartlock, change: Any) -> None:
        """Nuki applies a change once it reaches the lock; an offline lock never sees it."""
        def apply() -> None:
            self._pending.discard(handle)
            if lock.online:
                change()

        handle = asyncio.get_running_loop().call_later(self.apply_delay_s, apply)
        self._pending.add(handle)

    @staticmethod
    def _lock_json(lock: FakeSmartlock) -> dict[str, Any]:
        return {"smartlockId": lock.smartlock_id, "accountId": 1, "type": 4, "name": lock.name,
                "serverState": 0 if lock.online else 4,
                "state": {"mode": 2, "state": 1, "batteryCritical": False,
                          "keypadBatteryCritical": False}}


def _invalid(parameter: str, value: object) -> web.Response:
    return web.json_response({"detailMessage": f"The supplied value '{value}' for parameter "
                                               f"'{parameter}' is not valid",
                              "stackTrace": [], "suppressedExceptions": []}, status=400)


class FakeNukiWebThread:
    """The fake on its own event loop in a thread, for tests that drive a daemon process with
    blocking calls."""

    def __init__(self, token: str, apply_delay_s: float = 0.2) -> None:
        self.api = FakeNukiWeb(token, apply_delay_s)
        self._loop = asyncio.new_event_loop()
        self._thread: Any = None
        self.url = ""

    def start(self) -> str:
        import threading

        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="fake-nuki-web")
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self.api.start(), self._loop).result(10)
        return self.url

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the fake's loop (to change a lock safely) and return its result."""
        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.api.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
