"""The PIN redactor masks every known PIN in messages, arguments and tracebacks."""

from __future__ import annotations

import logging

from bridge.logs import PinRedactor


def record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("t", logging.INFO, __file__, 1, msg, args or None, info)


def test_known_pins_are_masked_where_they_stand_as_whole_numbers() -> None:
    redactor = PinRedactor()
    for pin in ("0420", "13579", *(f"{n:06d}" for n in range(5000))):
        redactor.remember(pin)
    entry = record("slot %d set to %s, old 13579; serial 904201 and 0420x", 3, "0420")
    assert redactor.filter(entry)
    assert entry.getMessage() == "slot 3 set to ****, old ****; serial 904201 and ****x"
    assert redactor.redact("code 004999 then 4999") == "code **** then 4999"


def test_tracebacks_are_masked_too() -> None:
    redactor = PinRedactor()
    redactor.remember("8642")
    try:
        raise ValueError("lock refused 8642")
    except ValueError as exc:
        entry = record("write failed", exc=exc)
    redactor.filter(entry)
    assert entry.exc_text is not None
    assert "8642" not in entry.exc_text and "lock refused ****" in entry.exc_text


def test_nothing_is_touched_before_any_pin_is_known() -> None:
    redactor = PinRedactor()
    entry = record("door %s code %s", "front", "1234")
    redactor.filter(entry)
    assert entry.getMessage() == "door front code 1234"
