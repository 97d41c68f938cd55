"""After a restart, the PINs the daemon already holds are masked in its log before any of them is
written or read again: the redactor learns them from the store as the daemon loads it, not only
as codes are created or read from a lock in this process."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from drivers.simulator.driver import load_state_file
from tests.paths import ROOT
from tests.system.test_daemon import lockbridge, wait_for

PIN = "48213"
CONFIG = """\
bridge: {id: redact}
state_dir: {state}
api: {enabled: false}
engine: {default_command_spacing_s: 0}
schedule: {require_synchronized_clock: false}
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    control_file: control.jsonl
    locks:
      - {id: front, name: Front door{faults}}
codes:
  - {key: staff, device: front, name: Staff, code: "{pin}"}
"""


def _config(state: Path, faults: str = "") -> str:
    return (CONFIG.replace("{state}", str(state)).replace("{pin}", PIN)
            .replace("{faults}", faults))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_stored_pin_is_masked_in_the_log_of_the_next_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text(_config(state))
    first_log = tmp_path / "first.log"
    with first_log.open("wb") as log:
        proc = subprocess.Popen(lockbridge("run", "-c", str(config)), stderr=log, cwd=ROOT)
        try:
            wait_for(lambda: (state / "sim.json").exists()
                     and load_state_file(state / "sim.json").get("front") == {1: PIN})
        finally:
            _stop(proc)

    # The second run creates nothing (the code is declared already) and cannot read the lock
    # (offline from the start): only the store can have told it the PIN.
    config.write_text(_config(state, ", faults: {offline: true}"))
    second_log = tmp_path / "second.log"
    control = state / "control.jsonl"
    with second_log.open("wb") as log:
        proc = subprocess.Popen(lockbridge("run", "-c", str(config)), stderr=log, cwd=ROOT)
        try:
            wait_for(lambda: b"running" in second_log.read_bytes())

            def pin_logged() -> bool:
                # A control command naming a lock that does not exist is logged with that name;
                # here the name is the PIN, as a careless operator's script might send.
                with control.open("a") as commands:
                    commands.write(json.dumps({"lock": PIN, "op": "offline"}) + "\n")
                time.sleep(0.3)  # the driver polls the file every 0.2 s; bounded by wait_for
                return b"control: no lock" in second_log.read_bytes()

            wait_for(pin_logged)
        finally:
            _stop(proc)
    text = second_log.read_text()
    assert "control: no lock '****'" in text
    assert PIN not in text
    assert PIN not in first_log.read_text()
