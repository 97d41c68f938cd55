"""SIGKILL the real daemon while many API creates are in flight (so their commits share fsyncs):
every create answered 2xx before the kill is in the store and on its lock after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.secrets import PinCipher
from bridge.store import Store
from drivers.simulator.driver import load_state_file
from tests.api_helpers import Daemon, start_daemon

CONFIG = """\
bridge: {{id: group-kill}}
state_dir: {state}
logging: {{level: warning}}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    locks:
""" + "\n".join(f"      - {{{{id: l{n}, name: Lock {n}, slot_count: 250}}}}" for n in range(6))
KILLS = 4
CLIENTS = 24
# New acknowledged creates each round needs before its kill may land.
MIN_ACKED_PER_ROUND = 15


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_sigkill_loses_no_acknowledged_create(tmp_path: Path) -> None:
    rng = random.Random(24)
    # access_code_id -> (device_id, PIN) of every create answered 2xx.
    acknowledged: dict[str, tuple[str, str]] = {}
    daemon = start_daemon(tmp_path, CONFIG)
    try:
        for round_no in range(KILLS):
            await _create_until_killed(daemon, round_no, rng, acknowledged)
            daemon = start_daemon(tmp_path, CONFIG, key=daemon.key)
        assert len(acknowledged) >= KILLS * MIN_ACKED_PER_ROUND
        await _until_all_set(daemon, set(acknowledged))
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=20) == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
    stored, slots = await _stored(tmp_path)
    missing = set(acknowledged) - set(stored)
    assert not missing, f"{len(missing)} acknowledged creates lost: {sorted(missing)[:5]}"
    on_locks = load_state_file(tmp_path / "state" / "sim.json")
    for code_id, (device_id, pin) in acknowledged.items():
        lock_id, slot = slots[code_id]
        assert stored[code_id] == (device_id, pin)
        assert on_locks[lock_id].get(slot) == pin, f"{code_id} is not on {lock_id}"


async def _create_until_killed(daemon: Daemon, round_no: int, rng: random.Random,
                               acknowledged: dict[str, tuple[str, str]]) -> None:
    """Keep CLIENTS creates in flight; SIGKILL the daemon at a random moment."""
    before = len(acknowledged)
    headers = {"Authorization": f"Bearer {daemon.key}"}
    async with aiohttp.ClientSession(daemon.url, headers=headers) as http:
        async with http.get("/devices/list") as answer:
            devices = [d["device_id"] for d in (await answer.json())["devices"]]

        async def client(n: int) -> None:
            for i in range(10_000):
                body = {"device_id": devices[(n + i) % len(devices)],
                        "name": f"r{round_no} c{n} {i}"}
                async with http.post("/access_codes/create", json=body) as answer:
                    doc: dict[str, Any] = await answer.json()
                if 200 <= answer.status < 300:
                    code = doc["access_code"]
                    acknowledged[code["access_code_id"]] = (code["device_id"], code["code"])

        clients = [asyncio.create_task(client(n)) for n in range(CLIENTS)]
        try:
            deadline = time.monotonic() + 60
            while len(acknowledged) - before < MIN_ACKED_PER_ROUND:
                assert time.monotonic() < deadline, "the daemon acknowledged too few creates"
                assert not any(c.done() for c in clients), [c.exception() for c in clients]
                await asyncio.sleep(0.01)
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            os.kill(daemon.proc.pid, signal.SIGKILL)
            await asyncio.to_thread(daemon.proc.wait, 10)
        finally:
            for task in clients:
                task.cancel()
            for task in clients:
                # The kill breaks their connections; only what was answered before it counts.
                with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                    await task
    if daemon.proc.stderr is not None:
        daemon.proc.stderr.close()


async def _until_all_set(daemon: Daemon, wanted: set[str]) -> None:
    """Wait (bounded) until the restarted daemon has every code set on its lock."""
    headers = {"Authorization": f"Bearer {daemon.key}"}
    async with aiohttp.ClientSession(daemon.url, headers=headers) as http:
        deadline = time.monotonic() + 120
        while True:
            codes: list[dict[str, Any]] = []
            cursor: str | None = None
            while True:  # every page: more than one page of creates may have been answered
                body = {"page_cursor": cursor} if cursor else {}
                async with http.post("/access_codes/list", json=body) as answer:
                    listed = await answer.json()
                codes += listed["access_codes"]
                cursor = listed["pagination"]["next_page_cursor"]
                if cursor is None:
                    break
            not_set = wanted - {c["access_code_id"] for c in codes if c["status"] == "set"}
            if not not_set:
                return
            missing = wanted - {c["access_code_id"] for c in codes}
            assert not missing, f"{len(missing)} acknowledged creates lost: {sorted(missing)[:5]}"
            assert time.monotonic() < deadline, f"{len(not_set)} codes never got set"
            await asyncio.sleep(0.2)


async def _stored(tmp_path: Path) -> tuple[dict[str, tuple[str, str]],
                                           dict[str, tuple[str, int]]]:
    """From the store: code id -> (device id, PIN), and code id -> (lock id, slot)."""
    state = tmp_path / "state"
    async with Store(state / "lockbridge.db",
                     PinCipher((state / "pin.key").read_bytes())) as store:
        devices, codes = await store.read(lambda r: (r.devices(), r.codes()))
    lock_of = {d.device_id: d.external_id for d in devices}
    stored = {c.access_code_id: (c.device_id, c.code or "") for c in codes}
    slots = {c.access_code_id: (lock_of[c.device_id], c.slot or 0) for c in codes}
    return stored, slots
