"""Logging for a daemon under systemd: journald priority prefixes, and no PIN ever in a line."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


_DIGIT_RUN = re.compile(r"\d+")


class PinRedactor(logging.Filter):
    """Replaces every PIN the bridge knows of, wherever it appears in a record, with asterisks.

    A PIN is masked where it stands as a whole run of digits. Each run of digits in a message is
    looked up in a set, so remembering a PIN costs O(1) and masking a line O(its length),
    however many thousands of PINs a hotel has (one regex alternation of every PIN, rebuilt per
    new PIN, cost milliseconds per code and grew with every code).
    """

    def __init__(self) -> None:
        super().__init__()
        self._pins: set[str] = set()
        # PINs with anything but digits (none today; kept safe if a lock family allows them).
        self._other: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def remember(self, pin: str | None) -> None:
        """Register a PIN that must never be logged."""
        if not pin or pin in self._pins or pin in self._other:
            return
        with self._lock:
            if pin.isdigit():
                self._pins.add(pin)
            else:
                self._other = tuple(sorted({*self._other, pin}, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """`text` with every known PIN masked."""
        pins = self._pins
        if pins:
            text = _DIGIT_RUN.sub(lambda m: "****" if m.group() in pins else m.group(), text)
        for pin in self._other:
            text = text.replace(pin, "****")
        return text

    @property
    def active(self) -> bool:
        """True once any PIN is known."""
        return bool(self._pins or self._other)

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, masked, so handlers never see the PIN."""
        if self.active:
            message = record.getMessage()
            masked = self.redact(message)
            if masked != message:
                record.msg = masked
                record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.redact(record.exc_text)
        return True


REDACTOR = PinRedactor()


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITY.get(record.levelno, 6)}>"
        return prefix + super().format(record)


def under_systemd() -> bool:
    """True when stderr goes to the journal (journald adds its own timestamps)."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def setup(level: str) -> None:
    """Configure the root logger once, with the PIN redactor on the handler."""
    handler = logging.StreamHandler(sys.stderr)
    if under_systemd():
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    handler.addFilter(REDACTOR)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
