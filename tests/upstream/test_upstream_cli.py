"""`lockbridge upstream-dev` and `upstream-send` as an integrator runs them, with the daemon."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.paths import ROOT

CONFIG = """\
bridge: {{id: cli}}
state_dir: {state}
api: {{enabled: false}}
schedule: {{require_synchronized_clock: false}}
upstream: {{url: "ws://127.0.0.1:{port}/ws", token: "${{LOCKBRIDGE_UPSTREAM_TOKEN}}",
           backoff_base_s: 0.1, backoff_cap_s: 0.5}}
drivers:
  - kind: simulator
    name: sim
    locks:
      - {{id: front, name: Front door}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _lockbridge(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge.cli", *args]


@pytest.mark.timeout(60)
def test_reference_server_and_send_through_the_cli(tmp_path: Path) -> None:
    port = _free_port()
    env = os.environ | {"LOCKBRIDGE_UPSTREAM_TOKEN": "cli-token"}
    refused = subprocess.run(_lockbridge("upstream-dev", "--listen", f"0.0.0.0:{port}"),
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert refused.returncode == 2 and "loopback" in refused.stderr
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state", port=port))
    server = subprocess.Popen(_lockbridge("upstream-dev", "--listen", f"127.0.0.1:{port}",
                                          "--db", str(tmp_path / "up.db")),
                              env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    daemon = subprocess.Popen(_lockbridge("run", "-c", str(config)), env=env, cwd=ROOT,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            sent = subprocess.run(_lockbridge("upstream-send", "--server",
                                              f"http://127.0.0.1:{port}", "--bridge", "cli",
                                              "--timeout", "2", '{"action": "snapshot"}'),
                                  env=env, cwd=ROOT, capture_output=True, text=True,
                                  timeout=20)
            if sent.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["ok"] is True
        bad = subprocess.run(_lockbridge("upstream-send", "--server",
                                         f"http://127.0.0.1:{port}", "--bridge", "cli",
                                         '{"action": "access_codes.create"}'),
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=20)
        assert json.loads(bad.stdout)["error"]["field"] == "device_id"
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        for proc in (daemon, server):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    assert server.returncode == 0
    assert "cli-token" not in (server.stderr.read() if server.stderr else "")
    assert "cli-token" not in (daemon.stderr.read() if daemon.stderr else "")
