"""A Zigbee lock on the fake radio, managed through the daemon's own composition root and its
HTTP API: a lock paired while the daemon runs is registered, a code created through the API is
on the lock, a code added at the keypad appears as unmanaged, a deleted code comes off."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.simulator.lock import SEEN_PINS
from tests.api_helpers import lockbridge
from tests.fakes.zigpy_radio import FakeDoorLock, FakeNetwork
from tests.harness import until
from tests.inprocess import RunningDaemon, running_daemon

CONFIG = """\
bridge: {{id: zigbee-test}}
state_dir: {state}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
properties: [{{id: home, time_zone: Europe/Berlin}}]
drivers:
  - kind: zigbee
    name: zb
    property: home
    radio: {{type: "tests.fakes.zigpy_radio:FakeControllerApplication", path: "fake://daemon"}}
    command_spacing_s: 0
    command_timeout_s: 3
"""


async def _cli(config: Path, key: str, *args: str) -> tuple[int, str, str]:
    """`lockbridge ...` as an operator runs it, against the daemon running in this process."""
    proc = await asyncio.create_subprocess_exec(
        *lockbridge(*args, "-c", str(config), "--api-key", key),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    network = FakeNetwork("daemon")
    config = tmp_path / "lockbridge.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    try:
        async with running_daemon(config) as running:
            yield running
    finally:
        FakeNetwork.remove(network.name)


async def _ok(daemon: RunningDaemon, path: str, body: dict[str, Any]) -> Any:
    status, answer = await daemon.post(path, body)
    assert status == 200, answer
    return answer


async def test_a_paired_lock_is_managed_through_the_api(daemon: RunningDaemon) -> None:
    bridge = daemon.bridge
    lock = FakeDoorLock(ieee="00:0d:6f:00:0a:90:69:e7", nwk=0x2B3C, profile="kwikset",
                        end_device=False)
    status, out, err = await _cli(daemon.config, daemon.key, "zigbee", "permit",
                                  "--seconds", "90", "--json")
    assert status == 0, err
    assert json.loads(out) == {"driver": "zb", "open_for_s": 90}
    await FakeNetwork.get("daemon").join(lock)

    async def devices() -> list[dict[str, Any]]:
        return (await _ok(daemon, "/devices/list", {}))["devices"]

    found: list[dict[str, Any]] = []
    for _ in range(200):  # bounded: the engine registers a lock the driver found
        found = await devices()
        if found:
            break
        await asyncio.sleep(0.05)
    [device] = found
    assert device["properties"]["online"] is True

    SEEN_PINS.add("3141")
    created = await _ok(daemon, "/access_codes/create", {
        "device_id": device["device_id"], "name": "Guest", "code": "3141"})
    code_id = created["access_code"]["access_code_id"]
    await until(lambda: "3141" in {s.pin for s in lock.slots.values() if s.status == 1},
                what="the code on the lock", timeout=20)
    await until(lambda: str(bridge.engine.codes[code_id].status) == "set",
                what="the code set", timeout=20)

    SEEN_PINS.add("2718")
    lock.keypad_set(7, "2718")
    await until(lambda: any(c.code == "2718" and not c.is_managed
                            for c in bridge.engine.codes.values()),
                what="the keypad code as unmanaged", timeout=20)

    await _ok(daemon, "/access_codes/delete", {"access_code_id": code_id})
    await until(lambda: "3141" not in {s.pin for s in lock.slots.values() if s.status == 1},
                what="the code off the lock", timeout=20)
    assert lock.clear_all_requests == 0

    # The lock leaves the network: it shows as removed.
    status, out, err = await _cli(daemon.config, daemon.key, "zigbee", "remove",
                                  device["device_id"])
    assert status == 0, err
    await until(lambda: bridge.engine.devices[device["device_id"]].removed
                or any(e.code == "device_removed"
                       for e in bridge.engine.devices[device["device_id"]].errors),
                what="the lock removed", timeout=20)
