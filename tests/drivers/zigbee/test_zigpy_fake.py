"""The fake zigpy radio and door lock, checked through zigpy's public API only."""

from __future__ import annotations

import asyncio
import errno
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import zigpy.exceptions
import zigpy.types as t
from zigpy.zcl import foundation
from zigpy.zcl.clusters.closures import DoorLock

from tests.fakes.zigpy_radio import (
    DUPLICATE_CODE,
    GENERAL_FAILURE,
    MEMORY_FULL,
    SUCCESS,
    FakeControllerApplication,
    FakeDoorLock,
    FakeNetwork,
    Slot,
    fake_config,
    zcl_local_time,
    zigpy_reply_timeout,
)

ENABLED = DoorLock.UserStatus.Enabled
UNRESTRICTED = DoorLock.UserType.Unrestricted
WAIT = 5.0  # bound on every wait for something the fake sends


@pytest.fixture(autouse=True)
def quiet_zigpy() -> Iterator[None]:
    # zigpy logs every decoded frame at DEBUG, PINs included; these tests are about the fake,
    # and the suite's PIN-in-logs guard would trip on PINs other tests taught it.
    logger = logging.getLogger("zigpy")
    old = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(old)


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.name = f"net-{uuid.uuid4().hex[:8]}"
        self.network = FakeNetwork(self.name)
        self.db = str(tmp_path / "zigbee.db")
        self.apps: list[FakeControllerApplication] = []

    def config(self) -> dict[str, Any]:
        return fake_config(self.name, self.db)

    async def start(self) -> FakeControllerApplication:
        app = await FakeControllerApplication.new(self.config(), auto_form=True, start_radio=True)
        assert isinstance(app, FakeControllerApplication)
        self.apps.append(app)
        return app

    async def stop(self, app: FakeControllerApplication) -> None:
        self.apps.remove(app)
        await app.shutdown()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    e = Env(tmp_path)
    yield e
    for app in list(e.apps):
        await e.stop(app)
    FakeNetwork.remove(e.name)


async def joined(env: Env, lock: FakeDoorLock) -> tuple[FakeControllerApplication, Any]:
    app = await env.start()
    await app.permit(60)
    device = await env.network.join(lock)
    return app, device.endpoints[1].door_lock


class Events:
    """A listener on the Door Lock cluster: cluster commands and attribute reports."""

    def __init__(self, cluster: Any) -> None:
        self.commands: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self.reports: asyncio.Queue[Any] = asyncio.Queue()
        cluster.add_listener(self)
        cluster.on_event("attribute_report", self.reports.put_nowait)

    def cluster_command(self, tsn: int, command_id: int, args: Any) -> None:
        self.commands.put_nowait((command_id, args))

    async def next_command(self) -> tuple[int, Any]:
        return await asyncio.wait_for(self.commands.get(), WAIT)

    async def next_report(self) -> Any:
        return await asyncio.wait_for(self.reports.get(), WAIT)


# -- start-up, join and interview ----------------------------------------------------------


async def test_start_forms_network_and_interviews_a_joined_lock(env: Env) -> None:
    app = await env.start()
    assert env.network.network_info is not None  # formed, since the radio had none
    assert app.state.node_info.ieee == env.network.coordinator_ieee

    lock = FakeDoorLock(profile="kwikset", ieee="00:0d:6f:00:00:00:00:07", nwk=0x1234)
    with pytest.raises(RuntimeError, match="not permitted"):
        await env.network.join(lock)
    await app.permit(30)
    assert env.network.permit_open
    device = await env.network.join(lock)

    assert app.devices[lock.ieee] is device
    assert device.is_initialized
    assert device.node_desc is not None and device.node_desc.is_end_device
    assert (device.manufacturer, device.model) == ("Kwikset", "SMARTCODE_DEADBOLT_10_L")
    clusters = set(device.endpoints[1].in_clusters)
    assert clusters == {0x0000, 0x0001, 0x0101}
    assert lock.frame_kinds["zdo:Node_Desc_req"] == 1
    assert lock.frame_kinds["zdo:Simple_Desc_req"] == 1
    permits = [f for f in env.network.sent if f.command == "zdo:Mgmt_Permit_Joining_req"]
    assert permits[-1].dst == "broadcast:0xFFFC" and permits[-1].args["PermitDuration"] == 30
    await app.permit(0)
    assert not env.network.permit_open


async def test_a_restarted_application_finds_network_and_lock(env: Env) -> None:
    lock = FakeDoorLock()
    app, _ = await joined(env, lock)
    info = env.network.network_info
    await env.stop(app)

    app = await env.start()
    assert env.network.network_info == info  # not formed again
    device: Any = app.get_device(ieee=lock.ieee)
    lock.reset_counters()
    rsp = await device.endpoints[1].door_lock.get_pin_code(1)
    assert rsp.user_status == 0 and rsp.code == ""
    assert lock.frames_received == 1  # no re-interview


async def test_a_paired_lock_zigpy_does_not_know_is_discovered(env: Env) -> None:
    app = await env.start()
    lock = env.network.add(FakeDoorLock())
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    class Listener:
        def device_initialized(self, device: Any) -> None:
            if device.ieee == lock.ieee and not done.done():
                done.set_result(device)

    app.add_listener(Listener())
    lock.keypad_unlock(1)  # a frame from an address zigpy has never seen
    device = await asyncio.wait_for(done, WAIT)
    assert device.model == "YRD226/246 TSDB"
    assert lock.frame_kinds["zdo:IEEE_addr_req"] >= 1  # one per unknown frame (event, report)


async def test_radio_missing_or_busy(env: Env) -> None:
    # No database for the failing starts: when `new()` fails in start-up, zigpy shuts down
    # with db=False and its database worker task keeps running (zigpy/application.py).
    no_db = fake_config(env.name, None)
    app = await env.start()
    with pytest.raises(OSError) as busy:
        await FakeControllerApplication.new(no_db, auto_form=True)
    assert busy.value.errno == errno.EBUSY
    await env.stop(app)
    env.network.radio_present = False
    with pytest.raises(FileNotFoundError):
        await FakeControllerApplication.new(no_db, auto_form=True)
    with pytest.raises(FileNotFoundError):
        await FakeControllerApplication.new(fake_config("no-such-network", None))


async def test_unplugged_radio_reports_connection_lost(env: Env) -> None:
    app = await env.start()
    lost: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    class Listener:
        def connection_lost(self, exc: Exception) -> None:
            lost.set_result(exc)

    app.add_listener(Listener())
    env.network.unplug()
    assert isinstance(await asyncio.wait_for(lost, WAIT), ConnectionError)


# -- PIN commands --------------------------------------------------------------------------


async def test_set_get_clear_pin(env: Env) -> None:
    lock = FakeDoorLock(slots={2: (1, 0, "4711")})
    _, cluster = await joined(env, lock)

    rsp = await cluster.set_pin_code(3, ENABLED, UNRESTRICTED, "93015")
    assert rsp.status == SUCCESS
    assert lock.slots[3] == Slot(1, 0, "93015")
    got = await cluster.get_pin_code(3)
    assert (got.user_id, got.user_status, got.user_type, got.code) == (3, 1, 0, "93015")
    assert (await cluster.clear_pin_code(3)).status == 0
    assert 3 not in lock.slots
    assert (await cluster.clear_pin_code(3)).status == 0  # clearing an empty slot passes
    assert (await cluster.get_pin_code(3)).user_status == 0
    assert (await cluster.get_pin_code(2)).code == "4711"

    assert lock.applied == [
        ("set_pin_code", 3, 1, 0, "93015"),
        ("clear_pin_code", 3),
        ("clear_pin_code", 3),
    ]
    assert lock.clear_all_requests == 0


async def test_invalid_user_and_pin_length_are_general_failures(env: Env) -> None:
    lock = FakeDoorLock(num_pin_users=5, min_pin_len=4, max_pin_len=6)
    _, cluster = await joined(env, lock)
    assert (await cluster.set_pin_code(0, ENABLED, UNRESTRICTED, "1357")).status == 1  # Yale: 1..
    assert (await cluster.set_pin_code(6, ENABLED, UNRESTRICTED, "1357")).status == 1
    assert (await cluster.set_pin_code(1, ENABLED, UNRESTRICTED, "135")).status == 1
    assert (await cluster.set_pin_code(1, ENABLED, UNRESTRICTED, "1357913")).status == 1
    assert (await cluster.clear_pin_code(9)).status == GENERAL_FAILURE
    rsp = await cluster.get_pin_code(9)
    assert isinstance(rsp, foundation.DefaultResponse)
    assert rsp.status == foundation.Status.INVALID_VALUE
    assert lock.applied == []


async def test_schlage_counts_users_from_zero(env: Env) -> None:
    lock = FakeDoorLock(profile="schlage")
    _, cluster = await joined(env, lock)
    assert (await cluster.set_pin_code(0, ENABLED, UNRESTRICTED, "2468")).status == 0
    assert (await cluster.set_pin_code(30, ENABLED, UNRESTRICTED, "1357")).status == 1
    values, _ = await cluster.read_attributes(["num_of_pin_users_supported"])
    assert values == {"num_of_pin_users_supported": 30}


async def test_attributes(env: Env) -> None:
    lock = FakeDoorLock(num_pin_users=20, min_pin_len=5, max_pin_len=7,
                        year_day_schedules_per_user=0)
    _, cluster = await joined(env, lock)
    names = ["lock_state", "num_of_pin_users_supported", "min_pin_len", "max_pin_len",
             "num_of_year_day_schedules_supported_per_user", "send_pin_ota"]
    values, failed = await cluster.read_attributes(names)
    assert failed == {}
    assert values == {
        "lock_state": DoorLock.LockState.Locked,
        "num_of_pin_users_supported": 20,
        "min_pin_len": 5,
        "max_pin_len": 7,
        "num_of_year_day_schedules_supported_per_user": 0,
        "send_pin_ota": True,
    }
    _, failed = await cluster.read_attributes(["auto_relock_time"])
    assert failed == {"auto_relock_time": foundation.Status.UNSUPPORTED_ATTRIBUTE}


async def test_send_pin_ota_false_and_masked_pins(env: Env) -> None:
    lock = FakeDoorLock(slots={1: (1, 0, "8642")}, send_pin_ota=False)
    _, cluster = await joined(env, lock)
    assert (await cluster.get_pin_code(1)).code == ""
    await cluster.write_attributes({"send_pin_ota": True})
    assert (await cluster.get_pin_code(1)).code == "8642"
    lock.pin_mask = "*"
    assert (await cluster.get_pin_code(1)).code == "****"


async def test_memory_full_and_duplicates(env: Env) -> None:
    lock = FakeDoorLock(slots={1: (1, 0, "5150")})
    _, cluster = await joined(env, lock)

    assert (await cluster.set_pin_code(2, ENABLED, UNRESTRICTED, "5150")).status == DUPLICATE_CODE
    assert (await cluster.set_pin_code(1, ENABLED, UNRESTRICTED, "5150")).status == SUCCESS
    lock.duplicate_on_rewrite = True
    assert (await cluster.set_pin_code(1, ENABLED, UNRESTRICTED, "5150")).status == DUPLICATE_CODE
    lock.reject_duplicates = False
    assert (await cluster.set_pin_code(2, ENABLED, UNRESTRICTED, "5150")).status == SUCCESS

    lock.memory_full = True
    rsp = await cluster.set_pin_code(3, ENABLED, UNRESTRICTED, "7070")
    assert rsp.status == MEMORY_FULL
    assert (await cluster.set_pin_code(2, ENABLED, UNRESTRICTED, "7071")).status == SUCCESS
    assert [a[1] for a in lock.applied] == [1, 2, 2]


async def test_unsupported_commands_answer_default_response(env: Env) -> None:
    lock = FakeDoorLock()
    lock.unsupported_commands = {"get_pin_code", "set_year_day_schedule"}
    _, cluster = await joined(env, lock)
    rsp = await cluster.get_pin_code(1)
    assert isinstance(rsp, foundation.DefaultResponse)
    assert rsp.command_id == 0x06 and rsp.status == foundation.Status.UNSUP_CLUSTER_COMMAND
    rsp = await cluster.set_year_day_schedule(0, 1, 1000, 2000)
    assert rsp.status == foundation.Status.UNSUP_CLUSTER_COMMAND


async def test_user_status_and_type(env: Env) -> None:
    lock = FakeDoorLock(slots={4: (1, 0, "2580")})
    _, cluster = await joined(env, lock)
    assert (await cluster.set_user_status(4, DoorLock.UserStatus.Disabled)).status == 0
    got = await cluster.get_user_status(4)
    assert (got.user_id, got.user_status) == (4, DoorLock.UserStatus.Disabled)
    assert (await cluster.get_user_status(5)).user_status == 0
    assert (await cluster.set_user_status(5, ENABLED)).status == 1  # nobody in slot 5
    assert (await cluster.set_user_type(4, DoorLock.UserType.Year_Day_Schedule_User)).status == 0
    assert (await cluster.get_user_type(4)).user_type == DoorLock.UserType.Year_Day_Schedule_User
    assert lock.applied == [("set_user_status", 4, 3), ("set_user_type", 4, 1)]


async def test_year_day_schedules(env: Env) -> None:
    lock = FakeDoorLock(slots={1: (1, 1, "3690")}, year_day_schedules_per_user=1)
    _, cluster = await joined(env, lock)
    start = zcl_local_time(datetime(2026, 3, 1, 9, 0))
    end = zcl_local_time(datetime(2026, 3, 8, 17, 0))

    assert (await cluster.set_year_day_schedule(0, 1, start, end)).status == 0
    got = await cluster.get_year_day_schedule(0, 1)
    assert (got.status, got.local_start_time, got.local_end_time) == (0, start, end)
    assert (await cluster.set_year_day_schedule(1, 1, start, end)).status == 1  # only id 0
    assert (await cluster.get_year_day_schedule(1, 1)).status == foundation.Status.INVALID_FIELD
    assert (await cluster.clear_year_day_schedule(0, 1)).status == 0
    assert lock.slots[1].type == DoorLock.UserType.Unrestricted
    got = await cluster.get_year_day_schedule(0, 1)
    assert got.status == foundation.Status.NOT_FOUND and got.local_start_time is None
    assert lock.applied == [("set_year_day_schedule", 1, 0, start, end),
                            ("clear_year_day_schedule", 1, 0)]

    lock.year_day_schedules_per_user = 0
    assert (await cluster.set_year_day_schedule(0, 1, start, end)).status == 1


async def test_clear_all_is_recorded(env: Env) -> None:
    lock = FakeDoorLock(slots={1: (1, 0, "1470"), 2: (1, 0, "2581")})
    _, cluster = await joined(env, lock)
    assert (await cluster.clear_all_pin_codes()).status == 0
    assert lock.clear_all_requests == 1 and lock.slots == {}
    assert lock.applied == [("clear_all_pin_codes",)]


async def test_lock_and_unlock_report_state(env: Env) -> None:
    lock = FakeDoorLock()
    _, cluster = await joined(env, lock)
    events = Events(cluster)
    assert (await cluster.unlock_door()).status == 0
    report = await events.next_report()
    assert (report.attribute_name, report.value) == ("lock_state", DoorLock.LockState.Unlocked)
    assert lock.applied == [("unlock_door",)]


# -- events from the lock ------------------------------------------------------------------


async def test_keypad_events_reach_a_cluster_listener(env: Env) -> None:
    lock = FakeDoorLock(slots={5: (1, 0, "1111")})
    _, cluster = await joined(env, lock)
    events = Events(cluster)

    lock.keypad_set(6, "24680")
    command_id, args = await events.next_command()
    assert command_id == 0x21
    assert args.program_event_source == DoorLock.OperationEventSource.Keypad
    assert args.program_event_code == DoorLock.ProgrammingEvent.PINCodeAdded
    assert (args.user_id, args.pin) == (6, "")
    assert lock.slots[6].pin == "24680"

    lock.keypad_set(5, "2222")
    _, args = await events.next_command()
    assert args.program_event_code == DoorLock.ProgrammingEvent.PINCodeChanges

    lock.keypad_clear(6)
    _, args = await events.next_command()
    assert (args.program_event_code, args.user_id) == (DoorLock.ProgrammingEvent.PINCodeDeleted, 6)
    assert 6 not in lock.slots

    lock.keypad_unlock(5)
    command_id, args = await events.next_command()
    assert command_id == 0x20
    assert args.operation_event_source == DoorLock.OperationEventSource.Keypad
    assert args.operation_event_code == DoorLock.OperationEvent.Unlock
    assert args.user_id == 5
    report = await events.next_report()
    assert report.value == DoorLock.LockState.Unlocked


async def test_event_switches(env: Env) -> None:
    lock = FakeDoorLock()
    _, cluster = await joined(env, lock)
    events = Events(cluster)
    lock.event_includes_pin = True
    lock.user_id_byte_swapped = True
    lock.keypad_set(3, "97531")
    _, args = await events.next_command()
    assert (args.user_id, args.pin) == (0x0300, "97531")

    lock.user_id_byte_swapped = False
    lock.report_before_event = True
    arrived: list[str] = []
    cluster.on_event("attribute_report", lambda event: arrived.append("report"))
    lock.keypad_unlock(2)
    await events.next_report()
    command_id, _ = await events.next_command()
    arrived.append(f"command 0x{command_id:02X}")
    assert arrived == ["report", "command 0x20"]

    lock.rf_programming_events = True
    assert (await cluster.set_pin_code(4, ENABLED, UNRESTRICTED, "86420")).status == 0
    _, args = await events.next_command()
    assert args.program_event_source == DoorLock.OperationEventSource.RF
    assert (args.user_id, args.pin) == (4, "86420")


# -- reachability and timing ---------------------------------------------------------------


async def test_offline_lock_times_out(env: Env) -> None:
    lock = FakeDoorLock()
    _, cluster = await joined(env, lock)
    lock.online = False
    lock.reset_counters()
    with zigpy_reply_timeout(0.2), pytest.raises(asyncio.TimeoutError):
        await cluster.get_pin_code(1, retries=1)
    assert lock.frames_received == 0
    sent = [f for f in env.network.sent if f.command == "zcl:get_pin_code"]
    assert len(sent) == 2 and not any(f.delivered for f in sent)

    lock.unreachable = "delivery_error"
    with pytest.raises(zigpy.exceptions.DeliveryError):
        await cluster.get_pin_code(1, retries=0)

    lock.online = True
    assert (await cluster.get_pin_code(1)).user_id == 1


async def test_events_from_an_offline_lock_are_lost(env: Env) -> None:
    lock = FakeDoorLock()
    _, cluster = await joined(env, lock)
    events = Events(cluster)
    lock.online = False
    lock.keypad_unlock(1)
    lock.online = True
    lock.keypad_clear(2)
    _, args = await events.next_command()
    assert args.program_event_code == DoorLock.ProgrammingEvent.PINCodeDeleted
    assert events.commands.empty()


async def test_latency_and_router_timeouts(env: Env) -> None:
    lock = FakeDoorLock(end_device=False)  # zigpy honours `timeout=` for non-end devices
    _, cluster = await joined(env, lock)
    lock.latency = 0.3
    with pytest.raises(asyncio.TimeoutError):
        await cluster.get_pin_code(1, timeout=0.05, retries=0)
    rsp = await cluster.get_pin_code(1, timeout=2.0, retries=0)
    assert rsp.user_id == 1


async def test_radio_delivery_error(env: Env) -> None:
    lock = FakeDoorLock()
    _, cluster = await joined(env, lock)
    env.network.delivery_error = True
    with pytest.raises(zigpy.exceptions.DeliveryError):
        await cluster.get_pin_code(1, retries=0)


async def test_frame_counts(env: Env) -> None:
    a = FakeDoorLock(ieee="00:0d:6f:00:00:00:00:0a", nwk=0x0A0A)
    b = FakeDoorLock(ieee="00:0d:6f:00:00:00:00:0b", nwk=0x0B0B, profile="schlage")
    app = await env.start()
    await app.permit(60)
    dev_a = await env.network.join(a)
    await env.network.join(b)
    a.reset_counters()
    b.reset_counters()
    for user in (1, 2, 3):
        await dev_a.endpoints[1].door_lock.get_pin_code(user)
    counts = env.network.frames_received()
    assert counts[a.ieee] == 3 and counts[b.ieee] == 0
    assert a.frame_kinds == {"zcl:get_pin_code": 3}


async def test_leave_request(env: Env) -> None:
    lock = FakeDoorLock()
    app, _ = await joined(env, lock)
    left: asyncio.Future[t.EUI64] = asyncio.get_running_loop().create_future()

    class Listener:
        def device_left(self, device: Any) -> None:
            if not left.done():
                left.set_result(device.ieee)

    app.add_listener(Listener())
    device: Any = app.get_device(ieee=lock.ieee)
    rsp = await device.zdo.leave()
    assert rsp[0] == 0
    assert await asyncio.wait_for(left, WAIT) == lock.ieee
    assert not lock.joined
