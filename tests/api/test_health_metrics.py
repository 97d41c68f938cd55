"""`/health` and `/metrics` of the real daemon, as a monitor and Prometheus read them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api_helpers import Daemon, start_daemon, wait_until

pytestmark = pytest.mark.slow

TROUBLED = """\
bridge: {{id: health-test}}
state_dir: {state}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    locks:
      - {{id: front, name: Front door}}
      - {{id: shed, name: Shed, faults: {{offline: true}}}}
  - kind: simulator
    name: cloud
    locks:
      - {{id: gate, name: Gate, faults: {{account_disconnected: true}}}}
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    running = start_daemon(tmp_path)
    yield running
    running.stop()


def metric_samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = httpx.get(url + "/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text)
            for s in family.samples}


def test_ready_daemon_and_its_metrics_follow_a_code(daemon: Daemon) -> None:
    health = httpx.get(daemon.url + "/health")
    assert health.status_code == 200
    assert health.json()["ready"] is True and health.json()["not_ready"] == []
    assert health.json()["locks"] == {"total": 3, "online": 3}

    auth = {"Authorization": f"Bearer {daemon.key}"}
    devices = httpx.post(daemon.url + "/devices/list", headers=auth, json={}).json()["devices"]
    front = next(d["device_id"] for d in devices if d["display_name"] == "Front door")
    created = httpx.post(daemon.url + "/access_codes/create", headers=auth,
                         json={"device_id": front, "name": "Staff", "code": "5791"})
    assert created.status_code == 200
    wait_until(lambda: "5791" in daemon.slots("front").values(), what="code on the lock")

    def set_count() -> float:
        return metric_samples(daemon.url).get(
            ("lockbridge_access_codes", frozenset({("status", "set"), ("is_backup", "false")})),
            0)

    wait_until(lambda: set_count() == 1, what="metrics showing the code set")
    got = metric_samples(daemon.url)
    assert got[("lockbridge_locks", frozenset({("availability", "online")}))] == 3
    assert got[("lockbridge_command_duration_seconds_count",
                frozenset({("driver", "sim"), ("outcome", "ok")}))] >= 1
    assert got[("lockbridge_upstream_configured", frozenset())] == 0


def test_not_ready_says_which_link_is_down(tmp_path: Path) -> None:
    running = start_daemon(tmp_path, TROUBLED)
    try:
        def troubled() -> httpx.Response | None:
            answer = httpx.get(running.url + "/health")
            return answer if answer.status_code == 503 else None

        answer = wait_until(troubled, what="/health to say not ready")
        body = answer.json()
        assert body["ready"] is False
        assert body["not_ready"] == ["driver cloud: link down, 1 lock unreachable"]
        assert body["notes"] == ["1 lock offline: Shed"]
        got = metric_samples(running.url)
        assert got[("lockbridge_locks", frozenset({("availability", "offline")}))] == 1
        assert got[("lockbridge_locks",
                    frozenset({("availability", "account_disconnected")}))] == 1
        assert got[("lockbridge_errors", frozenset({("on", "device"),
                                                    ("code", "account_disconnected")}))] == 1
    finally:
        running.stop()



LINKED = """\
bridge: {{id: linked}}
state_dir: {state}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
upstream:
  url: ws://127.0.0.1:{port}/ws
  token: ${{LOCKBRIDGE_UPSTREAM_TOKEN}}
  backoff_cap_s: 1
drivers:
  - kind: simulator
    name: sim
    locks:
      - {{id: front, name: Front door}}
"""


def test_upstream_link_state_and_outbox_depth(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    monkeypatch.setenv("LOCKBRIDGE_UPSTREAM_TOKEN", "metrics-token")
    upstream = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "upstream-dev", "--listen", f"127.0.0.1:{port}",
         "--db", str(tmp_path / "up.db")], env=os.environ.copy(), stderr=subprocess.DEVNULL)
    running = start_daemon(tmp_path, LINKED.replace("{port}", str(port)))
    try:
        def linked() -> bool:
            got = metric_samples(running.url)
            return got.get(("lockbridge_upstream_connected", frozenset())) == 1 and \
                got.get(("lockbridge_outbox_depth", frozenset())) == 0

        wait_until(linked, what="the link up and everything acknowledged")
        assert httpx.get(running.url + "/health").json()["upstream"] == "connected"
        # The upstream goes away; what happens meanwhile waits in the outbox.
        upstream.terminate()
        upstream.wait(timeout=10)
        auth = {"Authorization": f"Bearer {running.key}"}
        front = httpx.post(running.url + "/devices/list", headers=auth,
                           json={}).json()["devices"][0]["device_id"]
        httpx.post(running.url + "/access_codes/create", headers=auth,
                   json={"device_id": front, "name": "Staff", "code": "3579"})

        def waiting() -> bool:
            got = metric_samples(running.url)
            return got.get(("lockbridge_upstream_connected", frozenset())) == 0 and \
                got.get(("lockbridge_outbox_depth", frozenset()), 0) > 0

        wait_until(waiting, what="events waiting while upstream is away")
        health = httpx.get(running.url + "/health").json()
        assert health["upstream"] == "disconnected" and health["ready"] is True
    finally:
        running.stop()
        if upstream.poll() is None:
            upstream.kill()
            upstream.wait()
