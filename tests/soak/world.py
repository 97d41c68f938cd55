"""The soak's world: Mosquitto, the fake gateways, the reference upstream and the daemon, each
started, killed, stopped or frozen on the soak's say, all on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.zigbee2mqtt import FakeZigbee2MQTT, FakeZigbeeLock
from tests.fakes.zwavejs_ui import FakeNode, FakeZwaveJsUI
from tests.mosquitto import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = "soak"
TOKEN = "soak-upstream-token-0123456789"
Z2M_BASE = "soakz2m"
ZUI_PREFIX = "soakzui"
ZUI_GATEWAY = "soak"
ZUI_NODE = 5
COMMAND_TIMEOUT_S = 3.0
# Debian's libfaketime (scripts/peers.sh installs it): the daemon runs under it so the soak can
# step its wall clock from outside, as NTP or a stale RTC-less boot would; None when missing.
FAKETIME = next((p for p in ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                             "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                             "/usr/lib/faketime/libfaketime.so.1") if os.path.exists(p)), None)
# libfaketime reads the offset file again after this many seconds.
FAKETIME_REREAD_S = 1
RECONCILE_S = 10.0
BACKUP_POOL_SIZE = 2

# Every simulator preset, a spare lock that is removed and restored, and one lock of each MQTT
# gateway. `pin_length` is what the soak asks for; the algorithmic lock makes its own PINs.
SIM_LOCKS: dict[str, dict[str, Any]] = {
    "schlage": {"preset": "schlage_be469", "pin_length": 4, "native": False},
    "kwikset": {"preset": "kwikset_916", "pin_length": 6, "native": False},
    "yale": {"preset": "yale_assure", "pin_length": 6, "native": True},
    "masked": {"preset": "masked_reader", "pin_length": 6, "native": False},
    "algo": {"preset": "algorithmic", "pin_length": 0, "native": False},
    "spare": {"preset": "kwikset_916", "pin_length": 6, "native": False},
}
Z2M_LOCK = "zfront"
ZUI_LOCK = "zside"
MQTT_LOCKS: dict[str, dict[str, Any]] = {
    Z2M_LOCK: {"pin_length": 6, "native": False},
    ZUI_LOCK: {"pin_length": 6, "native": False},
}

CONFIG = """\
bridge: {{id: {bridge}}}
state_dir: {state}
logging: {{level: info}}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0, retry_base_s: 0.3, retry_cap_s: 3, probe_base_s: 0.5,
          command_timeout_s: {timeout}, reconcile_interval_s: {reconcile}, max_attempts: 1000,
          delay_warning_after_s: 600}}
properties: [{{id: home, time_zone: Europe/Lisbon}}]
schedule: {{require_synchronized_clock: true, bridge_lead_time_minutes: 0}}
backup_pool: {{size: {pool}, reserve_slots: 2}}
upstream:
  url: ws://127.0.0.1:{upstream_port}/ws
  token_file: {token_file}
  backoff_base_s: 0.2
  backoff_cap_s: 2
  connect_timeout_s: 3
  half_open_timeout_s: 5
  keep_acked_events: 1000000
drivers:
  - kind: simulator
    name: sim
    property: home
    state_file: sim.json
    control_file: sim-control.jsonl
    locks:
{sim_locks}
  - kind: zigbee2mqtt
    name: zigbee
    property: home
    base_topic: {z2m_base}
    answer_timeout_s: 1
    startup_wait_s: 3
    command_spacing_s: 0
    confirmation_window_s: 2
    broker: {{port: {mqtt_port}, reconnect_min_s: 0.1, reconnect_max_s: 0.5}}
    locks:
      - {{friendly_name: {z2m_lock}, name: {z2m_lock}, slot_count: 30}}
  - kind: zwavejs_mqtt
    name: zwave
    property: home
    prefix: {zui_prefix}
    gateway_name: {zui_gateway}
    answer_timeout_s: 1
    startup_wait_s: 3
    command_spacing_s: 0
    broker: {{port: {mqtt_port}, reconnect_min_s: 0.1, reconnect_max_s: 0.5}}
    locks:
      - {{node_id: {zui_node}, id: {zui_lock}, name: {zui_lock}}}
"""


def config_text(state: Path, upstream_port: int, mqtt_port: int, token_file: Path) -> str:
    """The daemon's configuration for the soak."""
    sim = "\n".join(f"      - {{id: {lock}, name: {lock}, preset: {spec['preset']}}}"
                    for lock, spec in SIM_LOCKS.items())
    return CONFIG.format(bridge=BRIDGE, state=state, timeout=COMMAND_TIMEOUT_S,
                         reconcile=RECONCILE_S, pool=BACKUP_POOL_SIZE,
                         upstream_port=upstream_port, token_file=token_file, sim_locks=sim,
                         z2m_base=Z2M_BASE, mqtt_port=mqtt_port, z2m_lock=Z2M_LOCK,
                         zui_prefix=ZUI_PREFIX, zui_gateway=ZUI_GATEWAY, zui_node=ZUI_NODE,
                         zui_lock=ZUI_LOCK)


def lockbridge(*args: str) -> list[str]:
    """The CLI as a user runs it."""
    return [sys.executable, "-m", "bridge.cli", *args]


@dataclass
class Sample:
    """One look at the daemon process."""

    at: float
    incarnation: int
    rss_kb: int
    fds: int


@dataclass
class Daemon:
    """The `lockbridge run` process, restarted after every kill; every exit is accounted for."""

    config: Path
    state: Path
    log: Path
    proc: asyncio.subprocess.Process | None = None
    port: int = 0
    key: str = ""
    incarnation: int = 0
    kills: int = 0
    expected_exit: bool = False
    unexpected_exits: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    up_since: float = 0.0
    starting: bool = False
    # Seconds the daemon's wall clock is off true time (monotonic time is never faked).
    clock_offset: float = 0.0

    @property
    def clock_file(self) -> Path:
        """The offset libfaketime applies to the daemon's wall clock."""
        return self.state.parent / "faketime.offset"

    def set_clock(self, offset: float) -> None:
        """Step the daemon's wall clock to `offset` seconds off true time (running or not); it
        sees the step within FAKETIME_REREAD_S."""
        staging = self.clock_file.with_suffix(".new")
        staging.write_text(f"{offset:+.0f}\n")
        staging.replace(self.clock_file)  # atomic: libfaketime never reads half a line
        self.clock_offset = offset

    def clock_now(self) -> datetime:
        """What the daemon's wall clock reads now."""
        return datetime.fromtimestamp(time.time() + self.clock_offset, UTC)

    def _environment(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if FAKETIME is not None:
            if not self.clock_file.exists():
                self.set_clock(self.clock_offset)
            # Only the wall clock moves: the loop's timers keep real monotonic time, as on a box
            # whose clock NTP steps.
            env.update(LD_PRELOAD=FAKETIME, FAKETIME_DONT_FAKE_MONOTONIC="1",
                       FAKETIME_TIMESTAMP_FILE=str(self.clock_file),
                       FAKETIME_CACHE_DURATION=str(FAKETIME_REREAD_S))
        return env

    async def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until its API answers."""
        port_file = self.state / "api.port"
        port_file.unlink(missing_ok=True)
        with self.log.open("ab") as sink:
            self.proc = await asyncio.create_subprocess_exec(
                *lockbridge("run", "-c", str(self.config)), cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL, stderr=sink, env=self._environment())
        self.expected_exit = False
        self.incarnation += 1
        self.starting = True
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"the daemon exited at start ({self.proc.returncode})")
                if port_file.exists() and port_file.read_text().strip():
                    self.port = int(port_file.read_text())
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the daemon did not start its API")
                await asyncio.sleep(0.05)
        finally:
            self.starting = False
        self.up_since = time.monotonic()

    @property
    def running(self) -> bool:
        """True while the process lives."""
        return self.proc is not None and self.proc.returncode is None

    def check_alive(self) -> None:
        """Record an exit the soak did not cause."""
        if self.proc is not None and self.proc.returncode is not None and not self.expected_exit:
            self.unexpected_exits.append(
                f"incarnation {self.incarnation} exited on its own ({self.proc.returncode})")
            self.expected_exit = True

    async def kill(self) -> None:
        """SIGKILL, as a power cut would."""
        if self.proc is None:
            return
        self.check_alive()
        self.expected_exit = True
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
            self.kills += 1

    async def stop(self) -> int | None:
        """SIGTERM and wait for a clean exit; returns the exit status."""
        if self.proc is None:
            return None
        self.check_alive()
        self.expected_exit = True
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode

    def limit_file_size(self, limit: int | None) -> bool:
        """Disk full: no file of the daemon may grow (RLIMIT_FSIZE; Python ignores SIGXFSZ),
        or lift it again. False when the process is gone."""
        if not self.running or self.proc is None:
            return False
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        try:
            resource.prlimit(self.proc.pid, resource.RLIMIT_FSIZE,
                             (hard if limit is None else limit, hard))
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def sample(self) -> None:
        """RSS and open descriptors now, from /proc."""
        if not self.running or self.proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            rss = 0
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
            fds = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
            if rss == 0:
                return  # exiting (a zombie has no memory and no descriptors): not a sample
            self.samples.append(Sample(time.monotonic(), self.incarnation, rss, fds))


@dataclass
class Upstream:
    """`lockbridge upstream-dev` on a fixed port: killed, frozen (SIGSTOP) and restarted."""

    db: Path
    token_file: Path
    log: Path
    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    frozen: bool = False

    async def start(self, timeout: float = 20.0) -> None:
        """Start it and wait until it listens."""
        with self.log.open("ab") as sink:
            self.proc = await asyncio.create_subprocess_exec(
                *lockbridge("upstream-dev", "--listen", f"127.0.0.1:{self.port}", "--db",
                            str(self.db), "--token-file", str(self.token_file)),
                cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=sink)
        self.frozen = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise RuntimeError("the reference upstream exited at start")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the reference upstream did not listen")

    @property
    def running(self) -> bool:
        """True while the process lives (frozen or not)."""
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL (thawing it first, so the kill lands)."""
        if self.running and self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        self.frozen = False

    def freeze(self, frozen: bool) -> None:
        """SIGSTOP: every connection stays open and carries nothing (half-open); SIGCONT."""
        if self.running and self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)
            self.frozen = frozen

    async def stop(self) -> None:
        """Stop for good."""
        if self.running and self.proc is not None:
            self.freeze(False)
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def post(self, session: aiohttp.ClientSession, command_id: str,
                   command: dict[str, Any], timeout: float = 6.0) -> dict[str, Any] | None:
        """Send a command through the server's own interface: its result, or None when it is
        only queued (the server resends it; the result is read from its database later)."""
        body = {"bridge_id": BRIDGE, "command_id": command_id, "command": command,
                "timeout": timeout}
        async with session.post(f"http://127.0.0.1:{self.port}/commands", json=body,
                                headers={"Authorization": f"Bearer {TOKEN}"},
                                timeout=aiohttp.ClientTimeout(total=timeout + 3)) as resp:
            if resp.status == 202:
                return None
            resp.raise_for_status()
            result: dict[str, Any] = await resp.json()
            return result


@dataclass
class Gateways:
    """Mosquitto with the fake Zigbee2MQTT and Z-Wave JS UI on it."""

    broker: Mosquitto
    z2m: FakeZigbee2MQTT
    zui: FakeZwaveJsUI

    @classmethod
    async def start(cls, directory: Path) -> Gateways:
        """Start the broker and both fakes."""
        broker = Mosquitto(directory)
        broker.start()
        z2m = FakeZigbee2MQTT(broker.host, broker.port, Z2M_BASE,
                              [FakeZigbeeLock(Z2M_LOCK, "0x00124b0000000a01")])
        zui = FakeZwaveJsUI(broker.host, broker.port, ZUI_PREFIX, ZUI_GATEWAY,
                            [FakeNode(ZUI_NODE, slot_count=10)])
        await z2m.start()
        await zui.start()
        return cls(broker, z2m, zui)

    async def stop(self) -> None:
        """Stop the fakes and the broker."""
        await self.z2m.stop()
        await self.zui.stop()
        self.broker.stop()

    def mqtt_slots(self, lock: str) -> dict[int, str]:
        """What an MQTT lock holds, slot to PIN."""
        if lock == Z2M_LOCK:
            return dict(self.z2m.lock(Z2M_LOCK).table)
        return dict(self.zui.node(ZUI_NODE).codes)

    def mqtt_writes(self, lock: str) -> int:
        """How many sets an MQTT lock applied."""
        applied = (self.z2m.lock(Z2M_LOCK).applied if lock == Z2M_LOCK
                   else self.zui.node(ZUI_NODE).applied)
        return sum(1 for _, pin in applied if pin is not None)


def append_control(state: Path, command: dict[str, Any]) -> None:
    """One line for the simulator's control file (one write, so the daemon never sees half)."""
    line = (json.dumps(command) + "\n").encode()
    fd = os.open(state / "sim-control.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
