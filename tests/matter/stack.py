"""A real Matter network for tests: a virtual lock (matter.js) and a Matter server
(python-matter-server, the real CHIP SDK), both in a private network namespace.

CHIP's mDNS ignores loopback, so the test makes a namespace with a veth pair: lock and server
run inside it on the namespace's end; the driver under test, in the host's namespace, reaches
the server's WebSocket over the pair. The server's data (its `/data` and CHIP's global
`/tmp/chip_kvs`) is bind-mounted from the test's temp folder in a mount namespace of its own,
so nothing of a run is left on the box and two runs (each its own namespace, named and
addressed by its process id) share nothing.

    virtual-lock.mjs  <--Matter over IPv6 (veth, in the namespace)-->  matter-server
         ^ control (JSON lines on stdin/stdout)                              ^ ws://IP:5580/ws
      the tests                                                          lockbridge's driver
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "tests" / "matter"
LOCK_SCRIPT = PEERS / "virtual-lock.mjs"
PAA_SCRIPT = PEERS / "paa-certs.mjs"
SERVER_BIN = PEERS / ".venv" / "bin" / "matter-server"
LOCK_PORT = 5540
SERVER_PORT = 5580


@functools.cache
def missing_peers() -> str | None:
    """Why the Matter peers cannot run here, or None."""
    if os.geteuid() != 0:
        return "the Matter tests need root to create a network namespace (CHIP's mDNS " \
               "ignores loopback)"
    for tool in ("ip", "unshare", "mount", "node"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not (PEERS / "node_modules" / "@matter" / "main").is_dir():
        return "matter.js is not installed (scripts/peers.sh: npm ci in tests/matter)"
    if not SERVER_BIN.exists():
        return "python-matter-server is not installed (scripts/peers.sh makes tests/matter/.venv)"
    probe = f"lbm-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                          check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def _run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, text=True)


class MatterStack:
    """The namespace, the virtual lock and the Matter server, started and stopped by tests."""

    def __init__(self, root: Path, *, schedules: bool = True) -> None:
        tag = os.getpid() % 10000
        self.netns = f"lbm-{os.getpid()}"
        self.host_if, self.ns_if = f"lbmh{tag}", f"lbmn{tag}"
        # A /30 of its own per run, so two runs' host ends never share a subnet.
        subnet = f"10.231.{os.getpid() % 250}"
        self.host_ip, self.ns_ip = f"{subnet}.1", f"{subnet}.2"
        self.root = root
        self.schedules = schedules
        self.lock: subprocess.Popen[str] | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.pairing: str | None = None
        self.node_id: int | None = None
        for sub in ("lock", "server", "paa", "data"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "kvs").touch()

    @property
    def url(self) -> str:
        return f"ws://{self.ns_ip}:{SERVER_PORT}/ws"

    # -- the namespace ------------------------------------------------------------------------

    def create_network(self) -> None:
        """The namespace and its veth pair (the host end outside, for the driver)."""
        _run("ip", "netns", "add", self.netns)
        _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _run("ip", "link", "set", self.ns_if, "netns", self.netns)
        _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _run("ip", "link", "set", self.host_if, "up")
        inside = ("ip", "netns", "exec", self.netns)
        _run(*inside, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        _run(*inside, "ip", "link", "set", self.ns_if, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        # The IPv6 link-local address must be usable (not tentative) before mDNS starts.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            shown = subprocess.run([*inside, "ip", "-6", "addr", "show", "dev", self.ns_if],
                                   capture_output=True, text=True, check=False).stdout
            if "fe80" in shown and "tentative" not in shown:
                return
            time.sleep(0.1)
        raise RuntimeError("the namespace's IPv6 link-local address never came up")

    # -- the virtual lock ---------------------------------------------------------------------

    def start_lock(self) -> None:
        self.launch_lock()
        self.wait_lock()

    def launch_lock(self) -> None:
        """Start the lock's process (`wait_lock` waits until it listens)."""
        args = ["ip", "netns", "exec", self.netns, "node", str(LOCK_SCRIPT),
                str(self.root / "lock"), str(LOCK_PORT), self.ns_if]
        if not self.schedules:
            args.append("--no-schedules")
        self.lock = subprocess.Popen(args, cwd=PEERS, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1,
                                     stderr=open(self.root / "lock.log", "a"))  # noqa: SIM115

    def wait_lock(self) -> None:
        hello = self._answer(30.0)
        self.pairing = hello.get("pairing")

    def stop_lock(self) -> None:
        """SIGTERM (matter.js closes its sessions), and SIGKILL when it does not exit within
        3 s; what it stored stays, as on a real lock."""
        lock, self.lock = self.lock, None
        if lock is not None:
            _end(lock, 3.0)

    def silence_lock(self) -> None:
        """The lock stops answering (the process is frozen) until `resume_lock`."""
        if self.lock is not None:
            self.lock.send_signal(signal.SIGSTOP)

    def resume_lock(self) -> None:
        if self.lock is not None:
            self.lock.send_signal(signal.SIGCONT)

    def control(self, op: str, **args: Any) -> dict[str, Any]:
        """One command on the lock's control channel (see virtual-lock.mjs)."""
        assert self.lock is not None and self.lock.stdin is not None
        self.lock.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.lock.stdin.flush()
        answer = self._answer(10.0)
        if not answer.get("ok"):
            raise RuntimeError(f"the virtual lock refused {op}: {answer.get('error')}")
        return answer

    def pins(self) -> dict[int, str]:
        """What is physically on the lock: {PIN slot: PIN}."""
        return {int(slot): pin for slot, pin in self.control("truth")["pins"].items()}

    def _answer(self, timeout_s: float) -> dict[str, Any]:
        assert self.lock is not None and self.lock.stdout is not None
        ready, _, _ = select.select([self.lock.stdout], [], [], timeout_s)
        line = self.lock.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the virtual lock did not answer (see {self.root}/lock.log)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    # -- the Matter server --------------------------------------------------------------------

    def start_server(self) -> None:
        """The server with the test PAA certificates in place (and `.version`, so it neither
        deletes them nor tries to download others) and its data in the temp folder."""
        paa = self.root / "paa"
        if not any(paa.glob("*.der")):
            _run("node", str(PAA_SCRIPT), str(paa))
        (paa / ".version").touch()
        Path("/data").mkdir(exist_ok=True)
        # CHIP writes this fixed path; the server sees a private file bind-mounted over it.
        Path("/tmp/chip_kvs").touch()
        script = (f"mount --bind {self.root / 'data'} /data && "
                  f"mount --bind {self.root / 'kvs'} /tmp/chip_kvs && "
                  f"exec {SERVER_BIN} --storage-path {self.root / 'server'} "
                  f"--paa-root-cert-dir {paa} --primary-interface {self.ns_if} "
                  f"--port {SERVER_PORT} --log-level warning")
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "-m", "sh", "-c", script],
            stdout=open(self.root / "server.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"matter-server exited (see {self.root}/server.log)")
            try:
                with socket.create_connection((self.ns_ip, SERVER_PORT), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("matter-server did not listen within 60 s")

    def stop_server(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            _end(server, 10.0)

    async def server_call(self, command: str, args: dict[str, Any] | None = None,
                          timeout_s: float = 60.0) -> Any:
        """One command straight to the server (what an operator's tool would do)."""
        async with aiohttp.ClientSession() as http, http.ws_connect(self.url) as ws:
            await ws.receive_json()
            await ws.send_json({"message_id": "1", "command": command, "args": args or {}})
            async with asyncio.timeout(timeout_s):
                while True:
                    doc = await ws.receive_json()
                    if doc.get("message_id") == "1":
                        if "error_code" in doc:
                            raise RuntimeError(f"{command}: {doc.get('details')}")
                        return doc.get("result")

    # -- all of it ------------------------------------------------------------------------------

    def start(self) -> None:
        """The network, the lock waiting to be commissioned, and the server."""
        self.create_network()
        self.launch_lock()  # node starts while the server does
        self.start_server()
        self.wait_lock()

    def close(self) -> None:
        """Stop both peers and delete the namespace (which deletes the veth pair)."""
        if self.lock is not None:
            self.resume_lock()
        self.stop_lock()
        self.stop_server()
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False)


def _end(process: subprocess.Popen[Any], grace_s: float) -> None:
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
