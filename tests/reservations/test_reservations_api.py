"""Reservation automations through the official `seam` SDK against the real daemon: spaces,
push_data becoming codes on simulated locks, a re-push that moves the stay and puts back a code
removed at the keypad, delete_data revoking at once, access grants and access methods with the
real PIN, a preferred PIN replaced by a lock's rule, slot-aligned windows, runs and events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from seam import Seam
from seam.exceptions import SeamHttpApiError

from tests.api_helpers import Daemon, assert_valid, start_daemon, wait_until

pytestmark = pytest.mark.slow

CONFIG = """\
bridge: {{id: resv-test}}
state_dir: {state}
logging: {{level: debug}}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
automations:
  time_slots:
    gate: {{minutes: 240, widen: true}}
    vault: {{minutes: 240, widen: false}}
spaces:
  - key: loft
    name: Loft
    devices: [gate]
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    control_file: control.jsonl
    locks:
      - {{id: front, name: Front door}}
      - {{id: back, name: Back door, preset: schlage_be469}}
      - {{id: side, name: Side door}}
      - {{id: gate, name: Gate}}
      - {{id: vault, name: Vault}}
      - {{id: keypad, name: Offline keypad, preset: algorithmic}}
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("resv"), CONFIG)
    try:
        yield d
    finally:
        log = d.stop()
        for pin in d.pins:
            assert pin not in log, "a PIN reached the daemon's log"


@pytest.fixture(scope="module")
def seam(daemon: Daemon) -> Iterator[Seam]:
    with Seam(api_key=daemon.key, endpoint=daemon.url) as client:
        yield client


@pytest.fixture(scope="module")
def api(daemon: Daemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=daemon.url, timeout=30,
                      headers={"Authorization": f"Bearer {daemon.key}"}) as client:
        yield client


@pytest.fixture(scope="module")
def locks(seam: Seam) -> dict[str, str]:
    """Display name -> device_id."""
    return {d.display_name: d.device_id for d in seam.devices.list()}


def _stay(hours_from: float, hours_to: float) -> tuple[str, str]:
    now = datetime.now(UTC).replace(microsecond=0)
    return ((now + timedelta(hours=hours_from)).isoformat(),
            (now + timedelta(hours=hours_to)).isoformat())


def _methods(seam: Seam, reservation_key: str) -> list[Any]:
    grants = seam.access_grants.list(reservation_key=reservation_key)
    assert len(grants) == 1
    return list(seam.access_methods.list(access_grant_id=grants[0].access_grant_id))


def _events(api: httpx.Client, kind: str) -> list[dict[str, Any]]:
    body = api.get("/events/list", params={"event_type": kind}).json()
    assert_valid("/events/list", "get", body)
    return list(body["events"])


def _control(daemon: Daemon, **command: Any) -> None:
    with (daemon.state / "control.jsonl").open("a") as out:
        out.write(json.dumps(command) + "\n")


def test_spaces_crud(seam: Seam, locks: dict[str, str]) -> None:
    space = seam.spaces.create(name="Flat 1", space_key="flat-1",
                               device_ids=[locks["Front door"]])
    assert space.space_key == "flat-1" and space.device_count == 1
    seam.spaces.add_devices(space_id=space.space_id, device_ids=[locks["Side door"]])
    assert seam.spaces.get(space_key="flat-1").device_count == 2
    seam.spaces.remove_devices(space_id=space.space_id, device_ids=[locks["Side door"]])
    renamed = seam.spaces.update(space_id=space.space_id, name="Flat One")
    assert renamed.name == "Flat One" and renamed.device_count == 1
    keys = {s.space_key for s in seam.spaces.list()}
    assert {"flat-1", "loft"} <= keys  # loft is declared in the configuration
    seam.spaces.delete(space_id=space.space_id)
    with pytest.raises(SeamHttpApiError) as gone:
        seam.spaces.get(space_id=space.space_id)
    assert gone.value.code == "space_not_found"


def test_push_repush_and_delete(daemon: Daemon, seam: Seam, api: httpx.Client,
                                locks: dict[str, str]) -> None:
    seam.spaces.create(name="House", space_key="house",
                       device_ids=[locks["Front door"], locks["Back door"]])
    starts, ends = _stay(-1, 24)
    daemon.pins.add("735193")
    seam.customers.push_data(
        customer_key="pm-1",
        user_identities=[{"user_identity_key": "guest-ana", "name": "Ana"}],
        reservations=[{"reservation_key": "res-1", "user_identity_key": "guest-ana",
                       "starts_at": starts, "ends_at": ends, "space_keys": ["house"],
                       "preferred_code": "735193"}],
        listings=[{"listing_key": "l-1"}])
    # The preferred PIN fits the front door; the back door takes 4 digits only.
    wait_until(lambda: "735193" in daemon.slots("front").values(), what="front code")
    def all_issued() -> list[Any] | None:
        found = _methods(seam, "res-1")
        return found if len(found) == 2 and all(m.is_issued for m in found) else None

    methods = wait_until(all_issued, what="both access methods issued")
    by_code = {m.code: m for m in methods}
    assert "735193" in by_code
    back_pin = next(c for c in by_code if c != "735193")
    daemon.pins.add(back_pin)
    assert len(back_pin) == 4 and back_pin in daemon.slots("back").values()
    run = api.get("/automation_runs/list", params={"trigger": "push_data"}).json()[
        "automation_runs"][-1]
    assert any(locks["Back door"] in s and "length" in s for s in run["pin_substitutions"])
    assert any("listings" in i for i in run["ignored"])
    issued = _events(api, "access_method.issued")
    assert {e["access_method_id"] for e in issued} >= {m.access_method_id for m in methods}
    assert all(e["reservation_key"] == "res-1" and "code" not in e for e in issued)

    # Re-push: the stay is longer, and the front code was removed at the keypad meanwhile.
    front_slot = next(s for s, p in daemon.slots("front").items() if p == "735193")
    _control(daemon, lock="front", op="keypad_clear", slot=front_slot)
    wait_until(lambda: "735193" not in daemon.slots("front").values(), what="keypad clear")
    front_method = by_code["735193"]
    wait_until(lambda: not seam.access_methods.get(
        access_method_id=front_method.access_method_id).is_issued, what="seen missing")
    later_ends = _stay(-1, 48)[1]
    seam.customers.push_data(customer_key="pm-1", reservations=[
        {"reservation_key": "res-1", "user_identity_key": "guest-ana", "starts_at": starts,
         "ends_at": later_ends, "space_keys": ["house"], "preferred_code": "735193"}])
    wait_until(lambda: "735193" in daemon.slots("front").values(), what="front code back")
    wait_until(lambda: any(e["access_method_id"] == front_method.access_method_id
                           for e in _events(api, "access_method.reissued")),
               what="access_method.reissued")
    grant = seam.access_grants.list(reservation_key="res-1")[0]
    assert grant.ends_at.startswith(later_ends[:16])
    assert any(e["access_grant_id"] == grant.access_grant_id
               for e in _events(api, "access_grant.access_times_changed"))
    codes = seam.access_codes.list(device_id=locks["Front door"])
    assert any(c.code == "735193" and c.ends_at.startswith(later_ends[:16]) for c in codes)

    # A code deleted outright comes back with the PIN the guest holds.
    back_method = by_code[back_pin]
    back_code = next(c for c in seam.access_codes.list(device_id=locks["Back door"])
                     if c.code == back_pin)
    seam.access_codes.delete(access_code_id=back_code.access_code_id)
    wait_until(lambda: back_pin not in daemon.slots("back").values(), what="back code gone")
    seam.customers.push_data(customer_key="pm-1", reservations=[
        {"reservation_key": "res-1", "user_identity_key": "guest-ana", "starts_at": starts,
         "ends_at": later_ends, "space_keys": ["house"], "preferred_code": "735193"}])
    wait_until(lambda: back_pin in daemon.slots("back").values(), what="back code re-issued")
    wait_until(lambda: any(e["access_method_id"] == back_method.access_method_id
                           for e in _events(api, "access_method.reissued")),
               what="the back door's access_method.reissued")
    assert seam.access_methods.get(access_method_id=back_method.access_method_id).code == \
        back_pin

    # delete_data revokes at once: the codes are on their way off before the answer.
    seam.customers.delete_data(reservation_keys=["res-1"])
    assert seam.access_grants.list(reservation_key="res-1") == []
    wait_until(lambda: "735193" not in daemon.slots("front").values()
               and back_pin not in daemon.slots("back").values(), what="codes removed")
    deleted = {e["access_method_id"] for e in _events(api, "access_method.deleted")}
    assert {m.access_method_id for m in methods} <= deleted
    assert _events(api, "access_grant.deleted")


def test_access_grants_directly(daemon: Daemon, seam: Seam, api: httpx.Client,
                                locks: dict[str, str]) -> None:
    starts, ends = _stay(-0.5, 5)
    daemon.pins.add("482617")
    grant = seam.access_grants.create(
        requested_access_methods=[{"mode": "code", "code": "482617"}],
        device_ids=[locks["Side door"]], space_keys=["loft"], starts_at=starts, ends_at=ends,
        name="Plumber", access_grant_key="job-7")
    assert grant.access_grant_key == "job-7" and len(grant.access_method_ids) == 1
    assert any(e["access_grant_id"] == grant.access_grant_id and
               e["access_grant_key"] == "job-7" for e in _events(api, "access_grant.created"))
    assert seam.access_grants.get(access_grant_key="job-7").access_grant_id == \
        grant.access_grant_id
    method = wait_until(lambda: next(
        (m for m in seam.access_methods.list(access_grant_id=grant.access_grant_id)
         if m.is_issued), None), what="grant issued")
    assert method.mode == "code" and method.code == "482617" and method.issued_at
    assert "482617" in daemon.slots("side").values()
    assert "482617" in daemon.slots("gate").values()
    # The gate takes 4-hour slots: the window was widened to them (local midnight: UTC).
    gate = next(c for c in seam.access_codes.list(device_id=locks["Gate"])
                if c.code == "482617")
    assert gate.starts_at[11:19] in {f"{h:02d}:00:00" for h in range(0, 24, 4)}
    assert gate.ends_at[11:19] in {f"{h:02d}:00:00" for h in range(0, 24, 4)}
    new_end = _stay(0, 8)[1]
    seam.access_grants.update(access_grant_id=grant.access_grant_id, ends_at=new_end)
    side = next(c for c in seam.access_codes.list(device_id=locks["Side door"])
                if c.code == "482617")
    assert side.ends_at.startswith(new_end[:16])
    seam.access_grants.delete(access_grant_id=grant.access_grant_id)
    with pytest.raises(SeamHttpApiError):
        seam.access_grants.get(access_grant_id=grant.access_grant_id)
    wait_until(lambda: "482617" not in daemon.slots("side").values(), what="grant revoked")


def test_a_window_off_the_slots_fails_to_issue(seam: Seam, api: httpx.Client,
                                               locks: dict[str, str]) -> None:
    now = datetime.now(UTC).replace(minute=17, second=0, microsecond=0)
    grant = seam.access_grants.create(
        requested_access_methods=[{"mode": "code"}], device_ids=[locks["Vault"]],
        starts_at=now.isoformat(), ends_at=(now + timedelta(hours=3)).isoformat())
    method = seam.access_methods.list(access_grant_id=grant.access_grant_id)[0]
    assert not method.is_issued
    assert [e.error_code for e in method.errors] == ["failed_to_issue"]
    run = api.get("/automation_runs/list",
                  params={"trigger": "access_grants/create"}).json()["automation_runs"][-1]
    assert any("time_slots" in e for e in run["errors"])
    assert seam.access_codes.list(device_id=locks["Vault"]) == []
    assert any(e["access_method_id"] == method.access_method_id
               for e in _events(api, "access_method.failed_to_issue"))


def test_an_offline_lock_gets_its_own_pin(daemon: Daemon, seam: Seam, api: httpx.Client,
                                          locks: dict[str, str]) -> None:
    starts, ends = _stay(-0.2, 6)
    grant = seam.access_grants.create(
        requested_access_methods=[{"mode": "code", "code": "591734"}],
        device_ids=[locks["Offline keypad"]], starts_at=starts, ends_at=ends)
    method = wait_until(lambda: next(
        (m for m in seam.access_methods.list(access_grant_id=grant.access_grant_id)
         if m.is_issued), None), what="offline lock's method issued")
    daemon.pins.add(method.code)
    assert method.code and method.code != "591734"
    assert method.code in daemon.slots("keypad").values()
    run = api.get("/automation_runs/list",
                  params={"trigger": "access_grants/create"}).json()["automation_runs"]
    assert any("generated_only" in s for r in run for s in r["pin_substitutions"])


def test_runs_cli(daemon: Daemon, seam: Seam) -> None:
    starts, ends = _stay(1, 3)
    seam.customers.push_data(customer_key="pm-cli", reservations=[
        {"reservation_key": "res-cli", "starts_at": starts, "ends_at": ends,
         "space_keys": ["nowhere"]}])
    text = daemon.cli("runs", "--limit", "3").stdout
    assert "push_data  pm-cli" in text and "error: res-cli: no space with key 'nowhere'" in text
    assert all(p not in text for p in daemon.pins)
