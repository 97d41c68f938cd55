"""A full disk under the real daemon: SQLite's own SQLITE_FULL (the writer connection may not
grow the database past `PRAGMA max_page_count`, set through the test-only
LOCKBRIDGE_TEST_PAGE_LIMIT_FILE) makes writes answer a Seam-shaped 503, /health not ready with
the reason, a metric, one log line for the outage; when space returns it recovers without a
restart and every acknowledged code reaches its lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.storehealth import PAGE_LIMIT_ENV
from tests.api_helpers import Daemon, start_daemon, wait_until

pytestmark = pytest.mark.slow


def _client(d: Daemon) -> httpx.Client:
    return httpx.Client(base_url=d.url, headers={"Authorization": f"Bearer {d.key}"},
                        timeout=20)


def _metric(d: Daemon, name: str) -> float:
    text = httpx.get(d.url + "/metrics", timeout=20).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no metric {name}")


def _create(c: httpx.Client, device_id: str, pin: str) -> httpx.Response:
    return c.post("/access_codes/create", json={"device_id": device_id, "code": pin,
                                                "name": f"Guest {pin}"})


def test_full_disk_is_visible_refused_with_503_and_survived(tmp_path: Path) -> None:
    limit = tmp_path / "page-limit"
    d = start_daemon(tmp_path, env={PAGE_LIMIT_ENV: str(limit)})
    acknowledged: dict[str, str] = {}
    try:
        with _client(d) as c:
            devices = c.post("/devices/list", json={}).json()["devices"]
            targets = [x["device_id"] for x in devices if x["display_name"] != "Front door"]
            # The database may not grow any more: what SQLite sees on a full disk.
            limit.write_text("1")
            refused: httpx.Response | None = None
            for n in range(50):
                pin = f"{5100 + n}"
                d.pins.add(pin)
                answer = _create(c, targets[n % len(targets)], pin)
                if answer.status_code == 503:
                    refused = answer
                    break
                assert answer.status_code == 200, answer.text
                acknowledged[answer.json()["access_code"]["access_code_id"]] = pin
            assert refused is not None, "the store never filled up"
            body = refused.json()
            assert body["ok"] is False
            assert body["error"]["type"] == "service_unavailable"
            assert "database or disk is full" in body["error"]["message"]
            assert body["error"]["request_id"] == refused.headers["seam-request-id"]

            health = httpx.get(d.url + "/health", timeout=20)
            assert health.status_code == 503
            assert health.json()["status"] == "not_ready"
            assert any("store cannot write" in r and "database or disk is full" in r
                       for r in health.json()["not_ready"])
            assert _metric(d, "lockbridge_store_writable") == 0
            for n in range(5):
                d.pins.add(f"{5200 + n}")
                assert _create(c, targets[0], f"{5200 + n}").status_code == 503
            assert _metric(d, "lockbridge_store_write_failures_total") >= 6
            listed = c.post("/access_codes/list", json={"device_id": targets[0]})
            assert listed.status_code == 200, "reads keep working"

            limit.unlink()  # space returns
            wait_until(lambda: httpx.get(d.url + "/health", timeout=20).status_code == 200,
                       what="ready again without a restart")
            assert _metric(d, "lockbridge_store_writable") == 1
            d.pins.add("5300")
            again = _create(c, targets[0], "5300")
            assert again.status_code == 200, again.text
            acknowledged[again.json()["access_code"]["access_code_id"]] = "5300"

            def all_set() -> bool:
                for code_id in acknowledged:
                    got: Any = c.post("/access_codes/get", json={"access_code_id": code_id})
                    if got.json()["access_code"]["status"] != "set":
                        return False
                return True

            wait_until(all_set, timeout=60, what="every acknowledged code on its lock")
    finally:
        log = d.stop()
    on_locks = {pin for lock in ("side", "back") for pin in d.slots(lock).values()}
    assert set(acknowledged.values()) <= on_locks
    assert log.count("cannot write") == 1, "one line per outage, not per request"
    assert "can write again" in log
    assert "Traceback" not in log
