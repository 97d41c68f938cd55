"""Logging for a daemon under systemd: journald priority prefixes, and no PIN ever in a line."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class PinRedactor(logging.Filter):
    """Replaces every PIN the bridge knows of, wherever it appears in a record, with asterisks."""

    def __init__(self) -> None:
        super().__init__()
        self._pins: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def remember(self, pin: str | None) -> None:
        """Register a PIN that must never be logged."""
        if not pin or pin in self._pins:
            return
        with self._lock:
            self._pins.add(pin)
            escaped = sorted((re.escape(p) for p in self._pins), key=len, reverse=True)
            alternatives = "|".join(escaped)
            self._pattern = re.compile(rf"(?<!\d)(?:{alternatives})(?!\d)")

    def redact(self, text: str) -> str:
        """`text` with every known PIN masked."""
        pattern = self._pattern
        return pattern.sub("****", text) if pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, masked, so handlers never see the PIN."""
        if self._pattern is not None:
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
