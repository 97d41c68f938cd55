"""A space's booking-platform feed, end to end: the daemon (run in this process on a fake clock)
polls an Airbnb-shaped export on a loopback server; each stay becomes a reservation with codes
on the space's lock, the host's "Not available" block makes none, and a stay cancelled on the
platform comes off the lock once the grace period has passed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.clock import FakeClock
from bridge.reservations.feeds import FEEDS_KEY
from bridge.reservations.service import ReservationService
from bridge.reservations.starter import EXTRA_KEY
from drivers.simulator.driver import load_state_file
from tests.fakes.ical_server import FIXTURES, FakeIcalServer
from tests.harness import until
from tests.inprocess import running_daemon

pytestmark = pytest.mark.slow

# The day before the fixture's first stay (6 to 10 March, then 17 to 20 March; 10 to 13 March
# is the host's block).
START = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
FIRST = "1418fb94e984-5f1d2c3b4a5968778695a4b3c2d1e0f1@airbnb.com"
SECOND = "1418fb94e984-99aa88bb77cc66dd55ee44ff33001122@airbnb.com"
BLOCK = "1418fb94e984-0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7@airbnb.com"

CONFIG = """\
bridge: {{id: feed-e2e}}
state_dir: {state}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
# The stay starts 28 hours after the test begins: its code goes on at once.
schedule: {{require_synchronized_clock: false, bridge_lead_time_minutes: 2000}}
spaces:
  - key: cabin
    name: Cabin
    devices: [door]
    ical_feeds:
      - {{key: airbnb, url_file: {url_file}, interval_s: 60, grace_period_s: 120,
          time_zone: Europe/Lisbon, check_in: "16:00", check_out: "11:00"}}
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    locks:
      - {{id: door, name: Cabin door}}
"""


async def test_a_feed_stay_becomes_codes_and_a_cancelled_one_comes_off(tmp_path: Path) -> None:
    server = FakeIcalServer()
    await server.start()
    try:
        server.serve_fixture("cabin", "airbnb.ics")
        # The export URL carries the platform's secret: kept in a file, as the docs advise.
        url_file = tmp_path / "airbnb.url"
        url_file.write_text(server.url("cabin"))
        state = tmp_path / "state"
        config = tmp_path / "config.yaml"
        config.write_text(CONFIG.format(state=state, url_file=url_file))
        clock = FakeClock(START)

        def on_door() -> set[str]:
            path = state / "sim.json"
            return set(load_state_file(path).get("door", {}).values()) if path.exists() else set()

        async with running_daemon(config, clock) as daemon:
            service = daemon.bridge.extras[EXTRA_KEY]
            assert isinstance(service, ReservationService)
            key = "feed:airbnb:{}".format

            def first_codes() -> set[str]:
                grant = service.state.grant_of(key(FIRST))
                if grant is None:
                    return set()
                codes = service.app.state.codes
                return {codes[c].code or "" for m in service.state.methods_of(
                    grant.access_grant_id) for c in m.codes.values() if c in codes}

            await until(lambda: bool(first_codes()) and first_codes() <= on_door(),
                        timeout=60, what="the first stay's code on the door", clock=clock,
                        advance=5)
            # The feed's stays are issued one after another: the second may come a moment later.
            await until(lambda: service.state.grant_of(key(SECOND)) is not None, timeout=60,
                        what="the second stay's grant", clock=clock, advance=5)
            assert service.state.grant_of(key(BLOCK)) is None, "a host's block gave access"
            first = service.state.grant_of(key(FIRST))
            assert first is not None
            # All-day dates at the property's check-in and check-out (Lisbon is UTC in March).
            assert (first.starts_at, first.ends_at) == (datetime(2026, 3, 6, 16, tzinfo=UTC),
                                                        datetime(2026, 3, 10, 11, tzinfo=UTC))
            pins = first_codes()
            assert FEEDS_KEY in daemon.bridge.extras

            # The guest cancels: the platform's export drops the stay.
            body = (FIXTURES / "airbnb.ics").read_text()
            start = body.index("BEGIN:VEVENT\nDTEND;VALUE=DATE:20260310")
            end = body.index("END:VEVENT\n", start) + len("END:VEVENT\n")
            server.serve("cabin", (body[:start] + body[end:]).encode())
            # Within the grace period the code stays (a feed that blinks revokes nothing).
            await _run(clock, 90)
            assert service.state.grant_of(key(FIRST)) is not None and pins <= on_door()
            await until(lambda: service.state.grant_of(key(FIRST)) is None
                        and not (pins & on_door()), timeout=60,
                        what="the cancelled stay's code off the door", clock=clock, advance=5)
            assert service.state.grant_of(key(SECOND)) is not None
    finally:
        await server.stop()


async def _run(clock: FakeClock, seconds: float, step: float = 5.0) -> None:
    """Move the fake clock on in steps, giving real I/O (the feed's HTTP) time after each."""
    moved = 0.0
    while moved < seconds:
        await clock.advance(step)
        moved += step
        for _ in range(10):
            await asyncio.sleep(0.01)
