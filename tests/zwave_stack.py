"""The real zwave-js stack for tests: our mock-controller launcher and zwave-js-server, on loopback.

`tests/zwave/` pins zwave-js (its mock controller) and @zwave-js/server with a lock file;
`scripts/peers.sh` installs them. Tests start a fresh stack in their temp folder:

    mock-server.cjs  --TCP serial-->  zwave-server  --websocket-->  lockbridge's driver
         ^ control channel (JSON lines): act at the lock (keypad codes, unlocks, outages)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.clock import FakeClock
    from drivers.zwave.config import Config
    from drivers.zwave.driver import ZWaveDriver
    from tests.harness import Harness

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "tests" / "zwave"
LAUNCHER = PEERS / "mock-server.cjs"
SERVER_BIN = PEERS / "node_modules" / ".bin" / "zwave-server"

# Two locks: node 2 a plain keypad lock, node 3 one that keeps schedules.
NODES = [
    {"id": 2, "slots": 10, "schedules": False},
    {"id": 3, "slots": 20, "schedules": True},
]
# Test-only network keys (zwave-server refuses to start without S0_Legacy).
TEST_KEYS = {
    "S0_Legacy": "0102030405060708090a0b0c0d0e0f10",
    "S2_Unauthenticated": "1102030405060708090a0b0c0d0e0f10",
    "S2_Authenticated": "2102030405060708090a0b0c0d0e0f10",
    "S2_AccessControl": "3102030405060708090a0b0c0d0e0f10",
}


@functools.cache
def missing_node() -> str | None:
    """Why the real stack cannot run here (no node or npm, or a node too old), or None."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed, so the real zwave-js stack cannot run"
    version = subprocess.run(["node", "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    major = version.lstrip("v").split(".", 1)[0]
    if not major.isdigit() or int(major) < 20:
        return f"node {version or '?'} is installed; zwave-js 15 needs node 20 or newer"
    return None


def ensure_peers() -> None:
    """Install the pinned npm packages when scripts/peers.sh has not (same lock file)."""
    if SERVER_BIN.exists():
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEERS,
                   check=True, timeout=300)


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ZWaveStack:
    """One mock Z-Wave network with lock nodes, and zwave-js-server in front of it."""

    def __init__(self, workdir: Path, nodes: list[dict[str, Any]] | None = None) -> None:
        self.workdir = workdir
        self.nodes = nodes or NODES
        self.mock: subprocess.Popen[bytes] | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.serial_port = 0
        self.control_port = 0
        self.ws_port = free_port()
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        """The websocket URL the driver connects to."""
        return f"ws://127.0.0.1:{self.ws_port}"

    def start(self) -> None:
        """Start the mock controller, then zwave-js-server (it interviews the locks)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        nodes_file = self.workdir / "nodes.json"
        nodes_file.write_text(json.dumps(self.nodes))
        ready_file = self.workdir / "mock.ready"
        ready_file.unlink(missing_ok=True)
        with open(self.workdir / "mock.log", "wb") as log:
            self.mock = subprocess.Popen(
                ["node", str(LAUNCHER), "--nodes", str(nodes_file), "--ready-file",
                 str(ready_file)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not ready_file.exists():
            if self.mock.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the mock controller did not start: "
                                   + (self.workdir / "mock.log").read_text()[-2000:])
            time.sleep(0.05)
        ready = json.loads(ready_file.read_text())
        self.serial_port = ready["port"]
        self.control_port = ready["control_port"]
        config = {
            "securityKeys": TEST_KEYS,
            "storage": {"cacheDir": str(self.workdir / "zwave-cache")},
            "logConfig": {"enabled": True, "level": "info", "forceConsole": True},
        }
        (self.workdir / "zwave-server.json").write_text(json.dumps(config))
        self.start_server()

    def start_server(self) -> None:
        """Start (or restart) zwave-js-server on the same port and cache."""
        # The server's own zone is UTC: the driver must set the locks' zone itself.
        env = {**os.environ, "TZ": "UTC"}
        with open(self.workdir / "zwave-server.log", "ab") as log:
            self.server = subprocess.Popen(
                [str(SERVER_BIN), f"tcp://127.0.0.1:{self.serial_port}",
                 "--config", str(self.workdir / "zwave-server.json"),
                 "--host", "127.0.0.1", "--port", str(self.ws_port), "--disable-dns-sd"],
                stdout=log, stderr=subprocess.STDOUT, env=env)

    def wait_listening(self, timeout: float = 30.0) -> None:
        """Block until the websocket port accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server is not None and self.server.poll() is not None:
                raise RuntimeError("zwave-server exited: " + self.server_log()[-2000:])
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.ws_port)) == 0:
                    return
            time.sleep(0.1)
        raise TimeoutError("zwave-server did not listen in time")

    def stop_server(self) -> None:
        """Stop zwave-js-server (SIGTERM, as systemd would)."""
        _terminate(self.server)
        self.server = None

    async def stop_server_async(self) -> None:
        """`stop_server` off the event loop: the server waits for its clients to say goodbye."""
        await asyncio.to_thread(self.stop_server)

    def close(self) -> None:
        """Stop both processes."""
        self.stop_server()
        _terminate(self.mock)
        self.mock = None

    def server_log(self) -> str:
        """What zwave-js-server and zwave-js printed."""
        path = self.workdir / "zwave-server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def control(self, op: str, **args: Any) -> Any:
        """Act at a mock lock through the launcher's control channel."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.control_port)
        try:
            request = {"id": next(self._ids), "op": op, **args}
            writer.write((json.dumps(request) + "\n").encode())
            await writer.drain()
            answer = json.loads(await asyncio.wait_for(reader.readline(), 10))
        finally:
            writer.close()
            await writer.wait_closed()
        if not answer.get("ok"):
            raise RuntimeError(f"mock control {op} failed: {answer.get('error')}")
        return answer["result"]

    def control_sync(self, op: str, **args: Any) -> Any:
        """`control` for synchronous callers (fixtures, the contract's `truth`)."""
        request = {"id": next(self._ids), "op": op, **args}
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=10) as conn:
            conn.sendall((json.dumps(request) + "\n").encode())
            with conn.makefile("r") as lines:
                answer = json.loads(lines.readline())
        if not answer.get("ok"):
            raise RuntimeError(f"mock control {op} failed: {answer.get('error')}")
        return answer["result"]

    def slots_sync(self, node: int) -> dict[int, str]:
        """`slots` for synchronous callers."""
        return {int(k): v["code"] for k, v in self.control_sync("slots", node=node).items()}

    async def slots(self, node: int) -> dict[int, str]:
        """What the mock lock itself holds: {slot: code} (its memory, not zwave-js's cache)."""
        raw = await self.control("slots", node=node)
        return {int(k): v["code"] for k, v in raw.items()}


@contextlib.contextmanager
def running_stack(workdir: Path, nodes: list[dict[str, Any]] | None = None, *,
                  show_log: bool = True) -> Iterator[ZWaveStack]:
    """A started stack listening on its port, closed on the way out; its server's log is
    printed then (pytest shows it only when the test fails)."""
    ensure_peers()
    stack = ZWaveStack(workdir, nodes)
    try:
        stack.start()
        stack.wait_listening()
        yield stack
    finally:
        stack.close()
        if show_log:
            print(stack.server_log()[-4000:])


def fast_config(url: str, **fields: Any) -> Config:
    """A driver config for the stack at `url`: no command spacing and quick reconnects, so a
    test waits for the lock, not for politeness; `fields` add to it or override it."""
    from drivers.zwave.config import Config

    return Config.model_validate({"kind": "zwave", "name": "zw", "url": url,
                                  "command_spacing_s": 0, "reconnect_min_s": 0.2,
                                  "reconnect_max_s": 1, **fields})


async def start_zwave_engine(url: str, folder: Path, *, clock: FakeClock | None = None,
                             wrap: Callable[[ZWaveDriver], Any] | None = None,
                             ) -> tuple[Harness, ZWaveDriver]:
    """A Z-Wave driver (`fast_config`) for the stack at `url` under an engine whose store and
    driver state are in `folder`, on a fake clock (now, to the second, unless given); `wrap`
    puts something between the engine and the driver. Returns the harness and the driver."""
    from bridge.clock import FakeClock
    from drivers.zwave.driver import ZWaveDriver
    from tests.harness import start_engine

    clock = clock or FakeClock(datetime.now(UTC).replace(microsecond=0))
    driver = ZWaveDriver(fast_config(url), clock, folder / "state")
    h = await start_engine(folder, {"zw": wrap(driver) if wrap else driver}, clock=clock)
    return h, driver


async def quiet_for(h: Any, seconds: float, step: float = 600.0,
                    timeout: float = 60.0) -> None:
    """Move a harness's fake clock by `seconds` in steps, letting every lock finish what came
    due (`h` is a tests.harness.Harness; Any so that bench/ can pass one without its types)."""
    moved = 0.0
    while moved < seconds:
        hop = min(step, seconds - moved)
        await h.clock.advance(hop)
        moved += hop
        await h.until(h.engine.settled, timeout=timeout, what="settled")
        await asyncio.sleep(0.05)  # a read's answer on its way is counted before the next hop
        await h.until(h.engine.settled, timeout=timeout, what="settled")


def _terminate(proc: subprocess.Popen[Any] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
