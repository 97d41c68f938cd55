"""Time zone names in configuration files: one check for the core and every driver."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator


def check_zone(value: str) -> str:
    """`value` if it names a time zone this box knows, else a ValueError saying what to write."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name like "
                         "Europe/Lisbon)") from None
    return value


# A configuration field holding a time zone, checked when the file is loaded.
TimeZoneName = Annotated[str, AfterValidator(check_zone)]
