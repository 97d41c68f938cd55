"""A backend replica as a real `lockbridge fleet` process, so a test or the scale run can
SIGKILL it mid-flow (nothing runs its shutdown: unacknowledged batches wait for `--ack-wait`,
open API requests die with it). Secrets go through the environment, as under systemd."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.nats_cluster import BACKEND_PASSWORD, BACKEND_USER, NatsCluster, free_ports

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ReplicaProcess:
    """One `lockbridge fleet` process and where its API listens."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, size: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until its API answers /health (it has migrated, made the streams and listens)."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:  # bounded by the deadline
                if not self.alive:
                    raise AssertionError(f"replica {self.name} exited "
                                         f"({self.proc.returncode}):\n{self.log_tail()}")
                try:
                    async with http.get(self.url + "/health",
                                        timeout=aiohttp.ClientTimeout(total=2)) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"replica {self.name} did not answer within "
                                         f"{timeout} s:\n{self.log_tail()}")
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: gone wherever it is, nothing of its shutdown runs."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for its clean exit (SIGKILL when it does not come)."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)


def start_replica_process(cluster: NatsCluster, dsn: str, api_key: str, root: Path, name: str,
                          *, replicas: int = 3, stale_after_s: float = 15.0,
                          ack_wait_s: float = 30.0, command_timeout_s: float = 20.0,
                          pool_size: int = 4, log_level: str = "warning") -> ReplicaProcess:
    """Start `lockbridge fleet` on a free loopback port; `wait_ready` before using it."""
    port = free_ports(1)[0]
    log = root / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "bridge.cli", "fleet", *[f"--nats={u}" for u in cluster.urls],
               "--nats-user", BACKEND_USER, "--listen", f"127.0.0.1:{port}",
               "--replicas", str(replicas), "--stale-after", str(stale_after_s),
               "--ack-wait", str(ack_wait_s), "--command-timeout", str(command_timeout_s),
               "--pool-size", str(pool_size), "--log-level", log_level]
    env = {**os.environ, "LOCKBRIDGE_FLEET_DSN": dsn, "LOCKBRIDGE_FLEET_API_KEY": api_key,
           "LOCKBRIDGE_FLEET_NATS_PASSWORD": BACKEND_PASSWORD}
    with log.open("ab") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return ReplicaProcess(name, proc, port, log)
