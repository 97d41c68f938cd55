"""The real daemon with the Hubitat driver, driven through the local API, against the fake Maker
API: a code goes on and comes off, a full lock and a lock that never confirms are refused with
Hubitat's own errors, an unreachable hub disconnects the lock and a replaced token disconnects the
account, each until it is fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api_helpers import LocalApi, start_daemon, wait_until
from tests.fakes.hubitat import FakeHubitatThread

pytestmark = pytest.mark.slow
TOKEN = "maker-token-in-a-file"

CONFIG = """\
bridge: {{{{id: hubitat-test}}}}
state_dir: {{state}}
api: {{{{port: 0}}}}
schedule: {{{{require_synchronized_clock: false}}}}
engine: {{{{probe_base_s: 1, retry_base_s: 1}}}}
drivers:
  - kind: hubitat
    name: hub
    url: {url}
    app_id: 3
    token_file: hubitat.token
    listen_host: 127.0.0.1
    listen_port: 0
    poll_interval_s: 60
    request_timeout_s: 2
    confirm_wait_s: 1.5
    confirm_poll_s: 0.2
    command_spacing_s: 0
"""


def test_lock_codes_on_a_hubitat_lock_through_the_api(tmp_path: Path) -> None:
    fake = FakeHubitatThread(TOKEN, 3, event_delay_s=0.05)
    fake.hub.add_lock(12, "Apartment 3", max_codes=3)  # before its loop runs: no race
    url = fake.start()
    (tmp_path / "hubitat.token").write_text(TOKEN + "\n")
    daemon = start_daemon(tmp_path, CONFIG.format(url=url))
    try:
        _scenario(daemon.url, daemon.key, fake, daemon.pins, tmp_path / "hubitat.token")
    finally:
        log = daemon.stop()
        fake.stop()
    assert TOKEN not in log and "a-new-token" not in log
    for pin in daemon.pins:
        assert pin not in log


def _scenario(base: str, key: str, fake: FakeHubitatThread, pins: set[str],
              token_file: Path) -> None:
    api = LocalApi(base, key)
    (device,) = api.get("/devices/list").json()["devices"]
    assert device["display_name"] == "Apartment 3" and device["device_type"] == "hubitat_lock"
    device_id = device["device_id"]
    lock = fake.hub.locks[12]

    def truth() -> dict[int, str]:
        return {p: e["code"] for p, e in fake.call(lock.truth).items()}

    # Create: the code goes on, confirmed by the hub's lockCodes.
    made = api.post("/access_codes/create", json={"device_id": device_id, "name": "Guest",
                                                  "code": "2468"}).json()["access_code"]
    pins.add("2468")
    wait_until(lambda: api.code(made["access_code_id"])["status"] == "set", what="code set")
    assert truth() == {1: "2468"}

    # Delete: it comes off.
    api.delete("/access_codes/delete", params={"access_code_id": made["access_code_id"]})
    wait_until(lambda: truth() == {}, what="code off the lock")
    wait_until(lambda: api.get("/access_codes/get", params={
        "access_code_id": made["access_code_id"]}).status_code == 404, what="code forgotten")

    # A lock that takes the command and never confirms it: Hubitat's programming delay.
    fake.call(setattr, lock, "online", False)
    late = api.post("/access_codes/create", json={"device_id": device_id, "name": "Late",
                                                  "code": "1357"}).json()["access_code"]
    pins.add("1357")
    wait_until(lambda: "hubitat_device_programming_delay" in
               api.code_errors(late["access_code_id"]),
               what="hubitat_device_programming_delay")
    assert truth() == {}
    fake.call(setattr, lock, "online", True)
    api.delete("/access_codes/delete", params={"access_code_id": late["access_code_id"]})
    # The late code is gone (its removal done) before anyone types at the keypad.
    wait_until(lambda: api.get("/access_codes/get", params={
        "access_code_id": late["access_code_id"]}).status_code == 404,
               what="the late code deleted")
    fake.call(fake.hub.settle)  # and the hub has applied every command it took

    # Every position taken at the lock while no event told the bridge: Hubitat's no free
    # position, found by the driver before it sends anything.
    fake.call(setattr, fake.hub, "drop_events", True)
    for position, pin in ((1, "1111"), (2, "2222"), (3, "3333")):
        fake.call(lock.keypad_set, position, pin, f"Keypad {position}")
        pins.add(pin)
    full = api.post("/access_codes/create", json={"device_id": device_id, "name": "Full",
                                                  "code": "9753"}).json()["access_code"]
    pins.add("9753")
    wait_until(lambda: "hubitat_no_free_positions_available"
               in api.code_errors(full["access_code_id"]),
               what="hubitat_no_free_positions_available")
    assert truth() == {1: "1111", 2: "2222", 3: "3333"}
    fake.call(setattr, fake.hub, "drop_events", False)

    # An outage: the hub is gone from the LAN, then back.
    fake.call(fake.hub.set_reachable, False)
    # (The driver polls every minute here: a request the engine makes finds the outage first.)
    api.post("/access_codes/create", json={"device_id": device_id, "name": "During",
                                           "code": "8642"})
    pins.add("8642")
    wait_until(lambda: "device_disconnected" in
               api.device_errors(device_id), what="lock disconnected")
    fake.call(fake.hub.set_reachable, True)
    wait_until(lambda: "device_disconnected" not in api.device_errors(device_id), timeout=60,
               what="lock connected again")

    # A credential failure: the token was replaced in the Maker API app.
    fake.call(setattr, fake.hub, "token", "a-new-token")
    api.post("/access_codes/create", json={"device_id": device_id, "name": "After",
                                           "code": "7531"})
    pins.add("7531")
    wait_until(lambda: "account_disconnected" in
               api.device_errors(device_id), what="account disconnected")
    token_file.write_text("a-new-token\n")
    wait_until(lambda: "account_disconnected" not in api.device_errors(device_id), timeout=60,
               what="account connected again")
