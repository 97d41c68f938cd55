"""Ended stays do not pile up: an access grant whose stay ended more than
`automations.forget_ended_grants_after_days` ago is forgotten with its access methods, its PIN
off the lock, told by access_grant.deleted with `reason: ended`; a stay pushed again after that
makes no grant. Through the API of the daemon run in this process, on a fake clock."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.clock import FakeClock
from bridge.config import AutomationsConfig
from bridge.reservations.service import DEFAULT_RETENTION
from drivers.simulator.driver import SimulatorDriver
from tests.harness import START, until
from tests.inprocess import RunningDaemon, running_daemon

CONFIG = """\
bridge: {{id: retention-test}}
state_dir: {state}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
automations: {{forget_ended_grants_after_days: 0.25}}
spaces:
  - {{key: loft, name: Loft, devices: [door]}}
drivers:
  - kind: simulator
    name: sim
    locks:
      - {{id: door, name: Loft door}}
"""
# Hours rather than the default 30 days: the daemon wakes every 2 s of the fake clock (its store
# probe), so each fake day costs real seconds.
RETENTION = timedelta(hours=6)
SHORT_ENDS = START + timedelta(hours=2)


async def call(daemon: RunningDaemon, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = await daemon.post(path, body)
    assert status == 200, (path, answer)
    result: dict[str, Any] = answer
    return result


async def grant_ids(daemon: RunningDaemon) -> set[str]:
    answer = await call(daemon, "/access_grants/list", {})
    return {g["access_grant_id"] for g in answer["access_grants"]}


async def create_grant(daemon: RunningDaemon, pin: str, ends_at: datetime) -> str:
    answer = await call(daemon, "/access_grants/create", {
        "requested_access_methods": [{"mode": "code", "code": pin}], "space_keys": ["loft"],
        "starts_at": START.isoformat(), "ends_at": ends_at.isoformat(), "name": f"Guest {pin}"})
    grant_id: str = answer["access_grant"]["access_grant_id"]
    return grant_id


def pins_on_door(daemon: RunningDaemon) -> set[str]:
    sim = daemon.bridge.drivers["sim"]
    assert isinstance(sim, SimulatorDriver)
    return {s.pin for s in sim.lock("door").slots.values()}


async def run_until(clock: FakeClock, when: datetime, step_s: float = 1800.0) -> None:
    """Move the fake clock to `when` in steps, giving the loop real time after each (the
    store commits in a thread)."""
    while clock.now() < when:
        await clock.advance(min(step_s, (when - clock.now()).total_seconds()))
        for _ in range(5):
            await asyncio.sleep(0.005)


async def test_an_ended_grant_is_forgotten_after_the_retention(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    clock = FakeClock(START)
    async with running_daemon(config, clock) as daemon:
        short = await create_grant(daemon, "482617", SHORT_ENDS)
        long = await create_grant(daemon, "739251", START + RETENTION + timedelta(days=3))
        [method] = (await call(daemon, "/access_methods/list",
                               {"access_grant_id": short}))["access_methods"]
        await until(lambda: {"482617", "739251"} <= pins_on_door(daemon), timeout=30,
                    clock=clock)

        # Ended, and kept for the retention: listed still, its PIN already off the lock.
        await run_until(clock, SHORT_ENDS + RETENTION - timedelta(hours=1))
        assert await grant_ids(daemon) == {short, long}
        assert "482617" not in pins_on_door(daemon)

        await run_until(clock, SHORT_ENDS + RETENTION + timedelta(hours=1))
        assert await grant_ids(daemon) == {long}
        assert (await call(daemon, "/access_methods/list",
                           {"access_grant_id": short}))["access_methods"] == []
        status, missing = await daemon.post("/access_methods/get",
                                            {"access_method_id": method["access_method_id"]})
        assert status == 404, missing
        assert pins_on_door(daemon) == {"739251"}
        runs = (await call(daemon, "/automation_runs/list", {}))["automation_runs"]
        assert any(r["trigger"] == "forget_ended" for r in runs)
        events = (await call(daemon, "/events/list", {
            "event_types": ["access_grant.deleted"],
            "since": START.isoformat()}))["events"]
        assert [(e["access_grant_id"], e.get("reason")) for e in events] == [(short, "ended")]

        # The same stay pushed again (a feed that still lists it) makes no grant.
        answer = await call(daemon, "/customers/push_data", {
            "customer_key": "pm-1", "reservations": [{
                "reservation_key": "old-stay", "space_keys": ["loft"],
                "starts_at": START.isoformat(), "ends_at": SHORT_ENDS.isoformat()}]})
        run_id = answer["automation_run_id"]
        assert await grant_ids(daemon) == {long}
        runs = (await call(daemon, "/automation_runs/list", {}))["automation_runs"]
        [run] = [r for r in runs if r["automation_run_id"] == run_id]
        assert any(i.startswith("old-stay: ended more than 0.25 days ago") for i in run["ignored"])


def test_the_default_retention_is_thirty_days() -> None:
    assert AutomationsConfig().forget_ended_grants_after_days == 30
    assert DEFAULT_RETENTION.days == 30
