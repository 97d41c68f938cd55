"""The entry point a booking feed calls, `replace_feed_reservations`, on the daemon run in this
process: bookings become codes on the simulated locks, a moved booking moves its codes, a
vanished one is revoked, another feed's reservations are left alone; and the automations'
records survive a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.reservations.service import Booking, NotFound, ReservationService
from bridge.reservations.starter import EXTRA_KEY
from drivers.simulator.driver import load_state_file
from tests.harness import until
from tests.inprocess import RunningDaemon, running_daemon

pytestmark = pytest.mark.slow

CONFIG = """\
bridge: {{id: feed-test}}
state_dir: {state}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
spaces:
  - {{key: cabin, name: Cabin, devices: [door]}}
  - {{key: barn, name: Barn, devices: [barn]}}
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    locks:
      - {{id: door, name: Cabin door}}
      - {{id: barn, name: Barn door}}
"""


def _service(daemon: RunningDaemon) -> ReservationService:
    service = daemon.bridge.extras[EXTRA_KEY]
    assert isinstance(service, ReservationService)
    return service


def _pins(state: Path, lock: str) -> set[str]:
    path = state / "sim.json"
    return set(load_state_file(path).get(lock, {}).values()) if path.exists() else set()


def _codes_of(service: ReservationService, reservation_key: str) -> list[str]:
    grant = service.state.grant_of(reservation_key)
    assert grant is not None
    return [code_id for m in service.state.methods_of(grant.access_grant_id)
            for code_id in m.codes.values()]


async def test_a_feed_replaces_its_bookings(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=state))
    now = datetime.now(UTC).replace(microsecond=0)
    stay = Booking("uid-1@airbnb", now - timedelta(hours=1), now + timedelta(days=2), "Ana")
    other = Booking("uid-2@airbnb", now + timedelta(days=3), now + timedelta(days=5))
    async with running_daemon(config) as daemon:
        service = _service(daemon)
        run = await service.replace_feed_reservations("airbnb", "cabin", [stay, other])
        assert run.trigger == "feed:airbnb" and not run.errors
        assert {e.action for e in run.entries} == {"created"}
        [code_id] = _codes_of(service, "feed:airbnb:uid-1@airbnb")
        pin = service.app.state.codes[code_id].code
        assert pin is not None
        await until(lambda: pin in _pins(state, "door"), timeout=30)
        # Another feed on another space is left alone by this feed's updates.
        await service.replace_feed_reservations("vrbo", "barn", [
            Booking("v-1", now, now + timedelta(days=1))])

        moved = Booking(stay.uid, stay.starts_at, stay.ends_at + timedelta(days=1), "Ana")
        run = await service.replace_feed_reservations("airbnb", "cabin", [moved])
        actions = {(e.action) for e in run.entries}
        assert "moved" in actions and "removed" in actions  # uid-2 vanished from the feed
        assert service.app.state.codes[code_id].ends_at == moved.ends_at
        assert service.state.grant_of("feed:airbnb:uid-2@airbnb") is None
        assert service.state.grant_of("feed:vrbo:v-1") is not None
        with pytest.raises(NotFound):
            await service.replace_feed_reservations("airbnb", "no-such-space", [])

    async with running_daemon(config) as daemon:
        service = _service(daemon)
        # Records, grants and methods are back after a restart, and a re-push finds them.
        assert _codes_of(service, "feed:airbnb:uid-1@airbnb") == [code_id]
        run = await service.replace_feed_reservations("airbnb", "cabin", [moved])
        assert [e.action for e in run.entries] == ["unchanged"]
        run = await service.replace_feed_reservations("airbnb", "cabin", [])
        assert [e.action for e in run.entries] == ["removed"]
        await until(lambda: pin not in _pins(state, "door"), timeout=30)
        assert service.state.grant_of("feed:vrbo:v-1") is not None
