"""The miIO token from its file, and what python-miio's errors say about it."""

from __future__ import annotations

from pathlib import Path

from miio.exceptions import DeviceException


def read_token(path: Path) -> str:
    """The token from its file, read at each (re)connect so a changed token is picked up."""
    try:
        token = path.read_text().strip().splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise DeviceException(f"cannot read the token file {path}: {exc}") from exc
    if len(token) != 32 or any(c not in "0123456789abcdefABCDEF" for c in token):
        raise DeviceException(f"the token in {path} is not 32 hex digits")
    return token


def wrong_token(exc: BaseException) -> bool:
    """True when the device answered its handshake but not our requests: another token.

    python-miio says "No response from the device" after a handshake that worked (a device
    with another token stays silent), or names an invalid token on a bad checksum."""
    text = str(exc)
    return "invalid token" in text or "No response from the device" in text


def describe_error(exc: BaseException) -> str:
    """The error without anything secret: python-miio's messages carry no token."""
    return f"{type(exc).__name__}: {exc}"
