"""The driver contract (tests/contract.py) and the Matter driver's own checks, against a real
virtual lock (matter.js) commissioned once onto a real Matter server (python-matter-server).

One namespace, lock and server serve the whole module (commissioning costs seconds); each test
gets factory-fresh codes on the lock and a newly started driver.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from seam import Seam

from bridge.clock import SystemClock
from bridge.driver import (
    Availability,
    CodeWrite,
    CommandRejected,
    DriverEvent,
    DriverEventKind,
    LocalWindow,
    LockState,
    RejectReason,
    RetryLater,
    SlotState,
)
from drivers.matter import mapping
from drivers.matter.config import Config
from tests.api_helpers import ROOT, lockbridge, start_daemon, wait_until
from tests.contract import ContractSubject, DriverContract
from tests.harness import until
from tests.matter.proxy import MatterProxy
from tests.matter.stack import MatterStack, missing_peers

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_peers() is not None, reason=missing_peers() or ""),
]

# Seconds from 1970-01-01 to Matter's epoch, 2000-01-01.
UNIX_TO_MATTER_S = 946_684_800


MATTER_DRIVER = """\
  - kind: matter
    name: mt
    url: {url}
    allow_remote: true
    time_zone: Europe/Lisbon
    command_spacing_s: 0
    reconnect_min_s: 0.2
    reconnect_max_s: 1
    nodes:
      {node}: {{name: Front door, native_schedules: {native}}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatterStack]:
    """The peers, and the lock commissioned once with `lockbridge matter commission`."""
    root = tmp_path_factory.mktemp("matter")
    matter = MatterStack(root)
    try:
        matter.start()
        config = root / "commission.yaml"
        config.write_text(f"state_dir: {root / 'state'}\ndrivers:\n" + MATTER_DRIVER.format(
            url=matter.url, node=1, native="true"))
        done = subprocess.run(lockbridge("matter", "commission", matter.pairing or "", "-c",
                                         str(config)),
                              capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        matter.node_id = int(done.stdout.split("node ")[1].split()[0])
        yield matter
    finally:
        matter.close()


def driver_config(stack: MatterStack, **extra: object) -> Config:
    return Config.model_validate({"kind": "matter", "url": stack.url, "allow_remote": True,
                                  "command_spacing_s": 0, "command_timeout_s": 4,
                                  "probe_timeout_s": 3, "reconnect_min_s": 0.2,
                                  "reconnect_max_s": 1.0, "busy_retry_s": 0.05, **extra})


@pytest.fixture
async def subject(stack: MatterStack, tmp_path: Path) -> AsyncIterator[ContractSubject]:
    from drivers.matter.driver import MatterDriver

    # A check before this one may have frozen or restarted the lock.
    if stack.lock is None:
        await asyncio.to_thread(stack.start_lock)
    stack.resume_lock()
    stack.control("reset")
    driver = MatterDriver(driver_config(stack), SystemClock(), tmp_path / "state")
    events: list[DriverEvent] = []

    async def sink(event: DriverEvent) -> None:
        events.append(event)

    async def silence() -> None:
        stack.silence_lock()

    await driver.start(sink)
    try:
        [info] = driver.devices()
        await until(lambda: driver.availability(info.external_id) is Availability.ONLINE,
                    timeout=30.0, what="the lock online")
        subject = ContractSubject(driver, info.external_id, stack.pins, silence,
                                  answer_bound_s=10.0, events=events)
        # After a freeze or a restart the lock answers once CHIP's session is back.
        await answering(subject)
        yield subject
    finally:
        stack.resume_lock()
        await driver.stop()


async def answering(subject: ContractSubject, timeout_s: float = 45.0) -> None:
    """Wait (bounded) until the lock answers a probe through the server."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await subject.driver.probe(subject.external_id):
        if loop.time() > deadline:
            raise AssertionError(f"the lock did not answer within {timeout_s} s")
        await asyncio.sleep(0.2)


class TestMatter(DriverContract):
    """The shared contract against the virtual lock."""


class TestMatterLock:
    """What only a Matter lock does: users and fabrics, schedules, events, restarts."""

    async def test_describes_the_lock_from_its_attributes(
            self, subject: ContractSubject) -> None:
        info = subject.info()
        assert info.capabilities.slot_count == 15  # PIN slots (18), not users (17)
        assert info.capabilities.native_schedules and info.capabilities.masks_pins_on_read
        assert (info.constraints.min_length, info.constraints.max_length) == (4, 8)
        assert info.manufacturer == "lockbridge tests"

    async def test_refuses_a_pin_the_lock_rules_out(self, subject: ContractSubject) -> None:
        for pin in ("12a4", "123", "123456789"):
            with pytest.raises(CommandRejected) as raised:
                await subject.driver.write_code(subject.external_id,
                                                CodeWrite(slot=1, pin=pin, name="x"))
            assert raised.value.reason is RejectReason.INVALID_PIN
        assert subject.truth() == {}

    async def test_modifies_a_code_in_place(self, stack: MatterStack,
                                            subject: ContractSubject) -> None:
        await subject.driver.write_code(subject.external_id,
                                        CodeWrite(slot=2, pin="2468", name="Guest"))
        await subject.driver.write_code(subject.external_id,
                                        CodeWrite(slot=2, pin="97531", name="Guest"))
        assert subject.truth() == {2: "97531"}
        users = stack.control("truth")["users"]
        assert [u["credentials"] for u in users] == [[2]]

    async def test_a_time_bound_code_is_a_year_day_schedule_in_local_time(
            self, stack: MatterStack, subject: ContractSubject) -> None:
        window = LocalWindow(datetime(2031, 7, 1, 15, 0), datetime(2031, 7, 8, 11, 0),
                             "Europe/Lisbon")
        await subject.driver.write_code(subject.external_id,
                                        CodeWrite(slot=3, pin="1357", name="Stay", window=window))
        [schedule] = stack.control("truth")["yearDay"]
        # matter.js keeps epoch-s values as Unix seconds; on the wire they count from 2000.
        assert schedule["localStartTime"] - UNIX_TO_MATTER_S == \
            mapping.local_epoch(window.starts_at)
        assert mapping.from_local_epoch(schedule["localEndTime"] - UNIX_TO_MATTER_S) == \
            window.ends_at
        # Made ongoing again: the schedule goes.
        await subject.driver.write_code(subject.external_id,
                                        CodeWrite(slot=3, pin="1357", name="Stay"))
        assert stack.control("truth")["yearDay"] == []
        assert subject.truth() == {3: "1357"}

    async def test_another_fabrics_code_is_unmanaged_and_never_changed(
            self, stack: MatterStack, subject: ContractSubject) -> None:
        stack.control("foreign", slot=4, user=5, pin="8642", fabric=9)
        [read] = await subject.driver.list_codes(subject.external_id)
        assert (read.slot, read.state) == (4, SlotState.UNREADABLE)
        for call in (subject.driver.write_code(subject.external_id,
                                               CodeWrite(slot=4, pin="1111", name="x")),
                     subject.driver.clear_code(subject.external_id, 4)):
            with pytest.raises(CommandRejected):
                await call
        assert subject.truth() == {4: "8642"}

    async def test_a_keypad_change_is_an_external_modification(
            self, stack: MatterStack, subject: ContractSubject) -> None:
        await subject.driver.write_code(subject.external_id,
                                        CodeWrite(slot=5, pin="2580", name="Guest"))
        [read] = await subject.driver.read_slots(subject.external_id, [5])
        assert read.name is None  # ours, as written
        stack.control("keypad_set", slot=5, user=1, pin="0852")
        await until(lambda: any(e.kind is DriverEventKind.SLOT_CHANGED and e.slot == 5
                                for e in subject.events), timeout=15.0, what="slot 5 changed")
        [read] = await subject.driver.read_slots(subject.external_id, [5])
        assert read.state is SlotState.UNREADABLE and read.name == mapping.CHANGED_AT_LOCK

    async def test_a_keypad_unlock_names_the_slot(self, stack: MatterStack,
                                                  subject: ContractSubject) -> None:
        await subject.driver.write_code(subject.external_id,
                                        CodeWrite(slot=6, pin="4321", name="Guest"))
        await until(lambda: subject.info().state == LockState(locked=True), timeout=15.0,
                    what="shown locked")
        assert stack.control("keypad_unlock", pin="4321")["matched"]
        await until(lambda: any(e.kind is DriverEventKind.KEYPAD_USED and e.slot == 6
                                for e in subject.events), timeout=15.0, what="keypad unlock")
        # The lock's state follows its LockState attribute.
        await until(lambda: subject.info().state == LockState(locked=False), timeout=15.0,
                    what="shown unlocked")

    async def test_a_full_lock_has_no_space(self, stack: MatterStack,
                                            subject: ContractSubject) -> None:
        # 10 users for 15 PIN slots: the eleventh code finds no user. Nine codes of lockbridge's
        # fabric go straight into the lock's store (quicker than nine writes), the tenth is
        # written.
        for slot in range(1, 10):
            stack.control("foreign", slot=slot, user=slot, pin=f"{5000 + slot}", fabric=1)
        await subject.driver.write_code(subject.external_id,
                                        CodeWrite(slot=10, pin="5010", name="x"))
        with pytest.raises(CommandRejected) as raised:
            await subject.driver.write_code(subject.external_id,
                                            CodeWrite(slot=11, pin="6011", name="x"))
        assert raised.value.reason is RejectReason.NO_SPACE
        assert len(subject.truth()) == 10

    async def test_a_restarted_lock_is_back_without_commissioning(
            self, stack: MatterStack, subject: ContractSubject) -> None:
        await subject.driver.write_code(subject.external_id,
                                        CodeWrite(slot=7, pin="7777", name="x"))
        await asyncio.to_thread(stack.stop_lock)
        await asyncio.to_thread(stack.start_lock)
        await until(lambda: subject.driver.availability(subject.external_id)
                    is Availability.ONLINE, timeout=30.0, what="the lock back")
        await answering(subject)
        await subject.driver.write_code(subject.external_id,
                                        CodeWrite(slot=8, pin="8888", name="x"))
        assert subject.truth() == {7: "7777", 8: "8888"}

    async def test_a_restarted_server_is_reconnected(self, stack: MatterStack,
                                                     subject: ContractSubject) -> None:
        await asyncio.to_thread(stack.stop_server)
        await until(lambda: subject.driver.availability(subject.external_id)
                    is Availability.HUB_DISCONNECTED, timeout=15.0, what="link lost")
        await asyncio.to_thread(stack.start_server)
        await until(lambda: subject.driver.availability(subject.external_id)
                    is Availability.ONLINE, timeout=60.0, what="the lock back")
        await answering(subject)
        await subject.driver.write_code(subject.external_id,
                                        CodeWrite(slot=9, pin="9999", name="x"))
        assert subject.truth() == {9: "9999"}


@pytest.fixture
async def proxied(stack: MatterStack, tmp_path: Path,
                  subject: ContractSubject) -> AsyncIterator[tuple[ContractSubject, MatterProxy]]:
    """A second driver on the same lock, through a proxy that can answer for the server."""
    from drivers.matter.driver import MatterDriver

    proxy = MatterProxy(stack.url)
    await proxy.start()
    driver = MatterDriver(driver_config(stack, url=proxy.url, allow_remote=False),
                          SystemClock(), tmp_path / "proxied")
    events: list[DriverEvent] = []

    async def sink(event: DriverEvent) -> None:
        events.append(event)

    await driver.start(sink)
    try:
        yield ContractSubject(driver, subject.external_id, stack.pins, subject.silence,
                              events=events), proxy
    finally:
        await driver.stop()
        await proxy.stop()


def _status(exists: bool, user: int | None = None) -> dict[str, object]:
    return {"result": {"credentialExists": exists, "userIndex": user,
                       "creatorFabricIndex": 1 if exists else None,
                       "lastModifiedFabricIndex": 1 if exists else None,
                       "nextCredentialIndex": None, "credentialData": None}}


class TestMatterAnswers:
    """How the driver reads answers the virtual lock cannot give (injected by a proxy)."""

    @pytest.mark.parametrize(("answer", "reason"), [
        ({"result": {"status": 2, "userIndex": None, "nextCredentialIndex": None}},
         RejectReason.DUPLICATE_PIN),
        ({"result": {"status": 0x89, "userIndex": None, "nextCredentialIndex": None}},
         RejectReason.NO_SPACE),
        ({"result": {"status": 0x87, "userIndex": None, "nextCredentialIndex": None}},
         RejectReason.INVALID_PIN),
        ({"result": {"status": 1, "userIndex": None, "nextCredentialIndex": None}},
         RejectReason.OTHER),
        ({"error_code": 0, "details": "InteractionModelError: Failure (0x1, clusterStatus: 2)"},
         RejectReason.DUPLICATE_PIN),
        ({"error_code": 0, "details": "InteractionModelError: InvalidCommand (0x85)"},
         RejectReason.INVALID_PIN),
        ({"error_code": 0, "details": "InteractionModelError: ResourceExhausted (0x89)"},
         RejectReason.NO_SPACE),
    ])
    async def test_a_refused_pin_is_mapped_and_leaves_no_user(
            self, stack: MatterStack, proxied: tuple[ContractSubject, MatterProxy],
            answer: dict[str, object], reason: RejectReason) -> None:
        subject, proxy = proxied
        proxy.inject("SetCredential", answer)
        with pytest.raises(CommandRejected) as raised:
            await subject.driver.write_code(subject.external_id,
                                            CodeWrite(slot=1, pin="1470", name="x"))
        assert raised.value.reason is reason
        # The user made for the code is gone again.
        assert subject.truth() == {} and stack.control("truth")["users"] == []

    async def test_occupied_is_read_again_and_modified(
            self, stack: MatterStack, proxied: tuple[ContractSubject, MatterProxy]) -> None:
        subject, proxy = proxied
        await subject.driver.write_code(subject.external_id,
                                        CodeWrite(slot=2, pin="1111", name="x"))
        # The slot reads free (a stale answer), so the driver adds; the lock says OCCUPIED.
        proxy.inject("GetCredentialStatus", _status(False))
        proxy.inject("SetCredential", {"result": {"status": 3, "userIndex": None,
                                                  "nextCredentialIndex": None}})
        result = await subject.driver.write_code(subject.external_id,
                                                 CodeWrite(slot=2, pin="2222", name="x"))
        assert (result.slot, result.pin) == (2, "2222")
        assert subject.truth() == {2: "2222"}
        assert len(stack.control("truth")["users"]) == 1

    @pytest.mark.parametrize("details", ["InteractionModelError: Busy (0x9c)",
                                         "InteractionModelError: Timeout (0x94)"])
    async def test_busy_and_timeout_are_sent_again(
            self, proxied: tuple[ContractSubject, MatterProxy], details: str) -> None:
        subject, proxy = proxied
        proxy.inject("SetCredential", {"error_code": 0, "details": details})
        await subject.driver.write_code(subject.external_id,
                                        CodeWrite(slot=3, pin="3690", name="x"))
        assert subject.truth() == {3: "3690"}
        assert proxy.seen.count("SetCredential") == 2

    async def test_a_node_not_ready_is_offline_until_it_answers(
            self, proxied: tuple[ContractSubject, MatterProxy]) -> None:
        subject, proxy = proxied
        proxy.inject("GetCredentialStatus", {"error_code": 3,
                                             "details": "Node 1 is not (yet) available."})
        with pytest.raises(RetryLater):
            await subject.driver.read_slots(subject.external_id, [1])
        assert subject.driver.availability(subject.external_id) is Availability.OFFLINE
        assert await subject.driver.probe(subject.external_id)
        assert subject.driver.availability(subject.external_id) is Availability.ONLINE


DAEMON_CONFIG = """\
bridge: {{id: matter-e2e}}
state_dir: {state}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0, probe_base_s: 1, retry_base_s: 0.5, retry_cap_s: 2}}
schedule: {{require_synchronized_clock: false}}
drivers:
"""


class TestMatterDaemon:
    """The daemon with the Matter driver, driven by the official `seam` SDK."""

    def test_codes_through_the_api_end_up_on_the_lock(self, stack: MatterStack,
                                                      tmp_path: Path) -> None:
        if stack.lock is None:
            stack.start_lock()
        stack.resume_lock()
        stack.control("reset")
        # As a lock without year-day schedules (a real U200): the bridge switches its codes.
        driver = MATTER_DRIVER.format(url=stack.url, node=stack.node_id, native="false")
        daemon = start_daemon(tmp_path, DAEMON_CONFIG + driver.replace("{", "{{")
                              .replace("}", "}}"))
        daemon.pins.update({"3579", "8024", "4680"})
        try:
            with Seam(api_key=daemon.key, endpoint=daemon.url) as seam:
                scenario(stack, seam)
        finally:
            log = daemon.stop()
            assert not {"3579", "8024", "4680"} & set(log.split()), "a PIN reached the log"


def scenario(stack: MatterStack, seam: Seam) -> None:
    [device] = wait_until(lambda: [d for d in seam.devices.list()
                                   if d.display_name == "Front door" and
                                   d.properties.online], timeout=60, what="the lock online")
    code = seam.access_codes.create(device_id=device.device_id, name="Guest", code="3579")
    wait_until(lambda: seam.access_codes.get(access_code_id=code.access_code_id).status
               == "set", timeout=60, what="the code set")
    assert list(stack.pins().values()) == ["3579"]
    # A keypad unlock with it names the code.
    assert stack.control("keypad_unlock", pin="3579")["matched"]
    unlocked = wait_until(lambda: [e for e in seam.events.list(device_id=device.device_id)
                                   if e.event_type == "lock.unlocked"], what="lock.unlocked")
    assert unlocked[0].access_code_id == code.access_code_id
    # Changed at the keypad: an external modification, and lockbridge puts its PIN back.
    [slot] = stack.pins()
    user = stack.control("truth")["users"][0]["userIndex"]
    stack.control("keypad_set", slot=slot, user=user, pin="8024")
    wait_until(lambda: [e for e in seam.events.list(device_id=device.device_id)
                        if e.event_type == "access_code.modified_external_to_seam"],
               timeout=60, what="the keypad change seen")
    wait_until(lambda: stack.pins() == {slot: "3579"}, timeout=60, what="the PIN put back")
    seam.access_codes.delete(access_code_id=code.access_code_id)
    wait_until(lambda: stack.pins() == {}, timeout=60, what="the code removed")
    # A time-bound code on a lock that keeps no schedules: on the lock, with no schedule, for
    # its window only.
    now = datetime.now(UTC)
    ends = now + timedelta(seconds=15)
    seam.access_codes.create(device_id=device.device_id, name="Stay", code="4680",
                             starts_at=(now - timedelta(minutes=1)).isoformat(),
                             ends_at=ends.isoformat())
    wait_until(lambda: list(stack.pins().values()) == ["4680"], timeout=30, what="stay set")
    assert stack.control("truth")["yearDay"] == []
    assert datetime.now(UTC) < ends, "too slow to see the code before its end"
    wait_until(lambda: stack.pins() == {}, timeout=60, what="stay removed at its end")
    assert datetime.now(UTC) >= ends


class TestMatterRemoval:
    """Last in the module: the lock leaves the fabric for good."""

    async def test_a_lock_removed_from_the_fabric_is_removed(
            self, stack: MatterStack, subject: ContractSubject) -> None:
        assert stack.node_id is not None
        await stack.server_call("remove_node", {"node_id": stack.node_id})
        await until(lambda: subject.driver.availability(subject.external_id)
                    is Availability.REMOVED, timeout=15.0, what="the lock removed")
        assert any(e.kind is DriverEventKind.AVAILABILITY
                   and e.availability is Availability.REMOVED for e in subject.events)
