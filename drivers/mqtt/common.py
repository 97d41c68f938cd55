"""Small pieces both MQTT drivers use: JSON decoding, log-once, the event pump, pending writes."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Hashable
from dataclasses import dataclass

from bridge.clock import Clock
from bridge.driver import (
    CommandRejected,
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
