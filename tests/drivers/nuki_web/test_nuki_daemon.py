"""The real daemon with the Nuki Web driver, driven through the local API, against the fake
Nuki Web API: a guest's code goes on with the lock enforcing its window, a PIN Nuki can never
take is refused at once, and the code comes off when deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_helpers import start_daemon, wait_until
from tests.fakes.nuki_web import FakeNukiWebThread

pytestmark = pytest.mark.slow
TOKEN = "nuki-token-in-a-file"

CONFIG = """\
bridge: {{{{id: nuki-test}}}}
state_dir: {{state}}
api: {{{{port: 0}}}}
schedule: {{{{require_synchronized_clock: false}}}}
drivers:
  - kind: nuki_web
    name: nuki
    url: {url}
    token_file: nuki.token
    time_zone: Europe/Berlin
    poll_interval_s: 0.5
    create_poll_s: 0.1
    create_wait_s: 5
    confirmation_window_s: 0.5
    command_spacing_s: 0
"""


def test_guest_codes_on_a_nuki_lock_through_the_api(tmp_path: Path) -> None:
    fake = FakeNukiWebThread(TOKEN, apply_delay_s=0.1)
    fake.api.add_lock(4711, "Apartment 3")  # before its loop runs: no race
    url = fake.start()
    (tmp_path / "nuki.token").write_text(TOKEN + "\n")
    daemon = start_daemon(tmp_path, CONFIG.format(url=url))
    try:
        _scenario(daemon.url, daemon.key, fake, daemon.pins)
    finally:
        log = daemon.stop()
        fake.stop()
    assert TOKEN not in log
    for pin in daemon.pins:
        assert pin not in log


def _scenario(base: str, key: str, fake: FakeNukiWebThread, pins: set[str]) -> None:
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=20)
    (device,) = api.get("/devices/list").json()["devices"]
    assert device["display_name"] == "Apartment 3" and device["device_type"] == "nuki_lock"
    assert device["properties"]["supported_code_lengths"] == [6]
    kinds = {c["constraint_type"] for c in device["properties"]["code_constraints"]}
    assert {"no_zeros", "cannot_start_with_12", "name_length"} <= kinds
    lock = fake.api.locks[4711]

    # A PIN Nuki can never take is refused when asked, with the reason.
    refused = api.post("/access_codes/create", json={"device_id": device["device_id"],
                                                     "name": "x", "code": "123456"})
    assert refused.status_code == 400 and "12" in refused.text

    starts = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    ends = starts + timedelta(days=3)
    made = api.post("/access_codes/create", json={
        "device_id": device["device_id"], "name": "Guest Smith",
        "starts_at": starts.isoformat(), "ends_at": ends.isoformat()}).json()["access_code"]
    pin = made["code"]
    pins.add(pin)
    assert len(pin) == 6 and "0" not in pin and not pin.startswith("12")

    def code() -> dict[str, Any]:
        got: dict[str, Any] = api.get("/access_codes/get", params={
            "access_code_id": made["access_code_id"]}).json()["access_code"]
        return got

    # The lock keeps the window itself: the code goes on days ahead, scheduled on the device.
    wait_until(lambda: code()["is_scheduled_on_device"], what="code scheduled on the lock")
    assert fake.call(lock.keypad_codes) == {pin: "Guest Smith"}
    (auth,) = [a for a in fake.call(lambda: list(lock.auths.values())) if a["type"] == 13]
    assert auth["allowedFromDate"] == starts.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert auth["allowedUntilDate"] == ends.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    api.delete("/access_codes/delete", params={"access_code_id": made["access_code_id"]})
    wait_until(lambda: fake.call(lock.keypad_codes) == {}, what="code off the lock")
    wait_until(lambda: api.get("/access_codes/get", params={
        "access_code_id": made["access_code_id"]}).status_code == 404, what="code forgotten")

    # A lock added to the Nuki account later is found while the daemon runs.
    fake.call(fake.api.add_lock, 4712, "Apartment 4")
    wait_until(lambda: len(api.get("/devices/list").json()["devices"]) == 2,
               what="the new lock listed")
    new = next(d for d in api.get("/devices/list").json()["devices"]
               if d["display_name"] == "Apartment 4")
    staff = api.post("/access_codes/create", json={"device_id": new["device_id"],
                                                   "name": "Staff"}).json()["access_code"]
    pins.add(staff["code"])
    wait_until(lambda: fake.call(fake.api.locks[4712].keypad_codes) == {staff["code"]: "Staff"},
               what="a code on the new lock")

    # Nuki loses the lock: the device says so.
    fake.call(setattr, lock, "online", False)
    wait_until(lambda: not api.get("/devices/get", params={
        "device_id": device["device_id"]}).json()["device"]["properties"]["online"],
        what="lock offline")
