"""Writes the demo's sample booking-platform feed: an Airbnb-shaped export calendar with a stay
from today to three days on and the host's block after it, dated from today so the demo always
has a current stay. Usage: python scripts/demo_feed.py PATH"""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path


def sample_feed(today: date) -> str:
    """The export text: one stay (all-day dates, as Airbnb writes them) and one block."""

    def day(offset: int) -> str:
        return (today + timedelta(days=offset)).strftime("%Y%m%d")

    events = [("demo-stay-1@airbnb.com", 0, 3, "Reserved"),
              ("demo-block-1@airbnb.com", 3, 5, "Airbnb (Not available)")]
    lines = ["BEGIN:VCALENDAR", "PRODID:-//Airbnb Inc//Hosting Calendar 1.0//EN",
             "CALSCALE:GREGORIAN", "VERSION:2.0"]
    for uid, start, end, summary in events:
        lines += ["BEGIN:VEVENT", f"DTEND;VALUE=DATE:{day(end)}",
                  f"DTSTART;VALUE=DATE:{day(start)}", f"UID:{uid}", f"SUMMARY:{summary}",
                  "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(sample_feed(date.today()))
