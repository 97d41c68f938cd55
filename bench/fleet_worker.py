"""One process of simulated gateways for the fleet scale run (bench/fleet.py): many bridges, each
an engine over simulated locks with its own SQLite store, simulator state file and a real
`NatsLink`, all on this process's event loop.

Everything a bridge has lives in its own directory (store, PIN key, simulated locks), so a
worker SIGKILLed and started again with the same arguments carries on from what its bridges
committed, as a rebooted gateway does. The run drives it with one JSON object a line on stdin
and reads one JSON object a line on stdout:

    {"op": "count"}                        -> {"count": events in the stores}
    {"op": "burst", "events": N}           -> every bridge commits N keypad events at once
    {"op": "flow", "period_s": P}          -> every bridge commits one event every P seconds
    {"op": "flow_off"}                     -> the flow stops
    {"op": "dump", "path": FILE}           -> per bridge: event ids, present (rendered), codes
    {"op": "stop"}                         -> clean stop, then exit

    python -m bench.fleet_worker --root DIR --locks 30 --server ws://... b000 b001 ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bridge.clock import FakeClock, SystemClock
from bridge.config import NatsUpstreamConfig
from bridge.daemon import EngineSettings, make_engine, start_drivers_then_load
from bridge.driver import DriverEvent, DriverEventKind
from bridge.secrets import PinCipher
from bridge.stateview import StateView
from bridge.store import Store
from bridge.upstream.nats_link import NatsLink
from bridge.upstream.nats_state import render_state
from drivers.simulator import SimLockSpec, SimulatorDriver

KEY_FILE = "pin.key"
# Bounds: a bridge's start and a clean stop.
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


def bridge_password(bridge_id: str) -> str:
    """The scale run's password of a bridge (tests/nats_cluster.py makes the same users)."""
    return f"pw-{bridge_id}-0123"


class SimBridge:
    """One simulated gateway: engine, simulated locks, store and NATS link, in one dir."""

    def __init__(self, root: Path, bridge_id: str, locks: int) -> None:
        self.root = root
        self.bridge_id = bridge_id
        root.mkdir(parents=True, exist_ok=True)
        self.store = Store(root / "lockbridge.db", PinCipher(_key(root / KEY_FILE)))
        # The engine's time does not matter here (no schedules); a fake clock keeps it still.
        clock = FakeClock()
        # Lock ids unique across the fleet: the engine derives a device's id from its driver
        # and lock id only, so two bridges with a lock "l1" would share a device id.
        self.driver = SimulatorDriver("sim", [SimLockSpec(lock_id=f"{bridge_id}-l{j}",
                                                          name=f"{bridge_id} door {j}")
                                              for j in range(locks)], clock,
                                      root / "sim.json")
        # Built by the daemon's own composition root, started by it in `start`.
        self.engine = make_engine(self.store, clock, {"sim": self.driver},
                                  EngineSettings(default_spacing_s=0.0, command_timeout_s=30.0),
                                  rng=random.Random(bridge_id))
        self.link: NatsLink | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.keypad = 0

    async def start(self, config: NatsUpstreamConfig) -> None:
        await self.store.open()

        await start_drivers_then_load(self.engine, {"sim": self.driver}, [])
        self.link = NatsLink(config, self.store, self.engine, SystemClock(), self.bridge_id)
        await self.link.prepare()
        self.tasks = [asyncio.create_task(self.engine.run(), name=f"engine-{self.bridge_id}"),
                      asyncio.create_task(self.link.run(), name=f"link-{self.bridge_id}")]

    async def keypad_event(self) -> None:
        """One committed keypad event on one of its locks (round robin)."""
        devices = list(self.engine.devices.values())
        device = devices[self.keypad % len(devices)]
        self.keypad += 1
        await self.engine.on_driver_event(device.driver, DriverEvent(
            DriverEventKind.KEYPAD_USED, device.external_id, slot=1))

    async def dump(self) -> dict[str, Any]:
        """What its own store holds: every event id, the present as the link renders it for
        the bucket, and how many codes carry each name (a command applied twice shows)."""
        events = await self.store.read(lambda r: r.events(0, 100_000_000))
        assert self.link is not None
        state = render_state(StateView(self.engine), self.link.names, self.bridge_id)
        names = Counter(code.name for code in self.engine.codes.values()
                        if code.is_managed and code.name)
        return {"events": [e.event_id for e in events],
                "state": {k: v.decode() for k, v in state.items()},
                "names": dict(names), "outbox": self.link.outbox_depth}

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.driver.stop()
        await self.store.close()


def _key(path: Path) -> bytes:
    """The bridge's PIN key: made once, read again after a restart."""
    if not path.exists():
        path.write_bytes(os.urandom(32))
        os.chmod(path, 0o600)
    return path.read_bytes()


def link_config(root: Path, bridge_id: str, servers: list[str]) -> NatsUpstreamConfig:
    password = root / "nats.password"
    password.write_text(bridge_password(bridge_id) + "\n")
    os.chmod(password, 0o600)
    return NatsUpstreamConfig.model_validate({
        "kind": "nats", "servers": servers, "user": bridge_id, "password_file": password,
        "backoff_base_s": 0.2, "backoff_cap_s": 3, "connect_timeout_s": 3,
        "publish_timeout_s": 5, "heartbeat_s": 5, "command_ack_wait_s": 5})


class Worker:
    """The bridges of this process and the run's requests to them."""

    def __init__(self, bridges: list[SimBridge]) -> None:
        self.bridges = bridges
        self.flow: asyncio.Task[None] | None = None
        self.flow_stop = asyncio.Event()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "count":
            return {"count": sum([await _count(b) for b in self.bridges])}
        if op == "burst":
            n = int(request["events"])
            started = time.monotonic()
            await asyncio.gather(*(self._burst(b, n) for b in self.bridges))
            return {"burst": n * len(self.bridges), "seconds": time.monotonic() - started}
        if op == "flow":
            await self._flow_off()
            self.flow_stop = asyncio.Event()
            self.flow = asyncio.create_task(self._flow(float(request["period_s"]),
                                                       self.flow_stop))
            return {"flow": "on"}
        if op == "flow_off":
            await self._flow_off()
            return {"flow": "off"}
        if op == "dump":
            dump = {b.bridge_id: await b.dump() for b in self.bridges}
            Path(request["path"]).write_text(json.dumps(dump))
            return {"dumped": request["path"]}
        return {"error": f"unknown op {op!r}"}

    @staticmethod
    async def _burst(bridge: SimBridge, n: int) -> None:
        for _ in range(n):
            await bridge.keypad_event()

    async def _flow(self, period_s: float, stop: asyncio.Event) -> None:
        """Steady: each bridge one event per period, bridges spread over the period. It ends
        between events, never inside one: a commit whose caller is cancelled while SQLite
        commits is on disk, but the engine's listeners (the link's outbox) never hear of it."""
        async def pause(seconds: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)

        async def one(bridge: SimBridge, offset: float) -> None:
            await pause(offset)
            while not stop.is_set():  # until flow_off
                started = time.monotonic()
                await bridge.keypad_event()
                await pause(max(0.0, period_s - (time.monotonic() - started)))

        count = len(self.bridges)
        await asyncio.gather(*(one(b, period_s * i / count)
                               for i, b in enumerate(self.bridges)))

    async def _flow_off(self) -> None:
        if self.flow is not None:
            self.flow_stop.set()
            await asyncio.wait_for(self.flow, STOP_TIMEOUT_S)
            self.flow = None


async def _count(bridge: SimBridge) -> int:
    return len(await bridge.store.read(lambda r: r.events(0, 100_000_000)))


async def _lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _say(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_worker")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--locks", type=int, default=30)
    parser.add_argument("--server", action="append", required=True)
    parser.add_argument("bridges", nargs="+")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    bridges = [SimBridge(args.root / b, b, args.locks) for b in args.bridges]
    async with asyncio.timeout(START_TIMEOUT_S):
        for bridge in bridges:
            await bridge.start(link_config(bridge.root, bridge.bridge_id, args.server))
    worker = Worker(bridges)
    _say({"ready": len(bridges), "setup_s": time.monotonic() - started})
    reader = await _lines()
    try:
        while True:  # until "stop" or stdin closes (the run is gone)
            line = await reader.readline()
            if not line:
                break
            request = json.loads(line)
            if request.get("op") == "stop":
                break
            _say(await worker.handle(request))
    finally:
        await worker._flow_off()
        async with asyncio.timeout(STOP_TIMEOUT_S):
            for bridge in bridges:
                await bridge.stop()
    _say({"stopped": len(bridges)})
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(sys.argv[1:])))
