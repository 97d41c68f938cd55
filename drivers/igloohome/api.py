"""One iglooaccess account: logging in with OAuth client credentials, keeping a token, and
calling the API at a pace the cloud accepts.

What the published material says (docs/drivers/igloohome-api-facts.md has the sources):

- `POST <auth>/oauth2/token`, form `grant_type=client_credentials`, the client id and secret as
  HTTP Basic, gives `access_token` and `expires_in`; there is no refresh token, so a new login
  takes the place of a refresh. No `scope` is sent: the token endpoint then grants every scope
  the client has, where asking for one it lacks fails the whole login.
- API calls carry `Authorization: Bearer <token>`; errors are a status with a JSON body whose
  `error` names the refusal (only the status and `error` are matched, never the text).
- No rate limit is published: the account spaces its calls itself and honours a 429's
  Retry-After when one comes.

Secrets (the client secret, tokens) never reach a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from typing import Any

import aiohttp

from bridge.clock import Clock
from bridge.config import read_secret
from bridge.driver import Reauthenticate, RetryLater
from drivers.call_budget import CallBudget
from drivers.cloud_login import RefusedLogin, renew_in
from drivers.igloohome.config import Config

_LOG = logging.getLogger(__name__)


class Unreachable(RetryLater):
    """The cloud did not answer, or answered with a server error: the link is down."""


class ApiRefusal(Exception):
    """The API refused one call with a status and an `error` the caller interprets."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"Igloohome answered HTTP {status} ({error or 'no error code'})")
        self.status = status
        self.error = error


class Account:
    """The HTTP session, the access token and the call pacing of one iglooaccess client."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._auth = config.auth_url.rstrip("/")
        self._base = config.url.rstrip("/") + "/igloohome"
        self._session: aiohttp.ClientSession | None = None
        self._access: str | None = None
        self._renew_at = 0.0
        self._token_lock = asyncio.Lock()
        # Up to one second's worth of calls at once, refilled at max_calls_per_s; none while
        # a 429 pauses the account.
        self._calls = CallBudget(clock, service="Igloohome", rate=config.max_calls_per_s,
                                 burst=float(max(1, int(config.max_calls_per_s))),
                                 inline_wait_s=config.request_timeout_s)
        self.refused = False
        self._refused_login = RefusedLogin(clock, config.refused_retry_s)

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call with the account's token; a token refused once is replaced by a new
        login, and refused again is the account refused (Reauthenticate). Raises RetryLater,
        Unreachable, or ApiRefusal for any other refusal."""
        stale: str | None = None
        for fresh in (False, True):
            token = await self._token(stale=stale)
            status, answer = await self._send(method, self._base + path, body=body,
                                              headers={"Authorization": f"Bearer {token}"})
            if status == 401:
                if not fresh:
                    stale = token
                    continue
                self._refuse("Igloohome refuses a token it has just issued (HTTP 401)")
            if status >= 300:
                error = answer.get("error") if isinstance(answer, dict) else None
                raise ApiRefusal(status, error if isinstance(error, str) else "")
            self._calls.calm()
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the token --------------------------------------------------------------------------

    async def _token(self, *, stale: str | None) -> str:
        async with self._token_lock:
            if stale is not None and stale == self._access:
                self._access = None
            if self._access is not None and self._clock.monotonic() < self._renew_at:
                return self._access
            secret = read_secret(self._config.client_secret, self._config.client_secret_file,
                                 "client secret") or ""
            digest = RefusedLogin.digest(self._config.client_id, secret)
            if self._refused_login.holds(digest):
                raise Reauthenticate("Igloohome refused the client credentials; waiting for new "
                                     "ones (or for refused_retry_s) before logging in again")
            status, answer = await self._send(
                "POST", self._auth + "/oauth2/token",
                form={"grant_type": "client_credentials"},
                headers={"Authorization": _basic(self._config.client_id, secret)})
            if status in (400, 401) and isinstance(answer, dict) and \
                    answer.get("error") in ("invalid_client", "unauthorized_client"):
                self._refused_login.refused(digest)
                self._refuse(f"Igloohome refused the client id or secret "
                             f"({answer.get('error')})")
            if status >= 300 or not isinstance(answer, dict):
                raise RetryLater(f"Igloohome did not log in (HTTP {status})")
            access = answer.get("access_token")
            if not isinstance(access, str) or not access:
                raise RetryLater("Igloohome's token answer has no access_token")
            # A new login a minute before the end, or half-way for a short-lived token.
            self._renew_at = self._clock.monotonic() + renew_in(answer, 60.0)
            self._access = access
            self._refused_login.accepted()
            if self.refused:
                _LOG.info("igloohome %s: Igloohome accepts the client again", self._config.name)
            self.refused = False
            return access

    def _refuse(self, why: str) -> None:
        self._access, self._renew_at = None, 0.0
        if not self.refused:
            _LOG.error("igloohome %s: %s: check client_id and the client secret (file) of "
                       "this driver", self._config.name, why)
        self.refused = True
        raise Reauthenticate(why)

    # -- transport ----------------------------------------------------------------------------

    async def _send(self, method: str, url: str, *, body: dict[str, Any] | None = None,
                    form: dict[str, str] | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """One request within request_timeout_s, paced; a 429 pauses the whole account."""
        if self._session is None:
            raise RetryLater("the Igloohome driver is not started")
        await self._calls.take()
        path = url.split("/igloohome", 1)[-1] if "/igloohome" in url else "/oauth2/token"
        try:
            async with self._session.request(
                    method, url, json=body, data=form, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self._config.request_timeout_s)) as reply:
                status = reply.status
                retry_after = reply.headers.get("Retry-After")
                text = await reply.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(f"Igloohome did not answer {method} {_shape(path)} "
                              f"({type(exc).__name__})") from exc
        if status == 429:
            wait = self._pause(retry_after)
            raise RetryLater(f"Igloohome answered HTTP 429 (too many requests); calls resume in "
                             f"{wait:.0f} s")
        if status >= 500:
            raise Unreachable(f"Igloohome answered HTTP {status}")
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            if status >= 300:
                return status, None
            raise RetryLater("Igloohome sent an answer that is not JSON") from None

    def _pause(self, retry_after: str | None) -> float:
        """No call for Retry-After seconds when given, else a doubling backoff."""
        wait = self._calls.doubling(self._config.rate_limit_backoff_s,
                                    self._config.rate_limit_backoff_cap_s)
        if retry_after is not None:
            with contextlib.suppress(ValueError):
                wait = max(0.0, float(retry_after))
        self._calls.pause(wait)
        _LOG.warning("igloohome %s: Igloohome limits the calls (HTTP 429); pausing calls for "
                     "%.0f s", self._config.name, wait)
        return wait


def _basic(user: str, password: str) -> str:
    """HTTP Basic credentials (RFC 7617) for the token endpoint."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _shape(path: str) -> str:
    """A path for a message: the first two parts (ids of jobs and devices are left out)."""
    return "/".join(path.split("/")[:2]) or path
