"""The daemon as a user runs it: `lockbridge run` on a config, `status` beside it, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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
        sim = json.loads((tmp_path / "state" / "sim.json").read_text())
        assert sim["front"]["1"]["pin"] == "48213"
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
