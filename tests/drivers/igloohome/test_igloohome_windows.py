"""Which algoPIN the Igloohome driver asks for a window (drivers/igloohome/windows.py): pure
rules, checked against the dates the fake's published checks accept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.driver import LocalWindow
from drivers.igloohome import windows

NOW = datetime(2026, 3, 10, 9, 41, tzinfo=UTC)


def window(start: datetime, end: datetime, zone: str = "Europe/Berlin") -> LocalWindow:
    return LocalWindow(start, end, zone=zone)


def test_a_short_stay_is_an_hourly_pin_widened_to_whole_hours() -> None:
    plan = windows.plan(window(datetime(2026, 7, 1, 15, 30), datetime(2026, 7, 1, 18, 10)),
                        "UTC", NOW)
    assert plan.kind == windows.HOURLY and plan.widened
    assert plan.dates() == {"startDate": "2026-07-01T15:00:00+02:00",
                            "endDate": "2026-07-01T19:00:00+02:00"}
    assert not plan.must_be_used_within_24_hours


def test_whole_hours_are_not_widened_and_a_day_needs_no_activation() -> None:
    plan = windows.plan(window(datetime(2026, 7, 1, 15), datetime(2026, 7, 2, 15)), "UTC", NOW)
    assert (plan.kind, plan.widened, plan.must_be_used_within_24_hours) == (
        windows.HOURLY, False, False)
    longer = windows.plan(window(datetime(2026, 7, 1, 15), datetime(2026, 7, 2, 16)), "UTC",
                          NOW)
    assert longer.must_be_used_within_24_hours


def test_672_hours_is_the_longest_hourly_pin() -> None:
    start = datetime(2026, 7, 1, 15)
    assert windows.plan(window(start, start + timedelta(hours=672)), "UTC", NOW).kind == \
        windows.HOURLY
    plan = windows.plan(window(start, start + timedelta(hours=673)), "UTC", NOW)
    # Longer: a daily PIN, at least 29 days, ending at the start's hour.
    assert plan.kind == windows.DAILY
    assert plan.dates()["endDate"] == "2026-07-30T15:00:00+02:00"


def test_a_daily_pin_across_a_clock_change_keeps_the_time_of_day() -> None:
    plan = windows.plan(window(datetime(2026, 3, 1, 14), datetime(2026, 5, 1, 11)), "UTC", NOW)
    assert plan.kind == windows.DAILY
    # The end is at 14:00 too, in summer time: the offsets differ, the hour does not.
    assert plan.dates() == {"startDate": "2026-03-01T14:00:00+01:00",
                            "endDate": "2026-05-01T14:00:00+02:00"}


def test_a_window_over_367_days_is_refused() -> None:
    with pytest.raises(windows.WindowRefused, match="367 days"):
        windows.plan(window(datetime(2026, 1, 1, 14), datetime(2027, 1, 4, 14)), "UTC", NOW)


def test_no_window_is_a_permanent_pin_from_this_hour() -> None:
    plan = windows.plan(None, "Europe/Berlin", NOW)
    assert plan.kind == windows.PERMANENT and plan.end is None
    assert plan.dates() == {"startDate": "2026-03-10T10:00:00+01:00"}
    assert plan.must_be_used_within_24_hours


def test_an_hour_skipped_by_the_clock_change_moves_on() -> None:
    # 02:00 does not exist in Berlin on 29 March 2026.
    plan = windows.plan(window(datetime(2026, 3, 29, 2, 0), datetime(2026, 3, 29, 6, 0)),
                        "UTC", NOW)
    assert plan.dates()["startDate"] == "2026-03-29T03:00:00+02:00"


def test_job_dates_keep_minutes_and_the_offset() -> None:
    moment = datetime(2026, 7, 1, 14, 5, 59, tzinfo=UTC)
    assert windows.job_date(moment) == "2026-07-01T14:05:00+00:00"
