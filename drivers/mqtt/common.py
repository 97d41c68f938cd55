"""Small pieces both MQTT drivers use: JSON decoding, log-once, the event pump, pending writes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Hashable
from dataclasses import dataclass

from bridge.clock import Clock
from bridge.driver import (
    Availability,
    CommandRejected,
    DriverEvent,
    DriverEventKind,
    DriverEventSink,
    RejectReason,
    SlotRead,
    SlotState,
)

_LOG = logging.getLogger(__name__)

_MAX_PIN_LENGTH = 12
_DIGIT_RUN = re.compile(r"\d{3,}")


class MalformedPayload(ValueError):
    """A payload without the shape its topic promises; the message is ignored."""


def decode_json(payload: bytes) -> object:
    """The JSON value of a payload, or MalformedPayload (the text is never echoed: it may
    carry a PIN)."""
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedPayload("not JSON") from None


def encode_json(value: object) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()


def sanitized(text: str, limit: int = 160) -> str:
    """Peer text fit for a log line: digit runs that could be a PIN masked, length capped."""
    return _DIGIT_RUN.sub("****", text)[:limit]


def checked_pin(pin: str | None) -> str:
    """The PIN as a string of digits, or CommandRejected(INVALID_PIN)."""
    if pin is None or not pin.isascii() or not pin.isdigit() or not 1 <= len(pin) <= \
            _MAX_PIN_LENGTH:
        raise CommandRejected(RejectReason.INVALID_PIN, "the PIN must be 1 to 12 digits")
    return pin


def shows(read: SlotRead, pin: str | None) -> bool:
    """Whether a read is consistent with our own command: the PIN (a withheld PIN in an
    occupied slot counts), or empty after a clear (`pin` None)."""
    if pin is None:
        return read.state is SlotState.EMPTY
    if read.state is SlotState.UNREADABLE:
        return True
    return read.state is SlotState.KNOWN and read.pin == pin


class LogOnce:
    """Warns the first time something happens, then only at debug level (no log floods)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._seen: set[Hashable] = set()

    def warn(self, key: Hashable, message: str, *args: object) -> None:
        """Log `message` as a warning once per `key`, later repeats at debug level."""
        level = logging.DEBUG if key in self._seen else logging.WARNING
        self._seen.add(key)
        self._log.log(level, message, *args)

    def seen(self, key: Hashable) -> bool:
        """True once `warn` was called with `key`."""
        return key in self._seen


class EventPump:
    """Hands driver events to the engine from its own task, in order, so a message handler
    never waits on the engine (which may itself be waiting for this driver)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: asyncio.Queue[DriverEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._sink: DriverEventSink | None = None

    def start(self, sink: DriverEventSink) -> None:
        """Begin delivering to `sink`."""
        self._sink = sink
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"events:{self._name}")

    def emit(self, event: DriverEvent) -> None:
        """Queue one event; never blocks."""
        self._queue.put_nowait(event)

    def availability(self, external_id: str, availability: Availability) -> None:
        """Queue an availability report."""
        self.emit(DriverEvent(DriverEventKind.AVAILABILITY, external_id,
                              availability=availability))

    async def drain(self) -> None:
        """Wait until every queued event was delivered (for tests and orderly stops)."""
        await self._queue.join()

    async def stop(self) -> None:
        """Stop delivering; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._sink = None

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                if self._sink is not None:
                    await self._sink(event)
            except Exception:
                _LOG.exception("%s: delivering %s for %s failed", self._name, event.kind.value,
                               event.external_id)
            finally:
                self._queue.task_done()


@dataclass(frozen=True, slots=True)
class Expected:
    """What a slot should show after our own command: a PIN, or empty (`pin` None)."""

    pin: str | None
    since: float


class PendingWrites:
    """Our own commands still inside their confirmation window: until then a read that shows
    anything else may be a stale cache and is not taken as the lock's answer."""

    def __init__(self, clock: Clock, window_s: float) -> None:
        self._clock = clock
        self.window_s = window_s
        self._pending: dict[Hashable, Expected] = {}

    def begin(self, key: Hashable, pin: str | None) -> None:
        """Our command for `key` was (or is about to be) sent."""
        self._pending[key] = Expected(pin, self._clock.monotonic())

    def active(self, key: Hashable) -> Expected | None:
        """The expectation for `key` while its window lasts."""
        expected = self._pending.get(key)
        if expected is None:
            return None
        if self._clock.monotonic() - expected.since >= self.window_s:
            del self._pending[key]
            return None
        return expected

    def end(self, key: Hashable) -> None:
        """Confirmed, refused, or overtaken by a change at the lock."""
        self._pending.pop(key, None)
