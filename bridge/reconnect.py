"""Keeping one long-lived link up: capped, jittered backoff and a warning once per outage.

A link (an MQTT broker connection, a websocket to a hub, the upstream link) hands the supervisor
a `session` coroutine that connects, calls `established()` once it is usable, and then runs until
the link drops (returning or raising). The supervisor runs sessions one after another until it
is cancelled, waiting on the injected `Clock` between attempts:

- transient failures wait `Backoff.delay(n)`: exponential from `base_s`, capped at `cap_s`, with
  jitter so that many bridges do not hammer a broker in step after it restarts;
- refused credentials or an unusable configuration (`FailureKind.REFUSED`) are not a reason to
  hammer the peer: they are retried only every `refused_retry_s`;
- one warning is logged when an outage starts and one info line when it ends; every attempt in
  between is logged at debug level only;
- a session that connects and then fails at once does not end the outage: the backoff keeps
  growing until a session proves itself, by calling `worked()` after real work (an ack, a
  command) or by staying up `healthy_after_s`, so a persistent fault never becomes a
  reconnect storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Awaitable, Callable

from bridge.backoff import Backoff as Backoff  # re-exported: the links name it from here
from bridge.clock import Clock

_LOG = logging.getLogger(__name__)


class LinkState(enum.StrEnum):
    """Where a supervised link is."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKING_OFF = "backing_off"
    REFUSED = "refused"


class FailureKind(enum.StrEnum):
    """What a failed session means for the next attempt."""

    TRANSIENT = "transient"
    REFUSED = "refused"
    # Retrying cannot help and running on would do harm (lost state): the error ends `run`.
    FATAL = "fatal"


Session = Callable[[Callable[[], None]], Awaitable[None]]
Classifier = Callable[[BaseException], FailureKind]


def _always_transient(_: BaseException) -> FailureKind:
    return FailureKind.TRANSIENT


class ReconnectSupervisor:
    """Runs `session` again and again, with backoff between attempts, until cancelled."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        session: Session,
        *,
        classify: Classifier = _always_transient,
        backoff: Backoff | None = None,
        refused_retry_s: float | None = None,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
        on_state: Callable[[LinkState], None] | None = None,
        healthy_after_s: float = 30.0,
    ) -> None:
        self.name = name
        self._clock = clock
        self._session = session
        self._classify = classify
        self.backoff = backoff or Backoff()
        self._refused_retry_s = refused_retry_s if refused_retry_s is not None \
            else self.backoff.cap_s
        self._rng = rng or random.Random()
        self._log = logger or _LOG
        self._on_state = on_state
        self._state = LinkState.IDLE
        self._failures = 0
        self._outage_since: float | None = None
        self._warned = False
        self._refusal_logged = False
        self._kick = asyncio.Event()
        self._healthy_after_s = healthy_after_s
        self._connected_at = 0.0
        self._proven = False
        self.attempts = 0
        self.last_error: BaseException | None = None

    @property
    def state(self) -> LinkState:
        """The link's state now."""
        return self._state

    @property
    def failures(self) -> int:
        """Failed attempts since a session last proved itself (see `worked`)."""
        if self._state is LinkState.CONNECTED and (
                self._proven
                or self._clock.monotonic() - self._connected_at >= self._healthy_after_s):
            return 0
        return self._failures

    def kick(self) -> None:
        """Cut the current wait short (credentials changed, an operator asked for a retry)."""
        self._kick.set()

    async def run(self) -> None:
        """Supervise the link until cancelled; never returns otherwise."""
        if self._outage_since is None:
            self._outage_since = self._clock.monotonic()
        while True:
            self._set_state(LinkState.CONNECTING)
            self.attempts += 1
            self._proven = False
            connected = False

            def established() -> None:
                nonlocal connected
                connected = True
                self._established()

            error: BaseException | None = None
            try:
                await self._session(established)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is judged below; only a fatal one escapes
                if self._classify(exc) is FailureKind.FATAL:
                    raise
                error = exc
            if cancel_requested():
                # The session swallowed our cancellation (Python 3.11's asyncio.wait_for can,
                # inside aiomqtt's disconnect): it still stands, so stop rather than reconnect.
                raise asyncio.CancelledError
            await self._after_session(connected, error)

    # -- internals ------------------------------------------------------------------------

    def worked(self) -> None:
        """The current session did real work: the link has recovered."""
        if self._state is LinkState.CONNECTED and not self._proven:
            self._recovered()

    def _established(self) -> None:
        self._connected_at = self._clock.monotonic()
        if self._warned:
            down_for = self._clock.monotonic() - (self._outage_since or 0.0)
            self._log.info("%s: recovered after %d failed attempts (down %.3g s)", self.name,
                           self._failures, down_for)
        self._outage_since = None
        self._warned = False
        self._refusal_logged = False
        self.last_error = None
        self._set_state(LinkState.CONNECTED)

    def _recovered(self) -> None:
        """Only a session that proved itself resets the backoff."""
        self._proven = True
        self._failures = 0

    async def _after_session(self, connected: bool, error: BaseException | None) -> None:
        if connected and not self._proven and \
                self._clock.monotonic() - self._connected_at >= self._healthy_after_s:
            self._recovered()
        if connected:
            self._outage_since = self._clock.monotonic()
        self.last_error = error
        self._failures += 1
        kind = self._classify(error) if error is not None else FailureKind.TRANSIENT
        reason = _describe(error) if error is not None else "closed by the peer"
        if kind is FailureKind.REFUSED:
            delay = self._refused_retry_s
            if not self._refusal_logged:
                self._refusal_logged = True
                self._warned = True
                self._log.error("%s: refused (%s); not retrying for %.3g s: fix the credentials "
                                "or settings", self.name, reason, delay)
            else:
                self._log.debug("%s: still refused (%s)", self.name, reason)
            self._set_state(LinkState.REFUSED)
        else:
            delay = self.backoff.delay(self._failures, self._rng)
            if not self._warned:
                self._warned = True
                verb = "lost" if connected else "unavailable"
                self._log.warning("%s: link %s (%s); reconnecting with backoff up to %.3g s",
                                  self.name, verb, reason, self.backoff.cap_s)
            else:
                self._log.debug("%s: attempt %d failed (%s); next in %.1f s", self.name,
                                self._failures, reason, delay)
            self._set_state(LinkState.BACKING_OFF)
        await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        """Wait on the clock, or less if `kick()` is called."""
        self._kick.clear()
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        kicked = asyncio.ensure_future(self._kick.wait())
        try:
            await asyncio.wait({sleeper, kicked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, kicked):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    def _set_state(self, state: LinkState) -> None:
        if state is self._state:
            return
        self._state = state
        if self._on_state is not None:
            self._on_state(state)


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def cancel_requested() -> bool:
    """Whether the running task was asked to cancel, even if a callee swallowed the
    CancelledError (a loop that goes round again would then never end)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
