"""One TTLock Open Platform account: logging in, keeping the token fresh, and calling the API
at a pace TTLock accepts.

What TTLock publishes (docs/drivers/ttlock-api-facts.md has the sources):

- `POST /oauth2/token` with the client id and secret, the TTLock app account and the MD5 of its
  password (32 lower-case hex) gives an access token, its lifetime (`expires_in`, 90 days by
  default) and a refresh token; `grant_type=refresh_token` gives a new pair. Keep the pair a
  refresh returns: whether the old one keeps working is unpublished.
- Every `/v3/...` call is a form POST carrying `clientId`, `accessToken` and `date` (now, in ms;
  more than 5 minutes off TTLock's clock is errcode 80000).
- Errors come as HTTP 200 with `errcode` (0 is success); only the code is matched, never the
  text, which differs between TTLock's tables.
- 30006 is the per-application call limit, 30007 the monthly quota; no per-second rate and no
  Retry-After are published, so the account spaces its calls itself and honours a Retry-After
  when one comes.

Secrets (the client secret, the password and its MD5, the tokens) never reach a log line or an
exception message; neither does anything TTLock answers beyond its errcode and errmsg.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from typing import Any

import aiohttp

from bridge.clock import Clock
from bridge.config import read_secret
from bridge.driver import Reauthenticate, RetryLater
from drivers.call_budget import CallBudget
from drivers.cloud_login import RefusedLogin, renew_in
from drivers.ttlock.config import Config

_LOG = logging.getLogger(__name__)

# Credentials refused: the client (10000, 10001), the token (10003, 10004), the account or
# password (10007), the refresh token (10011).
CLIENT_REFUSED = frozenset({10000, 10001})
TOKEN_REFUSED = frozenset({10003, 10004})
ACCOUNT_REFUSED = frozenset({10007})
REFRESH_REFUSED = frozenset({10011})
RATE_LIMITED, MONTHLY_LIMIT = 30006, 30007
DATE_OFF = 80000
SERVER_ERROR = 90000
_DIGITS = re.compile(r"\d{4,}")


class Unreachable(RetryLater):
    """TTLock did not answer, or answered with a server error: the link to the cloud is down."""


class ApiRefusal(Exception):
    """TTLock answered a call with an errcode the caller must interpret (lock, gateway or
    passcode); the message never carries a PIN."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"TTLock errcode {errcode} ({clean(errmsg)})")
        self.errcode = errcode


def clean(message: str) -> str:
    """A message from TTLock without any PIN it may quote, and short."""
    return _DIGITS.sub("…", message)[:160]


def password_md5(password: str) -> str:
    """What TTLock takes as `password`: the MD5 of the app password, 32 lower-case hex."""
    return hashlib.md5(password.encode("utf-8")).hexdigest()


class Account:
    """The HTTP session, the token pair and the call pacing of one TTLock account."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._base = config.url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._access: str | None = None
        self._refresh: str | None = None
        # Monotonic second after which the access token is refreshed (margin included).
        self._renew_at = 0.0
        self._token_lock = asyncio.Lock()
        # Pacing: up to one second's worth of calls at once, refilled at `max_calls_per_s`;
        # none while a 30006 / 30007 pauses the account.
        self._calls = CallBudget(clock, service="TTLock", rate=config.max_calls_per_s,
                                 burst=float(max(1, int(config.max_calls_per_s))),
                                 inline_wait_s=config.request_timeout_s)
        self.refused = False
        self._refused_login = RefusedLogin(clock, config.refused_retry_s)

    async def open(self) -> None:
        """Make the HTTP session (no request yet)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        """Close the HTTP session; safe to call twice."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, path: str, params: dict[str, Any], *,
                   timeout_s: float | None = None) -> dict[str, Any]:
        """One `/v3` call with the account's token; an expired or revoked token is renewed
        once. Raises Reauthenticate, RetryLater, or ApiRefusal for any other errcode."""
        stale: str | None = None
        for renewed in (False, True):
            token = await self._token(stale=stale)
            form = {**{k: str(v) for k, v in params.items()},
                    "clientId": self._config.client_id, "accessToken": token,
                    "date": str(self._now_ms())}
            answer = await self._post(path, form, timeout_s or self._config.request_timeout_s)
            errcode = _errcode(answer)
            if errcode in TOKEN_REFUSED and not renewed:
                stale = token
                _LOG.info("ttlock %s: TTLock no longer takes the access token (errcode %d); "
                          "getting a new one", self._config.name, errcode)
                continue
            self._check_account(errcode, answer)
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    # -- tokens ---------------------------------------------------------------------------

    async def _token(self, *, stale: str | None = None) -> str:
        """A valid access token: the one held, a refreshed one shortly before it expires or
        once TTLock refused `stale` (unless another call renewed it meanwhile), or a new login
        when there is none (or the refresh token is refused)."""
        async with self._token_lock:
            if stale is not None and stale == self._access:
                self._renew_at = 0.0
            if self._access is not None and self._clock.monotonic() < self._renew_at:
                return self._access
            if self._refresh is not None:
                answer = await self._post("/oauth2/token", {
                    **self._client(), "grant_type": "refresh_token",
                    "refresh_token": self._refresh}, self._config.request_timeout_s)
                errcode = _errcode(answer)
                if errcode == 0:
                    return self._keep(answer)
                if errcode not in REFRESH_REFUSED | TOKEN_REFUSED:
                    self._check_account(errcode, answer)
                    raise RetryLater(f"TTLock did not refresh the token (errcode {errcode})")
                _LOG.info("ttlock %s: TTLock refused the refresh token (errcode %d); logging "
                          "in again", self._config.name, errcode)
                self._refresh = None
            password = read_secret(self._config.password, self._config.password_file,
                                   "password") or ""
            digest = RefusedLogin.digest(str(self._client()), password)
            if self._refused_login.holds(digest):
                raise Reauthenticate("TTLock refused the account's credentials; waiting for "
                                     "new ones (or for refused_retry_s) before logging in again")
            answer = await self._post("/oauth2/token", {
                **self._client(), "grant_type": "password",
                "username": self._config.username, "password": password_md5(password)},
                self._config.request_timeout_s)
            errcode = _errcode(answer)
            if errcode != 0:
                if errcode in CLIENT_REFUSED | ACCOUNT_REFUSED:
                    self._refused_login.refused(digest)
                self._check_account(errcode, answer)
                raise RetryLater(f"TTLock did not log in (errcode {errcode})")
            return self._keep(answer)

    def _client(self) -> dict[str, str]:
        secret = read_secret(self._config.client_secret, self._config.client_secret_file,
                             "client secret") or ""
        # The current page spells clientId/clientSecret, the older one client_id/client_secret
        # (the clients in use); TTLock takes both.
        return {"clientId": self._config.client_id, "clientSecret": secret,
                "client_id": self._config.client_id, "client_secret": secret}

    def _keep(self, answer: dict[str, Any]) -> str:
        access, refresh = answer.get("access_token"), answer.get("refresh_token")
        if not isinstance(access, str) or not access:
            raise RetryLater("TTLock's token answer has no access_token")
        self._access = access
        self._refresh = refresh if isinstance(refresh, str) and refresh else self._refresh
        # Refresh `refresh_margin_s` before the end, or half-way for a short-lived token.
        self._renew_at = self._clock.monotonic() + renew_in(answer, self._config.refresh_margin_s)
        self._refused_login.accepted()
        if self.refused:
            _LOG.info("ttlock %s: TTLock accepts the account again", self._config.name)
        self.refused = False
        return access

    def _check_account(self, errcode: int, answer: dict[str, Any]) -> None:
        """Raise for an errcode about the account, the client or the pace; return for one the
        caller interprets (0 included)."""
        if errcode == 0:
            return
        if errcode in CLIENT_REFUSED | ACCOUNT_REFUSED | TOKEN_REFUSED | REFRESH_REFUSED:
            self._access, self._renew_at = None, 0.0
            if errcode in CLIENT_REFUSED | ACCOUNT_REFUSED:
                self._refresh = None
            if not self.refused:
                what = ("the client id or secret" if errcode in CLIENT_REFUSED else
                        "the app account's username or password" if errcode in ACCOUNT_REFUSED
                        else "the account's tokens")
                _LOG.error("ttlock %s: TTLock refused %s (errcode %d): check the settings "
                           "(and the secret files) of this driver", self._config.name, what,
                           errcode)
            self.refused = True
            raise Reauthenticate(f"TTLock refused the account's credentials (errcode "
                                 f"{errcode})")
        if errcode == DATE_OFF:
            _LOG.error("ttlock %s: TTLock says this box's clock is more than 5 minutes off "
                       "(errcode 80000): synchronise it (NTP)", self._config.name)
            raise RetryLater("TTLock refused the call: this box's clock is more than 5 minutes "
                             "off (errcode 80000)")
        if errcode == SERVER_ERROR:
            raise RetryLater("TTLock had an internal error (errcode 90000)")
        if errcode not in (RATE_LIMITED, MONTHLY_LIMIT):
            raise ApiRefusal(errcode, str(answer.get("errmsg") or ""))
        raise AssertionError("rate limits are handled in _post")  # pragma: no cover

    # -- transport ------------------------------------------------------------------------

    async def _post(self, path: str, form: dict[str, str], timeout_s: float) -> dict[str, Any]:
        """One form POST within `timeout_s`, paced; a rate refusal pauses the whole account."""
        if self._session is None:
            raise RetryLater("the TTLock driver is not started")
        await self._calls.take()
        try:
            async with self._session.post(
                    self._base + path, data=form,
                    timeout=aiohttp.ClientTimeout(total=timeout_s)) as answer:
                status = answer.status
                retry_after = answer.headers.get("Retry-After")
                text = await answer.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(f"TTLock did not answer {path} ({type(exc).__name__})") from exc
        if status == 429:
            self._pause(retry_after, RATE_LIMITED)
            raise RetryLater("TTLock answered HTTP 429 (too many requests)")
        if status >= 500:
            raise Unreachable(f"TTLock answered HTTP {status}")
        if status >= 300:
            raise RetryLater(f"TTLock answered HTTP {status}")
        try:
            answer_json = json.loads(text)
        except ValueError as exc:
            raise RetryLater("TTLock sent an answer that is not JSON") from exc
        if not isinstance(answer_json, dict):
            raise RetryLater("TTLock sent an answer that is not an object")
        errcode = _errcode(answer_json)
        if errcode in (RATE_LIMITED, MONTHLY_LIMIT):
            wait = self._pause(retry_after, errcode)
            raise RetryLater(f"TTLock refused the call for the "
                             f"{'monthly quota' if errcode == MONTHLY_LIMIT else 'call rate'} "
                             f"(errcode {errcode}); calls resume in {wait:.0f} s")
        self._calls.calm()
        return answer_json

    def _pause(self, retry_after: str | None, errcode: int) -> float:
        """Stop calling for Retry-After seconds when given, else a doubling backoff."""
        if errcode == MONTHLY_LIMIT:
            wait = self._config.monthly_limit_backoff_s
        else:
            wait = self._calls.doubling(self._config.rate_limit_backoff_s,
                                        self._config.rate_limit_backoff_cap_s)
        if retry_after is not None:
            with contextlib.suppress(ValueError):
                wait = max(0.0, float(retry_after))
        self._calls.pause(wait)
        _LOG.warning("ttlock %s: TTLock limits the calls (%s); pausing calls for %.0f s",
                     self._config.name, f"errcode {errcode}" if errcode else "HTTP", wait)
        return wait

    def _now_ms(self) -> int:
        return int(self._clock.now().timestamp() * 1000)


def _errcode(answer: dict[str, Any]) -> int:
    """The answer's errcode; an answer with data and no errcode is a success (0)."""
    value = answer.get("errcode", 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
