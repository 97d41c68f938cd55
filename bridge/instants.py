"""Instants as lockbridge accepts and computes with them: any moment from year 1 to 9999.

Booking systems write "for ever" as 9999-12-31T23:59:59Z and "since always" as 0001-01-01;
both must plan, store and serialize like any other moment, so requests take instants through
`Instant` (kept in UTC, or refused naming the field) and arithmetic goes through `shifted`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


def in_utc(moment: datetime) -> datetime:
    """The same instant in UTC; one that falls outside the calendar in UTC is refused."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant is outside 0001-01-01 to 9999-12-31 in UTC") from None


Instant = Annotated[AwareDatetime, AfterValidator(in_utc)]


def shifted(moment: datetime, delta: timedelta) -> datetime:
    """`moment + delta`, held at the ends of the calendar instead of overflowing."""
    try:
        return moment + delta
    except OverflowError:
        return LATEST if delta > timedelta(0) else EARLIEST
