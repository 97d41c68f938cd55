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

