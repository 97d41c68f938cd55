"""The feed's configuration: one of url / url_file, the secret URL kept out of reprs and
error messages, the stay rules it makes."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from bridge.ical import FeedUrlError, IcalFeedConfig, url_host

SECRET_URL = "https://www.airbnb.com/calendar/ical/12345678.ics?s=0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def config(**values: Any) -> IcalFeedConfig:
    base: dict[str, Any] = {"key": "airbnb", "url": SECRET_URL, "time_zone": "Europe/Lisbon"}
    base.update(values)
    return IcalFeedConfig.model_validate(base)


def test_defaults_and_stay_rules() -> None:
    feed = config(check_in="15:30", check_out="10:00")
    assert (feed.interval_s, feed.grace_period_s, feed.timeout_s) == (900.0, 7200.0, 30.0)
    assert feed.stay_rules().time_zone == ZoneInfo("Europe/Lisbon")
    assert (feed.stay_rules().check_in, feed.stay_rules().check_out) == (time(15, 30), time(10))
    assert feed.closed_means_booked is False
    assert feed.resolved_url() == SECRET_URL


@pytest.mark.parametrize(("values", "message"), [
    ({"url": None}, "exactly one of url, url_file or ics_file"),
    ({"url_file": "/etc/feed.url"}, "exactly one of url, url_file or ics_file"),
    ({"url": None, "url_file": "/a", "ics_file": "/b"}, "exactly one of url, url_file or ics_file"),
    ({"url": "ftp://example.com/feed.ics"}, "http(s)://"),
    ({"url": "mailto:host@example.com"}, "http(s)://"),
    ({"time_zone": "Mars/Olympus"}, "unknown time zone"),
    ({"interval_s": 10}, "greater than or equal to 60"),
    ({"interval_s": 3600, "grace_period_s": 600}, "shorter than interval_s"),
    ({"check_in": "25:00"}, "time"),
    ({"key": "has space"}, "pattern"),
    ({"colour": "red"}, "Extra inputs"),
])
def test_invalid_configs(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(**values)
    messages = " ".join(str(e["msg"]) for e in caught.value.errors())
    assert message in messages
    # The messages (what check-config prints) never carry the secret URL.
    assert "0a1b2c3d4e5f" not in messages


def test_a_webcal_link_is_read_over_https() -> None:
    feed = config(url=SECRET_URL.replace("https://", "webcal://"))
    assert feed.resolved_url() == SECRET_URL


def test_no_grace_is_allowed() -> None:
    assert config(grace_period_s=0).grace_period_s == 0


def test_the_url_is_never_in_a_repr() -> None:
    feed = config()
    assert "0a1b2c3d4e5f" not in repr(feed) and "0a1b2c3d4e5f" not in str(feed)
    assert url_host(SECRET_URL) == "www.airbnb.com"
    assert url_host("not a url") == "(no host)"


def test_a_local_file_has_no_url(tmp_path: Path) -> None:
    feed = config(url=None, ics_file=tmp_path / "sample.ics")
    assert feed.source_name() == "file sample.ics"
    with pytest.raises(FeedUrlError, match="local file"):
        feed.resolved_url()


def test_url_file(tmp_path: Path) -> None:
    url_file = tmp_path / "airbnb.url"
    feed = config(url=None, url_file=url_file)
    with pytest.raises(FeedUrlError, match="cannot read url_file"):
        feed.resolved_url()
    url_file.write_text("\n")
    with pytest.raises(FeedUrlError, match="http"):
        feed.resolved_url()
    url_file.write_text(SECRET_URL + "\n# rotated 2026-03-01\n")
    assert feed.resolved_url() == SECRET_URL
