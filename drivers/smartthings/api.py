"""One SmartThings account: its HTTP session, its OAuth tokens (kept across restarts) and the
pace of its calls.

- Every `/v1` call carries `Authorization: Bearer <access token>`. The access token lives about
  a day; it is refreshed `refresh_margin_s` before its end, and once more when a call answers
  401 (the call is then sent again once). The 401 body may be an HTML page: only the status
  counts.
- A refresh (`grant_type=refresh_token`, client id and secret as HTTP Basic) returns a new
  access token AND a new refresh token; the used one stops working. The new refresh token is
  written to the state file (atomically, fsynced) before the new access token is used, and
  only one refresh runs at a time: a lost or doubled rotation would disconnect the account for
  good.
- A refused refresh (`invalid_grant`, 400 or 401) or refused client credentials is
  `Reauthenticate`: nothing is sent again until `refresh_token_file` holds another token (the
  user authorized again).
- A budget of calls per account (`max_calls_per_s`); a 429 pauses every call of the account for
  the wait SmartThings states ("retry in N millis" in the body, or Retry-After), at least
  `rate_limit_backoff_s`, doubling while 429s follow. Each call has `request_timeout_s`.

No token, secret or URL with a query is ever logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import aiohttp

from bridge.clock import Clock
from bridge.config import read_secret
from bridge.driver import FixConfig, Reauthenticate, RetryLater
from drivers.call_budget import CallBudget
from drivers.cloud_login import renew_in
from drivers.memory import load_memory, save_memory
from drivers.smartthings.config import Config

_LOG = logging.getLogger(__name__)
# SmartThings' 429 detail: "attempt 20 limit 10 - retry in 43074 millis".
_RETRY_IN = re.compile(r"retry in (\d+) millis")
# A pause longer than this fails the call at once (the engine retries later) instead of waiting.
_MAX_INLINE_WAIT_S = 10.0
# Tries of one request that SmartThings answers 429 (each after the pause it asks for).
_MAX_ATTEMPTS = 6
# The budget lets this many seconds' worth of calls go at once.
_BURST_S = 1.0


class Unreachable(RetryLater):
    """SmartThings did not answer (network, timeout, 5xx)."""


class NotVisible(RetryLater):
    """SmartThings answered 403 or 404 for a device: the token no longer sees it."""


class Refused(RetryLater):
    """SmartThings refused a request as malformed (422) or otherwise (4xx)."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"SmartThings refused the request (HTTP {status} {code})")
        self.status = status
        self.code = code


def _basic(user: str, password: str) -> str:
    """HTTP Basic credentials (the client id and secret on the token endpoint)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:24]


class Account:
    """The HTTP session, the token pair and the call pacing of one SmartThings account."""

    def __init__(self, config: Config, clock: Clock, memory_file: Path | None) -> None:
        self._config = config
        self._clock = clock
        self._memory_file = memory_file
        self._base = config.url.rstrip("/") + "/v1"
        self._session: aiohttp.ClientSession | None = None
        self._access: str | None = None
        self._renew_at = 0.0
        self._token_lock = asyncio.Lock()
        self._calls = CallBudget(clock, service="SmartThings", rate=config.max_calls_per_s,
                                 burst=max(1.0, config.max_calls_per_s * _BURST_S),
                                 inline_wait_s=_MAX_INLINE_WAIT_S)
        # The digest of the token file's content the refused grant came from: nothing is sent
        # again until the file holds another token.
        self._refused_seed: str | None = None
        self.refused = False

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._config.request_timeout_s))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- calls ----------------------------------------------------------------------------

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return await self.call("GET", path, params=params)

    async def call(self, method: str, path: str, *, params: dict[str, str] | None = None,
                   body: Any = None) -> Any:
        """One `/v1` call (path from `/`, or a `_links` href); a 401 renews the token once."""
        stale: str | None = None
        for renewed in (False, True):
            token = await self._token(stale=stale)
            status, text = await self._send(method, self._url(path), params=params, json=body,
                                            headers={"Authorization": f"Bearer {token}"})
            if status == 401 and not renewed:
                stale = token
                continue
            return self._decode(status, text)
        raise AssertionError("unreachable")  # pragma: no cover

    def _url(self, path: str) -> str:
        """A path under /v1, or a next-page href: only its path and query are taken, so the
        token never goes to another host than the configured one."""
        if path.startswith(("http://", "https://")):
            parts = urlsplit(path)
            path = parts.path.removeprefix("/v1") + (f"?{parts.query}" if parts.query else "")
        return self._base + path

    def _decode(self, status: int, text: str) -> Any:
        if status == 401:
            self._lost_grant("SmartThings refused a freshly refreshed access token (HTTP 401)")
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        if status in (403, 404):
            raise NotVisible(f"SmartThings does not show this device to the token "
                             f"(HTTP {status})")
        if status >= 400:
            code = ""
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                code = str(data["error"].get("code") or "")
            raise Refused(status, code[:60])
        if data is None and text:
            raise RetryLater("SmartThings sent an answer that is not JSON")
        return data

    async def _send(self, method: str, url: str, **kwargs: Any) -> tuple[int, str]:
        """One paced request; a 429 pauses the account and is waited out when short."""
        if self._session is None:
            raise RetryLater("the SmartThings driver is not started")
        for _ in range(_MAX_ATTEMPTS):
            await self._calls.take()
            try:
                async with self._session.request(method, url, allow_redirects=False,
                                                 **kwargs) as answer:
                    status = answer.status
                    retry_after = answer.headers.get("Retry-After")
                    text = await answer.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Unreachable(f"SmartThings did not answer ({type(exc).__name__})") from exc
            if status >= 500:
                raise Unreachable(f"SmartThings answered HTTP {status}")
            if status != 429:
                self._calls.calm()
                return status, text
            self._pause(retry_after, text)
        raise RetryLater("SmartThings keeps answering 429 (too many requests)")

    # -- pacing ---------------------------------------------------------------------------

    def _pause(self, retry_after: str | None, text: str) -> None:
        """Pause every call for the wait SmartThings states, at least `rate_limit_backoff_s`,
        doubled for each 429 in a row: refused attempts count against the window too ("attempt
        20 limit 10"), so calls resumed exactly when the oldest one leaves it would be refused
        again and again."""
        strikes = self._calls.strike()
        wait = 0.0
        stated = _RETRY_IN.search(text)
        if stated is not None:
            wait = int(stated.group(1)) / 1000.0
        elif retry_after is not None:
            with contextlib.suppress(ValueError):
                wait = max(0.0, float(retry_after))
        wait = min(self._config.rate_limit_backoff_cap_s,
                   max(wait, self._config.rate_limit_backoff_s)
                   * 2.0 ** (strikes - 1))
        self._calls.pause(wait)
        self._calls.spend_burst()
        _LOG.warning("smartthings %s: SmartThings limits the calls (HTTP 429); pausing calls "
                     "for %.1f s", self._config.name, wait)

    # -- tokens ---------------------------------------------------------------------------

    async def _token(self, *, stale: str | None = None) -> str:
        """The access token held, or a refreshed one (near its end, or once `stale` was
        refused and no other call renewed it meanwhile)."""
        async with self._token_lock:
            if stale is not None and stale == self._access:
                self._renew_at = 0.0
            if self._access is not None and self._clock.monotonic() < self._renew_at:
                return self._access
            return await self._refresh()

    def _seed(self) -> tuple[str, str]:
        """The token file's refresh token and its digest."""
        try:
            token = read_secret(None, self._config.refresh_token_file, "refresh token") or ""
        except ValueError as exc:
            raise FixConfig(str(exc)) from exc
        if not token:
            raise FixConfig(f"the refresh token file {self._config.refresh_token_file} is empty")
        return token, _digest(token)

    def _current_refresh(self) -> tuple[str, str]:
        """(refresh token to use, seed digest): the rotated one kept in the state file while it
        descends from the token file's content, else the file's (a new authorization)."""
        file_token, seed = self._seed()
        if self._refused_seed == seed:
            raise Reauthenticate("SmartThings refused the account's grant; write a refresh "
                                 "token of a new authorization to refresh_token_file")
        memory = load_memory(self._memory_file)
        kept = memory.get("refresh_token")
        if memory.get("seed") == seed and isinstance(kept, str) and kept:
            return kept, seed
        return file_token, seed

    async def _refresh(self) -> str:
        refresh, seed = self._current_refresh()
        secret = self._secret()
        status, text = await self._send(
            "POST", self._config.oauth_url(),
            data={"grant_type": "refresh_token", "refresh_token": refresh,
                  "client_id": self._config.client_id},
            headers={"Authorization": _basic(self._config.client_id, secret)})
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if status in (400, 401):
            error = str(answer.get("error") or "")
            if error == "invalid_client":
                self._lost_grant("SmartThings refused the client id or secret (invalid_client)")
            self._refused_seed = seed
            self._lost_grant(f"SmartThings refused the refresh token ({error or status}): "
                             "authorize the app again and write the new refresh token to "
                             "refresh_token_file")
        if status >= 300:
            raise RetryLater(f"SmartThings did not refresh the token (HTTP {status})")
        access, rotated = answer.get("access_token"), answer.get("refresh_token")
        if not isinstance(access, str) or not access:
            raise RetryLater("SmartThings' token answer has no access_token")
        # Kept before it is used: the old refresh token no longer works.
        save_memory(self._memory_file, {
            "seed": seed, "refresh_token": rotated if isinstance(rotated, str) and rotated
            else refresh})
        self._access = access
        self._renew_at = self._clock.monotonic() + renew_in(answer, self._config.refresh_margin_s)
        if self.refused:
            _LOG.info("smartthings %s: SmartThings accepts the account again", self._config.name)
        self.refused = False
        return access

    def _secret(self) -> str:
        try:
            return read_secret(self._config.client_secret, self._config.client_secret_file,
                               "client secret") or ""
        except ValueError as exc:
            raise FixConfig(str(exc)) from exc

    def _lost_grant(self, why: str) -> NoReturn:
        self._access, self._renew_at = None, 0.0
        if not self.refused:
            _LOG.error("smartthings %s: %s", self._config.name, why)
        self.refused = True
        raise Reauthenticate(why)
