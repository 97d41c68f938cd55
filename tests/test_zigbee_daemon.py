"""A Zigbee lock on the fake radio, managed through the daemon's own composition root and its
HTTP API: a lock paired while the daemon runs is registered, a code created through the API is
on the lock, a code added at the keypad appears as unmanaged, a deleted code comes off."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.api.auth import create_key
from bridge.config import load_config
from bridge.daemon import Bridge, serve
from drivers.simulator.lock import SEEN_PINS
from tests.api_helpers import lockbridge
from tests.fakes.zigpy_radio import FakeDoorLock, FakeNetwork
from tests.harness import until

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


@dataclass
class Running:
    bridge: Bridge
    http: aiohttp.ClientSession
    base: str
    config: Path
    key: str


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Running]:
    network = FakeNetwork("daemon")
    config = tmp_path / "lockbridge.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    stop = asyncio.Event()
    ready: asyncio.Future[Bridge] = asyncio.get_running_loop().create_future()

    async def on_ready(bridge: Bridge) -> None:
        ready.set_result(bridge)

    task = asyncio.create_task(serve(load_config(config), on_ready=on_ready, stop=stop))
    try:
        bridge = await asyncio.wait_for(asyncio.shield(ready), 30)
        _, secret = await create_key(bridge.store, "test", bridge.clock.now())
        base = f"http://127.0.0.1:{bridge.extras['api_port']}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"}) as http:
            yield Running(bridge, http, base, config, secret)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 20)
        FakeNetwork.remove(network.name)


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with http.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_a_paired_lock_is_managed_through_the_api(daemon: Running) -> None:
    bridge, http, base = daemon.bridge, daemon.http, daemon.base
    lock = FakeDoorLock(ieee="00:0d:6f:00:0a:90:69:e7", nwk=0x2B3C, profile="kwikset",
                        end_device=False)
    status, out, err = await _cli(daemon.config, daemon.key, "zigbee", "permit",
                                  "--seconds", "90", "--json")
    assert status == 0, err
    assert json.loads(out) == {"driver": "zb", "open_for_s": 90}
    await FakeNetwork.get("daemon").join(lock)

    async def devices() -> list[dict[str, Any]]:
        return (await _post(http, base + "/devices/list", {}))["devices"]

    found: list[dict[str, Any]] = []
    for _ in range(200):  # bounded: the engine registers a lock the driver found
        found = await devices()
        if found:
            break
        await asyncio.sleep(0.05)
    [device] = found
    assert device["properties"]["online"] is True

    SEEN_PINS.add("3141")
    created = await _post(http, base + "/access_codes/create", {
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

    await _post(http, base + "/access_codes/delete", {"access_code_id": code_id})
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
