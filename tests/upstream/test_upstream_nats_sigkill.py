"""The real daemon with `upstream.kind: nats` (plain TCP this time), SIGKILLed between applying a
command and acknowledging it: after the restart the command is answered from what the bridge
stored, never applied a second time; and random kills during a burst of commands lose no
event and apply no command twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from bridge.fleet.streams import ensure_streams
from bridge.upstream.commands import created_code_id
from bridge.upstream.nats_subjects import MSG_ID, FleetNames, close_client
from tests.nats_cluster import NatsCluster, password_file
from tests.paths import ROOT
from tests.upstream.test_upstream_nats import stream_messages
from tests.upstream_helpers import eventually

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
BRIDGE = "kb"
NAMES = FleetNames()
CONFIG = """\
bridge: {{id: {bridge}}}
state_dir: {state}
api: {{enabled: false}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
upstream:
  kind: nats
  servers: [{url}]
  user: {bridge}
  password_file: {password}
  backoff_base_s: 0.05
  backoff_cap_s: 0.3
  publish_timeout_s: 2
  heartbeat_s: 0.3
  command_ack_wait_s: 2
  batch_events: 5
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    locks:
      - {{id: a, name: Lock A, latency_s: 0.005}}
      - {{id: b, name: Lock B, latency_s: 0.005}}
"""


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    cluster = NatsCluster.build(tmp_path / "nats", [BRIDGE], size=1)
    await cluster.start()
    nc = await cluster.backend()
    await ensure_streams(nc.jetstream(), NAMES, replicas=1)
    await close_client(nc)
    try:
        yield cluster
    finally:
        cluster.stop()


class Daemon:
    """`lockbridge run` in a subprocess, and what it left in its store."""

    def __init__(self, tmp_path: Path, cluster: NatsCluster) -> None:
        self.state = tmp_path / "state"
        self.config = tmp_path / "config.yaml"
        self.config.write_text(CONFIG.format(bridge=BRIDGE, state=self.state,
                                             url=cluster.nodes[0].url,
                                             password=password_file(tmp_path, BRIDGE)))
        self.log = tmp_path / "daemon.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("a") as sink:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge.cli", "run", "-c", str(self.config), cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL, stderr=sink)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        self.proc = None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                await self.kill()
        self.proc = None

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        db = self.state / "lockbridge.db"
        if not db.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True,
                                                timeout=5)) as conn:
            try:
                return list(conn.execute(sql, args))
            except sqlite3.OperationalError:
                return []

    def created(self, code_id: str) -> int:
        return len(self.rows("SELECT 1 FROM events WHERE event_type = 'access_code.created' "
                             "AND access_code_id = ?", code_id))

    def devices(self) -> list[str]:
        return [r[0] for r in self.rows("SELECT device_id FROM devices ORDER BY device_id")]


async def heartbeats(nc: NatsClient) -> list[dict[str, Any]]:
    beats: list[dict[str, Any]] = []

    async def got(msg: Any) -> None:
        beats.append(json.loads(msg.data))

    await nc.subscribe(NAMES.heartbeat(BRIDGE), cb=got)
    return beats


async def send(nc: NatsClient, command_id: str, command: dict[str, Any]) -> None:
    body = {"type": "command", "command_id": command_id, "command": command}
    await nc.jetstream().publish(NAMES.commands(BRIDGE), json.dumps(body).encode(),
                                 headers={MSG_ID: command_id})


async def results(nc: NatsClient) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for _, body in await stream_messages(nc.jetstream(), NAMES.events_stream,
                                         NAMES.results(BRIDGE)):
        out.setdefault(body["command_id"], []).append(body)
    return out


async def test_sigkill_between_apply_and_ack_does_not_apply_twice(
        node: NatsCluster, tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, node)
    nc = await node.backend()
    beats = await heartbeats(nc)
    try:
        await daemon.start()
        await eventually(lambda: len(beats) > 0 and len(daemon.devices()) == 2, timeout=30,
                         what="the daemon up with its locks")
        device = daemon.devices()[0]
        # The bridge may apply and store the result but not publish it, so never ack it.
        await node.set_results_withheld(frozenset({BRIDGE}))
        await send(nc, "held-1", {"action": "access_codes.create", "device_id": device,
                                  "name": "Held", "code": "2468"})
        code_id = created_code_id(BRIDGE, "held-1")
        await eventually(lambda: daemon.created(code_id) == 1, timeout=20, what="applied")
        # Its result is stored (sealed) but cannot be published: the command stays unacked.
        await eventually(lambda: daemon.rows(
            "SELECT 1 FROM upstream_commands WHERE command_id = 'held-1'"), timeout=10,
            what="the result stored")
        await daemon.kill()
        assert (await results(nc)).get("held-1") is None, "no result could be published"
        await node.set_results_withheld(frozenset())
        await daemon.start()
        await eventually(lambda: _has(results(nc), "held-1"), timeout=30,
                         what="the redelivered command answered")
        got = (await results(nc))["held-1"]
        assert len(got) == 1 and got[0]["ok"], got
        assert got[0]["result"]["access_code"]["access_code_id"] == code_id
        assert daemon.created(code_id) == 1, "applied once"
        await daemon.stop()
    finally:
        await daemon.kill()
        await close_client(nc)
    assert "Traceback" not in daemon.log.read_text()


async def test_random_kills_during_commands_apply_each_once(node: NatsCluster,
                                                            tmp_path: Path) -> None:
    rng = random.Random(23)
    daemon = Daemon(tmp_path, node)
    nc = await node.backend()
    beats = await heartbeats(nc)
    sent: list[str] = []
    try:
        for round_no in range(4):
            count = len(beats)
            await daemon.start()
            await eventually(lambda c=count: len(beats) > c and len(daemon.devices()) == 2,
                             timeout=30, what=f"daemon up in round {round_no}")
            for i in range(12):
                command_id = f"r{round_no}-{i}"
                sent.append(command_id)
                await send(nc, command_id, {"action": "access_codes.create",
                                            "device_id": daemon.devices()[i % 2],
                                            "name": f"Guest {command_id}"})
            if round_no < 3:
                await asyncio.sleep(rng.uniform(0.0, 0.15))
                await daemon.kill()
        await eventually(lambda: _all(results(nc), sent), timeout=40,
                         what="every command answered")

        async def caught_up() -> bool:
            stored = [r[0] for r in daemon.rows("SELECT event_id FROM events ORDER BY seq")]
            published = [b["event_id"] for _, b in await stream_messages(
                nc.jetstream(), NAMES.events_stream, NAMES.events(BRIDGE))]
            assert len(set(published)) == len(published), "an event published twice"
            return sorted(published) == sorted(stored)

        await eventually(caught_up, timeout=30, what="every event published once")
        await daemon.stop()
        answered = await results(nc)
        for command_id in sent:
            assert len(answered[command_id]) == 1 and answered[command_id][0]["ok"], command_id
            assert daemon.created(created_code_id(BRIDGE, command_id)) == 1, command_id
    finally:
        await daemon.kill()
        await close_client(nc)
    assert "Traceback" not in daemon.log.read_text()


async def _has(pending: Any, command_id: str) -> bool:
    return command_id in await pending


async def _all(pending: Any, command_ids: list[str]) -> bool:
    got = await pending
    return all(c in got for c in command_ids)
