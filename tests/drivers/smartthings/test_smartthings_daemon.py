"""The real daemon with the SmartThings driver, driven through the local API, against the fake
of SmartThings' cloud: a code goes on (confirmed by the lock's codeChanged) and comes off, a
time-bound code is put on and taken off by the bridge (SmartThings has no native schedules), a
code the lock refuses and one its hub never runs carry SmartThings' errors, an offline lock is
offline, and a refused grant disconnects the account until a new authorization's token is
written to its file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.api_helpers import LocalApi, start_daemon, wait_until
from tests.fakes.smartthings import FakeSmartThingsThread

pytestmark = pytest.mark.slow
CLIENT_ID, SECRET = "lb-smartthings", "client-secret-in-a-file"

CONFIG = """\
bridge: {{{{id: smartthings-test}}}}
state_dir: {{state}}
api: {{{{port: 0}}}}
schedule: {{{{require_synchronized_clock: false}}}}
engine: {{{{probe_base_s: 1, retry_base_s: 1}}}}
drivers:
  - kind: smartthings
    name: st
    url: {url}
    client_id: {client_id}
    client_secret_file: client.secret
    refresh_token_file: refresh.token
    poll_interval_s: 0.5
    request_timeout_s: 3
    confirm_wait_s: 3
    confirm_poll_s: 0.1
    set_retries: 1
    max_calls_per_s: 50
"""


def test_lock_codes_on_a_smartthings_lock_through_the_api(tmp_path: Path) -> None:
    fake = FakeSmartThingsThread(CLIENT_ID, SECRET, command_delay_s=0.05)
    fake.api.add_location("home")  # before its loop runs: no race
    fake.api.add_lock("Apartment 3", location_id="home", device_id="front", max_codes=5)
    url = fake.start()
    _, refresh = fake.call(fake.api.issue_token)
    (tmp_path / "client.secret").write_text(SECRET + "\n")
    (tmp_path / "refresh.token").write_text(refresh + "\n")
    daemon = start_daemon(tmp_path, CONFIG.format(url=url, client_id=CLIENT_ID))
    try:
        tokens = _scenario(daemon.url, daemon.key, fake, daemon.pins, tmp_path)
    finally:
        log = daemon.stop()
        fake.stop()
    for secret in (SECRET, refresh, *tokens, *daemon.pins):
        assert secret not in log


def _scenario(base: str, key: str, fake: FakeSmartThingsThread, pins: set[str],
              tmp: Path) -> list[str]:
    api = LocalApi(base, key)
    (device,) = api.get("/devices/list").json()["devices"]
    assert device["display_name"] == "Apartment 3"
    assert device["device_type"] == "smartthings_lock"
    device_id = device["device_id"]
    lock = fake.api.devices["front"]

    def truth() -> dict[int, str]:
        return fake.call(lambda: {s: c.pin for s, c in lock.slots.items()})  # type: ignore[no-any-return]

    # Create: on the lock once its codeChanged says so.
    made = api.post("/access_codes/create", json={"device_id": device_id, "name": "Guest",
                                                  "code": "246802"}).json()["access_code"]
    pins.add("246802")
    wait_until(lambda: api.code(made["access_code_id"])["status"] == "set", what="code set")
    assert list(truth().values()) == ["246802"]

    # Schedule: the bridge puts a time-bound code on at its start and takes it off at its end.
    starts = datetime.now(UTC) + timedelta(seconds=2)
    timed = api.post("/access_codes/create", json={
        "device_id": device_id, "name": "Weekend", "code": "357913",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(seconds=5)).isoformat()}).json()["access_code"]
    pins.add("357913")
    assert not timed["is_scheduled_on_device"]
    assert "357913" not in truth().values()
    wait_until(lambda: "357913" in truth().values(), timeout=30, what="timed code on at start")
    wait_until(lambda: "357913" not in truth().values(), timeout=30, what="timed code off at end")

    # Delete: off the lock.
    api.delete("/access_codes/delete", params={"access_code_id": made["access_code_id"]})
    wait_until(lambda: "246802" not in truth().values(), what="code off the lock")

    # A refusal: the lock answers "N failed".
    fake.call(setattr, lock, "fail_next_sets", 1)
    refused = api.post("/access_codes/create", json={"device_id": device_id, "name": "No",
                                                     "code": "864208"}).json()["access_code"]
    pins.add("864208")
    wait_until(lambda: "smartthings_failed_to_set_access_code"
               in api.code_errors(refused["access_code_id"]),
               what="smartthings_failed_to_set_access_code")
    assert "864208" not in truth().values()
    api.delete("/access_codes/delete", params={"access_code_id": refused["access_code_id"]})

    # A hub that takes the commands and never runs them: given up after the retries.
    fake.call(setattr, lock, "hub_busy", True)
    late = api.post("/access_codes/create", json={"device_id": device_id, "name": "Late",
                                                  "code": "975319"}).json()["access_code"]
    pins.add("975319")
    wait_until(lambda: "smartthings_failed_to_set_after_multiple_retries"
               in api.code_errors(late["access_code_id"]), timeout=40,
               what="smartthings_failed_to_set_after_multiple_retries")
    fake.call(setattr, lock, "hub_busy", False)
    fake.run(fake.api.run_pending)
    assert "975319" not in truth().values()  # withdrawn after the hub ran it late
    api.delete("/access_codes/delete", params={"access_code_id": late["access_code_id"]})

    # An outage: the lock drops off its hub, then comes back.
    fake.call(setattr, lock, "online", False)
    wait_until(lambda: "device_offline" in api.device_errors(device_id), what="lock offline")
    fake.call(setattr, lock, "online", True)
    wait_until(lambda: "device_offline" not in
               api.device_errors(device_id), what="lock online again")

    # A credential failure: the grant is revoked; a new authorization's token reconnects it.
    fake.call(fake.api.revoke_refresh_tokens)
    wait_until(lambda: "account_disconnected" in
               api.device_errors(device_id), what="account disconnected")
    _, refresh = fake.call(fake.api.issue_token)
    (tmp / "refresh.token").write_text(refresh + "\n")
    wait_until(lambda: "account_disconnected" not in api.device_errors(device_id),
               what="account connected again")
    after = api.post("/access_codes/create", json={"device_id": device_id, "name": "After",
                                                   "code": "135791"}).json()["access_code"]
    pins.add("135791")
    wait_until(lambda: api.code(after["access_code_id"])["status"] == "set", what="code set after")
    return [refresh, *fake.call(lambda: list(fake.api.access_tokens)),
            *fake.call(lambda: list(fake.api.refresh_tokens))]
