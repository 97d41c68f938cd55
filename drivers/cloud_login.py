"""What the cloud drivers (TTLock, Igloohome, SmartThings) keep of their logins: when to renew
the token they were given, and the secrets the cloud refused, which are not sent again for a
while."""

from __future__ import annotations

import hashlib
from typing import Any

from bridge.clock import Clock

# A token answer without expires_in is taken to live this long.
DEFAULT_LIFETIME_S = 3600.0


def renew_in(answer: dict[str, Any], margin_s: float) -> float:
    """Seconds from now to renew the token of a token answer: `margin_s` before its end, or
    half-way for a short-lived one."""
    lifetime = answer.get("expires_in")
    lifetime_s = float(lifetime) if isinstance(lifetime, int | float) else DEFAULT_LIFETIME_S
    return lifetime_s - min(margin_s, lifetime_s / 2)


class RefusedLogin:
    """The secrets the cloud refused last, as a digest, and when: the same ones are not sent
    again before `retry_s` (a storm of wrong passwords can get an account locked); changed
    ones (a new secret file) are tried at once."""

    def __init__(self, clock: Clock, retry_s: float) -> None:
        self._clock = clock
        self._retry_s = retry_s
        self._digest: str | None = None
        self._at = 0.0

    @staticmethod
    def digest(*secrets: str) -> str:
        """What is kept of the secrets a login sends (never the secrets)."""
        return hashlib.sha256("\0".join(secrets).encode()).hexdigest()

    def holds(self, digest: str) -> bool:
        """These secrets were refused less than `retry_s` ago: do not send them."""
        return digest == self._digest and self._clock.monotonic() - self._at < self._retry_s

    def refused(self, digest: str) -> None:
        """The cloud refused these secrets now."""
        self._digest, self._at = digest, self._clock.monotonic()

    def accepted(self) -> None:
        """A login went through: nothing is held back."""
        self._digest = None
