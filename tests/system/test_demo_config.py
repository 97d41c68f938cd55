"""The embedded default that the README's first command runs (config/demo.yaml): it is valid,
and the daemon brings its locks up and works its declared codes. Only the paths, the port and
the upstream (which scripts/demo.sh starts beside it) are changed for the test."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from drivers.simulator.driver import load_state_file
from tests.api_helpers import ROOT, lockbridge, start_daemon, wait_until
from tests.loopback import LOOPBACK

pytestmark = pytest.mark.slow
DEMO = ROOT / "config" / "demo.yaml"


def test_the_demo_config_is_valid() -> None:
    checked = subprocess.run(lockbridge("check-config", str(DEMO)), capture_output=True,
                             text=True, cwd=ROOT, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_demo_brings_its_locks_up_and_sets_its_codes(tmp_path: Path) -> None:
    text = DEMO.read_text()
    text = text.replace("state_dir: ../state/demo", "state_dir: {state}")
    text = text.replace("port: 8787", "port: 0")
    # scripts/demo.sh starts the reference upstream beside the daemon; the test runs without.
    text = re.sub(r"\nupstream:\n(  .*\n)+", "\n", text)
    assert "{state}" in text and "upstream:" not in text
    daemon = start_daemon(tmp_path, text)
    try:
        api = httpx.Client(base_url=daemon.url, timeout=20,
                           headers={"Authorization": f"Bearer {daemon.key}"})
        names = {d["display_name"] for d in api.get("/devices/list").json()["devices"]}
        assert names == {"Front door", "Back door", "Garage keypad", "Shed (refuses codes)"}
        daemon.pins.update({"482915", "4829"})
        def on_lock(lock_id: str) -> dict[int, str]:
            path = daemon.state / "simulated-locks.json"  # the demo's state_file
            return load_state_file(path).get(lock_id, {}) if path.exists() else {}

        wait_until(lambda: "482915" in on_lock("front-door").values(),
                   what="the staff code on the front door")
        wait_until(lambda: "4829" in on_lock("back-door").values(),
                   what="the staff code on the back door")

        def shed_errors() -> list[str]:
            codes = api.get("/access_codes/list").json()["access_codes"]
            return [e["error_code"] for c in codes if c["name"] == "Gardener"
                    for e in c["errors"]]

        # The lock that refuses sets says so with the error of the source documents.
        wait_until(lambda: "failed_to_set_on_device" in shed_errors(), timeout=60,
                   what="the refusing lock's error")
        status = daemon.cli("status").stdout
        assert "Front door" in status and "482915" not in status
    finally:
        daemon.stop()


RADIOS = ROOT / "config" / "demo-radios.yaml"


def test_the_radio_demo_pairs_its_locks_and_programs_a_zigbee_one(tmp_path: Path) -> None:
    """The second demo (scripts/demo-radios.sh): the fake Zigbee radio's two locks join, the
    Xiaomi lock answers, and a code created with the CLI goes onto a Zigbee lock."""
    config = tmp_path / "config" / "demo-radios.yaml"
    config.parent.mkdir()
    config.write_text(RADIOS.read_text().replace("port: 8789", "port: 0")
                      .replace("host: 127.0.0.42", f"host: {LOOPBACK}9")
                      .replace("host: 127.0.0.43", f"host: {LOOPBACK}19"))
    script = (ROOT / "scripts" / "demo_radios.py").read_text()
    assert '"127.0.0.42"' in script
    runner = tmp_path / "demo_radios.py"
    runner.write_text(script.replace('"127.0.0.42"', f'"{LOOPBACK}9"'))
    # A running demo holds 127.0.0.42 and .43; the test's copy takes addresses of its own.
    state = tmp_path / "state" / "radios"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(runner), str(config)], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        def status() -> str:
            done = subprocess.run(lockbridge("status", "-c", str(config)), capture_output=True,
                                  text=True, cwd=ROOT, timeout=60)
            return done.stdout

        wait_until(lambda: all(name in status() for name in
                               ("Yale", "Kwikset", "Balcony door")) and "[online]" in status(),
                   timeout=60, what="the radio demo's locks")
        key = subprocess.run(lockbridge("api-key", "create", "-c", str(config)),
                             capture_output=True, text=True, cwd=ROOT, timeout=60,
                             check=True).stdout.strip()
        port = int((state / "api.port").read_text())
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20,
                           headers={"Authorization": f"Bearer {key}"})
        yale = next(d for d in api.get("/devices/list").json()["devices"]
                    if "Yale" in d["display_name"])
        made = api.post("/access_codes/create", json={"device_id": yale["device_id"],
                                                       "name": "Guest", "code": "305917"})
        assert made.status_code == 200, made.text
        code_id = made.json()["access_code"]["access_code_id"]
        wait_until(lambda: api.post("/access_codes/get", json={"access_code_id": code_id})
                   .json()["access_code"]["status"] == "set", timeout=60,
                   what="the code set on the Zigbee lock")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.stderr is not None
    log = proc.stderr.read()
    assert "Traceback" not in log and "305917" not in log, log[-3000:]
