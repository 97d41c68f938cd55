"""The benchmark scenarios of issue 10; each returns a dict of measurements and ratios."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import lock_specs, make_engine, measure, peak_rss_mb, wait_settled
from bridge.clock import SystemClock
from bridge.driver import CodeWrite
from bridge.engine import CodeRequest
from bridge.model import AccessCodeType, Event, EventType
from bridge.planner import Policy, next_command, should_be_on_lock
from bridge.records import CodeRecord, DeviceRecord
from bridge.secrets import PinCipher
from bridge.store import Intent, Store
from drivers.simulator import SimulatorDriver

ROOT = Path(__file__).resolve().parents[1]


def _pins(count: int) -> list[str]:
    rng = random.Random(5)
    seen: set[str] = set()
    while len(seen) < count:
        seen.add(str(rng.randrange(10**5, 10**6)))
    return sorted(seen)


async def cold_converge(locks: int, codes_per_lock: int) -> dict[str, Any]:
    """Create codes through the engine until all are set and verified, against a plain loop of
    the same SQLite transactions and simulator calls."""
    total = locks * codes_per_lock
    pins = _pins(codes_per_lock)
    with tempfile.TemporaryDirectory() as tmp:
        engine, store, _ = await make_engine(Path(tmp), locks)
        runner = asyncio.create_task(engine.run())
        with measure() as lb:
            for device_id in list(engine.devices):
                for pin in pins:
                    await engine.create_code(device_id, CodeRequest(code=pin))
            await wait_settled(engine)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        assert engine.outstanding() == 0
        await store.close()
    with tempfile.TemporaryDirectory() as tmp:
        base = await _bare_converge(Path(tmp), locks, pins)
    return {
        "codes": total,
        "wall_s": round(lb.wall, 3), "cpu_s": round(lb.cpu, 3),
        "baseline_wall_s": round(base.wall, 3), "baseline_cpu_s": round(base.cpu, 3),
        "ratio": round(base.wall / lb.wall, 3),
        "overhead_ms_per_code": round((lb.wall - base.wall) / total * 1000, 3),
    }


async def _bare_converge(folder: Path, locks: int, pins: list[str]) -> Any:
    """The unavoidable work: per code, the create, intent and result transactions and one
    simulator write and read, in a plain loop."""
    store = Store(folder / "bare.db", PinCipher(os.urandom(32)))
    await store.open()
    clock = SystemClock()
    driver = SimulatorDriver("sim", lock_specs(locks), clock)
    now = datetime.now(UTC)
    infos = driver.devices()
    devices = [DeviceRecord(f"d{i}", "sim", info.external_id, info, now)
               for i, info in enumerate(infos)]
    for device in devices:
        await store.write(lambda tx, d=device: tx.put_device(d))
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
                intent = Intent(device.device_id, slot, "write", code.access_code_id, pin)
                await store.write(lambda tx, i=intent: tx.put_intent(i))
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


def scale(sizes: list[int], codes_per_lock: int) -> dict[str, Any]:
    """Converge time and peak RSS per lock count, each size in its own process."""
    rows = []
    for locks in sizes:
        out = subprocess.run(
            [sys.executable, "-m", "bench.run", "--only-scale-point", str(locks),
             "--codes-per-lock", str(codes_per_lock)],
            capture_output=True, text=True, cwd=ROOT, check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    slope = None
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        slope = round((last["wall_s"] / first["wall_s"]) / (last["locks"] / first["locks"]), 3)
    return {"points": rows, "growth_vs_linear": slope}


async def scale_point(locks: int, codes_per_lock: int) -> dict[str, Any]:
    """One point of the scale curve (run in a fresh process)."""
    result = await cold_converge(locks, codes_per_lock)
    return {"locks": locks, "wall_s": result["wall_s"], "peak_rss_mb": round(peak_rss_mb(), 1)}


async def steady_state(locks: int, codes_per_lock: int, seconds: float) -> dict[str, Any]:
    """CPU share and RSS of a converged bridge doing nothing, against an idle asyncio process."""
    with tempfile.TemporaryDirectory() as tmp:
        engine, store, _ = await make_engine(Path(tmp), locks)
        runner = asyncio.create_task(engine.run())
        pins = _pins(codes_per_lock)
        for device_id in list(engine.devices):
            for pin in pins:
                await engine.create_code(device_id, CodeRequest(code=pin))
        await wait_settled(engine)
        with measure() as idle:
            await asyncio.sleep(seconds)
        rss = peak_rss_mb()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await store.close()
    # The idle baseline runs in its own process so its RSS is a bare interpreter's.
    bare = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import asyncio,resource,time;t=time.process_time();"
        f"asyncio.run(asyncio.sleep({seconds}));"
        "print(time.process_time()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
        stdout=asyncio.subprocess.PIPE)
    bare_out, _ = await bare.communicate()
    bare_cpu, bare_rss = bare_out.decode().split()
    return {
        "locks": locks, "codes": locks * codes_per_lock, "seconds": seconds,
        "cpu_share_pct": round(idle.cpu / idle.wall * 100, 3),
        "baseline_cpu_share_pct": round(float(bare_cpu) / seconds * 100, 3),
        "peak_rss_mb": round(rss, 1), "baseline_rss_mb": round(int(bare_rss) / 1024, 1),
    }


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
    """Wall time from process start to a loaded engine over a full store, against Python start
    plus the same imports."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        key = os.urandom(32)
        (folder / "key").write_bytes(key)
        asyncio.run(_fill_store(folder, key, locks, codes_per_lock))
        script = (
            "import asyncio,sys,time;t=time.perf_counter();"
            f"from bench.startup_probe import main;asyncio.run(main(sys.argv[1], {locks}));"
            "print(time.perf_counter()-t)"
        )
        lb = _best_of(3, [sys.executable, "-c", script, tmp])
        bare = _best_of(3, [sys.executable, "-c",
                            "import time;t=time.perf_counter();import bridge.engine,"
                            "bridge.store,drivers.simulator,aiohttp,pydantic,yaml;"
                            "print(time.perf_counter()-t)"])
    return {"locks": locks, "codes": locks * codes_per_lock, "wall_s": round(lb, 3),
            "baseline_wall_s": round(bare, 3)}


def _best_of(runs: int, argv: list[str]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT)
        best = min(best, time.perf_counter() - started)
    return best


async def _fill_store(folder: Path, key: bytes, locks: int, codes_per_lock: int) -> None:
    store = Store(folder / "lockbridge.db", PinCipher(key))
    await store.open()
    clock = SystemClock()
    driver = SimulatorDriver("sim", lock_specs(locks), clock)
    from bridge.engine import Engine

    engine = Engine(store, clock, Policy(), {"sim": driver})
    await engine.load()
    now = datetime.now(UTC)
    pins = _pins(codes_per_lock)
    for device_id in engine.devices:
        batch = [CodeRecord(str(uuid.uuid4()), device_id, now, code=pin, slot=slot,
                            on_lock_pin=pin, verified=True, ever_set=True)
                 for slot, pin in enumerate(pins, start=1)]

        def put(tx, batch=batch):  # type: ignore[no-untyped-def]
            for code in batch:
                tx.put_code(code)

        await store.write(put)
    await store.close()
