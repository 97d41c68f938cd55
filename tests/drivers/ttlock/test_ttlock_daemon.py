"""The real daemon with the TTLock driver, driven through the local API, against the fake of
TTLock's Open API: a guest's code goes on through the gateway with the lock keeping its window,
a PIN TTLock refuses and a full lock are reported on the code, the code comes off when deleted,
an unplugged gateway makes its lock offline, a lock without a gateway says so, and a refused
login disconnects every lock of the account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.api_helpers import LocalApi, assert_valid, start_daemon, wait_until
from tests.fakes.ttlock import FakeTTLockThread, md5_hex

pytestmark = pytest.mark.slow
CLIENT_ID, SECRET, USER, PASSWORD = "lb-client", "client-secret-in-a-file", "host@x.example", \
    "app-password-in-a-file"
FRONT, SHED, GARAGE, GATEWAY = 7252408, 7252410, 7252411, 347

CONFIG = """\
bridge: {{{{id: ttlock-test}}}}
state_dir: {{state}}
api: {{{{port: 0}}}}
schedule: {{{{require_synchronized_clock: false}}}}
drivers:
  - kind: ttlock
    name: ttlock
    url: {url}
    client_id: {client_id}
    client_secret_file: client.secret
    username: {user}
    password_file: ttlock.password
    time_zone: Europe/Berlin
    poll_interval_s: 0.5
    busy_retry_s: 0.1
    refused_retry_s: 1
"""


def test_guest_codes_on_a_ttlock_lock_through_the_api(tmp_path: Path) -> None:
    fake = FakeTTLockThread(CLIENT_ID, SECRET, USER, PASSWORD, gateway_latency_s=0.05)
    fake.api.add_gateway(GATEWAY)  # before its loop runs: no race
    fake.api.add_lock(FRONT, "Apartment 3", gateways=[GATEWAY])
    fake.api.add_lock(SHED, "Shed")
    fake.api.add_lock(GARAGE, "Garage", gateways=[GATEWAY])
    url = fake.start()
    (tmp_path / "client.secret").write_text(SECRET + "\n")
    (tmp_path / "ttlock.password").write_text(PASSWORD + "\n")
    daemon = start_daemon(tmp_path, CONFIG.format(url=url, client_id=CLIENT_ID, user=USER))
    try:
        tokens = _scenario(daemon.url, daemon.key, fake, daemon.pins)
    finally:
        log = daemon.stop()
        fake.stop()
    for secret in (SECRET, PASSWORD, md5_hex(PASSWORD), "fake-lockdata", "8412305", *tokens,
                   *daemon.pins):
        assert secret not in log


def _scenario(base: str, key: str, fake: FakeTTLockThread, pins: set[str]) -> list[str]:
    api = LocalApi(base, key)
    devices = {d["display_name"]: d for d in api.get("/devices/list").json()["devices"]}
    device, shed, garage = devices["Apartment 3"], devices["Shed"], devices["Garage"]
    assert device["device_type"] == "ttlock_lock"
    assert device["properties"]["supported_code_lengths"] == [4, 5, 6, 7, 8, 9]
    lock = fake.api.locks[FRONT]

    # A lock paired to no gateway: the cloud cannot reach it, and the device says why.
    wait_until(lambda: "ttlock_lock_not_paired_to_gateway" in api.device_errors(shed["device_id"]),
               what="the shed's gateway error")
    # Shaped as Seam's device with that error.
    assert_valid("/devices/get", "get", api.get("/devices/get", params={
        "device_id": shed["device_id"]}).json())
    # A code asked for meanwhile goes on once a gateway is paired, and the error goes.
    staff = api.post("/access_codes/create", json={"device_id": shed["device_id"],
                                                   "name": "Staff"}).json()["access_code"]
    pins.add(staff["code"])
    fake.call(fake.api.locks[SHED].gateway_rssi.__setitem__, GATEWAY, -70)
    wait_until(lambda: staff["code"] in fake.call(lambda: set(fake.api.locks[SHED].codes)),
               what="the shed's code on the lock once paired")
    wait_until(lambda: api.device_errors(shed["device_id"]) == [], what="the shed's error gone")

    # A PIN TTLock can never take is refused when asked.
    refused = api.post("/access_codes/create", json={"device_id": device["device_id"],
                                                     "name": "x", "code": "123"})
    assert refused.status_code == 400

    starts = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    ends = starts + timedelta(days=3)
    made = api.post("/access_codes/create", json={
        "device_id": device["device_id"], "name": "Guest Smith",
        "starts_at": starts.isoformat(), "ends_at": ends.isoformat()}).json()["access_code"]
    pin = made["code"]
    pins.add(pin)
    # The lock keeps the window itself: the code goes on days ahead, scheduled on the device.
    wait_until(lambda: api.code(made["access_code_id"])["is_scheduled_on_device"],
               what="code scheduled on the lock")
    held = fake.call(lambda: lock.codes[pin])
    assert (held.start_ms, held.end_ms) == (int(starts.timestamp() * 1000),
                                            int(ends.timestamp() * 1000))

    # A PIN someone put on the lock by hand: TTLock refuses it as a duplicate.
    fake.call(lock.add_keypad_code, "246810")
    pins.add("246810")
    dup = api.post("/access_codes/create", json={"device_id": device["device_id"],
                                                 "name": "Dup", "code": "246810"}).json()
    wait_until(lambda: "duplicate_code_on_device" in [
        e["error_code"] for e in api.code(dup["access_code"]["access_code_id"])["errors"]],
        what="the duplicate reported")
    # A lock whose passcode storage is full.
    fake.call(setattr, lock, "capacity", 2)
    full = api.post("/access_codes/create", json={"device_id": device["device_id"],
                                                  "name": "Full"}).json()["access_code"]
    pins.add(full["code"])
    wait_until(lambda: "no_space_for_access_code_on_device" in [
        e["error_code"] for e in api.code(full["access_code_id"])["errors"]],
        what="no space reported")
    fake.call(setattr, lock, "capacity", 250)
    api.delete("/access_codes/delete", params={"access_code_id": full["access_code_id"]})
    api.delete("/access_codes/delete", params={
        "access_code_id": dup["access_code"]["access_code_id"]})

    api.delete("/access_codes/delete", params={"access_code_id": made["access_code_id"]})
    wait_until(lambda: pin not in fake.call(lambda: set(lock.codes)), what="code off the lock")
    wait_until(lambda: api.get("/access_codes/get", params={
        "access_code_id": made["access_code_id"]}).status_code == 404, what="code forgotten")

    # The gateway is unplugged: its lock is offline.
    fake.call(setattr, fake.api.gateways[GATEWAY], "online", False)
    wait_until(lambda: "device_offline" in api.device_errors(device["device_id"]),
               what="lock offline")
    fake.call(setattr, fake.api.gateways[GATEWAY], "online", True)
    wait_until(lambda: api.device_errors(device["device_id"]) == [], what="lock back online")

    # The account no longer lists a lock (transferred to another account): removed, with a
    # clear error, not offline.
    fake.call(fake.api.locks.pop, GARAGE)
    wait_until(lambda: "device_removed" in api.device_errors(garage["device_id"]),
               what="the garage removed")
    assert "device_offline" not in api.device_errors(garage["device_id"])

    # The app password was changed: every lock of the account is disconnected.
    tokens = fake.call(lambda: [*fake.api.access_tokens, *fake.api.refresh_tokens])

    def refuse() -> None:
        fake.api.password_md5 = md5_hex("changed-in-the-app")
        fake.api.revoke_tokens()

    fake.call(refuse)
    for device_id in (device["device_id"], shed["device_id"]):
        wait_until(lambda d=device_id: "account_disconnected" in api.device_errors(d),
                   what="account disconnected")
    return tokens
