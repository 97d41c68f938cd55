"""The daemon as a user runs it: `lockbridge run` on a config, `status` beside it, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from drivers.simulator.driver import load_state_file
from tests.paths import ROOT

CONFIG = """\
bridge: {{id: t}}
state_dir: {state}
api: {{enabled: false}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    locks:
      - {{id: front, name: Front door}}
      - {{id: back, name: Back door, preset: schlage_be469}}
codes:
  - {{key: staff, device: front, name: Staff, code: "48213"}}
  - {{key: guest, device: back, name: Guest, type: time_bound, starts_at: "+1m", ends_at: "+1d"}}
"""


def lockbridge(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge.cli", *args]


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def test_run_status_and_clean_stop(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    proc = subprocess.Popen(lockbridge("run", "-c", str(config)), stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        def both_set() -> bool:
            out = subprocess.run(lockbridge("status", "-c", str(config), "--json"),
                                 capture_output=True, text=True, cwd=ROOT)
            if out.returncode != 0:
                return False
            doc = json.loads(out.stdout)
            statuses = [c["status"] for d in doc for c in d["access_codes"]]
            return len(doc) == 2 and statuses == ["set", "set"]

        wait_for(both_set)
        table = subprocess.run(lockbridge("status", "-c", str(config)), capture_output=True,
                               text=True, cwd=ROOT, check=True).stdout
        assert "Front door" in table and "Back door" in table
        assert "48213" not in table and "*****" in table
        sim = load_state_file(tmp_path / "state" / "sim.json")
        assert sim["front"] == {1: "48213"}
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert time.monotonic() - started < 5
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    log = proc.stderr.read()
    assert "stopped cleanly" in log
    assert "48213" not in log
    # A restart finds everything in place and sets nothing again.
    before = (tmp_path / "state" / "sim.json").stat().st_mtime_ns
    proc = subprocess.Popen(lockbridge("run", "-c", str(config)), stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    assert (tmp_path / "state" / "sim.json").stat().st_mtime_ns == before
    assert os.stat(tmp_path / "state" / "lockbridge.db").st_mode & 0o077 == 0


BULK = """\
bridge: {{id: bulk}}
state_dir: {state}
api: {{enabled: false}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    locks:
{locks}
codes:
{codes}
"""


def test_sigkill_in_the_middle_of_a_bulk_change_of_100_codes(tmp_path: Path) -> None:
    """Kill -9 the daemon while it programs 100 codes; after a restart every lock is exactly as
    desired and no slot was written twice."""
    locks = [f"l{i}" for i in range(4)]
    wanted = {lock: {f"{5000 + i * 100 + n}" for n in range(25)} for i, lock in enumerate(locks)}
    config = tmp_path / "config.yaml"
    config.write_text(BULK.format(
        state=tmp_path / "state",
        locks="\n".join(f"      - {{id: {lock}, name: Lock {lock}, latency_s: 0.05}}"
                        for lock in locks),
        codes="\n".join(f"  - {{key: k{pin}, device: {lock}, name: Guest {pin}, code: \"{pin}\"}}"
                        for lock, pins in wanted.items() for pin in sorted(pins)),
    ))
    sim_file = tmp_path / "state" / "sim.json"

    def set_count() -> int:
        try:
            return sum(len(v) for v in load_state_file(sim_file).values())
        except (OSError, ValueError, KeyError):
            return 0

    proc = subprocess.Popen(lockbridge("run", "-c", str(config)), stderr=subprocess.DEVNULL,
                            cwd=ROOT)
    try:
        wait_for(lambda: set_count() >= 30, timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert set_count() < 100, "the bulk change finished before the kill; slow it down"
        proc = subprocess.Popen(lockbridge("run", "-c", str(config)),
                                stderr=subprocess.DEVNULL, cwd=ROOT)
        wait_for(lambda: set_count() == 100, timeout=120)

        def all_set() -> bool:
            out = subprocess.run(lockbridge("status", "-c", str(config), "--json"),
                                 capture_output=True, text=True, cwd=ROOT)
            doc = json.loads(out.stdout) if out.returncode == 0 else []
            statuses = [c["status"] for d in doc for c in d["access_codes"]]
            return len(statuses) == 100 and set(statuses) == {"set"}

        wait_for(all_set, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    on_locks = load_state_file(sim_file)
    for lock in locks:
        assert set(on_locks[lock].values()) == wanted[lock]
    from drivers.simulator.driver import load_write_counts

    for lock, counts in load_write_counts(sim_file).items():
        assert set(counts.values()) == {1}, f"{lock}: a slot was written twice: {counts}"


POOL = """\
bridge: {{id: pool}}
state_dir: {state}
api: {{enabled: false}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    locks:
      - {{id: front, name: Front, latency_s: 0.4}}
codes:
  - {{key: g, device: front, name: Guest, type: time_bound, starts_at: "+3d", ends_at: "+4d",
      use_backup_access_code_pool: true}}
"""


def test_sigkill_during_a_pool_refill_leaves_the_pool_exactly_full(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(POOL.format(state=tmp_path / "state"))
    sim_file = tmp_path / "state" / "sim.json"

    def on_lock() -> dict[int, str]:
        try:
            return load_state_file(sim_file).get("front", {})
        except (OSError, ValueError, KeyError):
            return {}

    proc = subprocess.Popen(lockbridge("run", "-c", str(config)), stderr=subprocess.DEVNULL,
                            cwd=ROOT)
    try:
        wait_for(lambda: len(on_lock()) >= 2, timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert len(on_lock()) < 5
        proc = subprocess.Popen(lockbridge("run", "-c", str(config)),
                                stderr=subprocess.DEVNULL, cwd=ROOT)

        def pool_full() -> bool:
            out = subprocess.run(lockbridge("status", "-c", str(config), "--json"),
                                 capture_output=True, text=True, cwd=ROOT)
            doc = json.loads(out.stdout) if out.returncode == 0 else []
            pool = [c for d in doc for c in d["access_codes"] if c["is_backup"]]
            return len(pool) == 5 and {c["status"] for c in pool} == {"set"}

        wait_for(pool_full, timeout=60)
        time.sleep(1.0)  # nothing more may be written once the pool is full
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert len(on_lock()) == 5  # the guest code is not due yet: only the pool, no stray code
    from drivers.simulator.driver import load_write_counts

    assert set(load_write_counts(sim_file)["front"].values()) == {1}
