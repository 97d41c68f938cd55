"""An Igloohome cloud (the iglooaccess API, formerly igloodeveloper) for tests: the OAuth token
endpoint, the device list, algoPIN generation and bridge jobs for custom PINs, built only from
published material, each behaviour with its source in a comment next to the code. Nothing here
comes from, or knows about, lockbridge's driver.

Sources (short names used in the comments below; docs/drivers/igloohome-api-facts.md has them
in full):

* [api-lib] github.com/keithle888/igloohome-api, src/igloohome_api/__init__.py: the Python
  library "designed to be used via the iglooaccess service" (Home Assistant's igloohome
  integration uses it). Token URL https://auth.igloohome.co/oauth2/token, grant
  client_credentials with HTTP Basic client_id:client_secret, the scope list, API base
  https://api.igloodeveloper.co/igloohome, `GET /devices` -> {nextCursor, payload: [device]}
  with the device fields id, type, deviceId, deviceName, pairedAt, homeId, linkedDevices
  [{type, deviceId}], batteryLevel (Optional), `GET /devices/{deviceId}`.
* [seam-offline] Seam's guide "Creating igloohome Offline Access Codes"
  (docs.seam.co/latest/device-and-system-integration-guides/igloohome-locks/creating-igloohome-
  offline-access-codes): hourly codes 1 to 672 hours, at most 3 per hour; daily codes 29 to 367
  days, start and end time must match, at most 3 per day; one-time codes need a start, last 24
  hours, at most 5 per start slot, expire after one use; codes longer than 24 hours have a
  24-hour activation window from the start; no custom code and no change for an algoPIN; an
  algoPIN is deleted only over Bluetooth; 199 PINs a lock, online and offline together.
* [seam-errors] Seam's "IglooHome Error and Warning Codes": igloohome_bridge_too_many_pending_jobs
  "Bridge has 20 or more pending jobs"; igloohome_bridge_offline "Bridge reports that it's
  offline or lock is not linked to bridge".
* [seam-guide] Seam's "igloohome Locks" guide: "You can link up to five igloohome locks with a
  single igloohome Bridge"; algoPINs need no bridge.
* [support] support.igloohome.co "igloohome App" FAQ (solutions/35000138348): "Custom PIN via
  Bluetooth (4-6 digits long)", "AlgoPIN Code (7-9 digits long)"; remotely generated algoPINs
  must be activated within 24 hours.
* [manual] igloohome Smart Padlock IGP1 manual (manualslib): permanent and one-time PINs "use
  within 24 hrs of generation", duration PINs "24 hrs from the start time".
* [kke] RemoteLOCK's support article on igloohome PINs (remotelocksupport.kke.co.jp, article
  20579697848857): 9-digit PINs; hour units; at most 3 PINs with exactly the same start and end
  per device; over 28 days start and end time of day must be equal; PINs over 24 hours must be
  used first within 24 hours of their start.
* Reported by clients (public client code, not Igloohome's word): [cl-format] a client's notes:
  algoPIN dates are "YYYY-MM-DDTHH:00:00+hh:mm", on the hour with an explicit offset, else "400
  ... 'startDate' must be in format ..."; the answer is {pin, pinId}. [cl-name] a client's
  checks: "accessName can contain up to 60 characters", one-time "variance must be between 1 and
  5". [cl-daily] a client's comment: the daily endpoint wants an end 29 to 367 days after the
  start. [cl-determinism] a client's comment: "same device + same startDate hour + same variance
  = same PIN". [cl-bridge] a client's bridge code: `POST /devices/{lockId}/jobs/bridges/
  {bridgeId}` with {jobType: 4, jobData: {accessName, pin, pinType: 4, startDate, endDate}} to
  create a PIN and {jobType: 5, jobData: {pin}} to delete one, dates as "...T14:05:00+00:00"
  (minutes allowed); the answer carries `jobId`; `GET /jobs/{jobId}` is polled: `completed`
  true or `jobResponse.jobStatus` 0 is done, `jobStatus` 2 is failed. [cl-cognito] a client's
  comment: the token endpoint (Cognito) answers 400 for a scope the client was not granted, and
  grants all of the client's scopes when none is asked for.

Where nothing is published the comment says "unpublished" and names the choice (the stricter
one where that keeps a client that works here working against Igloohome). Every unpublished
status code and error body is in `ERRORS`, one place to correct from a real capture.

The model. The CLOUD derives algoPINs from a key it shares with the lock; the LOCK computes the
same PINs itself, offline, so generating one writes nothing to the lock and nothing can be read
back. `FakeIglooLock.opens(pin, at)` / `enter(pin, at)` play the keypad (the truth tests
assert). Custom PINs reach the lock only through a bridge job, which the bridge runs one at a
time after `job_delay_s` on the fake's clock (jobs are settled whenever the fake is asked
anything, so no task runs in the background).

Public helpers (tests use these):

* `FakeIgloohome(client_id, client_secret, *, clock=None, **switches)`; `await start()` ->
  base URL (serves `/oauth2/token` and `/igloohome/...`); `await stop()`; `requests`
  (every "METHOD /path"); `bodies` (the JSON of each POST to the API).
* `add_bridge(bridge_id, name=..., online=True)` -> `FakeBridge`; `add_lock(device_id, name,
  *, bridge=None, battery=90)` -> `FakeIglooLock`; `link(device_id, bridge_id)`,
  `unlink(device_id)`; `locks`, `bridges` {deviceId: ...};
  `remove_lock(device_id)` (the lock left the account: not listed, its calls 404);
  `connected_elsewhere` (True: logins work, the device list is empty, device calls 404).
* `expected_algopin(device_id, kind, start, end, variance)`: the PIN the lock would compute.
* `run_jobs()`: run every bridge job that is due now; `jobs` {jobId: FakeJob}.
* Tokens: `issue_token(scopes=None)`; `expire_tokens()` (every access token answers 401);
  `revoke_client()` (the secret is rotated: tokens 401 and the token endpoint refuses).
* `fail_next(error, *, path=None, times=1, retry_after=None)`: the next matching request(s)
  answer `error` (a code of `ERRORS` such as "TooManyPendingJobs", or a status) with its body.
* `FakeIglooLock`: `opens(pin, at)`, `enter(pin, at)` (a keypad entry: activates or uses up an
  algoPIN), `custom` {PIN: CustomCode}, `algopins` {pinId: AlgoPin}, `add_keypad_code(...)`
  (a PIN set over Bluetooth), `unreachable` (out of its bridge's range: jobs fail),
  `capacity` (199).
* `FakeBridge`: `online`, `locks`, `queue` (pending job ids), `max_pending_jobs` (20),
  `hold_jobs` (True: nothing runs until released; a release counts from the next request
  or `run_jobs()`), `jobs_run`; `set_bridge_online(id, flag)`
  plugs or unplugs a bridge at once (its queue waits while it is offline).
* `FakeIgloohomeThread(...)`: the same on its own loop in a thread (`.api`, `.url`, `start()`,
  `call(fn, *args)`, `stop()`), for tests that drive a daemon process.

Switches (constructor keywords, also plain attributes to change while running):

* `latency_s` (0): every answer waits this long first (on the fake's clock).
* `job_delay_s` (2.0): how long a bridge takes over one job (unpublished; clients poll every
  2.5 s for up to 45 s [cl-bridge]).
* `token_ttl_s` (3600): `expires_in` of new tokens (unpublished; Cognito's default).
* `granted_scopes` (`ALL_SCOPES`): the scopes the iglooaccess client was granted.
* `rate_limit` (None) calls per `rate_limit_window_s` (1.0) per client, `rate_limited` (False),
  `rate_limit_retry_after` (None): see `_rate_limit_check`.
* `custom_pin_lengths` ((4, 6)), `algopin_digits` (9), `devices_page_size` (None).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from bridge.clock import Clock, SystemClock
from tests.fakes.threaded import ThreadedFake

# [api-lib] _OAUTH2_SCOPE_EVERYTHING (and the longer lists clients send [cl-bridge]).
ALL_SCOPES = frozenset({
    "igloohomeapi/algopin-hourly", "igloohomeapi/algopin-daily",
    "igloohomeapi/algopin-permanent", "igloohomeapi/algopin-onetime",
    "igloohomeapi/create-pin-bridge-proxied-job", "igloohomeapi/delete-pin-bridge-proxied-job",
    "igloohomeapi/lock-bridge-proxied-job", "igloohomeapi/unlock-bridge-proxied-job",
    "igloohomeapi/get-devices", "igloohomeapi/get-job-status", "igloohomeapi/get-properties",
})
HOURLY, DAILY, PERMANENT, ONETIME = "hourly", "daily", "permanent", "onetime"
# [seam-offline] at most 3 hourly codes an hour and 3 daily codes a day (the variance picks
# one of them, [kke]: 3 PINs for the same start and end); 5 one-time codes a start slot
# ([cl-name]: variance 1 to 5). Unpublished for permanent PINs: the fake allows 3.
MAX_VARIANCE = {HOURLY: 3, DAILY: 3, PERMANENT: 3, ONETIME: 5}
ACTIVATION = timedelta(hours=24)  # [seam-offline] "a 24-hour activation window"
ONETIME_SPAN = timedelta(hours=24)  # [seam-offline] one-time codes "Lasts for 24 hours"
MAX_HOURLY_HOURS = 672  # [seam-offline] "1 to 672 hours (28 days)"
DAILY_DAYS = (29, 367)  # [seam-offline] "29 to 367 days"; [cl-daily]
LOCK_CAPACITY = 199  # [seam-offline] "199 PINs, including online and offline PINs"
MAX_PENDING_JOBS = 20  # [seam-errors] "Bridge has 20 or more pending jobs"
LOCKS_PER_BRIDGE = 5  # [seam-guide] "up to five igloohome locks with a single igloohome Bridge"
ACCESS_NAME_MAX = 60  # [cl-name] "accessName can contain up to 60 characters"
CREATE_PIN_JOB, DELETE_PIN_JOB = 4, 5  # [cl-bridge]
DURATION_PIN_TYPE = 4  # [cl-bridge] pinType 4 with startDate/endDate; no other type is seen
JOB_DONE, JOB_FAILED = 0, 2  # [cl-bridge] jobResponse.jobStatus

# [cl-format]: "YYYY-MM-DDTHH:00:00+hh:mm", on the hour, with an explicit offset.
_ALGO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:00:00[+-]\d{2}:\d{2}$")
# [cl-bridge] job dates carry minutes ("T14:05:00+00:00"); unpublished whether seconds or a
# "Z" are taken: the fake wants seconds and an explicit offset, like the algoPIN dates.
_JOB_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")

# Unpublished: every status code and body below. Chosen: 400 for a request the API refuses,
# 401 {"message": "Unauthorized"} (what an AWS API Gateway JWT authorizer answers), 403 for a
# missing scope, 404 for a device, bridge or job the account does not have, 409 for the state
# of a bridge, 429 for rate limits; the body {"error": CODE, "message": TEXT} ([cl-bridge]
# reads `body.error`). A driver must key on the status and `error`, never on `message`.
ERRORS: dict[str, tuple[int, str]] = {
    "BadRequest": (400, "Invalid request"),
    "Unauthorized": (401, "Unauthorized"),
    "Forbidden": (403, "The access token does not carry the scope this call needs"),
    "NotFound": (404, "Device not found"),
    "JobNotFound": (404, "Job not found"),
    "BridgeOffline": (409, "Bridge is offline"),
    "LockNotLinkedToBridge": (409, "Lock is not linked to this bridge"),
    "TooManyPendingJobs": (409, "Bridge has too many pending jobs"),
    "TooManyRequests": (429, "Too Many Requests"),
    "InternalError": (500, "Internal server error"),
    "ServiceUnavailable": (503, "Service Unavailable"),
}


def derive_algopin(secret: bytes, kind: str, start: datetime, end: datetime | None,
                   variance: int, digits: int = 9) -> str:
    """The PIN a lock with `secret` computes for a window: deterministic per (lock, kind,
    start, end, variance) [cl-determinism]. Igloohome's algorithm is unpublished; this keyed
    hash plays it. [kke]: 9 digits ([support]: 7 to 9); the fake never starts one with 0."""
    message = f"{kind}|{start.astimezone(UTC).isoformat()}|" \
              f"{end.astimezone(UTC).isoformat() if end else '-'}|{variance}"
    number = int.from_bytes(hmac.new(secret, message.encode(), hashlib.sha256).digest()[:8],
                            "big")
    low = 10 ** (digits - 1)
    return str(low + number % (9 * low))


@dataclass
class AlgoPin:
    """One algoPIN the cloud generated, and what the lock's keypad has seen of it."""

    pin_id: str
    kind: str
    pin: str
    start: datetime
    end: datetime | None  # None: permanent, and one-time (its span is fixed)
    variance: int
    access_name: str
    first_used: datetime | None = None
    used_up: bool = False

    def valid_at(self, at: datetime) -> bool:
        """[seam-offline] windows and activation; [manual] permanent PINs too."""
        if at < self.start:
            return False
        if self.kind == ONETIME:
            # [seam-offline] "Lasts for 24 hours", "Expire after a single use".
            return at < self.start + ONETIME_SPAN and not self.used_up
        if self.end is not None and at >= self.end:
            return False
        # [seam-offline] "For codes that last longer than 24 hours, algoPINs have a 24-hour
        # activation window. Use the code within the first 24 hours of the start time." A
        # permanent PIN has no end: [manual] "use within 24 hrs".
        long_lived = self.end is None or self.end - self.start > ACTIVATION
        return not (long_lived and self.first_used is None and at >= self.start + ACTIVATION)


@dataclass
class CustomCode:
    """A custom PIN as the lock holds it (through a bridge job or Bluetooth)."""

    start: datetime
    end: datetime


@dataclass
class FakeBridge:
    bridge_id: str
    name: str
    online: bool = True
    hold_jobs: bool = False
    max_pending_jobs: int = MAX_PENDING_JOBS
    locks: list[str] = field(default_factory=list)
    queue: list[str] = field(default_factory=list)
    running_since: float | None = None
    jobs_run: int = 0
    paired_at: str = "2025-06-01T09:00:00.000Z"


@dataclass
class FakeJob:
    job_id: str
    job_type: int
    lock_id: str
    bridge_id: str
    data: dict[str, Any]
    status: int | None = None  # None while pending; JOB_DONE or JOB_FAILED


@dataclass
class FakeIglooLock:
    device_id: str
    name: str
    secret: bytes
    bridge_id: str | None = None
    battery: int | None = 90
    capacity: int = LOCK_CAPACITY
    unreachable: bool = False
    custom: dict[str, CustomCode] = field(default_factory=dict)
    algopins: dict[str, AlgoPin] = field(default_factory=dict)
    entries: list[tuple[datetime, bool]] = field(default_factory=list)
    paired_at: str = "2025-06-01T09:00:00.000Z"
    settle: Callable[[], None] = field(default=lambda: None, repr=False)

    def opens(self, pin: str, at: datetime) -> bool:
        """Whether the keypad would open for `pin` at `at`, without using the PIN up."""
        self.settle()
        return self._algopin_for(pin, at) is not None or self._custom_opens(pin, at)

    def enter(self, pin: str, at: datetime) -> bool:
        """A keypad entry at `at`: an algoPIN used for the first time is activated, a one-time
        PIN is used up. The real lock derives algoPINs from its key for any window; the fake
        checks the windows the cloud generated (it need not search every window)."""
        self.settle()
        record = self._algopin_for(pin, at)
        opened = record is not None or self._custom_opens(pin, at)
        if record is not None:
            record.first_used = record.first_used or at
            record.used_up = record.kind == ONETIME
        self.entries.append((at, opened))
        return opened

    def add_keypad_code(self, pin: str, start: datetime, end: datetime) -> None:
        """A custom PIN set over Bluetooth in the igloohome app: the cloud does not know it."""
        self.custom[pin] = CustomCode(start, end)

    def _algopin_for(self, pin: str, at: datetime) -> AlgoPin | None:
        for record in self.algopins.values():
            computed = derive_algopin(self.secret, record.kind, record.start, record.end,
                                      record.variance, len(record.pin))
            if computed == pin and record.valid_at(at):
                return record
        return None

    def _custom_opens(self, pin: str, at: datetime) -> bool:
        code = self.custom.get(pin)
        return code is not None and code.start <= at < code.end


class ApiError(Exception):
    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message or ERRORS[code][1]


def error_body(code: str, message: str | None = None) -> dict[str, str]:
    """The body the fake sends for `code` (see `ERRORS`)."""
    return {"error": code, "message": message or ERRORS[code][1]}


def _error(code: str, message: str | None = None, *,
           headers: dict[str, str] | None = None) -> web.Response:
    if code == "Unauthorized":
        # API Gateway's authorizer answers {"message": "Unauthorized"} (unpublished here).
        return web.json_response({"message": "Unauthorized"}, status=401, headers=headers)
    return web.json_response(error_body(code, message), status=ERRORS[code][0],
                             headers=headers)


def _oauth_error(error: str, status: int = 400) -> web.Response:
    """RFC 6749 section 5.2 error bodies, as Cognito sends them."""
    return web.json_response({"error": error}, status=status)


def _utc_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


_SCOPE_KEY: web.RequestKey[frozenset[str]] = web.RequestKey("scopes")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Token:
    expires: datetime
    scopes: frozenset[str]


class FakeIgloohome:
    """The cloud on a loopback port; tests reach into `locks` / `bridges` to play the world."""

    def __init__(self, client_id: str, client_secret: str, *, clock: Clock | None = None,
                 latency_s: float = 0.0, job_delay_s: float = 2.0, token_ttl_s: int = 3600,
                 granted_scopes: frozenset[str] = ALL_SCOPES, rate_limit: int | None = None,
                 rate_limit_window_s: float = 1.0, rate_limited: bool = False,
                 rate_limit_retry_after: int | None = None,
                 custom_pin_lengths: tuple[int, int] = (4, 6), algopin_digits: int = 9,
                 devices_page_size: int | None = None) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock: Clock = clock or SystemClock()
        self.latency_s = latency_s
        self.job_delay_s = job_delay_s
        self.token_ttl_s = token_ttl_s
        self.granted_scopes = granted_scopes
        self.rate_limit = rate_limit
        self.rate_limit_window_s = rate_limit_window_s
        self.rate_limited = rate_limited
        self.rate_limit_retry_after = rate_limit_retry_after
        self.custom_pin_lengths = custom_pin_lengths
        self.algopin_digits = algopin_digits
        self.devices_page_size = devices_page_size
        self.connected_elsewhere = False
        # Unpublished: the form of homeId and of every id below; the fake makes its own.
        self.home_id = "home-" + hashlib.sha1(client_id.encode()).hexdigest()[:12]
        self.locks: dict[str, FakeIglooLock] = {}
        self.bridges: dict[str, FakeBridge] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.tokens: dict[str, _Token] = {}
        self.requests: list[str] = []
        self.bodies: list[tuple[str, Any]] = []
        self._injected: list[dict[str, Any]] = []
        self._hits: list[float] = []
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- the world ----------------------------------------------------------------------------

    def add_bridge(self, bridge_id: str, name: str | None = None, *,
                   online: bool = True) -> FakeBridge:
        bridge = FakeBridge(bridge_id, name or f"Bridge {bridge_id[-4:]}", online=online)
        self.bridges[bridge_id] = bridge
        return bridge

    def add_lock(self, device_id: str, name: str, *, bridge: str | None = None,
                 battery: int | None = 90) -> FakeIglooLock:
        lock = FakeIglooLock(device_id, name, secrets.token_bytes(16), battery=battery,
                             settle=self.run_jobs)
        self.locks[device_id] = lock
        if bridge is not None:
            self.link(device_id, bridge)
        return lock

    def link(self, device_id: str, bridge_id: str) -> None:
        """Pair a lock with a bridge ([seam-guide]: at most five locks a bridge)."""
        bridge = self.bridges[bridge_id]
        if len(bridge.locks) >= LOCKS_PER_BRIDGE:
            raise ValueError("an igloohome bridge links at most five locks")
        lock = self.locks[device_id]
        if lock.bridge_id is not None:
            self.bridges[lock.bridge_id].locks.remove(device_id)
        lock.bridge_id = bridge_id
        bridge.locks.append(device_id)

    def set_bridge_online(self, bridge_id: str, online: bool) -> None:
        """Unplug or plug in a bridge now (setting `online` directly takes effect for the
        queue at the fake's next request)."""
        self.run_jobs()
        self.bridges[bridge_id].online = online
        self.run_jobs()

    def unlink(self, device_id: str) -> None:
        lock = self.locks[device_id]
        if lock.bridge_id is not None:
            self.bridges[lock.bridge_id].locks.remove(device_id)
        lock.bridge_id = None

    def remove_lock(self, device_id: str) -> FakeIglooLock:
        """The lock left the account (unpaired, transferred): not listed, its calls 404."""
        self.unlink(device_id)
        return self.locks.pop(device_id)

    def expected_algopin(self, device_id: str, kind: str, start: datetime,
                         end: datetime | None, variance: int) -> str:
        """The PIN the lock computes for this window and variance."""
        return derive_algopin(self.locks[device_id].secret, kind, start, end, variance,
                              self.algopin_digits)

    def issue_token(self, scopes: frozenset[str] | None = None) -> str:
        """An access token as the token endpoint would give, without a request."""
        token = secrets.token_urlsafe(32)
        self.tokens[token] = _Token(self.clock.now() + timedelta(seconds=self.token_ttl_s),
                                    self.granted_scopes if scopes is None else scopes)
        return token

    def expire_tokens(self) -> None:
        """Every access token is past its expiry: API calls answer 401, a new login works."""
        for token in self.tokens.values():
            token.expires = self.clock.now()

    def revoke_client(self) -> None:
        """The client secret was rotated or the iglooaccess app deleted (unpublished what
        Igloohome does to live tokens; the fake ends them): tokens answer 401 and the token
        endpoint answers invalid_client."""
        self.client_secret = secrets.token_hex(16)
        self.tokens.clear()

    def fail_next(self, error: int | str, *, path: str | None = None, times: int = 1,
                  retry_after: int | None = None) -> None:
        """The next `times` requests whose path matches `path` (a regex; None: all) answer
        `error` (a code of `ERRORS`, or a status: its first code) with its body; nothing
        else happens."""
        code = error if isinstance(error, str) and error in ERRORS else next(
            (c for c, (status, _) in ERRORS.items() if status == error), None)
        if code is None:
            raise ValueError(f"{error!r} is not in ERRORS")
        self._injected.append({"code": code, "path": path, "times": times,
                               "retry_after": retry_after})

    def run_jobs(self) -> None:
        """Each online bridge runs its queue in order, one job per `job_delay_s` (on the
        fake's clock) [seam-errors: jobs "process as the queue clears"]. Unpublished: what an
        offline bridge does with its queue; the fake keeps the jobs pending until it is back."""
        now = self.clock.monotonic()
        for bridge in self.bridges.values():
            if not bridge.online or bridge.hold_jobs:
                bridge.running_since = None  # a job interrupted starts over when it resumes
            while bridge.queue and bridge.online and not bridge.hold_jobs:
                if bridge.running_since is None:
                    bridge.running_since = now
                done_at = bridge.running_since + self.job_delay_s
                if now < done_at:
                    break
                self._execute(self.jobs[bridge.queue.pop(0)])
                bridge.jobs_run += 1
                bridge.running_since = done_at if bridge.queue else None

    async def start(self) -> str:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/oauth2/token", self._token)
        app.router.add_get("/igloohome/devices", self._api(self._devices))
        app.router.add_get("/igloohome/devices/{device}", self._api(self._device))
        app.router.add_post("/igloohome/devices/{device}/algopin/{kind}", self._api(self._algopin))
        app.router.add_post("/igloohome/devices/{device}/jobs/bridges/{bridge}",
                            self._api(self._create_job))
        app.router.add_get("/igloohome/jobs/{job}", self._api(self._job_status))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the gate every request passes ------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if self.latency_s:
            await self.clock.sleep(self.latency_s)
        injected = self._take_injected(request.path)
        if injected is not None:
            headers = ({"Retry-After": str(injected["retry_after"])}
                       if injected["retry_after"] is not None else None)
            return _error(injected["code"], headers=headers)
        limited = self._rate_limit_check()
        if limited is not None:
            return limited
        self.run_jobs()
        return await handler(request)

    def _take_injected(self, path: str) -> dict[str, Any] | None:
        for rule in self._injected:
            if rule["path"] is not None and not re.search(rule["path"], path):
                continue
            rule["times"] -= 1
            if rule["times"] <= 0:
                self._injected.remove(rule)
            return rule
        return None

    def _rate_limit_check(self) -> web.Response | None:
        """Unpublished: Igloohome states no request limit, status or header. The fake answers
        429 (with Retry-After only when `rate_limit_retry_after` is set: a client must cope
        without) when `rate_limited`, or past `rate_limit` calls per `rate_limit_window_s`
        (the fake has one client, so the budget is the account's)."""
        headers = ({"Retry-After": str(self.rate_limit_retry_after)}
                   if self.rate_limit_retry_after is not None else None)
        if self.rate_limited:
            return _error("TooManyRequests", headers=headers)
        if self.rate_limit is None:
            return None
        now = self.clock.monotonic()
        self._hits = [t for t in self._hits if now - t < self.rate_limit_window_s]
        if len(self._hits) >= self.rate_limit:
            return _error("TooManyRequests", headers=headers)
        self._hits.append(now)
        return None

    def _api(self, handler: Callable[[web.Request], Awaitable[web.Response]]) -> _Handler:
        """[api-lib] every API call carries "Authorization: Bearer <access_token>". Unpublished:
        what a missing, unknown or expired token gets; the fake answers 401."""
        async def run(request: web.Request) -> web.StreamResponse:
            header = request.headers.get("Authorization", "")
            token = self.tokens.get(header[7:]) if header.startswith("Bearer ") else None
            if token is None or token.expires <= self.clock.now():
                return _error("Unauthorized")
            request[_SCOPE_KEY] = token.scopes
            try:
                return await handler(request)
            except ApiError as error:
                return _error(error.code, error.message)
        return run

    @staticmethod
    def _need(request: web.Request, scope: str) -> None:
        """[api-lib] each operation has its own scope. Unpublished: the answer without it;
        the fake answers 403."""
        if scope not in request[_SCOPE_KEY]:
            raise ApiError("Forbidden")

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ApiError("BadRequest", "Body must be a JSON object") from error
        self.bodies.append((request.path, body))
        if not isinstance(body, dict):
            raise ApiError("BadRequest", "Body must be a JSON object")
        return body

    # -- OAuth --------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        """[api-lib] POST /oauth2/token, form grant_type=client_credentials and scope (space
        separated), the client id and secret as HTTP Basic; some clients send client_id and
        client_secret in the form instead, which the fake also takes. [cl-cognito]: a scope
        the client was not granted fails the whole request with 400; no scope grants all of
        the client's. Unpublished: the status for a wrong secret; the fake answers 400
        invalid_client, as Cognito does. Answer: access_token, expires_in, token_type."""
        form = await request.post()
        client_id, secret = _basic(request.headers.get("Authorization", ""))
        if client_id is None:
            client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        if client_id != self.client_id or secret != self.client_secret:
            return _oauth_error("invalid_client")
        if form.get("grant_type") != "client_credentials":
            return _oauth_error("unsupported_grant_type")
        asked = frozenset(str(form.get("scope", "")).split())
        if asked - self.granted_scopes:
            return _oauth_error("invalid_request")  # [cl-cognito] "HTTP 400 invalid_request"
        token = self.issue_token(asked or self.granted_scopes)
        return web.json_response({"access_token": token, "expires_in": self.token_ttl_s,
                                  "token_type": "Bearer"})

    # -- devices ----------------------------------------------------------------------------

    def _lock(self, device_id: str) -> FakeIglooLock:
        """Unpublished: the answer for a device the account does not have (removed, or the
        account connected elsewhere, Seam's troubleshooting guide); the fake answers 404."""
        lock = None if self.connected_elsewhere else self.locks.get(device_id)
        if lock is None:
            raise ApiError("NotFound")
        return lock

    async def _devices(self, request: web.Request) -> web.Response:
        """[api-lib] GET /devices -> {"nextCursor": str, "payload": [device]}. Seam's
        troubleshooting guide: an account "already connected elsewhere" logs in and lists no
        devices. Unpublished: the
        page size and the cursor's query parameter (the library never sends one); the fake
        pages only when `devices_page_size` is set, reads `cursor`, and gives nextCursor ""
        on the last page (the library types it `str`, not Optional)."""
        self._need(request, "igloohomeapi/get-devices")
        items: list[dict[str, Any]] = [] if self.connected_elsewhere else (
            [self._lock_json(lock) for lock in self.locks.values()]
            + [self._bridge_json(bridge) for bridge in self.bridges.values()])
        start = int(request.query.get("cursor") or 0)
        size = self.devices_page_size or len(items) or 1
        page = items[start:start + size]
        after = start + size
        return web.json_response({"nextCursor": str(after) if after < len(items) else "",
                                  "payload": page})

    async def _device(self, request: web.Request) -> web.Response:
        """[api-lib] GET /devices/{deviceId} -> one device (GetDeviceInfoResponse)."""
        self._need(request, "igloohomeapi/get-devices")
        device_id = request.match_info["device"]
        bridge = None if self.connected_elsewhere else self.bridges.get(device_id)
        if bridge is not None:
            return web.json_response(self._bridge_json(bridge))
        return web.json_response(self._lock_json(self._lock(device_id)))

    def _lock_json(self, lock: FakeIglooLock) -> dict[str, Any]:
        """[api-lib] fields id, type, deviceId, deviceName, pairedAt, homeId, linkedDevices
        [{type, deviceId}], batteryLevel (Optional). Unpublished: the `type` strings; clients
        test `type === "Bridge"` [cl-bridge]; the fake calls a lock "Lock"."""
        linked = [{"type": "Bridge", "deviceId": lock.bridge_id}] if lock.bridge_id else []
        return {"id": _uuid(lock.device_id), "type": "Lock", "deviceId": lock.device_id,
                "deviceName": lock.name, "pairedAt": lock.paired_at, "homeId": [self.home_id],
                "linkedDevices": linked, "batteryLevel": lock.battery}

    def _bridge_json(self, bridge: FakeBridge) -> dict[str, Any]:
        """A bridge lists the locks linked to it ([cl-bridge] checks a Bridge's
        linkedDevices). Unpublished: whether the list tells a bridge is offline (nothing in
        [api-lib] does); the fake shows no online flag."""
        return {"id": _uuid(bridge.bridge_id), "type": "Bridge", "deviceId": bridge.bridge_id,
                "deviceName": bridge.name, "pairedAt": bridge.paired_at,
                "homeId": [self.home_id],
                "linkedDevices": [{"type": "Lock", "deviceId": d} for d in bridge.locks],
                "batteryLevel": None}

    # -- algoPINs ----------------------------------------------------------------------------

    async def _algopin(self, request: web.Request) -> web.Response:
        """POST /devices/{deviceId}/algopin/{hourly|daily|permanent|onetime} with variance,
        startDate, endDate (hourly, daily), accessName [cl-format] -> {"pin", "pinId"}.
        Nothing reaches the lock: it computes the same PIN itself [seam-guide]. Unpublished:
        whether a past start is refused (the fake takes it) and the pinId of a repeated
        request (the fake gives a new id and the same PIN [cl-determinism])."""
        kind = request.match_info["kind"]
        if kind not in MAX_VARIANCE:
            raise ApiError("NotFound", "Unknown algoPIN type")
        self._need(request, f"igloohomeapi/algopin-{kind}")
        lock = self._lock(request.match_info["device"])
        body = await self._json_body(request)
        variance = _variance(body.get("variance"), MAX_VARIANCE[kind])
        name = _access_name(body.get("accessName"))
        start = _algo_date(body, "startDate")
        end: datetime | None = None
        if kind in (HOURLY, DAILY):
            end = _algo_date(body, "endDate")
            _check_window(kind, start, end, str(body["startDate"]), str(body["endDate"]))
        pin = derive_algopin(lock.secret, kind, start, end, variance, self.algopin_digits)
        pin_id = f"{next(self._ids):08d}-{secrets.token_hex(4)}"
        lock.algopins[pin_id] = AlgoPin(pin_id, kind, pin, start, end, variance, name)
        return web.json_response({"pin": pin, "pinId": pin_id})

    # -- bridge jobs ----------------------------------------------------------------------------

    async def _create_job(self, request: web.Request) -> web.Response:
        """[cl-bridge] POST /devices/{lockId}/jobs/bridges/{bridgeId} {jobType, jobData} ->
        {"jobId"}; the bridge carries it out later (`run_jobs`). [seam-errors]: refused when
        the bridge is offline or the lock is not linked to it (igloohome_bridge_offline) and
        when the bridge has 20 or more pending jobs (igloohome_bridge_too_many_pending_jobs).
        Unpublished: the order of the checks and the statuses (see `ERRORS`); only jobTypes 4
        and 5 are modelled (others: 400)."""
        lock = self._lock(request.match_info["device"])
        bridge = self.bridges.get(request.match_info["bridge"])
        if bridge is None or self.connected_elsewhere:
            raise ApiError("NotFound", "Bridge not found")
        body = await self._json_body(request)
        job_type = body.get("jobType")
        data = body.get("jobData")
        if job_type == CREATE_PIN_JOB:
            self._need(request, "igloohomeapi/create-pin-bridge-proxied-job")
        elif job_type == DELETE_PIN_JOB:
            self._need(request, "igloohomeapi/delete-pin-bridge-proxied-job")
        else:
            raise ApiError("BadRequest", "jobType not supported")
        if not isinstance(data, dict):
            raise ApiError("BadRequest", "jobData must be an object")
        clean = self._job_data(job_type, data)
        if lock.bridge_id != bridge.bridge_id:
            raise ApiError("LockNotLinkedToBridge")
        if not bridge.online:
            raise ApiError("BridgeOffline")
        if len(bridge.queue) >= bridge.max_pending_jobs:
            raise ApiError("TooManyPendingJobs")
        job = FakeJob(f"job-{next(self._ids):06d}-{secrets.token_hex(4)}", job_type,
                      lock.device_id, bridge.bridge_id, clean)
        self.jobs[job.job_id] = job
        bridge.queue.append(job.job_id)
        self.run_jobs()  # an idle bridge starts on it now
        return web.json_response({"jobId": job.job_id})

    def _job_data(self, job_type: int, data: dict[str, Any]) -> dict[str, Any]:
        """[cl-bridge] create: accessName, pin, pinType 4, startDate, endDate; delete: pin.
        [support]: a custom PIN has 4 to 6 digits (`custom_pin_lengths`). Unpublished: the
        checks and their messages."""
        pin = data.get("pin")
        shortest, longest = self.custom_pin_lengths
        if not isinstance(pin, str) or not pin.isdigit() or \
                not shortest <= len(pin) <= longest:
            raise ApiError("BadRequest", f"pin must be {shortest} to {longest} digits")
        if job_type == DELETE_PIN_JOB:
            return {"pin": pin}
        if data.get("pinType") != DURATION_PIN_TYPE:
            raise ApiError("BadRequest", "pinType not supported")
        name = _access_name(data.get("accessName"))
        start, end = _job_date(data, "startDate"), _job_date(data, "endDate")
        if end <= start:
            raise ApiError("BadRequest", "endDate must be after startDate")
        return {"pin": pin, "accessName": name, "start": start, "end": end}

    def _execute(self, job: FakeJob) -> None:
        """The bridge reaches the lock over Bluetooth. Unpublished: why a job fails and what
        the status then says; the fake fails it (jobStatus 2) when the lock is gone, out of
        range (`unreachable`), no longer linked, already holds the PIN (create), is full
        ([seam-offline] 199 PINs, custom and activated algoPINs together), or does not hold
        the PIN (delete; an algoPIN is deleted only over Bluetooth [seam-offline])."""
        lock = self.locks.get(job.lock_id)
        ok = lock is not None and not lock.unreachable and lock.bridge_id == job.bridge_id
        if lock is not None and ok:
            pin = job.data["pin"]
            if job.job_type == CREATE_PIN_JOB:
                used = len(lock.custom) + sum(1 for a in lock.algopins.values() if a.first_used)
                ok = pin not in lock.custom and used < lock.capacity
                if ok:
                    lock.custom[pin] = CustomCode(_minute(job.data["start"]),
                                                  _minute(job.data["end"]))
            else:
                ok = lock.custom.pop(pin, None) is not None
        job.status = JOB_DONE if ok else JOB_FAILED

    async def _job_status(self, request: web.Request) -> web.Response:
        """[cl-bridge] GET /jobs/{jobId}: clients take `completed` true or jobResponse.jobStatus
        0 as done and jobStatus 2 as failed, in that order, so a failed job cannot say
        completed true. Unpublished: the rest of the shape; the fake answers jobId, jobType,
        completed and jobResponse (null while pending)."""
        self._need(request, "igloohomeapi/get-job-status")
        job = self.jobs.get(request.match_info["job"])
        if job is None:
            raise ApiError("JobNotFound")
        response = None if job.status is None else {"jobStatus": job.status}
        return web.json_response({"jobId": job.job_id, "jobType": job.job_type,
                                  "completed": job.status == JOB_DONE,
                                  "jobResponse": response})


def _basic(header: str) -> tuple[str | None, str | None]:
    if not header.startswith("Basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None, None
    user, _, password = decoded.partition(":")
    return user, password


def _uuid(seed: str) -> str:
    raw = hashlib.md5(seed.encode()).hexdigest()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _variance(value: object, highest: int) -> int:
    """[seam-offline], [cl-name]: variance picks one of the PINs for the same slot. Clients
    send it as a number or a numeric string; the fake takes both."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= highest:
        raise ApiError("BadRequest", f"'variance' must be between 1 and {highest}")
    return value


def _access_name(value: object) -> str:
    """[cl-name] up to 60 characters. Unpublished whether it is required; every client sends
    it, and the fake requires it."""
    if not isinstance(value, str) or not value or len(value) > ACCESS_NAME_MAX:
        raise ApiError("BadRequest", "'accessName' must be 1 to 60 characters")
    return value


def _algo_date(body: dict[str, Any], key: str) -> datetime:
    """[cl-format] "YYYY-MM-DDTHH:00:00+hh:mm", else 400 "'startDate' must be in format"."""
    value = body.get(key)
    if not isinstance(value, str) or not _ALGO_DATE.match(value):
        raise ApiError("BadRequest", f"'{key}' must be in format YYYY-MM-DDTHH:00:00+hh:mm")
    try:
        return datetime.fromisoformat(value)
    except ValueError as error:
        raise ApiError("BadRequest", f"'{key}' is not a date") from error


def _job_date(data: dict[str, Any], key: str) -> datetime:
    value = data.get(key)
    if not isinstance(value, str) or not _JOB_DATE.match(value):
        raise ApiError("BadRequest", f"'{key}' must be an ISO 8601 date with an offset")
    try:
        return datetime.fromisoformat(value)
    except ValueError as error:
        raise ApiError("BadRequest", f"'{key}' is not a date") from error


def _check_window(kind: str, start: datetime, end: datetime, start_text: str,
                  end_text: str) -> None:
    """[seam-offline] hourly: 1 to 672 hours; daily: 29 to 367 days with the same start and
    end time ([kke]: beyond 28 days the times of day must be equal). Local times of day are
    compared as written (with their offsets)."""
    if kind == HOURLY:
        hours = (end - start) / timedelta(hours=1)
        if not 1 <= hours <= MAX_HOURLY_HOURS:
            raise ApiError("BadRequest", "An hourly PIN lasts 1 to 672 hours")
        return
    if start_text[11:13] != end_text[11:13]:
        raise ApiError("BadRequest", "A daily PIN's start and end time must match")
    days = (end.date() - start.date()).days
    if not DAILY_DAYS[0] <= days <= DAILY_DAYS[1]:
        raise ApiError("BadRequest", "A daily PIN lasts 29 to 367 days")


def _minute(moment: datetime) -> datetime:
    """Unpublished: the precision a lock keeps; the fake keeps minutes ([cl-bridge] sends
    minutes), so a client must not count on seconds."""
    return moment.replace(second=0, microsecond=0)


class FakeIgloohomeThread(ThreadedFake[FakeIgloohome]):
    """The fake on its own event loop in a thread, for tests that drive a daemon process with
    blocking calls."""

    def __init__(self, client_id: str, client_secret: str, **switches: Any) -> None:
        super().__init__(FakeIgloohome(client_id, client_secret, **switches), "fake-igloohome")
