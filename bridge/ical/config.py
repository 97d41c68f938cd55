"""One booking-platform feed of a space, as configured (pydantic, strict).

An export URL is a secret: Airbnb's and Booking.com's carry a token that lets anyone read the
calendar. So `url_file` is the recommended form, the URL never appears in a repr, and logs
name only its host (`host()`).
"""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.ical.model import StayRules

_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class FeedUrlError(ValueError):
    """The feed's URL cannot be had (its file is unreadable or holds no http(s) URL)."""


class IcalFeedConfig(BaseModel):
    """A platform's export calendar for one space: where it is, how often, and the stay rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Names the feed among the space's feeds; the reservations it makes are keyed by it.
    key: Annotated[str, Field(pattern=_KEY)]
    url: str | None = Field(default=None, repr=False)
    url_file: Path | None = None
    # A local .ics file instead of a URL: a sample feed (the demo), or one another tool fetches.
    ics_file: Path | None = None
    # Platforms refresh their exports every few minutes at best; polling faster only costs.
    interval_s: Annotated[float, Field(ge=60)] = 900.0
    # How long a booking that vanished from the feed keeps its access (see tracker.py).
    grace_period_s: Annotated[float, Field(ge=0)] = 7200.0
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 30.0
    check_in: time = time(16, 0)
    check_out: time = time(11, 0)
    time_zone: str
    # Booking.com writes every booked night as "CLOSED - Not available" (summaries.py).
    closed_means_booked: bool = False

    @model_validator(mode="after")
    def _checked(self) -> IcalFeedConfig:
        if [self.url, self.url_file, self.ics_file].count(None) != 2:
            raise ValueError("give exactly one of url, url_file or ics_file")
        if self.grace_period_s and self.grace_period_s < self.interval_s:
            # Shorter than one poll, the grace could never see a booking come back.
            raise ValueError("grace_period_s is shorter than interval_s (use 0 for none)")
        return self

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _checked_url(value)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name like "
                             "Europe/Lisbon)") from None
        return value

    @field_validator("check_in", "check_out")
    @classmethod
    def _naive(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("write the local time without an offset; time_zone says where")
        return value

    def resolved_url(self) -> str:
        """The export URL, read from `url_file` (first line) when given that way."""
        if self.url is not None:
            return self.url
        if self.url_file is None:
            raise FeedUrlError("the feed is a local file (ics_file), not a URL")
        try:
            text = self.url_file.read_text().strip()
        except OSError as exc:
            raise FeedUrlError(f"cannot read url_file {self.url_file}: "
                               f"{exc.strerror or exc}") from None
        url = text.splitlines()[0].strip() if text else ""
        try:
            return _checked_url(url)
        except ValueError as exc:
            raise FeedUrlError(f"url_file {self.url_file}: {exc}") from None

    def source_name(self) -> str:
        """What logs may call the feed's source before it is read: a host, never a URL."""
        if self.url is not None:
            return url_host(self.url)
        if self.ics_file is not None:
            return f"file {self.ics_file.name}"
        return "(url_file)"

    def stay_rules(self) -> StayRules:
        """The property's zone and check-in/check-out times for all-day events."""
        return StayRules(ZoneInfo(self.time_zone), self.check_in, self.check_out)

    @property
    def interval(self) -> timedelta:
        """`interval_s` as a timedelta."""
        return timedelta(seconds=self.interval_s)

    @property
    def grace_period(self) -> timedelta:
        """`grace_period_s` as a timedelta."""
        return timedelta(seconds=self.grace_period_s)


def url_host(url: str) -> str:
    """What logs may say of a feed's URL: its host, never its path or query (the token)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    return host or "(no host)"


def _checked_url(url: str) -> str:
    """`url` if it is http(s) with a host; a webcal:// link (what "subscribe" buttons give)
    as the https:// URL it stands for."""
    if url[:9].lower() == "webcal://":
        url = "https://" + url[9:]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the feed URL must be an http(s):// URL with a host")
    return url
