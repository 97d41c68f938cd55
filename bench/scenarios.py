"""The benchmark scenarios of issue 10; each returns a dict of measurements and ratios."""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from bench.common import lock_specs, make_engine, measure, peak_rss_mb, rss_mb, wait_settled
from bridge.clock import SystemClock
from bridge.driver import CodeWrite
from bridge.engine import CodeRequest
from bridge.model import AccessCodeStatus, AccessCodeType, Event, EventType
from bridge.planner import Policy, next_command, should_be_on_lock
from bridge.records import CodeRecord, DeviceRecord
from bridge.secrets import PinCipher
from bridge.store import Intent, IntentOp, Store, Tx
from drivers.simulator import SimulatorDriver

ROOT = Path(__file__).resolve().parents[1]
# Create requests a client keeps in flight during cold converge (a property system's sync).
CREATES_IN_FLIGHT = 64
# How long after READY the daemon's memory is read (its first reconcile is over by then).
SETTLE_S = 10.0


def _pins(count: int) -> list[str]:
    rng = random.Random(5)
    seen: set[str] = set()
    while len(seen) < count:
        seen.add(str(rng.randrange(10**5, 10**6)))
    return sorted(seen)


async def cold_converge(locks: int, codes_per_lock: int, baseline_locks: int | None = None,
                        idle_s: float = 0.0, in_flight: int = CREATES_IN_FLIGHT
                        ) -> dict[str, Any]:
    """Create codes, `in_flight` at a time, until all are set and verified, against a plain
    loop of the same SQLite transactions and simulator calls; then, if `idle_s`, the converged
    bridge's steady state.

    The baseline's cost per code does not depend on the lock count (it is one sequential loop),
    so it runs on `baseline_locks` locks and the ratio compares cost per code.
    """
    total = locks * codes_per_lock
    pins = _pins(codes_per_lock)
    steady: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        fsyncs_per_s = _fsync_rate(Path(tmp))
        engine, store, _ = await make_engine(Path(tmp), locks)
        runner = asyncio.create_task(engine.run())
        devices = list(engine.devices)
        # Lock by lock, as a property's first sync sends them, `in_flight` requests at a time.
        requests = iter([(device_id, pin) for pin in pins for device_id in devices])

        async def client() -> None:
            for device_id, pin in requests:
                await engine.create_code(device_id, CodeRequest(code=pin))

        groups0, writes0 = store.groups, store.grouped_writes
        with measure() as lb:
            await asyncio.gather(*(client() for _ in range(in_flight)))
            await wait_settled(engine)
        groups, writes = store.groups - groups0, store.grouped_writes - writes0
        assert engine.outstanding() == 0
        converged_rss = peak_rss_mb()
        if idle_s > 0:
            # The idle baseline process sleeps alongside: neither uses the CPU the other needs.
            bare = asyncio.create_task(_idle_baseline(idle_s))
            with measure() as idle:
                await asyncio.sleep(idle_s)
            steady = {"locks": locks, "codes": total, "seconds": idle_s,
                      "cpu_share_pct": round(idle.cpu / idle.wall * 100, 3),
                      "rss_mb": round(rss_mb(), 1), "peak_rss_mb": round(peak_rss_mb(), 1),
                      **await bare}
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await store.close()
    sample = min(locks, baseline_locks or locks)
    with tempfile.TemporaryDirectory() as tmp:
        base = await _bare_converge(Path(tmp), sample, pins)
    per_code = lb.wall / total
    base_per_code = base.wall / (sample * codes_per_lock)
    result: dict[str, Any] = {
        "locks": locks, "codes": total,
        "wall_s": round(lb.wall, 3), "cpu_s": round(lb.cpu, 3),
        "baseline_codes": sample * codes_per_lock,
        "baseline_wall_s": round(base.wall, 3), "baseline_cpu_s": round(base.cpu, 3),
        "ratio": round(base_per_code / per_code, 3),
        "overhead_ms_per_code": round((per_code - base_per_code) * 1000, 3),
        "creates_in_flight": in_flight,
        "writes": writes, "writes_per_fsync": round(writes / groups, 1) if groups else None,
        "disk_fsyncs_per_s": round(fsyncs_per_s),
    }
    result["peak_rss_mb"] = round(converged_rss, 1)
    if steady is not None:
        result["steady_state"] = steady
    return result


def _fsync_rate(folder: Path, seconds: float = 1.0) -> float:
    """How many small append+fsync rounds this disk does per second (what bounds a naive
    loop of durable transactions)."""
    path = folder / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    rounds = 0
    try:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            os.write(fd, b"x" * 128)
            os.fsync(fd)
            rounds += 1
        return rounds / (time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()


async def _idle_baseline(seconds: float) -> dict[str, Any]:
    """An idle asyncio process's CPU share and RSS, in its own interpreter."""
    bare = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import asyncio,time;t=time.process_time();"
        f"asyncio.run(asyncio.sleep({seconds}));"
        "rss=[l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS:')][0];"
        "print(time.process_time()-t, rss)",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await bare.communicate()
    cpu, rss_kib = out.decode().split()
    return {"baseline_cpu_share_pct": round(float(cpu) / seconds * 100, 3),
            "baseline_rss_mb": round(int(rss_kib) / 1024, 1)}


async def _bare_converge(folder: Path, locks: int, pins: list[str]) -> Any:
    """The unavoidable work: per code, the create, intent and result transactions and one
    simulator write and read, in a plain loop (each transaction its own fsync)."""
    store = Store(folder / "bare.db", PinCipher(os.urandom(32)), group_commit=False)
    await store.open()
    clock = SystemClock()
    driver = SimulatorDriver("sim", lock_specs(locks), clock)
    now = datetime.now(UTC)
    infos = driver.devices()
    devices = [DeviceRecord(f"d{i}", "sim", info.external_id, info, now)
               for i, info in enumerate(infos)]
    for device in devices:
        await store.write(partial(Tx.put_device, device=device))
    with measure() as base:
        for device in devices:
            for slot, pin in enumerate(pins, start=1):
                code = CodeRecord(str(uuid.uuid4()), device.device_id, now, code=pin)
                event = Event(str(uuid.uuid4()), EventType.ACCESS_CODE_CREATED, now,
                              device.device_id, code.access_code_id)

                def created(tx, c=code, e=event):  # type: ignore[no-untyped-def]
                    tx.put_code(c)
                    tx.add_event(e)

                await store.write(created)
                intent = Intent(device.device_id, slot, IntentOp.WRITE, code.access_code_id, pin)
                await store.write(partial(Tx.put_intent, intent=intent))
                await driver.write_code(device.external_id, CodeWrite(slot, pin, "x"))
                await driver.read_slots(device.external_id, [slot])

                def done(tx, c=code, d=device, s=slot):  # type: ignore[no-untyped-def]
                    tx.put_code(c)
                    tx.drop_intent(d.device_id, s)
                    tx.add_event(Event(str(uuid.uuid4()), EventType.ACCESS_CODE_SET_ON_DEVICE,
                                       now, d.device_id, c.access_code_id, {"code": c.code}))

                await store.write(done)
    await store.close()
    return base


def scale(sizes: list[int], codes_per_lock: int,
          known: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Converge time and peak RSS per lock count, each size in its own process (or taken from
    `known`, points already measured the same way by cold converge)."""
    rows = []
    for locks in sizes:
        if known and locks in known:
            rows.append(known[locks])
            continue
        out = subprocess.run(
            [sys.executable, "-m", "bench.run", "--only-scale-point", str(locks),
             "--codes-per-lock", str(codes_per_lock)],
            capture_output=True, text=True, cwd=ROOT, check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"points": rows, "exponent": _loglog_slope(
        [(r["locks"], r["wall_s"]) for r in rows])}


def _loglog_slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(time) over log(size): 1.0 is linear growth, 2.0 quadratic."""
    import math

    if len(points) < 2:
        return None
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread, 3)


async def scale_point(locks: int, codes_per_lock: int) -> dict[str, Any]:
    """One point of the scale curve (run in a fresh process)."""
    result = await cold_converge(locks, codes_per_lock, baseline_locks=1)
    return {"locks": locks, "wall_s": result["wall_s"], "peak_rss_mb": round(peak_rss_mb(), 1)}


def schedule_churn(codes: int, days: int = 7) -> dict[str, Any]:
    """Planner decisions per second over a simulated week of time-bound codes (pure, no I/O)."""
    from bridge.driver import DeviceInfo, LockCapabilities, PinConstraints

    start = datetime(2026, 6, 1, tzinfo=UTC)
    locks = max(1, codes // 100)
    device = DeviceRecord("d", "sim", "x", DeviceInfo("x", "X", "m", "m", "lock",
                                                      LockCapabilities(slot_count=250),
                                                      PinConstraints()), start)
    rng = random.Random(2)
    per_lock: list[list[CodeRecord]] = [[] for _ in range(locks)]
    for n in range(codes):
        begins = start + timedelta(hours=rng.randrange(0, days * 24))
        per_lock[n % locks].append(CodeRecord(
            f"c{n}", "d", start, type=AccessCodeType.TIME_BOUND, code=f"{n:06d}",
            starts_at=begins, ends_at=begins + timedelta(hours=rng.randrange(2, 72))))
    policy = Policy()
    decisions = 0
    with measure() as spent:
        for hour in range(days * 24):
            now = start + timedelta(hours=hour)
            for codes_of_lock in per_lock:
                for code in codes_of_lock:
                    should_be_on_lock(code, device, now, policy)
                    decisions += 1
                next_command(device, codes_of_lock, now, policy)
                decisions += 1
    return {"codes": codes, "simulated_days": days, "decisions": decisions,
            "decisions_per_s": round(decisions / spent.wall)}


def startup(locks: int, codes_per_lock: int) -> dict[str, Any]:
    """Wall time from `lockbridge run` to systemd's READY=1 over a full store, against Python
    start plus the daemon's imports."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        key = os.urandom(32)
        (folder / "pin.key").write_bytes(key)
        (folder / "pin.key").chmod(0o600)  # the daemon refuses a key others can read
        asyncio.run(_fill_store(folder, key, locks, codes_per_lock))
        _fill_locks(folder / "sim.json", locks, codes_per_lock)
        config = folder / "config.yaml"
        config.write_text(yaml.safe_dump({
            "state_dir": str(folder), "api": {"port": 0},
            "schedule": {"require_synchronized_clock": False},
            "drivers": [{"kind": "simulator", "name": "sim", "state_file": "sim.json",
                         "locks": [
                {"id": spec.lock_id, "name": spec.name, "slot_count": spec.slot_count}
                for spec in lock_specs(locks)]}]}))
        _compile_sources()
        runs = [_time_to_ready(config, folder) for _ in range(3)]
        bare = _best_of(3, [sys.executable, "-c", "import bridge.cli, bridge.daemon"])
        bare_rss = _imports_rss_mb()
    ready = min(runs, key=lambda run: run[0])
    return {"locks": locks, "codes": locks * codes_per_lock, "wall_s": round(ready[0], 3),
            "baseline_wall_s": round(bare, 3),
            # The daemon's memory once settled over this store (the last of the runs).
            "rss_mb": runs[-1][1], "peak_rss_mb": runs[-1][2],
            "baseline_rss_mb": bare_rss}


def _compile_sources() -> None:
    """Byte-compile lockbridge as a wheel install does: pip compiles at install time and the
    service unit sets PYTHONDONTWRITEBYTECODE, so a gateway's start reads cached bytecode. A
    checkout's cache goes stale with every change and, with that variable set (as in the unit,
    and in many shells), each start would compile the changed modules again and time that."""
    for package in ("bridge", "drivers"):
        compileall.compile_dir(ROOT / package, quiet=1)


def _imports_rss_mb() -> float:
    """RSS of an interpreter that imported the daemon and nothing else."""
    out = subprocess.run(
        [sys.executable, "-c", "import bridge.cli, bridge.daemon;"
         "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS:')][0])"],
        capture_output=True, text=True, check=True, cwd=ROOT)
    return round(int(out.stdout) / 1024, 1)


def _daemon_memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) of a process, in MiB."""
    fields = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    return round(fields["VmRSS"], 1), round(fields["VmHWM"], 1)


def _time_to_ready(config: Path, folder: Path,
                   settle_s: float = SETTLE_S) -> tuple[float, float, float]:
    """Start the real daemon with a notify socket: seconds until it says READY=1, and its RSS
    and peak RSS `settle_s` later (its first reconcile of every lock done by then)."""
    address = str(folder / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(60)
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "run", "-c", str(config)], cwd=ROOT,
            env=dict(os.environ, NOTIFY_SOCKET=address), stderr=subprocess.DEVNULL)
        try:
            while b"READY=1" not in sock.recv(4096):
                pass
            ready = time.perf_counter() - started
            time.sleep(settle_s)
            rss, peak = _daemon_memory_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        os.unlink(address)
    return ready, rss, peak


def _best_of(runs: int, argv: list[str]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT)
        best = min(best, time.perf_counter() - started)
    return best


def _fill_locks(path: Path, locks: int, codes_per_lock: int) -> None:
    """The simulated locks' memory as after the store's codes were set on them, so the daemon
    over that store is in steady state, not converging again."""
    slots = {str(slot): {"pin": pin, "name": None, "key": None, "window": None}
             for slot, pin in enumerate(_pins(codes_per_lock), start=1)}
    path.write_text(json.dumps({spec.lock_id: {"slots": slots, "writes": {}}
                                for spec in lock_specs(locks)}))


async def _fill_store(folder: Path, key: bytes, locks: int, codes_per_lock: int) -> None:
    store = Store(folder / "lockbridge.db", PinCipher(key))
    await store.open()
    clock = SystemClock()
    driver = SimulatorDriver("sim", lock_specs(locks), clock)
    from bridge.daemon import EngineSettings
    from bridge.daemon import make_engine as daemon_engine

    engine = daemon_engine(store, clock, {"sim": driver}, EngineSettings())
    await engine.load()
    now = datetime.now(UTC)
    pins = _pins(codes_per_lock)
    for device_id in engine.devices:
        # Stored as a converged bridge stores them: set, verified, on the lock.
        batch = [CodeRecord(str(uuid.uuid4()), device_id, now, code=pin, slot=slot,
                            on_lock_pin=pin, verified=True, ever_set=True,
                            status=AccessCodeStatus.SET)
                 for slot, pin in enumerate(pins, start=1)]

        def put(tx, batch=batch):  # type: ignore[no-untyped-def]
            for code in batch:
                tx.put_code(code)

        await store.write(put)
    await store.close()
