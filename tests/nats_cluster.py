"""Real `nats-server` processes for the fleet tests: one node or a three-node cluster on loopback,
each with its own store dir, a websocket listener, and one account holding the backend's user
and a user per bridge allowed only its own subjects (FleetNames.bridge_permissions)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from bridge.upstream.nats_subjects import FleetNames, close_client

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
BACKEND_USER = "backend"
BACKEND_PASSWORD = "backend-secret-1"


def bridge_password(bridge_id: str) -> str:
    """Each bridge's test password (a real deployment reads it from a file)."""
    return f"pw-{bridge_id}-0123"


def free_ports(count: int) -> list[int]:
    """Ports free on loopback now."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [int(s.getsockname()[1]) for s in sockets]
    for s in sockets:
        s.close()
    return ports


def accounts(bridges: Iterable[str], names: FleetNames,
             no_results: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The accounts block: the fleet's users, and a system account; bridges in `no_results`
    may not publish their results (a test's way to hold a command between apply and ack)."""
    users: list[dict[str, Any]] = [{"user": BACKEND_USER, "password": BACKEND_PASSWORD}]
    for bridge_id in bridges:
        permissions = names.bridge_permissions(bridge_id)
        if bridge_id in no_results:
            permissions["publish"]["allow"].remove(names.results(bridge_id))
        users.append({"user": bridge_id, "password": bridge_password(bridge_id),
                      "permissions": permissions})
    return {"FLEET": {"jetstream": "enabled", "users": users},
            "SYS": {"users": [{"user": "sys", "password": "sys-secret-1"}]}}


@dataclass
class NatsNode:
    """One nats-server process; `kill` and `start` again keep its ports and store."""

    name: str
    root: Path
    port: int
    ws_port: int
    cluster_port: int | None
    config: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def write_config(self) -> Path:
        conf = self.root / f"{self.name}.conf"
        conf.write_text(json.dumps(self.config, indent=1))
        return conf

    def reloads(self) -> int:
        """How many times the server has said it reloaded its configuration."""
        path = self.root / f"{self.name}.log"
        return path.read_text(errors="replace").count("Reloaded server configuration") \
            if path.exists() else 0

    async def reload(self, timeout: float = 20.0) -> None:
        """Apply a changed configuration (permissions) without a restart; returns once the
        server's log says it did."""
        self.write_config()
        if self.proc is None:
            return
        before = self.reloads()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self.reloads() <= before:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not reload its configuration")
            await asyncio.sleep(0.05)

    def start(self) -> None:
        conf = self.write_config()
        log = (self.root / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen([NATS_SERVER, "-c", str(conf)], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.5):
            return True
        return False


@dataclass
class NatsCluster:
    """One or three nodes sharing the account configuration."""

    root: Path
    bridges: list[str]
    names: FleetNames = field(default_factory=FleetNames)
    nodes: list[NatsNode] = field(default_factory=list)

    # A private CA's certificate when the nodes serve TLS (`build(..., tls=...)`).
    ca_file: Path | None = None

    @classmethod
    def build(cls, root: Path, bridges: list[str], size: int = 1,
              tls: tuple[Path, Path, Path] | None = None) -> NatsCluster:
        """`tls`: (CA certificate, server certificate, server key) to serve TLS on the client
        and websocket listeners."""
        cluster = cls(root, bridges)
        ports = free_ports(size * 3)
        routes = [f"nats-route://127.0.0.1:{ports[i * 3 + 2]}" for i in range(size)]
        for i in range(size):
            port, ws_port, cluster_port = ports[i * 3:i * 3 + 3]
            store = root / f"n{i}-js"
            store.mkdir(parents=True, exist_ok=True)
            config: dict[str, Any] = {
                "server_name": f"n{i}", "listen": f"127.0.0.1:{port}",
                "jetstream": {"store_dir": str(store), "max_memory_store": 64 << 20,
                              "max_file_store": 1 << 30},
                "websocket": {"listen": f"127.0.0.1:{ws_port}", "no_tls": True},
                "accounts": accounts(bridges, cluster.names), "system_account": "SYS",
            }
            if tls is not None:
                cluster.ca_file = tls[0]
                files = {"cert_file": str(tls[1]), "key_file": str(tls[2])}
                config["tls"] = dict(files)
                config["websocket"] = {"listen": f"127.0.0.1:{ws_port}", "tls": dict(files)}
            if size > 1:
                config["cluster"] = {"name": "fleet", "listen": f"127.0.0.1:{cluster_port}",
                                     "routes": [r for j, r in enumerate(routes) if j != i]}
            cluster.nodes.append(NatsNode(f"n{i}", root, port, ws_port,
                                          cluster_port if size > 1 else None, config))
        return cluster

    async def set_results_withheld(self, bridges: frozenset[str]) -> None:
        """Take (or give back) the permission to publish results from these bridges."""
        for node in self.nodes:
            node.config["accounts"] = accounts(self.bridges, self.names, bridges)
            await node.reload()

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    async def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every running node listens and JetStream answers (a meta leader exists)."""
        deadline = time.monotonic() + timeout
        while not all(n.listening() for n in self.nodes if n.proc is not None):
            if time.monotonic() > deadline:
                raise AssertionError("nats-server did not start: " + self.logs())
            await asyncio.sleep(0.05)
        while True:
            try:
                nc = await self.backend()
                try:
                    await nc.jetstream(timeout=2).account_info()
                    return
                finally:
                    await close_client(nc)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def backend(self) -> NatsClient:
        """A connection as the backend's user."""
        tls = None if self.ca_file is None else ssl.create_default_context(
            cafile=str(self.ca_file))
        return await nats.connect(servers=[n.url for n in self.nodes if n.proc is not None]
                                  or self.urls, user=BACKEND_USER, password=BACKEND_PASSWORD,
                                  connect_timeout=2, max_reconnect_attempts=-1,
                                  reconnect_time_wait=0.2, tls=tls)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def logs(self) -> str:
        out = []
        for node in self.nodes:
            path = self.root / f"{node.name}.log"
            if path.exists():
                out.append(path.read_text(errors="replace")[-2000:])
        return "\n".join(out)


def password_file(root: Path, bridge_id: str) -> Path:
    """A bridge's password in a file, mode 0600, as a deployment keeps it."""
    path = root / f"{bridge_id}.nats-password"
    path.write_text(bridge_password(bridge_id) + "\n")
    os.chmod(path, 0o600)
    return path
