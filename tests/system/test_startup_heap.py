"""`lockbridge run` starts without the cyclic collector; once started, the daemon has it on
again, with what start-up made frozen (later collections skip the daemon's long-lived state)."""

from __future__ import annotations

import gc
from pathlib import Path

from tests.inprocess import running_daemon

CONFIG = """\
state_dir: {state}
api: {{port: 0}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    locks:
      - {{id: l0, name: Lock 0, slot_count: 30}}
"""


async def test_the_collector_is_back_on_with_start_up_frozen(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    gc.disable()  # as `lockbridge run` does before it reads the configuration
    try:
        async with running_daemon(config) as daemon:
            assert gc.isenabled()
            assert gc.get_freeze_count() > 0
            status, body = await daemon.post("/devices/list", {})
            assert status == 200 and len(body["devices"]) == 1
    finally:
        gc.unfreeze()
        gc.enable()


async def test_a_daemon_started_with_the_collector_on_leaves_the_heap_alone(
        tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    async with running_daemon(config):
        assert gc.isenabled()
        assert gc.get_freeze_count() == frozen
