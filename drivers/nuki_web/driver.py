"""Nuki keypad codes through the Nuki Web API.

What the API does, as Nuki documents it, and what the driver makes of it:

- `GET /smartlock` lists the account's locks; `serverState` 0 means the lock is reachable;
  only locks with a paired keypad (`config.keypadPaired` or `keypad2Paired`) are offered.
- A keypad code is an authorization of `type` 13 with a six-digit `code` (digits 1 to 9, not
  starting with 12, unique on the lock) and a `name` of up to 20 characters; its validity is
  `allowedFromDate` / `allowedUntilDate` in UTC, which the lock enforces by itself.
- `GET /smartlock/{id}/auth` is the server's copy: an entry carries an `operationId` while a
  change to it is on its way to the lock, and an `error` once that change failed; only an entry
  with neither is on the lock as listed.
- `PUT /smartlock/{id}/auth` answers 204 with no id; the driver looks for the code in the list
  until the lock has it. A retried create takes a listed code with its PIN as its own only when
  Nuki made it since the first attempt went out (`CodeWrite.first_sent_at`); any other code
  with that PIN is someone else's (`DUPLICATE_PIN`), never taken over.
- `POST /smartlock/{id}/auth/{authId}` changes a code, always with every field (a partial update
  clears the time window), `DELETE` removes it; both are asynchronous (423 while a change is on
  its way): the engine reads a change back until the lock has it, a delete is waited for.

The bridge's engine addresses codes by integers; Nuki's authorization ids are mapped to stable
integers (their own value when they are integers, else a 62-bit hash of the id).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

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
    LocalWindow,
    LockCapabilities,
    PinConstraints,
    Reauthenticate,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
    WriteResult,
)
from drivers.account import AccountDriver
from drivers.nuki_web.config import Config

_LOG = logging.getLogger(__name__)
KEYPAD_CODE = 13
SERVER_STATE_OK = 0
NAME_MAX = 20
# A Nuki Keypad holds up to 200 codes.
KEYPAD_CAPACITY = 200
CONSTRAINTS = PinConstraints(min_length=6, max_length=6, fixed_length=6, forbidden_digits="0",
                             forbidden_prefixes=("12",), rejects_duplicates=True)
_DIGITS = re.compile(r"\d{4,}")
# Nuki's clock and ours may differ by this much when a code's creationDate is compared with the
# moment our create went out.
_CLOCK_SKEW = timedelta(seconds=30)
# Requests one command makes beside its polling: list, send, and a last look.
_REQUESTS_PER_COMMAND = 3


def auth_slot(auth_id: object) -> int:
    """The engine's integer for a Nuki authorization id, the same on every run."""
    if isinstance(auth_id, int) and 0 < auth_id < 2**62:
        return auth_id
    digest = hashlib.blake2b(str(auth_id).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 2) or 1


@dataclass(slots=True)
class _Lock:
    info: DeviceInfo
    availability: Availability
    # Engine slot number -> Nuki authorization id, from the latest listing.
    auth_ids: dict[int, object] = field(default_factory=dict)


class NukiWebDriver(AccountDriver[_Lock]):
    """Every keypad-equipped lock of one Nuki Web account."""

    label = "nuki"
    account = "the Nuki Web account"

    def __init__(self, config: Config, clock: Clock) -> None:
        super().__init__(config.name, clock, config.poll_interval_s)
        self._config = config
        self._base = config.url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._account_refused = False
        self._rights_missing = False

    # -- lifecycle ------------------------------------------------------------------------

    async def _open(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._config.request_timeout_s))

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- codes ----------------------------------------------------------------------------

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Every working keypad code Nuki lists for the lock (a disabled one does not open the
        door), each marked pending or failed while the lock does not have it as listed."""
        lock = self._lock(external_id)
        reads = [self._read(auth) for auth in await self._auths(lock)]
        return [r for r in reads if r.state is SlotState.KNOWN]

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """The codes under these ids, from a fresh listing; an id not listed is empty."""
        lock = self._lock(external_id)
        found = {r.slot: r for r in (self._read(a) for a in await self._auths(lock))}
        return [found.get(slot, SlotRead(slot, SlotState.EMPTY)) for slot in slots]

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Change the code under `code.slot` (confirmed by a later read), or create one and
        wait until the lock has it; a code with this PIN that lockbridge did not make is a
        duplicate, never taken over."""
        lock = self._lock(external_id)
        if code.pin is None:
            raise CommandRejected(RejectReason.INVALID_PIN, "a Nuki keypad code needs a PIN")
        body = self._body(lock, code)
        if code.slot is not None:
            auth_id = await self._when_idle(lock, code.slot)
            if auth_id is not None:
                # Every field, every time: an update that leaves the window out clears it.
                await self._call("POST", f"/smartlock/{external_id}/auth/{auth_id}",
                                 {**body, "enabled": True})
                return WriteResult(code.slot, code.pin, confirmed=False)
        for auth in await self._auths(lock):
            if str(auth.get("code")) != code.pin:
                continue
            if not _made_since(auth, code.first_sent_at):
                raise CommandRejected(RejectReason.DUPLICATE_PIN,
                                      "the PIN is already on the lock in a code lockbridge did "
                                      "not make")
            # Our earlier create (its answer was lost, or it reached the lock late).
            read = self._read(auth)
            return WriteResult(read.slot, code.pin, confirmed=not (read.pending or read.failed))
        await self._call("PUT", f"/smartlock/{external_id}/auth", {**body, "type": KEYPAD_CODE})
        return WriteResult(await self._wait_for(lock, code.pin), code.pin, confirmed=True)

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Delete the code under one id and wait until the lock has dropped it; a code already
        gone is fine."""
        lock = self._lock(external_id)
        auth_id = lock.auth_ids.get(slot)
        if auth_id is None:
            await self._auths(lock)
            auth_id = lock.auth_ids.get(slot)
        if auth_id is None:
            return
        await self._call("DELETE", f"/smartlock/{external_id}/auth/{auth_id}", missing_ok=True)
        deadline = self._clock.monotonic() + self._config.create_wait_s
        while any(auth_slot(a.get("id")) == slot for a in await self._auths(lock)):
            if self._clock.monotonic() >= deadline:
                raise RetryLater(f"Nuki accepted the delete but the lock has not dropped the "
                                 f"code in {self._config.create_wait_s:.0f} s (is the lock "
                                 "online?)")
            await self._clock.sleep(self._config.create_poll_s)

    async def probe(self, external_id: str) -> bool:
        """Ask Nuki whether it can reach the lock now."""
        lock = self._lock(external_id)
        try:
            answer = await self._call("GET", f"/smartlock/{external_id}")
        except DriverError:
            return False
        online = isinstance(answer, dict) and answer.get("serverState") == SERVER_STATE_OK
        self._note(lock, Availability.ONLINE if online else Availability.OFFLINE)
        return online

    # -- internals ------------------------------------------------------------------------

    def _body(self, lock: _Lock, code: CodeWrite) -> dict[str, Any]:
        body: dict[str, Any] = {"name": code.name[:NAME_MAX], "code": int(code.pin or 0),
                                "allowedWeekDays": 127, "allowedFromTime": 0,
                                "allowedUntilTime": 0, "remoteAllowed": False}
        if code.window is not None:
            # The window names its zone (the engine's rule); the driver's own is a fallback.
            zone = ZoneInfo(code.window.zone or lock.info.time_zone or "UTC")
            body["allowedFromDate"] = _utc_text(code.window.starts_at.replace(tzinfo=zone))
            body["allowedUntilDate"] = _utc_text(code.window.ends_at.replace(tzinfo=zone))
        else:
            body["allowedFromDate"] = None
            body["allowedUntilDate"] = None
        return body

    async def _auths(self, lock: _Lock) -> list[dict[str, Any]]:
        """The lock's keypad codes now; refreshes the id map."""
        answer = await self._call("GET", f"/smartlock/{lock.info.external_id}/auth")
        auths = [a for a in answer if isinstance(a, dict) and a.get("type") == KEYPAD_CODE] \
            if isinstance(answer, list) else []
        lock.auth_ids = {auth_slot(a.get("id")): a.get("id") for a in auths}
        return auths

    @staticmethod
    def _read(auth: dict[str, Any]) -> SlotRead:
        """One listed authorization; its window in UTC, as Nuki keeps it."""
        slot = auth_slot(auth.get("id"))
        if auth.get("enabled") is False or auth.get("code") is None:
            return SlotRead(slot, SlotState.EMPTY)
        window = None
        start, end = auth.get("allowedFromDate"), auth.get("allowedUntilDate")
        if start and end:
            window = LocalWindow(_parse(start).astimezone(UTC).replace(tzinfo=None),
                                 _parse(end).astimezone(UTC).replace(tzinfo=None), zone="UTC")
        return SlotRead(slot, SlotState.KNOWN, pin=str(auth["code"]), name=auth.get("name"),
                        window=window, pending=auth.get("operationId") is not None,
                        failed=bool(auth.get("error")))

    async def _when_idle(self, lock: _Lock, slot: int) -> object | None:
        """The Nuki id listed under `slot` once no earlier change to it is on its way (Nuki
        answers 423 to a change while one runs), waiting at most `create_wait_s`; None when
        nothing is listed under it."""
        deadline = self._clock.monotonic() + self._config.create_wait_s
        while True:
            listed = [a for a in await self._auths(lock) if auth_slot(a.get("id")) == slot]
            if not listed:
                return None
            if listed[0].get("operationId") is None or self._clock.monotonic() >= deadline:
                return listed[0].get("id")
            await self._clock.sleep(self._config.create_poll_s)

    async def _wait_for(self, lock: _Lock, pin: str) -> int:
        """Nuki creates the code once it reaches the lock: look until the lock has it (listed,
        no change on its way, no error), bounded by `create_wait_s`."""
        deadline = self._clock.monotonic() + self._config.create_wait_s
        while True:
            for auth in await self._auths(lock):
                if str(auth.get("code")) != pin:
                    continue
                read = self._read(auth)
                if read.failed:
                    raise RetryLater(f"Nuki could not get the code onto the lock "
                                     f"({_clean(str(auth.get('error')))})")
                if not read.pending:
                    return read.slot
            if self._clock.monotonic() >= deadline:
                raise RetryLater(f"Nuki accepted the code but it has not reached the lock in "
                                 f"{self._config.create_wait_s:.0f} s (is the lock online?)")
            await self._clock.sleep(self._config.create_poll_s)

    async def _refresh(self) -> None:
        """The account's locks and whether Nuki can reach each."""
        try:
            answer = await self._call("GET", "/smartlock")
        except Reauthenticate:
            self._note_all(Availability.ACCOUNT_DISCONNECTED)
            raise
        except RetryLater:
            self._note_all(Availability.DISCONNECTED)
            raise
        if self._account_refused:
            _LOG.info("nuki %s: the API token is accepted again", self.name)
            self._account_refused = False
        items = [i for i in answer if isinstance(i, dict)] if isinstance(answer, list) else []
        seen: set[str] = set()
        added = False
        for item in items:
            smartlock_id = item.get("smartlockId")
            if not isinstance(smartlock_id, int):
                continue
            settings = self._config.smartlock(smartlock_id)
            if settings.ignore or not _keypad_paired(item):
                continue
            external_id = str(smartlock_id)
            seen.add(external_id)
            info = self._info(item, settings.name, settings.time_zone)
            state = Availability.ONLINE if item.get("serverState") == SERVER_STATE_OK \
                else Availability.OFFLINE
            lock = self._locks.get(external_id)
            if lock is None:
                self._locks[external_id] = _Lock(info, state)
                added = True
                continue
            lock.info = info
            self._note(lock, state)
        for external_id in set(self._locks) - seen:
            self._note(self._locks.pop(external_id), Availability.REMOVED)
            added = True
        if added:
            self._events.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, ""))

    def _info(self, item: dict[str, Any], name: str | None, zone: str | None) -> DeviceInfo:
        return DeviceInfo(
            external_id=str(item["smartlockId"]),
            display_name=name or str(item.get("name") or item["smartlockId"]),
            manufacturer="Nuki",
            model=f"Nuki Smart Lock (type {item.get('type', '?')}) with Keypad",
            device_type="nuki_lock",
            capabilities=LockCapabilities(
                addressing=Addressing.ID, first_slot=1, slot_count=KEYPAD_CAPACITY,
                can_read=True, masks_pins_on_read=False, native_schedules=True,
                confirmation_window_s=self._config.confirmation_window_s,
                name_max_length=NAME_MAX, can_delete_unmanaged=True,
                min_command_spacing_s=self._config.command_spacing_s, keeps_names=True,
                command_timeout_s=self._config.create_wait_s + self._config.create_poll_s
                + _REQUESTS_PER_COMMAND * self._config.request_timeout_s),
            constraints=CONSTRAINTS,
            hub_id=f"nuki:{self.name}",
            time_zone=zone or self._config.time_zone,
        )

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
                    missing_ok: bool = False) -> Any:
        """One API call, with Nuki's answers turned into what the engine must do."""
        if self._session is None:
            raise RetryLater("the Nuki Web driver is not started")
        token = read_secret(self._config.token, self._config.token_file, "token")
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        try:
            async with self._session.request(method, self._base + path, json=body,
                                             headers=headers) as answer:
                status = answer.status
                text = await answer.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryLater(f"Nuki Web did not answer ({type(exc).__name__})") from exc
        if status < 300:
            if not text:
                return None
            try:
                return json.loads(text)
            except ValueError as exc:
                raise RetryLater("Nuki Web sent an answer that is not JSON") from exc
        detail = _detail(text)
        if status == 403:
            # The token is valid but lacks a right (scope): the account is fine, the
            # configuration is not.
            if not self._rights_missing:
                _LOG.error("nuki %s: the API token lacks a right Nuki Web asks for (HTTP 403 "
                           "on %s); make a token that may read smart locks and manage "
                           "authorizations", self.name, method)
            self._rights_missing = True
            raise FixConfig(f"the Nuki API token lacks the rights for {method} {path} (HTTP "
                            "403): make a token that may read smart locks and manage "
                            "authorizations")
        if status == 423:
            raise RetryLater("Nuki is still applying an earlier change to this code (HTTP 423)")
        if status == 401:
            if not self._account_refused:
                _LOG.error("nuki %s: Nuki Web refused the API token (HTTP %d); make a new one "
                           "in the Nuki Web console", self.name, status)
            self._account_refused = True
            raise Reauthenticate(f"Nuki Web refused the API token (HTTP {status})")
        if status == 404 and missing_ok:
            return None
        if status == 409:
            raise CommandRejected(RejectReason.DUPLICATE_PIN,
                                  f"Nuki refused the code: the PIN is already on the lock "
                                  f"({detail})")
        if status in (400, 422):
            reason = RejectReason.INVALID_PIN if "'code'" in detail else RejectReason.OTHER
            raise CommandRejected(reason, f"Nuki refused the request: {detail}")
        if status == 404:
            raise FixConfig(f"Nuki Web does not know {path} (HTTP 404)")
        raise RetryLater(f"Nuki Web answered HTTP {status}")


def _keypad_paired(item: dict[str, Any]) -> bool:
    """Whether Nuki lists a keypad paired with the lock (codes need one)."""
    config = item.get("config")
    return isinstance(config, dict) and bool(config.get("keypadPaired")
                                             or config.get("keypad2Paired"))


def _made_since(auth: dict[str, Any], first_sent_at: datetime | None) -> bool:
    """Whether Nuki made this code since our first attempt at creating it went out."""
    created = auth.get("creationDate")
    if first_sent_at is None or not isinstance(created, str):
        return False
    try:
        return _parse(created) >= first_sent_at - _CLOCK_SKEW
    except ValueError:
        return False


def _clean(message: str) -> str:
    """A message from Nuki without any PIN it may quote."""
    return _DIGITS.sub("…", message)[:200]


def _detail(text: str) -> str:
    """Nuki's error message without any PIN it quotes back."""
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None
    message = str(raw.get("detailMessage") or raw.get("description") or "") \
        if isinstance(raw, dict) else ""
    return _clean(message) or "no detail"


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
