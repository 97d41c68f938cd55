"""Raw HTTP against the real daemon: the POST form of every route, answers checked against
Seam's schemas, the error shapes, keys and their throttling, and attempts across a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_helpers import CONFIG, Daemon, assert_valid, start_daemon, wait_until

pytestmark = pytest.mark.slow
NO_SUCH = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(tmp_path)
    try:
        yield d
    finally:
        log = d.stop()
        for pin in d.pins:
            assert pin not in log, "a PIN reached the daemon's log"


def client(d: Daemon, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=d.url, headers={"Authorization": f"Bearer {key or d.key}"},
                        timeout=20)


def post(c: httpx.Client, path: str, body: dict[str, Any], status: int = 200) -> Any:
    answer = c.post(path, json=body)
    assert answer.status_code == status, answer.text
    doc = answer.json()
    assert answer.headers["seam-request-id"]
    if status == 200:
        assert doc["ok"] is True
        assert_valid(path, "post", doc)
    else:
        assert doc["ok"] is False and set(doc["error"]) >= {"type", "message"}
    return doc


def test_every_route_by_post_with_answers_valid_against_seams_schema(daemon: Daemon) -> None:
    daemon.pins.update({"11223", "86420", "97531"})
    with client(daemon) as c:
        devices = post(c, "/devices/list", {})["devices"]
        ids = {d["display_name"]: d["device_id"] for d in devices}
        front, side = ids["Front door"], ids["Side door"]
        post(c, "/devices/get", {"device_id": front})
        created = post(c, "/access_codes/create", {"device_id": front, "name": "Ongoing",
                                                  "code": "11223"})
        assert created["action_attempt"]["status"] == "pending"
        assert created["action_attempt"]["action_type"] == "CREATE_ACCESS_CODE"
        code_id = created["access_code"]["access_code_id"]
        attempt_id = created["action_attempt"]["action_attempt_id"]
        now = datetime.now(UTC)
        timed = post(c, "/access_codes/create", {
            "device_id": side, "starts_at": (now - timedelta(minutes=5)).isoformat(),
            "ends_at": (now + timedelta(days=1)).isoformat(),
            "use_backup_access_code_pool": True})["access_code"]
        daemon.pins.add(timed["code"])
        wait_until(lambda: post(c, "/action_attempts/get", {"action_attempt_id": attempt_id})
                   ["action_attempt"]["status"] == "success", what="create attempt success")
        assert "11223" in daemon.slots("front").values()
        post(c, "/action_attempts/list", {"action_attempt_ids": [attempt_id]})
        post(c, "/access_codes/list", {"device_id": front})
        post(c, "/access_codes/get", {"access_code_id": code_id})
        update = post(c, "/access_codes/update", {"access_code_id": code_id, "name": "Renamed"})
        assert update["action_attempt"]["action_type"] == "UPDATE_ACCESS_CODE"
        generated = post(c, "/access_codes/generate_code", {"device_id": front})
        daemon.pins.add(generated["generated_code"]["code"])
        wait_until(lambda: post(c, "/access_codes/get", {"access_code_id": timed[
            "access_code_id"]})["access_code"]["is_backup_access_code_available"],
            what="backup pool filled")
        first = post(c, "/access_codes/pull_backup_access_code",
                     {"access_code_id": timed["access_code_id"]})
        again = post(c, "/access_codes/pull_backup_access_code",
                     {"access_code_id": timed["access_code_id"]})
        backup = first["backup_access_code"]
        daemon.pins.add(backup["code"])
        assert backup["is_backup"] is True
        assert again["backup_access_code"]["access_code_id"] == backup["access_code_id"]
        assert first["access_code"]["pulled_backup_access_code_id"] == backup["access_code_id"]
        assert backup["ends_at"] == timed["ends_at"]
        unmanaged = post(c, "/access_codes/unmanaged/list", {"device_id": front})["access_codes"]
        assert sorted(u["code"] for u in unmanaged) == ["86420", "97531"]
        first_um, second_um = unmanaged
        post(c, "/access_codes/unmanaged/get", {"access_code_id": first_um["access_code_id"]})
        post(c, "/access_codes/unmanaged/convert_to_managed",
             {"access_code_id": first_um["access_code_id"]})
        removed = post(c, "/access_codes/unmanaged/delete",
                       {"access_code_id": second_um["access_code_id"]})
        assert removed["action_attempt"]["status"] == "success"
        deleted = post(c, "/access_codes/delete", {"access_code_id": code_id})
        assert deleted["action_attempt"]["action_type"] == "DELETE_ACCESS_CODE"
        # A retried delete (the SDK retries DELETE on 5xx) is harmless while it is under way.
        retry = c.delete("/access_codes/delete", params={"access_code_id": code_id})
        assert retry.status_code in (200, 404)
        wait_until(lambda: "11223" not in daemon.slots("front").values(), what="code removed")
        events = post(c, "/events/list", {"device_id": front})["events"]
        assert events
        post(c, "/events/get", {"event_id": events[0]["event_id"]})
        # GET forms answer the same shapes.
        for path, params in (("/devices/list", {}), ("/access_codes/list", {"device_id": front}),
                             ("/events/list", {"device_ids": [front, side]}),
                             ("/action_attempts/list", {})):
            answer = c.get(path, params={**params, "_strict": "true"})
            assert answer.status_code == 200, answer.text
            assert_valid(path, "get", answer.json())


def test_error_shapes(daemon: Daemon) -> None:
    with client(daemon) as c:
        front = post(c, "/devices/get", {"name": "Front door"})["device"]["device_id"]
        bad = post(c, "/access_codes/create", {"device_id": front, "code": "12ab"}, status=400)
        assert bad["error"]["type"] == "invalid_input"
        assert "code" in bad["error"]["validation_errors"]
        assert "12ab" not in str(bad)  # the input is not echoed
        missing = post(c, "/access_codes/create", {"name": "no device"}, status=400)
        assert "device_id" in missing["error"]["validation_errors"]
        unknown = post(c, "/devices/list", {"colour": "red"}, status=400)
        assert unknown["error"]["type"] == "invalid_input"
        assert post(c, "/devices/get", {"device_id": NO_SUCH},
                    status=404)["error"]["type"] == "device_not_found"
        assert post(c, "/access_codes/get", {"access_code_id": NO_SUCH},
                    status=404)["error"]["type"] == "access_code_not_found"
        assert post(c, "/action_attempts/get", {"action_attempt_id": NO_SUCH},
                    status=404)["error"]["type"] == "action_attempt_not_found"
        assert post(c, "/events/get", {"event_id": NO_SUCH},
                    status=404)["error"]["type"] == "event_not_found"
        ongoing = post(c, "/access_codes/create", {"device_id": front})["access_code"]
        daemon.pins.add(ongoing["code"])
        pull = post(c, "/access_codes/pull_backup_access_code",
                    {"access_code_id": ongoing["access_code_id"]}, status=400)
        assert pull["error"]["type"] == "invalid_input"
        not_json = c.post("/devices/list", content=b"{nope",
                          headers={"Content-Type": "application/json"})
        assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_input"
        huge = c.post("/devices/list", content=b"{" + b" " * 70000 + b"}",
                      headers={"Content-Type": "application/json"})
        assert huge.status_code == 413
        assert c.get("/nowhere").status_code == 404
        assert c.get("/access_codes/create").status_code == 405
        # A refused request changed nothing.
        codes = post(c, "/access_codes/list", {"device_id": front})["access_codes"]
        assert [x["access_code_id"] for x in codes] == [ongoing["access_code_id"]]


def test_keys_health_and_throttling(daemon: Daemon) -> None:
    health = httpx.get(daemon.url + "/health")
    assert health.status_code == 200 and health.json()["ok"] is True
    assert httpx.get(daemon.url + "/openapi.json").json()["openapi"].startswith("3.")
    for headers in ({}, {"Authorization": "Bearer seam_bridge_abc_def"},
                    {"Authorization": "Basic xyz"},
                    {"Authorization": "Bearer " + daemon.key + "x"}):
        answer = httpx.post(daemon.url + "/devices/list", headers=headers, json={})
        assert answer.status_code == 401
        assert answer.json() == {"error": {"type": "unauthorized", "message": "Unauthorized",
                                           "request_id": answer.headers["seam-request-id"]},
                                 "ok": False}
    # More bad keys from the same client: answers slow down.
    started = time.monotonic()
    for _ in range(3):
        httpx.post(daemon.url + "/devices/list", headers={"Authorization": "Bearer seam_x"})
    assert time.monotonic() - started >= 0.2 + 0.4
    # A good key still works, and revoking it locks it out at once.
    listed = daemon.cli("api-key", "list", "--json")
    assert '"name": "tests"' in listed.stdout and daemon.key not in listed.stdout
    key_id = daemon.key.removeprefix("seam_bridge_").split("_", 1)[0]
    with client(daemon) as c:
        assert c.post("/devices/list", json={}).status_code == 200
        daemon.cli("api-key", "revoke", key_id)
        assert c.post("/devices/list", json={}).status_code == 401


def test_action_attempts_survive_a_restart(tmp_path: Path) -> None:
    d = start_daemon(tmp_path)
    try:
        with client(d) as c:
            front = post(c, "/devices/get", {"name": "Front door"})["device"]["device_id"]
            made = post(c, "/access_codes/create", {"device_id": front, "code": "55667"})
            attempt_id = made["action_attempt"]["action_attempt_id"]
            wait_until(lambda: post(c, "/action_attempts/get", {"action_attempt_id": attempt_id})
                       ["action_attempt"]["status"] == "success")
    finally:
        d.stop()
    d = start_daemon(tmp_path, CONFIG, key=d.key)
    try:
        with client(d) as c:
            attempt = post(c, "/action_attempts/get",
                           {"action_attempt_id": attempt_id})["action_attempt"]
            assert attempt["status"] == "success"
            assert attempt["result"]["access_code"]["code"] == "55667"
    finally:
        assert "55667" not in d.stop()
