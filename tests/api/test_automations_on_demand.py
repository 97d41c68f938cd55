"""What a default daemon builds only on demand. The reservation automations: a daemon whose
configuration declares no space and whose store holds no automation record does not import
them before READY, yet serves their routes (the first request builds the service, whose
issuance watch then runs), and a restart over the records those requests left builds it at
start again. And prometheus_client, imported by the first command timed or the first scrape."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.reservations.starter import EXTRA_KEY
from tests.harness import until
from tests.inprocess import RunningDaemon, running_daemon
from tests.paths import ROOT

CONFIG = """\
bridge: {{id: on-demand-test}}
state_dir: {state}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    locks: [{{id: front, name: Front door}}]
"""
# The daemon as `lockbridge run` builds it, in a fresh interpreter: the modules it imported by
# READY (the test process itself has imported everything long before).
_IMPORTED_AT_READY = """\
import asyncio, json, sys
from pathlib import Path
from bridge.config import load_config
from bridge.daemon import serve

async def main() -> None:
    stop = asyncio.Event()

    async def ready(bridge) -> None:
        print(json.dumps(sorted(sys.modules)))
        stop.set()

    await serve(load_config(Path(sys.argv[1])), on_ready=ready, stop=stop)

asyncio.run(main())
"""
# Built on demand: the service and its records (the routes' table is light, and served).
_ON_DEMAND = ("bridge.reservations.service", "bridge.reservations.records",
              "bridge.reservations.apply", "bridge.reservations.state")


def _imported_at_ready(config: Path) -> set[str]:
    out = subprocess.run([sys.executable, "-c", _IMPORTED_AT_READY, str(config)],
                         capture_output=True, text=True, check=True, cwd=ROOT, timeout=60)
    modules: list[str] = json.loads(out.stdout.splitlines()[-1])
    return set(modules)


async def _call(daemon: RunningDaemon, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = await daemon.post(path, body)
    assert status == 200, (path, answer)
    result: dict[str, Any] = answer
    return result


async def _method(daemon: RunningDaemon, grant_id: str) -> dict[str, Any]:
    answer = await _call(daemon, "/access_methods/list", {"access_grant_id": grant_id})
    [method] = answer["access_methods"]
    return method


async def test_a_default_daemon_builds_the_automations_on_first_use(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    imported = _imported_at_ready(config)
    assert "bridge.api.server" in imported  # the API was up at READY
    assert not imported & set(_ON_DEMAND), sorted(imported & set(_ON_DEMAND))

    starts = datetime.now(UTC).replace(microsecond=0)
    async with running_daemon(config) as daemon:
        assert EXTRA_KEY not in daemon.bridge.extras
        [device] = (await _call(daemon, "/devices/list", {}))["devices"]
        space = (await _call(daemon, "/spaces/create", {
            "name": "Loft", "space_key": "loft", "device_ids": [device["device_id"]]}))["space"]
        assert EXTRA_KEY in daemon.bridge.extras
        grant = (await _call(daemon, "/access_grants/create", {
            "requested_access_methods": [{"mode": "code", "code": "482617"}],
            "space_ids": [space["space_id"]], "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(days=2)).isoformat()}))["access_grant"]
        service = daemon.bridge.extras[EXTRA_KEY]
        [method_id] = [m.access_method_id for m in service.state.methods_of(
            grant["access_grant_id"])]
        # The PIN set on the lock and the method told issued: the watch runs since the build.
        await until(lambda: service.state.methods[method_id].issued_at is not None,
                    timeout=20, what="access_method.issued")
        method = await _method(daemon, grant["access_grant_id"])
        assert method["is_issued"] and method["code"] == "482617"

    # Restarted over what those requests stored: built at start, with its records.
    imported = _imported_at_ready(config)
    assert set(_ON_DEMAND) <= imported
    async with running_daemon(config) as daemon:
        service = daemon.bridge.extras[EXTRA_KEY]
        assert service.state.space_by_key("loft") is not None
        assert service.state.methods[method_id].issued_at is not None
        assert (await _method(daemon, grant["access_grant_id"]))["code"] == "482617"


def test_the_metrics_library_waits_for_the_first_command_or_scrape(tmp_path: Path) -> None:
    # /metrics itself is covered by test_health_metrics.py and tests/engine/test_metrics.py.
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    imported = _imported_at_ready(config)
    assert "bridge.metrics" in imported and "prometheus_client" not in imported


async def test_a_first_build_that_fails_half_way_is_not_built_twice(
        tmp_path: Path, monkeypatch: Any) -> None:
    """The first request's build fails after the service started listening to the engine (its
    check of issued methods raised): the service is kept, so the next request neither builds a
    second one nor adds a second listener."""
    from bridge.reservations.issuance import Issuance

    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    calls: list[int] = []
    real_check_all = Issuance.check_all

    async def failing_once(self: Issuance) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the first check fails")
        await real_check_all(self)

    monkeypatch.setattr(Issuance, "check_all", failing_once)
    async with running_daemon(config) as daemon:
        listeners = len(daemon.bridge.engine._state._listeners)
        status, _ = await daemon.post("/spaces/list", {})
        assert status >= 500
        service = daemon.bridge.extras[EXTRA_KEY]
        assert len(daemon.bridge.engine._state._listeners) == listeners + 1
        await _call(daemon, "/spaces/list", {})
        assert daemon.bridge.extras[EXTRA_KEY] is service, "built a second time"
        assert len(daemon.bridge.engine._state._listeners) == listeners + 1, \
            "a second service listens to the engine"
