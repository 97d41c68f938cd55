"""The real daemon with the Igloohome driver, driven through the local API, against the fake of
the iglooaccess API: a guest's algoPIN is the lock's own PIN for the stay, with Seam's 24-hour
warning, and cannot be deleted before its end; a custom PIN goes on through the bridge with its
window and comes off when deleted; a bridge offline and a full bridge queue are reported on the
code; a cloud outage disconnects the locks, and a refused client disconnects the account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import LocalApi, assert_valid, start_daemon, wait_until
from tests.fakes.igloohome import FakeIgloohomeThread

pytestmark = pytest.mark.slow
CLIENT_ID, SECRET = "iglooaccess-client", "igloo-secret-in-a-file"
PADLOCK, DOOR, BRIDGE = "IGP1-padlock-01", "IGK2-door-02", "IGB1-bridge-9"

CONFIG = """\
bridge: {{{{id: igloohome-test}}}}
state_dir: {{state}}
api: {{{{port: 0}}}}
schedule: {{{{require_synchronized_clock: false}}}}
drivers:
  - kind: igloohome
    name: igloo
    auth_url: {url}
    url: {url}
    client_id: {client_id}
    client_secret_file: igloo.secret
    time_zone: UTC
    poll_interval_s: 0.5
    request_timeout_s: 1
    job_poll_s: 0.05
    busy_retry_s: 0.05
    busy_retries: 1
    bridge_offline_hold_s: 1
    refused_retry_s: 1
"""


def test_guest_codes_on_igloohome_locks_through_the_api(tmp_path: Path) -> None:
    fake = FakeIgloohomeThread(CLIENT_ID, SECRET, job_delay_s=0.05)
    fake.api.add_bridge(BRIDGE)  # before its loop runs: no race
    fake.api.add_lock(PADLOCK, "Padlock")
    fake.api.add_lock(DOOR, "Front door", bridge=BRIDGE)
    url = fake.start()
    (tmp_path / "igloo.secret").write_text(SECRET + "\n")
    daemon = start_daemon(tmp_path, CONFIG.format(url=url, client_id=CLIENT_ID))
    try:
        secrets = _scenario(daemon.url, daemon.key, fake, daemon.pins)
    finally:
        log = daemon.stop()
        fake.stop()
    for secret in (SECRET, *secrets, *daemon.pins):
        assert secret not in log


def _scenario(base: str, key: str, fake: FakeIgloohomeThread, pins: set[str]) -> list[str]:
    api = LocalApi(base, key)
    devices = {d["display_name"]: d for d in api.get("/devices/list").json()["devices"]}
    padlock, door = devices["Padlock"], devices["Front door"]
    assert padlock["device_type"] == "igloohome_lock"
    assert padlock["can_program_offline_access_codes"]
    assert door["can_program_online_access_codes"]

    def errors_of(thing: dict[str, Any]) -> list[str]:
        return [e["error_code"] for e in thing["errors"]]

    # An algoPIN lock picks the PIN: asking for one is refused when asked.
    refused = api.post("/access_codes/create", json={"device_id": padlock["device_id"],
                                                     "name": "x", "code": "12345678"})
    assert refused.status_code == 400

    # A three-day stay on the padlock: the code is the lock's own PIN for the window.
    starts = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    ends = starts + timedelta(days=3)
    stay = api.post("/access_codes/create", json={
        "device_id": padlock["device_id"], "name": "Guest Smith",
        "starts_at": starts.isoformat(), "ends_at": ends.isoformat()}).json()["access_code"]
    wait_until(lambda: api.code(stay["access_code_id"])["is_scheduled_on_device"],
               what="the algoPIN scheduled on the lock")
    got = api.code(stay["access_code_id"])
    expected = fake.call(fake.api.expected_algopin, PADLOCK, "hourly", starts, ends, 1)
    pins.add(expected)
    assert got["code"] == expected
    assert fake.call(fake.api.locks[PADLOCK].opens, expected, starts + timedelta(hours=1))
    assert "igloo_algopin_must_be_used_within_24_hours" in [
        w["warning_code"] for w in got["warnings"]]
    assert_valid("/access_codes/get", "get", api.get("/access_codes/get", params={
        "access_code_id": stay["access_code_id"]}).json())
    # It cannot be deleted before its end: the removal fails, and says why.
    api.delete("/access_codes/delete", params={"access_code_id": stay["access_code_id"]})
    wait_until(lambda: "failed_to_remove_from_device" in
               errors_of(api.code(stay["access_code_id"])),
               what="the early delete refused")
    failed = next(e for e in api.code(stay["access_code_id"])["errors"]
                  if e["error_code"] == "failed_to_remove_from_device")
    assert "cannot be deleted before its end" in failed["message"]

    # A custom PIN on the bridge-connected door, with the lock keeping its window.
    made = api.post("/access_codes/create", json={
        "device_id": door["device_id"], "name": "Guest Jones", "code": "2468",
        "starts_at": starts.isoformat(), "ends_at": ends.isoformat()}).json()["access_code"]
    pins.add("2468")
    wait_until(lambda: api.code(made["access_code_id"])["is_scheduled_on_device"],
               what="the custom PIN scheduled on the door")
    held = fake.call(lambda: fake.api.locks[DOOR].custom["2468"])
    assert (held.start, held.end) == (starts, ends)
    api.delete("/access_codes/delete", params={"access_code_id": made["access_code_id"]})
    wait_until(lambda: "2468" not in fake.call(lambda: set(fake.api.locks[DOOR].custom)),
               what="the custom PIN off the door")
    wait_until(lambda: api.get("/access_codes/get", params={
        "access_code_id": made["access_code_id"]}).status_code == 404, what="code forgotten")

    # The bridge is unplugged: the code says so, and goes on once it is back.
    fake.call(fake.api.set_bridge_online, BRIDGE, False)
    late = api.post("/access_codes/create", json={
        "device_id": door["device_id"], "name": "Late", "code": "13579"}).json()["access_code"]
    pins.add("13579")
    wait_until(lambda: "igloohome_bridge_offline" in errors_of(api.code(late["access_code_id"])),
               what="the bridge offline on the code")
    fake.call(fake.api.set_bridge_online, BRIDGE, True)
    wait_until(lambda: "13579" in fake.call(lambda: set(fake.api.locks[DOOR].custom)),
               what="the code on the door once the bridge is back", timeout=30)
    wait_until(lambda: errors_of(api.code(late["access_code_id"])) == [], what="its error gone")

    # The bridge's queue is full of other jobs.
    fake.call(setattr, fake.api.bridges[BRIDGE], "max_pending_jobs", 0)
    busy = api.post("/access_codes/create", json={
        "device_id": door["device_id"], "name": "Busy", "code": "86420"}).json()["access_code"]
    pins.add("86420")
    wait_until(lambda: "igloohome_bridge_too_many_pending_jobs" in errors_of(
        api.code(busy["access_code_id"])), what="the full queue on the code")
    fake.call(setattr, fake.api.bridges[BRIDGE], "max_pending_jobs", 20)

    # The cloud stops answering: the locks are disconnected, and come back.
    fake.call(setattr, fake.api, "latency_s", 3.0)
    wait_until(lambda: "device_disconnected" in api.device_errors(padlock["device_id"]),
               what="the padlock disconnected")
    fake.call(setattr, fake.api, "latency_s", 0.0)
    wait_until(lambda: api.device_errors(padlock["device_id"]) == [], what="the padlock back")

    # The client secret was rotated in iglooaccess: every lock's account is disconnected.
    tokens = fake.call(lambda: list(fake.api.tokens))
    fake.call(fake.api.revoke_client)
    for device_id in (padlock["device_id"], door["device_id"]):
        wait_until(lambda d=device_id: "account_disconnected" in api.device_errors(d),
                   what="account disconnected")
    return [*tokens, fake.api.client_secret]
