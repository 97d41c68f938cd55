"""`lockbridge run` with both MQTT drivers, as a user runs it, against a real Mosquitto and the
fake Zigbee2MQTT and Z-Wave JS UI: codes set and verified, the broker killed and restarted in the
middle of the work, a keypad edit put back, garbage on the wire logged once, a clean stop."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.fakes.zigbee2mqtt import FakeZigbeeLock
from tests.fakes.zwavejs_ui import FakeNode
from tests.mqtt_env import running_z2m, running_zui, unique
from tests.paths import ROOT

if TYPE_CHECKING:
    from tests.mosquitto import Mosquitto

pytest_plugins = ["tests.mosquitto"]

PINS = {"front": "0155", "back": "2468", "side": "13579"}
ENV = {"LB_E2E_MQTT_PASSWORD": "also-not-checked", "PATH": "/usr/bin:/bin"}

CONFIG = """\
bridge: {{id: mqtt-e2e}}
state_dir: {state}
api: {{enabled: false}}
engine: {{default_command_spacing_s: 0, retry_base_s: 0.5, probe_base_s: 0.5,
          command_timeout_s: 5}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: zigbee2mqtt
    name: zigbee
    base_topic: {base}
    answer_timeout_s: 1
    startup_wait_s: 5
    command_spacing_s: 0
    # A command lost with the broker is redone once this window has passed (60 s by default).
    confirmation_window_s: 2
    broker: {{port: {port}, username: lockbridge, password_file: {secret},
              reconnect_min_s: 0.1, reconnect_max_s: 0.5}}
    locks:
      - {{friendly_name: front, name: Front door, slot_count: 10}}
  - kind: zwavejs_mqtt
    name: zwave
    prefix: {prefix}
    gateway_name: home
    answer_timeout_s: 1
    startup_wait_s: 5
    command_spacing_s: 0
    broker: {{port: {port}, username: lockbridge, password: "${{LB_E2E_MQTT_PASSWORD}}",
              reconnect_min_s: 0.1, reconnect_max_s: 0.5}}
    locks:
      - {{node_id: 5, id: side, name: Side door}}
codes:
  - {{key: a, device: front, name: Staff, code: "{front}"}}
  - {{key: b, device: back, name: Guest, code: "{back}"}}
  - {{key: c, device: side, name: Cleaner, code: "{side}"}}
"""


async def lockbridge(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def status(config: Path) -> list[dict[str, Any]]:
    code, out = await lockbridge("status", "-c", str(config), "--json", env=ENV)
    return json.loads(out) if code == 0 else []


async def eventually(check: Any, what: str, daemon: asyncio.subprocess.Process,
                     timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert daemon.returncode is None, f"the daemon exited while waiting for {what}"
        assert loop.time() < deadline, f"{what} not reached within {timeout} s"
        await asyncio.sleep(0.2)


async def test_daemon_drives_mqtt_locks_through_a_broker_restart(
        private_mosquitto: Mosquitto, tmp_path: Path) -> None:
    broker = private_mosquitto
    base, prefix = unique("z2m-daemon"), unique("zw-daemon")
    secret = tmp_path / "mqtt.secret"
    secret.write_text("not-checked-by-this-broker\n")
    config = tmp_path / "lockbridge.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state", base=base, prefix=prefix,
                                    port=broker.port, secret=secret, **PINS))
    front, back = FakeZigbeeLock("front", "0x0001"), FakeZigbeeLock("back", "0x0002")
    node = FakeNode(5)
    log_path = tmp_path / "daemon.log"
    async with running_z2m(broker, base, [front, back]) as z2m, \
            running_zui(broker, prefix, "home", [node]) as zui:
        # The broker dies right after the first code reached its lock, before any answer.
        def kill_once(*_: object) -> None:
            if broker.starts == 1 and broker.running:
                broker.kill()

        z2m.after_apply = kill_once
        zui.after_apply = kill_once
        with log_path.open("w") as log:
            daemon = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge.cli", "run", "-c", str(config), cwd=ROOT,
                env=ENV, stderr=log)
        try:
            await eventually(lambda: _true(not broker.running), "the broker killed mid-way", daemon)
            await asyncio.sleep(0.5)
            broker.start()

            async def all_set() -> bool:
                doc = await status(config)
                codes = [c for d in doc for c in d["access_codes"] if c["is_managed"]]
                return len(codes) == 3 and all(c["status"] == "set" for c in codes) and \
                    all(d["online"] for d in doc)

            await eventually(all_set, "every code set after the restart", daemon)
            assert front.table == {0: PINS["front"]} and back.table == {0: PINS["back"]}
            assert node.codes == {1: PINS["side"]}
            # Nothing lost, nothing applied twice, though one answer died with the broker.
            assert front.applied == [(0, PINS["front"])] and back.applied == [(0, PINS["back"])]
            assert node.applied == [(1, PINS["side"])]

            # A code changed at the keypad is noticed and put back.
            await z2m.keypad_set("front", 0, "9999")

            async def put_back() -> bool:
                return front.table.get(0) == PINS["front"]

            await eventually(put_back, "the keypad edit put back", daemon)
            assert front.applied == [(0, PINS["front"])] * 2

            # Garbage on the wire: logged once, ignored, the daemon lives on.
            for _ in range(5):
                await z2m.publish_raw(f"{base}/front", "{{{ not json")
                await zui.publish_raw(f"{prefix}/nodeID_5/status", "garbage")
            await asyncio.sleep(0.3)
            assert daemon.returncode is None
            await eventually(all_set, "still all set", daemon)
        finally:
            if daemon.returncode is None:
                daemon.send_signal(signal.SIGTERM)
            await asyncio.wait_for(daemon.wait(), 10)
    assert daemon.returncode == 0
    log = log_path.read_text()
    assert "stopped cleanly" in log
    assert log.count(f"ignored a malformed state message on {base}/front") == 1
    assert log.count(f"on {prefix}/nodeID_5/status") == 1
    assert log.count("reconnecting with backoff") == 2 and log.count("recovered after") == 2
    for pin in (*PINS.values(), "9999"):
        assert pin not in log
    assert "not-checked" not in log


async def _true(value: bool) -> bool:
    return value
