"""SIGKILL the real daemon 20 times while it streams to the reference upstream: nothing is lost
or reordered, and commands interrupted by a kill are applied exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from bridge.secrets import PinCipher
from bridge.store import Store
from bridge.upstream.commands import created_code_id
from tests.paths import ROOT
from tests.upstream_helpers import TOKEN, eventually, start_server

BRIDGE = "kill"
CONFIG = """\
bridge: {{id: {bridge}}}
state_dir: {state}
api: {{enabled: false}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
upstream:
  url: ws://127.0.0.1:{port}/ws
  token_file: {token}
  backoff_base_s: 0.05
  backoff_cap_s: 0.2
  batch_events: 3
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    locks:
      - {{id: a, name: Lock A, latency_s: 0.005}}
      - {{id: b, name: Lock B, latency_s: 0.005}}
"""
KILLS = 20


async def _daemon(config: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("a") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "run", "-c", str(config), cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL, stderr=sink)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_sigkill_twenty_times_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20)
    server = await start_server(tmp_path)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(bridge=BRIDGE, state=tmp_path / "state", port=server.port,
                                    token=token))
    log = tmp_path / "daemon.log"
    devices: list[str] = []
    sent: list[str] = []
    proc: asyncio.subprocess.Process | None = None
    fired: list[asyncio.Task[None]] = []
    try:
        for round_no in range(KILLS + 1):
            # Odd rounds withhold acks, so the kill leaves unacknowledged events behind; the
            # last daemon (an even round) is acknowledged and must catch up.
            server.acks = round_no % 2 == 0
            hellos = server.hellos
            proc = await _daemon(config, log)
            await eventually(lambda h=hellos: server.hellos > h and BRIDGE in server.connections,
                             timeout=20, what=f"hello in round {round_no}")
            if not devices:
                await eventually(lambda: server.snapshots(BRIDGE), what="first snapshot")
                snapshot = (await server.snapshots(BRIDGE))[0]
                devices = [d["device_id"] for d in snapshot["devices"]]
            if round_no == KILLS:
                break
            for device in devices:
                command_id = f"r{round_no}-{device[:8]}"
                sent.append(command_id)
                command = {"action": "access_codes.create", "device_id": device,
                           "name": f"Guest {round_no}"}
                if round_no % 3 == 2:
                    # Not awaited: the kill may land while the bridge is applying it.
                    fired.append(asyncio.create_task(_fire(server, command, command_id)))
                else:
                    result = await server.send_command(BRIDGE, command, command_id)
                    assert result["ok"], result
            if sent[:-2]:
                repeat = rng.choice(sent[:-2])
                await _fire(server, {"action": "access_codes.create", "device_id": devices[0]},
                            repeat, resend=True)
            await asyncio.sleep(rng.uniform(0.0, 0.08))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        bridge_events = await _stop_and_read(proc, tmp_path, after_quiet=server)
        proc = None
        await asyncio.gather(*fired)
    finally:
        for task in fired:
            task.cancel()
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
    try:
        upstream = await server.events(BRIDGE)
        assert [e["event_id"] for e in upstream] == [e for e, _ in bridge_events], \
            "every event reached the upstream, in order"
        assert server.gaps == []
        assert server.duplicates > 0, "unacknowledged events were resent after kills"
        unanswered = await server.unanswered(BRIDGE)
        assert unanswered == []
    finally:
        await server.stop()
    codes = await _codes(tmp_path)
    assert sorted(codes) == sorted(created_code_id(BRIDGE, c) for c in sent), \
        "each create command applied exactly once"
    assert "Traceback" not in log.read_text()


async def _fire(server, command, command_id, resend: bool = False) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(TimeoutError):
        await server.send_command(BRIDGE, command, command_id, timeout=30, resend=resend)


async def _stop_and_read(proc, tmp_path: Path, after_quiet) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    """Let the last daemon deliver everything, stop it cleanly, and read its events."""
    async def caught_up() -> bool:
        events = await after_quiet.events(BRIDGE)
        newest = _newest_seq(tmp_path)
        return bool(events) and events[-1]["sequence_number"] == newest \
            and await after_quiet.acked_seq(BRIDGE) == newest \
            and not await after_quiet.unanswered(BRIDGE)

    await eventually(caught_up, timeout=30, what="the last daemon caught up")
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(5):
        await proc.wait()
    assert proc.returncode == 0
    async with _store(tmp_path) as store:
        events = await store.read(lambda r: r.events(0, 1_000_000))
    return [(e.event_id, e.sequence or 0) for e in events]


def _newest_seq(tmp_path: Path) -> int:
    """Read beside the running daemon without a Store (whose close checkpoints the WAL)."""
    db = sqlite3.connect(f"file:{tmp_path / 'state' / 'lockbridge.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    finally:
        db.close()
    return int(row[0]) if row else 0


def _store(tmp_path: Path) -> Store:
    state = tmp_path / "state"
    return Store(state / "lockbridge.db", PinCipher((state / "pin.key").read_bytes()))


async def _codes(tmp_path: Path) -> list[str]:
    async with _store(tmp_path) as store:
        codes = await store.read(lambda r: r.codes())
    return [c.access_code_id for c in codes if c.is_managed and not c.is_backup]

