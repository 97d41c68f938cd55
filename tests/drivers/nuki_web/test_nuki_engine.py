"""The engine over the Nuki Web driver, against the fake of Nuki's published Web API: a changed
stay reaches the lock, times land in the lock's zone when only the property names it, a code
made in the Nuki app is never taken over, and a code is `set` only once the lock has it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import FakeClock
from bridge.engine import CodeRequest
from bridge.model import (
    AccessCodeErrorCode,
    AccessCodeStatus,
    AccessCodeType,
    AccessCodeWarningCode,
    EventType,
)
from bridge.planner import Policy
from drivers.nuki_web.config import Config
from drivers.nuki_web.driver import NukiWebDriver
from tests.fakes.nuki_web import FakeNukiWeb, FakeSmartlock
from tests.harness import Harness, start_engine

TOKEN = "nuki-api-token-for-engine-tests"
LOCK = 4711


@dataclass
class Rig:
    fake: FakeNukiWeb
    harness: Harness
    device_id: str

    @property
    def lock(self) -> FakeSmartlock:
        return self.fake.locks[LOCK]

    def keypad(self) -> list[dict[str, Any]]:
        """Keypad codes as the server lists them (with their UTC window)."""
        return [a for a in self.lock.auths.values() if a["type"] == 13]

    def status(self, access_code_id: str) -> AccessCodeStatus:
        return self.harness.code(access_code_id).status


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _rig(tmp_path: Path, *, clock: FakeClock, driver_zone: str | None = "Europe/Berlin",
               property_zone: str | None = None, command_timeout_s: float = 10.0,
               create_wait_s: float = 30.0, policy: Policy | None = None,
               **switches: Any) -> Rig:
    fake = FakeNukiWeb(TOKEN, **{"apply_delay_s": 0.05, **switches})
    fake.add_lock(LOCK, "Apartment 3")
    url = await fake.start()
    (tmp_path / "nuki.token").write_text(TOKEN + "\n")
    settings: dict[str, Any] = {
        "kind": "nuki_web", "name": "nuki", "url": url,
        "token_file": str(tmp_path / "nuki.token"), "poll_interval_s": 3600,
        "create_poll_s": 0.05, "create_wait_s": create_wait_s, "confirmation_window_s": 0,
        "command_spacing_s": 0}
    if driver_zone is not None:
        settings["time_zone"] = driver_zone
    driver = NukiWebDriver(Config.model_validate(settings), clock)
    harness = await start_engine(tmp_path, {"nuki": driver}, clock=clock,
                                 property_zone=property_zone, policy=policy,
                                 command_timeout_s=command_timeout_s)
    return Rig(fake, harness, harness.device_id(str(LOCK), driver="nuki"))


@pytest.fixture
async def rigs(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Rig] = []

    async def make(**kwargs: Any) -> Rig:
        rig = await _rig(tmp_path / str(len(made)), **kwargs)
        made.append(rig)
        return rig

    (tmp_path / "0").mkdir()
    (tmp_path / "1").mkdir()
    yield make
    for rig in made:
        await rig.harness.stop()
        await rig.fake.stop()


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_a_changed_stay_reaches_the_lock(rigs: Callable[..., Any]) -> None:
    now = _now()
    rig: Rig = await rigs(clock=FakeClock(now))
    h = rig.harness
    made = await h.engine.create_code(rig.device_id, CodeRequest(
        name="Guest", type=AccessCodeType.TIME_BOUND, starts_at=now - timedelta(hours=2),
        ends_at=now + timedelta(days=2)))
    cid = made.access_code_id
    await h.until(lambda: rig.status(cid) is AccessCodeStatus.SET, what="stay set", advance=0.5)

    async def changed_to(request: CodeRequest, check: Callable[[dict[str, Any]], bool],
                         what: str) -> None:
        updated = await h.engine.update_code(cid, request)
        # Seam's status: `setting` until the lock has the new values.
        assert updated.status is AccessCodeStatus.SETTING
        await h.until(lambda: rig.status(cid) is AccessCodeStatus.SET
                      and check(rig.lock.device_auths().get(_auth_id(rig), {})), what=what,
                      advance=0.5)
        (auth,) = rig.keypad()
        assert "operationId" not in auth and check(auth)

    # The guest stays a day longer: the lock must end the code at the new time.
    later = now + timedelta(days=3)
    await changed_to(CodeRequest(ends_at=later),
                     lambda a: _utc(a.get("allowedUntilDate", "1970-01-01Z")) == later,
                     "end moved on the lock")
    await changed_to(CodeRequest(name="Guest Smith"), lambda a: a.get("name") == "Guest Smith",
                     "rename on the lock")
    sooner = now + timedelta(hours=20)
    await changed_to(CodeRequest(ends_at=sooner),
                     lambda a: _utc(a.get("allowedUntilDate", "1970-01-01Z")) == sooner
                     and _utc(a["allowedFromDate"]) == now - timedelta(hours=2),
                     "stay shortened on the lock")
    # Every update sent every field (a partial one clears the window) and nothing else: one
    # create, three updates.
    writes = [r for r in rig.fake.requests if r.startswith(("PUT", "POST"))]
    assert [w.split()[0] for w in writes] == ["PUT", "POST", "POST", "POST"]


def _auth_id(rig: Rig) -> str:
    (auth_id,) = [k for k, a in rig.lock.auths.items() if a["type"] == 13]
    return auth_id


async def test_times_in_the_property_zone_when_the_driver_names_none(
        rigs: Callable[..., Any]) -> None:
    # Auckland is UTC+13 until its summer time ends on 2027-04-04 at 03:00 local (14:00 UTC
    # the day before), UTC+12 after: a stay across it, with only the property's zone set.
    now = datetime(2027, 4, 1, 0, 0, tzinfo=UTC)
    rig: Rig = await rigs(clock=FakeClock(now), driver_zone=None,
                          property_zone="Pacific/Auckland")
    h = rig.harness
    assert h.engine.devices[rig.device_id].time_zone == "Pacific/Auckland"
    starts = datetime(2027, 4, 2, 2, 0, tzinfo=UTC)    # 15:00 in Auckland (UTC+13)
    ends = datetime(2027, 4, 5, 23, 0, tzinfo=UTC)     # 11:00 the next day (UTC+12)
    made = await h.engine.create_code(rig.device_id, CodeRequest(
        name="Guest", type=AccessCodeType.TIME_BOUND, starts_at=starts, ends_at=ends))
    await h.until(lambda: h.code(made.access_code_id).is_scheduled_on_device,
                  what="scheduled on the lock")
    (auth,) = rig.keypad()
    assert (_utc(auth["allowedFromDate"]), _utc(auth["allowedUntilDate"])) == (starts, ends)
    # Read back and compared in instants: nothing more to write.
    h.engine.reconcile(rig.device_id, full=True)
    await h.until(lambda: h.engine.settled(), what="settled")
    assert [r.split()[0] for r in rig.fake.requests].count("PUT") == 1
    assert not [r for r in rig.fake.requests if r.startswith("POST")]


async def test_a_code_made_in_the_nuki_app_is_never_taken_over(
        rigs: Callable[..., Any]) -> None:
    # The box's clock is an hour ahead of the app's code: nothing can make that code ours.
    rig: Rig = await rigs(clock=FakeClock(_now() + timedelta(hours=1)))
    h = rig.harness
    await h.until(lambda: h.engine.settled(), what="first read done")
    app_id = rig.lock.add_app_code(456789, "Cleaner (app)")
    made = await h.engine.create_code(rig.device_id, CodeRequest(name="Guest", code="456789"))
    cid = made.access_code_id
    await h.until(lambda: h.code(cid).has_error(AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE),
                  what="duplicate_code_on_device")
    assert rig.status(cid) is not AccessCodeStatus.SET
    # The app user's code is untouched: same name, never renamed or updated by us.
    assert rig.lock.auths[app_id]["name"] == "Cleaner (app)"
    assert not [r for r in rig.fake.requests if r.startswith(("POST", "DELETE"))]
    # Deleting ours takes nothing off the lock.
    await h.engine.delete_code(cid)
    await h.until(lambda: cid not in h.engine.codes, what="ours forgotten")
    assert rig.lock.keypad_codes() == {"456789": "Cleaner (app)"}


async def test_set_only_once_the_lock_has_it(rigs: Callable[..., Any]) -> None:
    rig: Rig = await rigs(clock=FakeClock(_now()), apply_delay_s=1.0, list_delay_s=0.05)
    h = rig.harness
    seen_on_lock_when_set: list[bool] = []

    def watch(events: list[Any]) -> None:
        for event in events:
            if event.event_type is EventType.ACCESS_CODE_SET_ON_DEVICE:
                seen_on_lock_when_set.append("456781" in rig.lock.keypad_codes())

    h.engine.subscribe(watch)
    made = await h.engine.create_code(rig.device_id, CodeRequest(name="Staff", code="456781"))
    cid = made.access_code_id
    # Nuki lists the entry at once, with its operation still running: not on the lock.
    await h.until(lambda: any("operationId" in a for a in _listed(rig)), what="listed pending")
    assert rig.lock.keypad_codes() == {}
    assert rig.status(cid) is AccessCodeStatus.SETTING
    await h.until(lambda: rig.status(cid) is AccessCodeStatus.SET, what="set", advance=0.5)
    assert seen_on_lock_when_set == [True]


def _listed(rig: Rig) -> list[dict[str, Any]]:
    return [rig.fake._auth_json(rig.lock, i, a) for i, a in rig.fake.visible(rig.lock)
            if a["type"] == 13]


async def test_a_change_that_stays_pending_gets_the_delay_warning(
        rigs: Callable[..., Any]) -> None:
    now = _now()
    clock = FakeClock(now)
    rig: Rig = await rigs(clock=clock)
    h = rig.harness
    made = await h.engine.create_code(rig.device_id, CodeRequest(
        name="Guest", type=AccessCodeType.TIME_BOUND, starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=1)))
    cid = made.access_code_id
    await h.until(lambda: rig.status(cid) is AccessCodeStatus.SET, what="set", advance=0.5)
    rig.fake.apply_delay_s = 3600.0  # Nuki accepts the change but does not reach the lock
    await h.engine.update_code(cid, CodeRequest(ends_at=now + timedelta(days=2)))
    await h.until(lambda: any("operationId" in a for a in _listed(rig)), what="update pending")
    await h.until(lambda: h.code(cid).has_warning(
        AccessCodeWarningCode.DELAY_IN_SETTING_ON_DEVICE), advance=5.0, timeout=20,
        what="delay warning")
    assert rig.status(cid) is AccessCodeStatus.SETTING
    rig.fake.complete_operations()
    await h.until(lambda: rig.status(cid) is AccessCodeStatus.SET, advance=5.0, what="set")
    assert not h.code(cid).has_warning(AccessCodeWarningCode.DELAY_IN_SETTING_ON_DEVICE)


async def test_the_driver_states_how_long_a_create_may_take(rigs: Callable[..., Any]) -> None:
    # The engine's own command timeout (1 s) is far shorter than the time the lock takes to
    # receive a new code (about 1.5 s here); the driver's create wait is what counts.
    rig: Rig = await rigs(clock=FakeClock(_now()), apply_delay_s=1.5, list_delay_s=1.5,
                          command_timeout_s=1.0, create_wait_s=600.0)
    h = rig.harness
    made = await h.engine.create_code(rig.device_id, CodeRequest(name="Staff", code="456781"))
    cid = made.access_code_id
    await h.until(lambda: rig.status(cid) is AccessCodeStatus.SET, what="set", timeout=15,
                  advance=0.5)
    # One create, waited for to the end: not cut short, retried and then found.
    assert [r.split()[0] for r in rig.fake.requests if not r.startswith("GET")] == ["PUT"]
    device = h.engine.devices[rig.device_id]
    assert h.engine.command_timeout(device) >= 600.0


async def test_a_create_whose_answer_was_lost_is_taken_back_with_its_proof(
        rigs: Callable[..., Any]) -> None:
    # Nuki takes the create but the lock is slow: the driver gives up waiting (RetryLater).
    rig: Rig = await rigs(clock=FakeClock(_now()), apply_delay_s=3600.0, create_wait_s=1.0)
    h = rig.harness
    made = await h.engine.create_code(rig.device_id, CodeRequest(name="Staff", code="456781"))
    cid = made.access_code_id
    await h.until(lambda: h.code(cid).attempts == 1, advance=0.5, what="create given up on")
    assert h.code(cid).sync.first_sent_at is not None
    # A full read meanwhile finds the entry as a code nobody manages ...
    h.engine.reconcile(rig.device_id, full=True)
    await h.until(lambda: any(not c.is_managed for c in h.engine.codes_of(rig.device_id)),
                  advance=0.5, what="listed as unmanaged")
    # ... and once the lock has it, the retry proves it ours (Nuki made it after our first
    # attempt went out) instead of calling it a duplicate or asking for it twice.
    rig.fake.apply_delay_s = 0.05
    rig.fake.complete_operations()
    await h.until(lambda: rig.status(cid) is AccessCodeStatus.SET, advance=0.5, timeout=20,
                  what="set")
    assert not h.code(cid).errors
    assert [c.access_code_id for c in h.engine.codes_of(rig.device_id)] == [cid]
    assert [r.split()[0] for r in rig.fake.requests].count("PUT") == 1


async def test_a_change_the_lock_never_got_is_sent_again(rigs: Callable[..., Any]) -> None:
    rig: Rig = await rigs(clock=FakeClock(_now()))
    h = rig.harness
    made = await h.engine.create_code(rig.device_id, CodeRequest(name="Staff", code="456781"))
    cid = made.access_code_id
    await h.until(lambda: rig.status(cid) is AccessCodeStatus.SET, advance=0.5, what="set")
    rig.lock.refuse_operations = "ERROR_UNKNOWN (0xff): device offline or not reachable"
    await h.engine.update_code(cid, CodeRequest(name="Housekeeping"))
    await h.until(lambda: any(a.get("error") for a in rig.keypad()), what="transfer failed")
    await h.until(lambda: h.code(cid).attempts >= 1, advance=0.5, what="seen as not applied")
    assert rig.status(cid) is AccessCodeStatus.SETTING
    assert rig.lock.keypad_codes() == {"456781": "Staff"}  # the lock keeps what it had
    rig.lock.refuse_operations = None
    await h.until(lambda: rig.status(cid) is AccessCodeStatus.SET, advance=0.5, timeout=20,
                  what="set again")
    assert rig.lock.keypad_codes() == {"456781": "Housekeeping"}
    # Deleting it takes it off the lock and off Nuki's list.
    await h.engine.delete_code(cid)
    await h.until(lambda: cid not in h.engine.codes, advance=0.5, what="deleted")
    assert rig.keypad() == []


async def test_a_change_the_lock_keeps_refusing_ends_as_failed_to_set(
        rigs: Callable[..., Any]) -> None:
    rig: Rig = await rigs(clock=FakeClock(_now()),
                          policy=Policy(max_attempts=3, retry_base_s=0.2, retry_cap_s=1.0))
    h = rig.harness
    made = await h.engine.create_code(rig.device_id, CodeRequest(name="Staff", code="456781"))
    cid = made.access_code_id
    await h.until(lambda: rig.status(cid) is AccessCodeStatus.SET, advance=0.5, what="set")
    rig.lock.refuse_operations = "the lock refused the change"
    await h.engine.update_code(cid, CodeRequest(name="Housekeeping"))
    await h.until(lambda: h.code(cid).has_error(AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE),
                  advance=0.5, timeout=20, what="failed_to_set_on_device")
    posts = [r for r in rig.fake.requests if r.startswith("POST")]
    assert len(posts) == 3  # sent, and sent again until max_attempts
    assert h.code(cid).gave_up and rig.status(cid) is AccessCodeStatus.SETTING


async def test_a_create_cut_off_by_a_restart_is_taken_back_with_its_proof(
        rigs: Callable[..., Any], tmp_path: Path) -> None:
    clock = FakeClock(_now())
    rig: Rig = await rigs(clock=clock, apply_delay_s=3600.0)
    h = rig.harness
    made = await h.engine.create_code(rig.device_id, CodeRequest(name="Staff", code="456781"))
    cid = made.access_code_id
    # The daemon stops while the driver waits for Nuki to reach the lock: no answer recorded.
    await h.until(lambda: any(r.startswith("PUT") for r in rig.fake.requests), what="sent")
    await h.stop()
    rig.fake.apply_delay_s = 0.05
    rig.fake.complete_operations()
    settings = {"kind": "nuki_web", "name": "nuki", "url": f"http://127.0.0.1:{rig.fake.port}",
                "token_file": str(tmp_path / "0" / "nuki.token"), "poll_interval_s": 3600,
                "create_poll_s": 0.05, "create_wait_s": 30, "confirmation_window_s": 0,
                "command_spacing_s": 0, "time_zone": "Europe/Berlin"}
    again = await start_engine(tmp_path / "0", {
        "nuki": NukiWebDriver(Config.model_validate(settings), clock)}, clock=clock)
    rig.harness = again
    await again.until(lambda: again.code(cid).status is AccessCodeStatus.SET, advance=0.5,
                      what="set after the restart")
    assert not again.code(cid).errors
    assert [r.split()[0] for r in rig.fake.requests].count("PUT") == 1
    assert [c.access_code_id for c in again.engine.codes_of(rig.device_id)] == [cid]
