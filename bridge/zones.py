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


def lock_zone(device_setting: str | None, driver_reported: str | None,
              property_zone: str | None) -> str | None:
    """The one rule for the zone a lock's schedules are in, for every driver: the device's own
    entry in the config, else what its driver reports (a per-lock or driver-wide setting, or
    the lock's own), else its property's zone; None when nothing names one."""
    return device_setting or driver_reported or property_zone
