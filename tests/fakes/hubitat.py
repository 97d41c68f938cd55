"""A Hubitat Elevation hub's Maker API for tests: the lock and lock-code parts, built only from
Hubitat's published material and public client code, each behaviour with its source next to it.

Sources (short names used in the comments below):

* [maker-doc] Hubitat's Maker API documentation, https://docs2.hubitat.com/en/apps/maker-api
  (before: https://docs.hubitat.com/index.php?title=Maker_API): the URL form
  http://<hub>/apps/api/<app_id>/<endpoint>?access_token=<token>, /devices, /devices/all,
  /devices/<id>, /devices/<id>/<command>/<secondary value>, the access token.
* [maker-216] "Maker API New Features", https://community.hubitat.com/t/maker-api-new-features/25634
  (Hubitat staff, release 2.1.6): several command parameters comma-separated in the secondary
  value, with the lock-code example setCode "3,4321,Guest"; the POST of every device event to a
  configured URL with name, value, displayName, descriptionText, unit, data; setting the URL
  through /postURL/<url-encoded URL> and clearing it with /postURL.
* [virtual-lock] Hubitat's own "Virtual Lock" driver, github.com/hubitat/HubitatPublic,
  examples/drivers/virtualLock.groovy ("virtual lock with lock codes for testing new lockCode
  capabilities"): setCode / deleteCode / getCodes, the lockCodes JSON, codeChanged values and
  data, the validity checks, maxCodes and codeLength, the optEncrypt option.
* [lcm-thread] https://community.hubitat.com/t/lock-code-manager-and-custom-drivers/136150:
  lockCodes is a JSON_OBJECT {"<position>":{"code":"<code>","name":"<name>"},...}; encryption
  uses the hub's `String encrypt(String)` / `String decrypt(String)` (Common Methods).
* [hubitatmaker] github.com/jason0x43/hubitatmaker (the library behind Home Assistant's Hubitat
  integration): hubitatmaker/hub.py (401 = invalid token; answers are JSON; a JSON answer with
  a true "error" is a failure; the event URL set with postURL/<quoted URL>; a posted event is
  {"content": {...}} with deviceId), hubitatmaker/types.py (/devices/<id> lists attributes as
  {"name", "currentValue", "dataType"}), hubitatmaker/tests/events.json (a posted event).
* [hubitat-ci] github.com/biocomp/hubitat_ci (a test harness mirroring Hubitat's capability
  list), src/main/groovy/me/biocomp/hubitat_ci/capabilities/Capabilities.groovy: LockCodes has
  codeChanged ENUM ["added", "changed", "deleted", "failed"], codeLength NUMBER, lockCodes
  JSON_OBJECT, maxCodes NUMBER; setCode(Number codePosition, String pinCode, String name
  optional), deleteCode(codePosition), getCodes(), setCodeLength(pinCodeLength); Lock has lock
  ENUM ["locked", "unlocked with timeout", "unlocked", "unknown"].
* [node-red] github.com/fblackburn1/node-red-contrib-hubitat, nodes/config.js: a JSON_OBJECT
  attribute "Maker API always return[s] ... as String"; event values arrive as strings (NUMBER
  parsed with parseFloat); the POST body's event is under "content" (a body without it is
  refused), deviceId null on location events; error answers (>= 400) read as text; at most 4
  requests at once ("4 simultaneous requests seem to never cause issue"). nodes/command.js:
  a command's answer is read as JSON.

Where Hubitat publishes nothing the comment says "unpublished" and names the choice made, the
least surprising one. Hubitat's built-in Z-Wave and Zigbee lock drivers are closed source: the
fake follows [virtual-lock], Hubitat's published lock-code behaviour, and offers a switch where
a real lock driver is known to differ (see `refusal_event`).

The model: the hub answers a command at once; the LOCK applies it later (`event_delay_s`) and
the driver then updates `lockCodes` and sends `codeChanged`, which Maker API POSTs to the
configured URL. `FakeHubitatLock.truth()` is what the lock itself holds (what opens the door).

Public helpers (tests use these):

* `FakeHubitat(token, app_id=1, **switches)`; `await start()` -> base URL of the hub
  (`http://127.0.0.1:<port>`); `api_url` (base + /apps/api/<app_id>); `await stop()`;
  `requests` (every "METHOD path" received, the token left out); `posted` (every event body
  POSTed, in order); `post_errors` (posts that failed).
* `add_lock(device_id, label, *, max_codes=20, code_length=4, codes=None)` -> `FakeHubitatLock`.
* `lock.truth()` {position: {"name", "code"}} the lock holds; `lock.keypad_set(pos, code,
  name)` / `lock.keypad_delete(pos)`: a change made at the lock (its keypad, or another app),
  reported as the driver reports any change; `lock.online` (False: commands are accepted by the
  hub and never reach the lock); `await hub.settle()`: wait until every due change is applied
  and every event posted.
* `token` (assign another value: the old one answers 401); `post_url` (also set through the
  API); `encrypt` (the driver's optEncrypt; changing it re-sends lockCodes, as [virtual-lock]
  updateEncryption does); `decrypt_text(text)` reads an encrypted value (tests only).
* `await set_reachable(flag)`: False closes the hub's port (connection refused), True opens it
  again on the same port.
* `FakeHubitatThread(token, app_id=1, **switches)`: the same on its own loop in a thread,
  `.hub`, `.url`, `start()`, `call(fn, *args)`, `stop()`.

Switches (constructor keywords, also plain attributes to change while running):

* `event_delay_s` (0.1): how long the lock takes to apply a command before its events.
* `drop_events` (False): events are not POSTed (attributes still change: a client must poll).
* `latency_s` (0): every HTTP answer waits this long first.
* `refusal_event` (None): what a refused setCode sends. None is [virtual-lock]'s behaviour (the
  change is only logged, no event); "failed" (a value of Hubitat's codeChanged enum,
  [hubitat-ci]) sends codeChanged "failed" as the SmartThings Lock
  Codes capability defines it (a "failed" status "when we try to set a code but the lock rejects
  it, for example because it was the wrong length or duplicated another code",
  https://community.smartthings.com/t/capability-lockcodes-update/17510, from which Hubitat's
  capability descends).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from tests.fakes.threaded import ThreadedFake

# [virtual-lock] installed(): maxCodes 20, codeLength 4; changeIsValid() falls back to the same.
DEFAULT_MAX_CODES = 20
DEFAULT_CODE_LENGTH = 4

# [virtual-lock] metadata: capabilities Actuator, Lock, Lock Codes, Refresh (+ Battery here,
# the brief's battery attribute: a real lock reports it; the Virtual Lock has none).
CAPABILITIES = ["Actuator", "Lock", "LockCodes", "Refresh", "Battery"]
# Commands of the Lock and Lock Codes capabilities ([virtual-lock] implements these).
COMMANDS = ["lock", "unlock", "setCode", "deleteCode", "getCodes", "setCodeLength", "refresh"]
# Attribute data types: [hubitat-ci] for the Lock and Lock Codes ones (lockCodes JSON_OBJECT
# also [lcm-thread]); battery NUMBER (Battery capability); lastCodeName STRING ([virtual-lock]
# attribute "lastCodeName", "STRING").
DATA_TYPES = {"lock": "ENUM", "lockCodes": "JSON_OBJECT", "codeChanged": "ENUM",
              "maxCodes": "NUMBER", "codeLength": "NUMBER", "battery": "NUMBER",
              "lastCodeName": "STRING"}


@dataclass
class FakeHubitatLock:
    """A lock paired to the hub and authorised in the Maker API instance."""

    device_id: int
    label: str
    hub: FakeHubitat
    max_codes: int = DEFAULT_MAX_CODES
    code_length: int = DEFAULT_CODE_LENGTH
    online: bool = True
    battery: int = 90
    lock_state: str = "locked"
    # What the lock holds: {position: {"name": str, "code": str}}.
    codes: dict[int, dict[str, str]] = field(default_factory=dict)
    # The last codeChanged value and lastCodeName (current attribute values).
    code_changed: str | None = None
    last_code_name: str | None = None
    # The lockCodes attribute as the hub stores it (a string; encrypted when `encrypt`).
    lock_codes_value: str = "{}"

    def truth(self) -> dict[int, dict[str, str]]:
        """What the lock itself holds: position -> {"name", "code"}."""
        return {pos: dict(entry) for pos, entry in sorted(self.codes.items())}

    def keypad_set(self, position: int, code: str, name: str | None = None) -> None:
        """A code programmed at the lock (keypad) or by another app: the lock has it now and
        the driver reports it as it reports its own changes (codeChanged added/changed with the
        lockCodes update). Unpublished for the closed built-in drivers; [virtual-lock] has no
        such path, so the fake reports it the way its setCode does."""
        self.hub._apply_set(self, position, code, name or f"code #{position}", validate=False)

    def keypad_delete(self, position: int) -> None:
        """A code removed at the lock, reported as a deleteCode is."""
        self.hub._apply_delete(self, position)

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "lock": self.lock_state, "lockCodes": self.lock_codes_value,
            "codeChanged": self.code_changed, "maxCodes": self.max_codes,
            "codeLength": self.code_length, "battery": self.battery,
            "lastCodeName": self.last_code_name,
        }
        return attrs


class FakeHubitat:
    """The hub's Maker API on a loopback port."""

    def __init__(self, token: str, app_id: int = 1, *, event_delay_s: float = 0.1,
                 drop_events: bool = False, latency_s: float = 0.0,
                 refusal_event: str | None = None, encrypt: bool = False,
                 post_url: str | None = None) -> None:
        self.token = token
        self.app_id = app_id
        self.event_delay_s = event_delay_s
        self.drop_events = drop_events
        self.latency_s = latency_s
        self.refusal_event = refusal_event
        self._encrypt = encrypt
        self.post_url = post_url
        self.locks: dict[int, FakeHubitatLock] = {}
        self.requests: list[str] = []
        self.posted: list[dict[str, Any]] = []
        self.post_errors: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self._outbox: asyncio.Queue[dict[str, Any]] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._pending: set[asyncio.TimerHandle] = set()
        self._unsent = 0  # events queued and not yet posted
        # Unpublished: the key and cipher of the hub's encrypt(); see `_encrypt_text`.
        self._key = hashlib.sha256(f"hub-{app_id}-{token}".encode()).digest()

    # -- set-up ---------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/apps/api/{self.app_id}"

    def add_lock(self, device_id: int, label: str, *, max_codes: int = DEFAULT_MAX_CODES,
                 code_length: int = DEFAULT_CODE_LENGTH,
                 codes: dict[int, tuple[str, str]] | None = None) -> FakeHubitatLock:
        """A lock with `codes` {position: (code, name)} already on it."""
        lock = FakeHubitatLock(device_id, label, self, max_codes=max_codes,
                               code_length=code_length)
        for position, (code, name) in (codes or {}).items():
            lock.codes[position] = {"name": name, "code": code}
        lock.lock_codes_value = self._lock_codes_text(lock)
        self.locks[device_id] = lock
        return lock

    @property
    def encrypt(self) -> bool:
        return self._encrypt

    @encrypt.setter
    def encrypt(self, value: bool) -> None:
        """[virtual-lock] updated() -> updateEncryption(): when optEncrypt changes the driver
        re-sends lockCodes, encrypted or in clear."""
        self._encrypt = value
        for lock in self.locks.values():
            lock.lock_codes_value = self._lock_codes_text(lock)
            self._emit(lock, "lockCodes", lock.lock_codes_value)

    async def start(self) -> str:
        app = web.Application(middlewares=[self._gate])
        base = "/apps/api/{app}"
        app.router.add_get(base + "/devices", self._devices)
        app.router.add_get(base + "/devices/all", self._devices_all)
        app.router.add_get(base + "/devices/{device}", self._device)
        app.router.add_get(base + "/devices/{device}/commands", self._commands)
        app.router.add_get(base + "/devices/{device}/{command}", self._command)
        app.router.add_get(base + "/devices/{device}/{command}/{secondary}", self._command)
        app.router.add_get(base + "/postURL", self._post_url)
        app.router.add_get(base + "/postURL/{url:.+}", self._post_url)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self._open_site()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._outbox = asyncio.Queue()
        self._sender = asyncio.get_running_loop().create_task(self._send_events(),
                                                              name="fake-hubitat-post")
        return f"http://127.0.0.1:{self.port}"

    async def _open_site(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()
        if not self.port:
            self.port = int(self._runner.addresses[0][1])

    async def set_reachable(self, reachable: bool) -> None:
        """Hub unreachable: its port closes (connection refused); back on the same port."""
        if not reachable and self._site is not None:
            await self._site.stop()
            self._site = None
        elif reachable and self._site is None:
            await self._open_site()

    async def stop(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until every scheduled lock change has happened and every event has
        been posted."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._pending or self._unsent:
            if loop.time() > deadline:
                raise TimeoutError("fake hub did not settle")
            await asyncio.sleep(0.01)

    # -- the gate -------------------------------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        # [maker-doc]: every endpoint takes ?access_token=<token>; "Anyone with this token can
        # access these endpoints"; a new token replaces the old ("Create New Access Token").
        # [hubitatmaker] hub.py: status 401 means an invalid token. The body is unpublished;
        # the fake sends a short JSON error a client must not depend on.
        if request.query.get("access_token") != self.token:
            return web.json_response({"error": True, "type": "AccessDenied",
                                      "message": "Unauthorized"}, status=401)
        # Unpublished: another app id on the same hub. The fake answers 404.
        if request.match_info.get("app") != str(self.app_id):
            return _not_found("app")
        response: web.StreamResponse = await handler(request)
        return response

    def _find(self, request: web.Request) -> FakeHubitatLock | None:
        try:
            return self.locks.get(int(request.match_info["device"]))
        except ValueError:
            return None

    # -- reading --------------------------------------------------------------------------------

    async def _devices(self, request: web.Request) -> web.Response:
        # [maker-doc] /devices: [{"id": "1", "name": ..., "label": ...}] (ids are strings).
        return web.json_response([{"id": str(lock.device_id), "name": self._type_name(),
                                   "label": lock.label} for lock in self.locks.values()])

    async def _devices_all(self, request: web.Request) -> web.Response:
        # [maker-doc] /devices/all: name, label, type, id, date, model, manufacturer,
        # capabilities, "attributes": {name: value}, "commands": [{"command": name}].
        return web.json_response([self._device_all_json(lock) for lock in self.locks.values()])

    async def _device(self, request: web.Request) -> web.Response:
        lock = self._find(request)
        if lock is None:
            return _not_found("device")
        return web.json_response(self._device_json(lock))

    async def _commands(self, request: web.Request) -> web.Response:
        # [maker-doc] "Get Device Commands" /devices/<id>/commands. Shape unpublished; the fake
        # uses the /devices/all form [{"command": name}].
        lock = self._find(request)
        if lock is None:
            return _not_found("device")
        return web.json_response([{"command": c} for c in COMMANDS])

    @staticmethod
    def _type_name() -> str:
        return "Virtual Lock"  # [virtual-lock] definition name

    def _device_all_json(self, lock: FakeHubitatLock) -> dict[str, Any]:
        return {"name": self._type_name(), "label": lock.label, "type": self._type_name(),
                "id": str(lock.device_id), "date": None, "model": None, "manufacturer": None,
                "capabilities": list(CAPABILITIES), "attributes": lock.attributes(),
                "commands": [{"command": c} for c in COMMANDS]}

    def _device_json(self, lock: FakeHubitatLock) -> dict[str, Any]:
        """[hubitatmaker] types.py: /devices/<id> gives "attributes" as a list of {"name",
        "currentValue", "dataType"} and "capabilities" as a list (in which it skips non-string
        items). The other keys as /devices/all [maker-doc]."""
        body = self._device_all_json(lock)
        body["attributes"] = [{"name": name, "currentValue": value,
                               "dataType": DATA_TYPES[name]}
                              for name, value in lock.attributes().items()]
        return body

    # -- postURL --------------------------------------------------------------------------------

    async def _post_url(self, request: web.Request) -> web.Response:
        """[maker-216]: /postURL/<URL-encoded URL> sets the URL events are POSTed to; /postURL
        alone clears it and stops the stream. [hubitatmaker] hub.py quotes the URL with
        safe="". The answer's body is unpublished; [hubitatmaker] reads it as JSON."""
        url = request.match_info.get("url")
        self.post_url = unquote(url) if url else None
        return web.json_response({"url": self.post_url})

    # -- commands -------------------------------------------------------------------------------

    async def _command(self, request: web.Request) -> web.Response:
        """[maker-doc] /devices/<id>/<command>/<secondary value>; [maker-216] several
        parameters comma-separated ("setCode" "3,4321,Guest"). The hub answers at once: the
        lock applies the command later and the outcome comes as events. The answer's body is
        unpublished; [hubitatmaker] and [node-red] command.js read it as JSON, [hubitatmaker]
        treats a true "error" in it as a failure.
        The fake answers 200 with the device as /devices/<id> gives it (still the old values)."""
        lock = self._find(request)
        if lock is None:
            return _not_found("device")
        command = request.match_info["command"]
        if command not in COMMANDS:
            # Unpublished: an unknown command; the fake answers 404 with "error": true.
            return _not_found("command")
        secondary = request.match_info.get("secondary")
        # Parameters are the text between the commas ([maker-216]: "It's up to you to be sure
        # to use the correct type of parameter"). Unpublished: how each is typed; the fake
        # keeps them as text, so a PIN "0123" keeps its leading zero ([virtual-lock] 2.2.0
        # "fix lock codes starting with 0 not working").
        args = unquote(secondary).split(",") if secondary else []
        self._schedule(lock, command, args)
        return web.json_response(self._device_json(lock))

    def _schedule(self, lock: FakeHubitatLock, command: str, args: list[str]) -> None:
        loop = asyncio.get_running_loop()

        def run() -> None:
            self._pending.discard(handle)
            # A lock that is offline never gets the frame: no change, no event. Unpublished
            # how a driver reports it; [virtual-lock] cannot be offline. (Seam's
            # hubitat_device_programming_delay: "Access code has not yet been fully moved to
            # the device".)
            if lock.online:
                self._run(lock, command, args)

        handle = loop.call_later(self.event_delay_s, run)
        self._pending.add(handle)

    def _run(self, lock: FakeHubitatLock, command: str, args: list[str]) -> None:
        if command == "setCode":
            self._set_code(lock, args)
        elif command == "deleteCode":
            position = _int(args[0]) if args else None
            if position is not None:
                self._apply_delete(lock, position)
        elif command == "getCodes":
            # [virtual-lock] getCodes() is a no-op stub; a real lock driver reads the codes
            # back from the lock. The fake re-sends lockCodes from what the lock holds.
            lock.lock_codes_value = self._lock_codes_text(lock)
            self._emit(lock, "lockCodes", lock.lock_codes_value)
        elif command in ("lock", "unlock"):
            # [virtual-lock] lock()/unlock(): "lock" locked/unlocked, descriptionText
            # "<displayName> was locked" / "... was unlocked [digital]".
            lock.lock_state = "locked" if command == "lock" else "unlocked"
            text = f"{lock.label} was {lock.lock_state}"
            self._emit(lock, "lock", lock.lock_state,
                       text if command == "lock" else text + " [digital]")
        elif command == "setCodeLength":
            length = _int(args[0]) if args else None
            if length is not None:
                lock.code_length = length
                self._emit(lock, "codeLength", length,
                           f"{lock.label} codeLength set to {length}")
        elif command == "refresh":
            self._emit(lock, "lock", lock.lock_state)

    def _set_code(self, lock: FakeHubitatLock, args: list[str]) -> None:
        # [virtual-lock] setCode(codeNumber, code, name = null): nothing for a missing or 0
        # position or a missing code; the name defaults to "code #<position>".
        position = _int(args[0]) if args else None
        code = args[1] if len(args) > 1 and args[1] != "" else None
        if position is None or position == 0 or code is None:
            return
        name = ",".join(args[2:]) if len(args) > 2 and args[2] else f"code #{position}"
        self._apply_set(lock, position, code, name, validate=True)

    def _apply_set(self, lock: FakeHubitatLock, position: int, code: str, name: str, *,
                   validate: bool) -> None:
        current = lock.codes.get(position)
        if validate:
            problem = self._refusal(lock, position, code, name)
            if problem is not None:
                if self.refusal_event is not None:
                    self._emit(lock, "codeChanged", self.refusal_event,
                               f"{lock.label} codeChanged for {position} was failed - "
                               f"{problem}")
                    lock.code_changed = self.refusal_event
                return
        entry = {"name": name, "code": code}
        if current == entry:
            # [virtual-lock]: the same name and code changes nothing; it still sends lockCodes
            # (and a codeChanged with no value, which the fake leaves out).
            self._emit(lock, "lockCodes", lock.lock_codes_value)
            return
        value = "changed" if current else "added"
        lock.codes[position] = entry
        self._report(lock, position, entry, value)

    def _refusal(self, lock: FakeHubitatLock, position: int, code: str,
                 name: str) -> str | None:
        """[virtual-lock] changeIsValid(): refused when the name or the code is used by another
        position, the code is longer than codeLength, or the position is above maxCodes (the
        driver logs a warning and sends nothing). Seam calls a lock with every position taken
        hubitat_no_free_positions_available."""
        others = [e for p, e in lock.codes.items() if p != position]
        if any(e["name"] == name for e in others):
            return f"name {name} is in use"
        if any(e["code"] == code for e in others):
            return "code is in use"
        if len(code) > lock.code_length:
            return f"code length does not match codeLength of {lock.code_length}"
        if position > lock.max_codes:
            return f"codeNumber {position} is larger than maxCodes of {lock.max_codes}"
        return None

    def _apply_delete(self, lock: FakeHubitatLock, position: int) -> None:
        # [virtual-lock] deleteCode(): only a position that holds a code changes anything;
        # then lockCodes without it and codeChanged "deleted" with the removed entry as data.
        entry = lock.codes.pop(position, None)
        if entry is not None:
            self._report(lock, position, entry, "deleted")

    def _report(self, lock: FakeHubitatLock, position: int, entry: dict[str, str],
                value: str) -> None:
        """[virtual-lock]: updateLockCodes() (a lockCodes event, the whole map as JSON text,
        encrypted when optEncrypt) then codeChanged with value added/changed/deleted and data
        {"<position>": {"name", "code"}} (encrypted JSON text when optEncrypt)."""
        lock.lock_codes_value = self._lock_codes_text(lock)
        self._emit(lock, "lockCodes", lock.lock_codes_value)
        data_text = json.dumps({str(position): {"name": entry["name"], "code": entry["code"]}},
                               separators=(",", ":"))
        if self._encrypt:
            data_text = self._encrypt_text(data_text)
        lock.code_changed = value
        self._emit(lock, "codeChanged", value, None, data=data_text)

    # -- encryption -----------------------------------------------------------------------------

    def _lock_codes_text(self, lock: FakeHubitatLock) -> str:
        # [lcm-thread] {"<position>":{"code":"<code>","name":"<name>"},...}; [virtual-lock]
        # JsonOutput.toJson of the map (compact), keys in the order the codes were added;
        # [node-red]: a JSON_OBJECT attribute comes as a string, never as an object.
        text = json.dumps({str(p): {"name": e["name"], "code": e["code"]}
                           for p, e in lock.codes.items()}, separators=(",", ":"))
        return self._encrypt_text(text) if self._encrypt else text

    def _encrypt_text(self, text: str) -> str:
        """Unpublished: what the hub's `String encrypt(String)` produces ([lcm-thread]: a
        Common Method). Published: it is a string that does not start with "{" ([virtual-lock]
        getLockCodes() decrypts when lockCodes[0] != "{"), and only the hub can decrypt it.
        The fake gives base64 text of the JSON masked with a per-hub key: opaque to a client."""
        raw = text.encode()
        stream = (self._key * (len(raw) // len(self._key) + 1))[:len(raw)]
        return base64.b64encode(bytes(a ^ b for a, b in zip(raw, stream, strict=True))).decode()

    def decrypt_text(self, text: str) -> str:
        """Tests only: what the hub's decrypt() would give."""
        raw = base64.b64decode(text)
        stream = (self._key * (len(raw) // len(self._key) + 1))[:len(raw)]
        return bytes(a ^ b for a, b in zip(raw, stream, strict=True)).decode()

    # -- events ---------------------------------------------------------------------------------

    def _emit(self, lock: FakeHubitatLock, name: str, value: Any,
              description: str | None = None, *, data: str | None = None) -> None:
        """[maker-216]: every event of an authorised device is POSTed to the URL as JSON with
        name, value, displayName, descriptionText, unit, data; [hubitatmaker] events.json
        and hub.py, [node-red]: wrapped as {"content": {...}} with "deviceId" (a string);
        values as strings ([node-red] parses NUMBER values from text). Unpublished: the form of
        `data` in the POST; the fake sends the event data as JSON text (null when none), as
        Hubitat keeps event data."""
        if self.drop_events or self.post_url is None or self._outbox is None:
            return
        self._unsent += 1
        self._outbox.put_nowait({"content": {
            "name": name, "value": None if value is None else str(value),
            "displayName": lock.label, "deviceId": str(lock.device_id),
            "descriptionText": description, "unit": "%" if name == "battery" else None,
            "data": data}})

    async def _send_events(self) -> None:
        assert self._outbox is not None
        while True:
            body = await self._outbox.get()
            try:
                url = self.post_url
                if url is not None and self._session is not None:
                    try:
                        async with self._session.post(url, json=body) as response:
                            await response.read()
                            if response.status >= 400:
                                self.post_errors.append(f"{response.status} {url}")
                    except (aiohttp.ClientError, TimeoutError) as error:
                        # Unpublished whether the hub retries a failed POST; the fake does not.
                        self.post_errors.append(f"{type(error).__name__} {url}")
                    self.posted.append(body)
            finally:
                self._unsent -= 1


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _not_found(what: str) -> web.Response:
    # Unpublished: Maker API's answer to a device not authorised in this instance, an unknown
    # command or app; the fake answers 404 with a JSON "error" ([hubitatmaker] checks it).
    return web.json_response({"error": True, "type": "NotFound",
                              "message": f"{what} not found"}, status=404)


class FakeHubitatThread(ThreadedFake[FakeHubitat]):
    """The fake on its own event loop in a thread, for tests that drive a daemon process with
    blocking calls."""

    def __init__(self, token: str, app_id: int = 1, **switches: Any) -> None:
        super().__init__(FakeHubitat(token, app_id, **switches), "fake-hubitat")

    @property
    def hub(self) -> FakeHubitat:
        """The fake hub (the name its tests use)."""
        return self.api
