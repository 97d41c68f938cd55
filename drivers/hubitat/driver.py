"""Lock codes on a Hubitat Elevation hub's locks through its Maker API.

What the Maker API does (docs/drivers/hubitat-api-facts.md has the sources), and what the driver
makes of it:

- Every call is `GET <hub>/apps/api/<app>/<endpoint>?access_token=<token>`: the token is in the
  URL, so no URL is ever logged. A refused token answers 401 (`account_disconnected` on every
  lock); a hub that does not answer makes every lock `disconnected`.
- `/devices/all` lists the devices selected in the Maker API instance with their attributes; a
  lock is a device with the Lock Codes capability. Its `lockCodes` attribute is JSON text
  `{"<position>": {"code", "name"}}`, or an opaque string when the lock's driver encrypts it
  (then no position can be read: the bridge relies on its own record, `masks_pins_on_read`).
  `maxCodes` is the highest position, `codeLength` the longest code.
- `setCode/<pos>,<pin>,<name>` and `deleteCode/<pos>` answer at once and say nothing of the
  outcome: the lock applies them later, and the hub then updates `lockCodes` and sends
  `codeChanged`. A refused setCode may send `codeChanged` "failed" or nothing at all. So every
  change is confirmed by reading `lockCodes` back from the hub, within `confirm_wait_s`.
- The hub POSTs every event of its selected devices to one URL, which this driver serves. Anyone
  on the LAN can POST there: an event only wakes the driver to read the hub again, and events can
  be lost, so the driver also polls.

Positions are the engine's slots (1..maxCodes). Before a setCode the driver checks what the hub
would refuse silently: a position above maxCodes, a code longer than codeLength, a code or a name
another position holds, and a lock whose every position is taken
(`hubitat_no_free_positions_available`). A change the lock has not confirmed in
`confirm_wait_s` is `hubitat_device_programming_delay` (a new code is then withdrawn, so that a
late lock does not end up holding a code the bridge gave up on).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from bridge.clock import Clock
from bridge.config import read_secret
from bridge.driver import (
    Addressing,
    Availability,
    CodeWrite,
    CommandRejected,
    DeviceInfo,
    DriverError,
    DriverEvent,
    DriverEventKind,
    FixConfig,
    LockCapabilities,
    PinConstraints,
    Reauthenticate,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
    WriteResult,
)
from bridge.model import AccessCodeErrorCode
from drivers.account import AccountDriver
from drivers.hubitat.config import Config

_LOG = logging.getLogger(__name__)
EVENTS_PATH = "/hubitat/events"
# Hubitat's Virtual Lock defaults when a lock does not report maxCodes or codeLength.
DEFAULT_MAX_CODES = 20
DEFAULT_CODE_LENGTH = 4
# node-red-contrib-hubitat: 4 requests in flight to one hub "never cause issue".
_MAX_IN_FLIGHT = 4
# Requests one command makes beside its confirmation polling: read, send, withdraw.
_REQUESTS_PER_COMMAND = 3
# Characters a name cannot carry in a command's comma-separated, URL-decoded secondary value.
_UNSENDABLE = re.compile(r"[,/%\\?#]")
_MAX_EVENT_BYTES = 64 * 1024
# After an event wakes a waiting command, the hub's events of one change (lockCodes, then
# codeChanged) are let in together before the lock is read: one read per change, and anyone
# posting in a loop gets at most this many reads a second out of it.
_EVENT_SETTLE_S = 0.1
# Events trigger a look at every lock at most this often.
_EVENT_REFRESH_GAP_S = 1.0


@dataclass(slots=True)
class _HubLock:
    """What the hub says about one lock's codes at one moment."""

    max_codes: int
    code_length: int
    # The raw lockCodes text; `codes` is None when it is encrypted (unreadable).
    text: str
    codes: dict[int, tuple[str, str]] | None
    code_changed: str | None = None

    @property
    def encrypted(self) -> bool:
        return self.codes is None


@dataclass(slots=True)
class _Lock:
    info: DeviceInfo
    availability: Availability
    # The last lockCodes text seen (polling compares with it).
    seen_text: str | None = None
    seen_codes: dict[int, tuple[str, str]] | None = None
    # Set by an event from the hub about this lock: whoever waits reads the hub again.
    hint: asyncio.Event = field(default_factory=asyncio.Event)
    # Positions this driver confirmed, as (pin, name): how a replayed write is recognised on a
    # lock whose lockCodes is encrypted.
    confirmed: dict[int, tuple[str, str]] = field(default_factory=dict)
    # An event said codeChanged "failed" since the last command went out.
    hint_failed: bool = False


class HubitatDriver(AccountDriver[_Lock]):
    """Every lock selected in one Maker API instance of one hub."""

    label = "hubitat"
    account = "the Maker API instance"

    def __init__(self, config: Config, clock: Clock) -> None:
        super().__init__(config.name, clock, config.poll_interval_s)
        self._config = config
        self._base = f"{config.url.rstrip('/')}/apps/api/{config.app_id}"
        self._session: aiohttp.ClientSession | None = None
        self._gate = asyncio.Semaphore(_MAX_IN_FLIGHT)
        self._runner: web.AppRunner | None = None
        self._token_refused = False
        self._hub_lost = False
        # The URL the hub posts events to, once the listener runs.
        self.post_url: str | None = None
        self._registered = False

    # -- lifecycle ------------------------------------------------------------------------

    async def _open(self) -> None:
        """Open the HTTP session and serve the event URL."""
        # A new connection per request: a hub gone from the LAN shows at the next call, not
        # after a kept-alive connection times out; a few requests a minute cost nothing.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=_MAX_IN_FLIGHT),
            timeout=aiohttp.ClientTimeout(total=self._config.request_timeout_s))
        if self._config.listen_port is not None:
            await self._listen()

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _first_look(self) -> None:
        """List the locks, then tell the hub where to post."""
        await self._refresh()
        await self._register_post_url()

    async def _poll_once(self) -> None:
        try:
            await self._first_look()
        except DriverError as exc:
            _LOG.debug("hubitat %s: refresh failed: %s", self.name, exc)
        # Events ask for a look at every lock at most this often.
        await self._clock.sleep(min(_EVENT_REFRESH_GAP_S, self._config.poll_interval_s))

    # -- codes ----------------------------------------------------------------------------

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Every position lockCodes lists; nothing when it is encrypted (unreadable)."""
        state = await self._read(self._lock(external_id))
        if state.codes is None:
            return []
        return [SlotRead(pos, SlotState.KNOWN, pin=code, name=name)
                for pos, (code, name) in sorted(state.codes.items())]

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """These positions as lockCodes shows them now; all unreadable when it is encrypted."""
        state = await self._read(self._lock(external_id))
        if state.codes is None:
            return [SlotRead(slot, SlotState.UNREADABLE, reason="encrypted") for slot in slots]
        reads = []
        for slot in slots:
            held = state.codes.get(slot)
            reads.append(SlotRead(slot, SlotState.EMPTY) if held is None else
                         SlotRead(slot, SlotState.KNOWN, pin=held[0], name=held[1]))
        return reads

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Send setCode for one position and wait until lockCodes shows it."""
        lock = self._lock(external_id)
        if code.slot is None:
            raise CommandRejected(RejectReason.UNSUPPORTED, "a Hubitat lock code needs a position")
        if code.pin is None or not code.pin.isdigit():
            raise CommandRejected(RejectReason.INVALID_PIN, "a Hubitat lock code is digits")
        slot, pin = code.slot, code.pin
        before = await self._read(lock)
        if not 1 <= slot <= before.max_codes:
            raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                                  f"position {slot} is not between 1 and maxCodes "
                                  f"({before.max_codes})")
        if len(pin) > before.code_length:
            raise CommandRejected(RejectReason.INVALID_PIN,
                                  f"the lock takes codes of at most {before.code_length} digits")
        name = self._name(code.name, slot, before)
        if before.codes is not None:
            self._check_fits(before.codes, slot, pin, name, before.max_codes)
            if before.codes.get(slot) == (pin, name):
                lock.confirmed[slot] = (pin, name)
                return WriteResult(slot, pin)
        elif lock.confirmed.get(slot) == (pin, name):
            return WriteResult(slot, pin)  # ours, confirmed before: encrypted, nothing to see
        lock.confirmed.pop(slot, None)
        await self._command(lock, "setCode", f"{slot},{pin},{name}")
        outcome = await self._wait(lock, lambda s: _has(s, before, slot, pin, name),
                                   watch_failed=True)
        if outcome is None:
            if before.codes is not None and slot not in before.codes:
                # Withdraw it: a lock that applies the code late must not keep a code the
                # bridge counts as not set.
                with contextlib.suppress(DriverError):
                    await self._command(lock, "deleteCode", str(slot))
            raise CommandRejected(
                RejectReason.OTHER,
                f"the hub took the code for position {slot} but the lock has not confirmed it "
                f"in {self._config.confirm_wait_s:.0f} s (is the lock awake and in range?)",
                error_code=AccessCodeErrorCode.HUBITAT_DEVICE_PROGRAMMING_DELAY.value)
        if outcome.code_changed == "failed" and not _has(outcome, before, slot, pin, name):
            raise CommandRejected(RejectReason.OTHER,
                                  f"the lock refused the code for position {slot} "
                                  "(codeChanged failed)")
        lock.confirmed[slot] = (pin, name)
        return WriteResult(slot, pin)

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Send deleteCode for one position and wait until lockCodes no longer lists it; an
        empty position is fine."""
        lock = self._lock(external_id)
        before = await self._read(lock)
        if before.codes is not None and slot not in before.codes:
            lock.confirmed.pop(slot, None)
            return
        await self._command(lock, "deleteCode", str(slot))
        outcome = await self._wait(lock, lambda s: _gone(s, before, slot), watch_failed=False)
        if outcome is None:
            raise RetryLater(f"the hub took the delete of position {slot} but the lock has not "
                             f"confirmed it in {self._config.confirm_wait_s:.0f} s")
        lock.confirmed.pop(slot, None)

    async def probe(self, external_id: str) -> bool:
        """Ask the hub for the lock now."""
        lock = self._lock(external_id)
        try:
            await self._read(lock)
        except DriverError:
            return False
        return True

    # -- checks ---------------------------------------------------------------------------

    def _name(self, wanted: str, slot: int, state: _HubLock) -> str:
        """The name sent: no character the command cannot carry, at most name_max_length, and
        not the name of another position (the hub refuses a setCode that reuses one)."""
        name = _UNSENDABLE.sub(" ", wanted).strip()[:self._config.name_max_length].strip()
        name = name or f"code #{slot}"
        others = {n for pos, (_, n) in (state.codes or {}).items() if pos != slot}
        if name in others:
            tag = f" #{slot}"
            name = name[:self._config.name_max_length - len(tag)].rstrip() + tag
        return name

    @staticmethod
    def _check_fits(codes: dict[int, tuple[str, str]], slot: int, pin: str, name: str,
                    max_codes: int) -> None:
        """Refuse what the hub would refuse without a word."""
        if any(code == pin for pos, (code, _) in codes.items() if pos != slot):
            raise CommandRejected(RejectReason.DUPLICATE_PIN,
                                  "another position of the lock holds this code")
        held = codes.get(slot)
        ours = held is None or held[1] == name
        full = all(pos in codes for pos in range(1, max_codes + 1))
        if full and not ours:
            raise CommandRejected(
                RejectReason.NO_SPACE,
                f"every position up to maxCodes ({max_codes}) holds a code",
                error_code=AccessCodeErrorCode.HUBITAT_NO_FREE_POSITIONS_AVAILABLE.value)

    # -- waiting for the lock -------------------------------------------------------------

    async def _wait(self, lock: _Lock, done: Callable[[_HubLock], bool], *,
                    watch_failed: bool) -> _HubLock | None:
        """Read the lock from the hub until `done(state)`, or (`watch_failed`) an event said
        codeChanged "failed" and the hub's own codeChanged says so too; woken by the hub's
        events or every `confirm_poll_s`. None after `confirm_wait_s`."""
        deadline = self._clock.monotonic() + self._config.confirm_wait_s
        while True:
            await self._hint_or_sleep(lock, min(self._config.confirm_poll_s,
                                                max(0.0, deadline - self._clock.monotonic())))
            lock.hint.clear()
            state = await self._read(lock)
            if done(state) or (watch_failed and lock.hint_failed
                               and state.code_changed == "failed"):
                return state
            if self._clock.monotonic() >= deadline:
                return None

    async def _hint_or_sleep(self, lock: _Lock, seconds: float) -> None:
        if lock.hint.is_set():
            await self._clock.sleep(_EVENT_SETTLE_S)
            return
        hint = asyncio.create_task(lock.hint.wait())
        sleep = asyncio.create_task(self._clock.sleep(seconds))
        try:
            await asyncio.wait({hint, sleep}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (hint, sleep):
                task.cancel()
            await asyncio.gather(hint, sleep, return_exceptions=True)
        if lock.hint.is_set():
            await self._clock.sleep(_EVENT_SETTLE_S)

    # -- reading the hub ------------------------------------------------------------------

    def _lock(self, external_id: str) -> _Lock:
        lock = self._locks.get(external_id)
        if lock is None:
            raise FixConfig(f"device {external_id} is not a lock selected in the Maker API "
                            "instance")
        return lock

    async def _read(self, lock: _Lock) -> _HubLock:
        """The lock's code attributes now (GET /devices/<id>)."""
        answer = await self._call(f"/devices/{lock.info.external_id}")
        if not isinstance(answer, dict):
            raise RetryLater("the hub sent a device that is not a JSON object")
        attributes = answer.get("attributes")
        values: dict[str, Any] = {}
        if isinstance(attributes, list):
            for item in attributes:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    values.setdefault(item["name"], item.get("currentValue"))
        elif isinstance(attributes, dict):
            values = attributes
        return _hub_lock(values)

    async def _command(self, lock: _Lock, command: str, secondary: str) -> None:
        """Send one command; events from before it no longer count."""
        lock.hint.clear()
        lock.hint_failed = False
        await self._call(f"/devices/{lock.info.external_id}/{command}/"
                         f"{quote(secondary, safe=',')}")

    async def _call(self, path: str) -> Any:
        """One Maker API call; what went wrong becomes what the engine must do. The URL holds
        the token: it is never logged, nor is any exception text that could quote it."""
        if self._session is None:
            raise RetryLater("the Hubitat driver is not started")
        try:
            token = read_secret(self._config.token, self._config.token_file, "token")
        except ValueError as exc:
            raise FixConfig(str(exc)) from exc
        try:
            async with self._gate, self._session.get(
                    self._base + path, params={"access_token": token or ""},
                    allow_redirects=False) as answer:
                status = answer.status
                text = await answer.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            await self._hub_unreachable()
            raise RetryLater(f"the hub did not answer ({type(exc).__name__})") from exc
        if status == 401:
            await self._token_is_refused()
            raise Reauthenticate("the hub refused the Maker API token (HTTP 401)")
        await self._hub_answers()
        if status == 404:
            raise FixConfig("the hub does not know this app, device or command (HTTP 404): "
                            "check app_id and the devices selected in the Maker API instance")
        if status >= 300:
            raise RetryLater(f"the hub answered HTTP {status}")
        try:
            data = json.loads(text) if text else None
        except ValueError as exc:
            raise RetryLater("the hub sent an answer that is not JSON") from exc
        if isinstance(data, dict) and data.get("error") is True:
            raise RetryLater("the hub answered with an error")
        return data

    # -- availability ---------------------------------------------------------------------

    async def _token_is_refused(self) -> None:
        if not self._token_refused:
            _LOG.error("hubitat %s: the hub refused the Maker API token (HTTP 401); put the "
                       "instance's current token in the token file", self.name)
        self._token_refused = True
        self._note_all(Availability.ACCOUNT_DISCONNECTED)

    async def _hub_unreachable(self) -> None:
        if not self._hub_lost:
            _LOG.warning("hubitat %s: the hub does not answer", self.name)
        self._hub_lost = True
        self._note_all(Availability.DISCONNECTED)

    async def _hub_answers(self) -> None:
        if self._token_refused or self._hub_lost:
            _LOG.info("hubitat %s: the hub answers and takes the token again", self.name)
        self._token_refused = self._hub_lost = False
        self._note_all(Availability.ONLINE)

    # -- the device list and polling ------------------------------------------------------

    async def _refresh(self) -> None:
        """The selected locks, their limits, and which positions changed since the last look."""
        answer = await self._call("/devices/all")
        items = [i for i in answer if isinstance(i, dict)] if isinstance(answer, list) else []
        seen: set[str] = set()
        changed_devices = False
        for item in items:
            device_id = _int(item.get("id"))
            if device_id is None or not _is_lock(item):
                continue
            settings = self._config.lock(device_id)
            if settings.ignore:
                continue
            external_id = str(device_id)
            seen.add(external_id)
            attributes = item.get("attributes")
            state = _hub_lock(attributes if isinstance(attributes, dict) else {})
            info = self._info(item, settings.name, state)
            lock = self._locks.get(external_id)
            if lock is None:
                self._locks[external_id] = _Lock(info, Availability.ONLINE, state.text,
                                                 state.codes)
                changed_devices = True
                continue
            if lock.info != info:
                lock.info = info
                changed_devices = True
            self._note(lock, Availability.ONLINE)
            self._compare(lock, state)
        for external_id in set(self._locks) - seen:
            lock = self._locks.pop(external_id)
            self._note(lock, Availability.REMOVED)
            changed_devices = True
        if changed_devices:
            self._events.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, ""))

    def _compare(self, lock: _Lock, state: _HubLock) -> None:
        """Report each position whose code changed since the last look (the engine reads it)."""
        if state.text == lock.seen_text:
            return
        old, new = lock.seen_codes, state.codes
        lock.seen_text, lock.seen_codes = state.text, state.codes
        if old is None or new is None:
            return  # encrypted before or now: which position changed is unreadable
        for slot in sorted(set(old) | set(new)):
            if old.get(slot) != new.get(slot):
                self._events.emit(DriverEvent(DriverEventKind.SLOT_CHANGED,
                                              lock.info.external_id, slot=slot))

    def _info(self, item: dict[str, Any], name: str | None, state: _HubLock) -> DeviceInfo:
        length = state.code_length
        return DeviceInfo(
            external_id=str(item["id"]),
            display_name=name or str(item.get("label") or item.get("name") or item["id"]),
            manufacturer=str(item.get("manufacturer") or "Hubitat"),
            model=str(item.get("model") or item.get("type") or "Hubitat lock"),
            device_type="hubitat_lock",
            capabilities=LockCapabilities(
                addressing=Addressing.SLOT, first_slot=1, slot_count=state.max_codes,
                can_read=True, masks_pins_on_read=state.encrypted, native_schedules=False,
                # A write returns once the hub's lockCodes shows it: nothing to wait for.
                confirmation_window_s=0.0, name_max_length=self._config.name_max_length,
                can_delete_unmanaged=True, min_command_spacing_s=self._config.command_spacing_s,
                keeps_names=False,
                command_timeout_s=self._config.confirm_wait_s + self._config.confirm_poll_s
                + _REQUESTS_PER_COMMAND * self._config.request_timeout_s),
            constraints=PinConstraints(min_length=min(4, length), max_length=length,
                                       rejects_duplicates=True),
            hub_id=f"hubitat:{self.name}",
        )

    # -- events from the hub --------------------------------------------------------------

    async def _listen(self) -> None:
        app = web.Application(client_max_size=_MAX_EVENT_BYTES)
        app.router.add_post(EVENTS_PATH, self._on_post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._config.listen_host, self._config.listen_port)
        await site.start()
        port = int(self._runner.addresses[0][1])
        self.post_url = self._config.post_url or \
            f"http://{self._config.listen_host}:{port}{EVENTS_PATH}"

    async def _register_post_url(self) -> None:
        """Tell the hub where to post (once it answers; the poller tries again until then)."""
        if self.post_url is None or not self._config.register_post_url or self._registered:
            return
        await self._call(f"/postURL/{quote(self.post_url, safe='')}")
        self._registered = True

    async def _on_post(self, request: web.Request) -> web.Response:
        """An event the hub posted, or anything anyone on the LAN posted: only a hint to read
        the hub again. Its body may hold PINs: never logged."""
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400)
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(content, dict):
            return web.Response(status=400)
        lock = self._locks.get(str(content.get("deviceId")))
        if lock is not None and content.get("name") in ("lockCodes", "codeChanged", "maxCodes",
                                                        "codeLength"):
            lock.hint.set()
            if content.get("name") == "codeChanged" and content.get("value") == "failed":
                lock.hint_failed = True
            self._poll_now.set()
        return web.Response(status=204)


def _hub_lock(values: dict[str, Any]) -> _HubLock:
    """The code attributes of a lock from its attribute values."""
    max_codes = _int(values.get("maxCodes")) or DEFAULT_MAX_CODES
    code_length = _int(values.get("codeLength")) or DEFAULT_CODE_LENGTH
    raw = values.get("lockCodes")
    if isinstance(raw, dict):  # some answer an object; Maker API sends it as text
        raw = json.dumps(raw)
    text = raw if isinstance(raw, str) and raw.strip() else "{}"
    changed = values.get("codeChanged")
    return _HubLock(max_codes, code_length, text, _parse_codes(text),
                    changed if isinstance(changed, str) else None)


def _parse_codes(text: str) -> dict[int, tuple[str, str]] | None:
    """lockCodes as {position: (code, name)}; None when it is encrypted (not a JSON object)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        raw = json.loads(text)
    except (ValueError, OverflowError):
        return None
    codes: dict[int, tuple[str, str]] = {}
    if isinstance(raw, dict):
        for key, entry in raw.items():
            position = _int(key)
            if position is None or not isinstance(entry, dict) or entry.get("code") is None:
                continue
            codes[position] = (str(entry["code"]), str(entry.get("name") or ""))
    return codes


def _has(state: _HubLock, before: _HubLock, slot: int, pin: str, name: str) -> bool:
    """Whether the lock now holds this code: read in lockCodes, or (encrypted) lockCodes has
    changed since the command went out."""
    if state.codes is not None:
        return state.codes.get(slot) == (pin, name)
    return state.text != before.text and state.code_changed in ("added", "changed")


def _gone(state: _HubLock, before: _HubLock, slot: int) -> bool:
    if state.codes is not None:
        return slot not in state.codes
    return state.text != before.text and state.code_changed == "deleted"


def _is_lock(item: dict[str, Any]) -> bool:
    capabilities = item.get("capabilities")
    names = {c for c in capabilities if isinstance(c, str)} \
        if isinstance(capabilities, list) else set()
    attributes = item.get("attributes")
    return "LockCodes" in names or (isinstance(attributes, dict) and "lockCodes" in attributes)


def _int(value: object) -> int | None:
    """An integer from a number or its text ("20", "20.0"); Maker API sends either."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(float(str(value)))
    except (ValueError, OverflowError):
        return None
