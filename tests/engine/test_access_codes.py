"""Access codes end to end through the engine and the simulator: every error, warning and event
of the source documents, appearing when its condition holds and clearing when it ends."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from bridge.application import Application, CodeChanges
from bridge.config import DeviceOverride
from bridge.driver import Availability, RejectReason
from bridge.engine import CodeRequest, EngineError
from bridge.model import AccessCodeStatus, AccessCodeType, EventType
from bridge.planner import Policy
from drivers.simulator import SimLockSpec
from tests.conftest import START

D = timedelta(days=1)
H = timedelta(hours=1)


async def kinds(h, code_id: str | None = None, device_id: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    events = await h.store.read(lambda r: r.events(access_code_id=code_id, device_id=device_id,
                                                   limit=10_000))
    return [e.event_type.value for e in events]


def errors(h, code_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.code for e in h.engine.codes[code_id].errors]


def warnings(h, code_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [w.code for w in h.engine.codes[code_id].warnings]


async def test_code_scheduled_nine_days_ahead_on_a_lock_with_schedules(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front", native_schedules=True)],
                              time_zone="America/New_York")
    dev = h.device_id("front")
    c = await h.engine.create_code(dev, CodeRequest(
        name="Guest", type=AccessCodeType.TIME_BOUND, starts_at=START + 10 * D,
        ends_at=START + 12 * D))
    await h.settle()
    assert h.slots("front") == {}
    await h.advance(D.total_seconds() + 60, step=3600)
    lock = h.driver.lock("front")
    [slot] = lock.slots
    window = lock.slots[slot].window
    assert window is not None and window.starts_at.hour == 8  # 12:00 UTC is 08:00 EDT
    code = h.engine.codes[c.access_code_id]
    assert code.status is AccessCodeStatus.UNSET and code.is_scheduled_on_device
    assert EventType.ACCESS_CODE_SCHEDULED_ON_DEVICE in await kinds(h, c.access_code_id)
    await h.advance(9 * D.total_seconds(), step=6 * 3600)
    assert h.engine.codes[c.access_code_id].status is AccessCodeStatus.SET
    await h.advance(2 * D.total_seconds(), step=6 * 3600)
    assert h.slots("front") == {}
    assert h.engine.codes[c.access_code_id].status is AccessCodeStatus.UNSET


async def test_lock_without_schedules_is_enforced_by_the_bridge(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    c = await h.engine.create_code(h.device_id("front"), CodeRequest(
        type=AccessCodeType.TIME_BOUND, starts_at=START + 4 * D, ends_at=START + 5 * D,
        code="13579"))
    await h.advance((4 * D - 2 * H).total_seconds(), step=6 * 3600)
    assert h.slots("front") == {}
    await h.advance(H.total_seconds() + 60)
    assert h.slots("front") == {1: "13579"}
    assert EventType.ACCESS_CODE_SET_ON_DEVICE in await kinds(h, c.access_code_id)
    await h.advance((D + H).total_seconds(), step=3600)
    assert h.slots("front") == {}


async def test_masked_reads_never_count_as_empty(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("g", "Garage", masks_pins=True)])
    h.driver.lock("g").keypad_set(1, "2468")  # an occupied slot the bridge cannot read
    dev = h.device_id("g")
    h.engine.reconcile(dev, full=True)
    c = await h.engine.create_code(dev, CodeRequest(code="97531"))
    await h.settle()
    assert h.slots("g") == {1: "2468", 2: "97531"}  # slot 1 was not overwritten
    assert h.engine.codes[c.access_code_id].status is AccessCodeStatus.SET
    [unmanaged] = [x for x in h.engine.codes.values() if not x.is_managed]
    assert unmanaged.slot == 1 and unmanaged.code is None
    # Reconciling again changes nothing: the masked code is not re-set.
    writes = dict(h.driver.lock("g").writes)
    h.engine.reconcile(dev, slots=[2])
    await h.settle()
    assert h.driver.lock("g").writes == writes


async def test_keypad_edit_is_detected_and_put_back(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    c = await h.engine.create_code(h.device_id("front"), CodeRequest(code="13579"))
    await h.settle()
    await h.driver.keypad_set("front", 1, "99999")
    await h.settle()
    assert h.slots("front") == {1: "13579"}
    assert "code_modified_external_to_seam" in warnings(h, c.access_code_id)
    events = await kinds(h, c.access_code_id)
    assert EventType.ACCESS_CODE_MODIFIED_EXTERNAL_TO_SEAM in events
    assert events.count(EventType.ACCESS_CODE_SET_ON_DEVICE) == 1
    # Put back and verified: the warning stays a day for the operator to see, then goes.
    await h.advance(23 * 3600, step=3600)
    assert "code_modified_external_to_seam" in warnings(h, c.access_code_id)
    await h.advance(2 * 3600, step=3600)
    assert "code_modified_external_to_seam" not in warnings(h, c.access_code_id)
    assert h.slots("front") == {1: "13579"}


async def test_external_modification_allowed_is_kept(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    c = await h.engine.create_code(h.device_id("front"), CodeRequest(
        code="13579", allow_external_modification=True))
    await h.settle()
    await h.driver.keypad_set("front", 1, "86420")
    await h.settle()
    assert h.slots("front") == {1: "86420"}
    assert h.engine.codes[c.access_code_id].code == "86420"
    # Removed at the keypad: it stays off and says so; it is not forever "setting".
    h.driver.lock("front").keypad_clear(1)
    h.engine.reconcile(h.device_id("front"), slots=[1])
    await h.advance(3600)
    assert h.slots("front") == {}
    removed = h.engine.codes[c.access_code_id]
    assert removed.status is AccessCodeStatus.UNSET
    assert removed.has_warning("code_modified_external_to_seam")
    assert not removed.has_warning("delay_in_setting_on_device")
    # Changing the code is asking for it back on the lock.
    await h.engine.update_code(c.access_code_id, CodeRequest(name="Back"))
    await h.settle()
    assert h.slots("front") == {1: "86420"}
    assert h.engine.codes[c.access_code_id].status is AccessCodeStatus.SET


async def test_unmanaged_codes_are_imported_converted_and_deleted(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    dev = h.device_id("front")
    h.driver.lock("front").keypad_set(3, "5555")
    h.driver.lock("front").keypad_set(4, "6666")
    h.engine.reconcile(dev, full=True)
    await h.settle()
    unmanaged = sorted((c for c in h.engine.codes.values() if not c.is_managed),
                       key=lambda c: c.slot or 0)
    assert [(c.slot, c.code) for c in unmanaged] == [(3, "5555"), (4, "6666")]
    assert (await kinds(h, device_id=dev)).count(EventType.ACCESS_CODE_UNMANAGED_CREATED) == 2
    converted = await h.engine.convert_unmanaged(unmanaged[0].access_code_id,
                                                 CodeRequest(name="Owner"))
    assert converted.is_managed and converted.status is AccessCodeStatus.SET
    await h.engine.delete_unmanaged(unmanaged[1].access_code_id)
    assert h.slots("front") == {3: "5555"}
    all_kinds = await kinds(h, device_id=dev)
    assert EventType.ACCESS_CODE_UNMANAGED_CONVERTED_TO_MANAGED in all_kinds
    assert EventType.ACCESS_CODE_UNMANAGED_REMOVED in all_kinds
    # A keypad deletion of an unmanaged code is noticed too.
    h.driver.lock("front").keypad_set(7, "7777")
    await h.driver.keypad_set("front", 7, "7777")
    await h.settle()
    await h.driver.keypad_clear("front", 7)
    await h.settle()
    assert all(c.slot != 7 for c in h.engine.codes.values())


async def test_reconnect_restores_missing_codes(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    dev = h.device_id("front")
    a = await h.engine.create_code(dev, CodeRequest(code="13579"))
    b = await h.engine.create_code(dev, CodeRequest(code="24680"))
    await h.settle()
    await h.driver.set_availability("front", Availability.ACCOUNT_DISCONNECTED)
    await h.settle()
    assert h.engine.devices[dev].errors[0].code == "account_disconnected"
    h.driver.lock("front").wipe()  # re-linking the account reset the lock
    await h.driver.set_availability("front", Availability.ONLINE)
    await h.settle()
    assert sorted(h.slots("front").values()) == ["13579", "24680"]
    assert h.engine.devices[dev].errors == ()
    device_events = await kinds(h, device_id=dev)
    assert EventType.DEVICE_DISCONNECTED in device_events
    assert EventType.DEVICE_CONNECTED in device_events
    for c in (a, b):
        assert h.engine.codes[c.access_code_id].status is AccessCodeStatus.SET


async def test_full_lock_reports_no_space_until_a_slot_frees(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front", slot_count=2)])
    dev = h.device_id("front")
    a = await h.engine.create_code(dev, CodeRequest(code="11357"))
    await h.engine.create_code(dev, CodeRequest(code="22468"))
    c = await h.engine.create_code(dev, CodeRequest(code="33579"))
    await h.settle()
    assert errors(h, c.access_code_id) == ["no_space_for_access_code_on_device"]
    assert EventType.ACCESS_CODE_NO_SPACE_ON_DEVICE in await kinds(h, c.access_code_id)
    await h.engine.delete_code(a.access_code_id)
    await h.settle()
    assert sorted(h.slots("front").values()) == ["22468", "33579"]
    assert errors(h, c.access_code_id) == []


async def test_dead_lock_is_probed_not_flooded(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")],
                              policy=Policy(delay_warning_after=timedelta(minutes=5)))
    dev = h.device_id("front")
    await h.driver.set_availability("front", Availability.OFFLINE)
    await h.settle()
    c = await h.engine.create_code(dev, CodeRequest(code="13579"))
    before = h.driver.lock("front").commands
    await h.advance(24 * 3600, step=300)
    probes = h.driver.lock("front").commands - before
    # 60 s doubling to a 30 min cap: about 50 probes in a day, never thousands.
    assert 5 <= probes <= 80
    assert "delay_in_setting_on_device" in warnings(h, c.access_code_id)
    assert EventType.ACCESS_CODE_DELAY_IN_SETTING_ON_DEVICE in await kinds(h, c.access_code_id)
    assert [e.code for e in h.engine.devices[dev].errors] == ["device_offline"]
    h.driver.lock("front").come_online()
    # The next probe is due within the 30 min cap; then the code goes on.
    await h.advance(1800, step=60)
    for _ in range(10):  # a probe in the last step may still be writing: a little more time
        if h.slots("front") == {1: "13579"}:
            break
        await h.advance(60)
    assert h.slots("front") == {1: "13579"}
    assert warnings(h, c.access_code_id) == []
    assert h.engine.devices[dev].errors == ()


async def test_failed_sets_retry_with_backoff_then_stop_with_the_drivers_reason(  # type: ignore[no-untyped-def]
    harness_factory,
) -> None:
    h = await harness_factory([SimLockSpec("front", "Front")])
    await h.settle()
    lock = h.driver.lock("front")
    lock.fail_sets = 100
    before = lock.commands
    c = await h.engine.create_code(h.device_id("front"), CodeRequest(code="13579"))
    await h.advance(6 * 3600, step=30)
    assert errors(h, c.access_code_id) == ["failed_to_set_on_device"]
    assert "simulated transient failure" in h.engine.codes[c.access_code_id].errors[0].message
    assert lock.commands - before == Policy().max_attempts
    assert (await kinds(h, c.access_code_id)).count(
        EventType.ACCESS_CODE_FAILED_TO_SET_ON_DEVICE) == 1
    # Something changes (the code is updated): it tries again and succeeds.
    lock.fail_sets = 0
    await h.engine.update_code(c.access_code_id, CodeRequest(name="Retry"))
    await h.settle()
    assert h.slots("front") == {1: "13579"} and errors(h, c.access_code_id) == []


async def test_lock_refusal_is_a_permanent_error(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("shed", "Shed", refuses_sets=True)])
    await h.settle()
    before = h.driver.lock("shed").commands
    c = await h.engine.create_code(h.device_id("shed"), CodeRequest(code="13579"))
    await h.advance(3600, step=60)
    assert errors(h, c.access_code_id) == ["failed_to_set_on_device"]
    assert h.driver.lock("shed").commands - before == 1


async def test_a_refusal_for_good_survives_a_reconnect_but_not_a_change(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    dev = h.device_id("front")
    await h.settle()
    lock = h.driver.lock("front")
    lock.fail_sets, lock.fail_reason = 100, RejectReason.INVALID_PIN
    sent: list[str | None] = []
    write = h.driver.write_code

    async def counted(external_id, code):
        sent.append(code.pin)
        return await write(external_id, code)

    h.driver.write_code = counted
    c = await h.engine.create_code(dev, CodeRequest(name="Guest", code="13579"))
    await h.settle()
    assert errors(h, c.access_code_id) == ["failed_to_set_on_device"]
    # The lock drops off the mesh and comes back: the same code is not sent again.
    await h.driver.set_availability("front", Availability.OFFLINE)
    await h.settle()
    await h.driver.set_availability("front", Availability.ONLINE)
    await h.advance(3600, step=60)
    assert sent == ["13579"]
    assert errors(h, c.access_code_id) == ["failed_to_set_on_device"]
    # A new PIN is worth a try.
    lock.fail_sets = 0
    await h.engine.update_code(c.access_code_id, CodeRequest(code="24680"))
    await h.settle()
    assert "24680" in h.slots("front").values()
    assert sent == ["13579", "24680"]


async def test_failed_removal_reports_and_retries(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    c = await h.engine.create_code(h.device_id("front"), CodeRequest(code="13579"))
    await h.settle()
    h.driver.lock("front").fail_clears = 100
    await h.engine.delete_code(c.access_code_id)
    await h.advance(6 * 3600, step=60)
    assert errors(h, c.access_code_id) == ["failed_to_remove_from_device"]
    assert h.engine.codes[c.access_code_id].status is AccessCodeStatus.REMOVING
    assert "delay_in_removing_from_device" in warnings(h, c.access_code_id)
    assert EventType.ACCESS_CODE_FAILED_TO_REMOVE_FROM_DEVICE in await kinds(h, c.access_code_id)
    # It never gives up (the guest must lose access), but it does not flood the lock either:
    # after the first attempts, one try per 30 minutes.
    tries = 100 - h.driver.lock("front").fail_clears
    assert 5 + 6 * 2 - 2 <= tries <= 5 + 6 * 2 + 1
    h.driver.lock("front").fail_clears = 0
    await h.advance(31 * 60, step=60)
    assert h.slots("front") == {}
    assert c.access_code_id not in h.engine.codes


async def test_a_code_deleted_while_its_write_is_in_flight_comes_off_the_lock(  # type: ignore[no-untyped-def]
        harness_factory) -> None:
    h = await harness_factory([SimLockSpec("front", "Front", latency_s=0.4)])
    sent = asyncio.Event()
    write = h.driver.write_code

    async def write_and_tell(external_id, code):
        sent.set()
        return await write(external_id, code)

    h.driver.write_code = write_and_tell
    c = await h.engine.create_code(h.device_id("front"), CodeRequest(code="24680"))
    # The write is with the lock (which takes 0.4 s to answer) when the code is deleted.
    async with asyncio.timeout(5):
        while not sent.is_set():  # the start-up read of the lock answers first
            await h.clock.advance(0.1)
            await asyncio.sleep(0.005)
    await h.engine.delete_code(c.access_code_id)
    await h.advance(120, step=1)
    assert h.slots("front") == {}
    assert c.access_code_id not in h.engine.codes
    assert await h.store.read(lambda r: r.intents()) == []
    assert EventType.ACCESS_CODE_REMOVED_FROM_DEVICE in await kinds(h, c.access_code_id)


async def test_pin_rules_refuse_impossible_codes_at_creation(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("s", "Schlage", fixed_length=4)])
    dev = h.device_id("s")
    with pytest.raises(EngineError, match="must be 4 digits"):
        await h.engine.create_code(dev, CodeRequest(code="123456"))
    with pytest.raises(EngineError, match="digits"):
        await h.engine.create_code(dev, CodeRequest(code="12ab"))
    generated = await h.engine.create_code(dev, CodeRequest(name="auto"))
    assert generated.code is not None and len(generated.code) == 4
    assert await h.store.read(lambda r: r.count("SELECT count(*) FROM access_codes")) == 1


async def test_duplicates(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    dev = h.device_id("front")
    a = await h.engine.create_code(dev, CodeRequest(code="13579"))
    with pytest.raises(EngineError) as refused:
        await h.engine.create_code(dev, CodeRequest(code="13579"))
    assert refused.value.kind == "duplicate_access_code"
    b = await h.engine.create_code(dev, CodeRequest(code="24680"))
    with pytest.raises(EngineError):
        await h.engine.update_code(b.access_code_id, CodeRequest(code="13579"))
    assert errors(h, b.access_code_id) == ["duplicate_code_attempt_prevented"]
    assert EventType.ACCESS_CODE_DUPLICATE_CODE_ATTEMPT_PREVENTED in await kinds(
        h, b.access_code_id)
    await h.settle()
    assert a.access_code_id in h.engine.codes
    # Same PIN, windows that do not overlap: both allowed, never on the lock together.
    g1 = await h.engine.create_code(dev, CodeRequest(
        code="75319", type=AccessCodeType.TIME_BOUND, starts_at=START + H, ends_at=START + 3 * H))
    g2 = await h.engine.create_code(dev, CodeRequest(
        code="75319", type=AccessCodeType.TIME_BOUND, starts_at=START + 3 * H,
        ends_at=START + 5 * H))
    for _ in range(10 * 6):
        await h.advance(600)
        assert list(h.slots("front").values()).count("75319") <= 1
    assert h.engine.codes[g1.access_code_id].status is AccessCodeStatus.UNSET
    assert EventType.ACCESS_CODE_SET_ON_DEVICE in await kinds(h, g2.access_code_id)


async def test_unmanaged_duplicate_on_device(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    dev = h.device_id("front")
    await h.settle()
    # The keypad code appears after the bridge accepted the request, before it was set.
    h.driver.lock("front").keypad_set(5, "86420")
    h.engine.reconcile(dev, full=True)
    await h.settle()
    c = await h.engine.create_code(dev, CodeRequest(code="11223"))
    await h.settle()
    await h.driver.keypad_set("front", 6, "33445")
    await h.settle()
    # Update to a PIN held by an unmanaged code is refused as a duplicate.
    with pytest.raises(EngineError):
        await h.engine.update_code(c.access_code_id, CodeRequest(code="86420"))
    # The lock itself rejecting a duplicate maps to duplicate_code_on_device.
    from bridge.driver import RejectReason

    e = await h.engine.create_code(dev, CodeRequest(code="44556"))
    h.driver.lock("front").fail_sets = 1
    h.driver.lock("front").fail_reason = RejectReason.DUPLICATE_PIN
    await h.engine.update_code(e.access_code_id, CodeRequest(code="44557"))
    await h.settle()
    assert "duplicate_code_on_device" in errors(h, e.access_code_id)
    assert EventType.ACCESS_CODE_DUPLICATE_CODE_ON_DEVICE in await kinds(h, e.access_code_id)


async def test_device_removed_when_no_driver_reports_it(tmp_path, harness_factory) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import make_harness, stop_harness

    first = await make_harness(tmp_path, [SimLockSpec("a", "A"), SimLockSpec("b", "B")])
    dev_b = first.device_id("b")
    await stop_harness(first)
    second = await make_harness(tmp_path, [SimLockSpec("a", "A")])
    try:
        assert [e.code for e in second.engine.devices[dev_b].errors] == ["device_removed"]
    finally:
        await stop_harness(second)


async def test_unknown_time_zone_warns_and_bridge_enforces(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front", native_schedules=True)])
    dev = h.device_id("front")
    await h.settle()
    assert [w.code for w in h.engine.devices[dev].warnings] == ["unknown_time_zone"]
    await h.engine.create_code(dev, CodeRequest(
        code="13579", type=AccessCodeType.TIME_BOUND, starts_at=START + 2 * D,
        ends_at=START + 3 * D))
    await h.advance(D.total_seconds(), step=6 * 3600)
    assert h.slots("front") == {}  # not 9 days ahead: the bridge enforces it, 60 min ahead


async def test_operator_is_told_when_the_bridge_enforces_a_window(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("smart", "Smart", native_schedules=True),
                               SimLockSpec("plain", "Plain")], time_zone="Europe/Lisbon")
    window = CodeRequest(name="Guest", type=AccessCodeType.TIME_BOUND,
                         starts_at=START + timedelta(days=2), ends_at=START + timedelta(days=4))
    on_smart = await h.engine.create_code(h.device_id("smart"), window)
    on_plain = await h.engine.create_code(h.device_id("plain"), window)
    ongoing = await h.engine.create_code(h.device_id("plain"), CodeRequest(name="Staff"))
    await h.settle()
    assert "schedule_enforced_by_bridge" not in warnings(h, on_smart.access_code_id)
    assert "schedule_enforced_by_bridge" in warnings(h, on_plain.access_code_id)
    assert "schedule_enforced_by_bridge" not in warnings(h, ongoing.access_code_id)
    # Made ongoing, nothing depends on the bridge's timing any more.
    await h.engine.update_code(on_plain.access_code_id,
                               CodeRequest(type=AccessCodeType.ONGOING))
    await h.settle()
    assert "schedule_enforced_by_bridge" not in warnings(h, on_plain.access_code_id)


@pytest.mark.timeout(60)
async def test_a_code_waiting_for_its_pin_to_leave_does_not_spin(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")], time_zone="Europe/Lisbon")
    dev = h.device_id("front")
    first = CodeRequest(name="Guest 1", code="5555", type=AccessCodeType.TIME_BOUND,
                        starts_at=START + timedelta(minutes=30),
                        ends_at=START + timedelta(hours=2))
    second = CodeRequest(name="Guest 2", code="5555", type=AccessCodeType.TIME_BOUND,
                         starts_at=START + timedelta(hours=2),
                         ends_at=START + timedelta(hours=6))
    a = await h.engine.create_code(dev, first)
    b = await h.engine.create_code(dev, second)
    await h.advance(3600, step=60)
    assert list(h.slots("front").values()) == ["5555"]
    h.driver.lock("front").fail_clears = 100  # the first guest's code will not come off
    writes = 0
    submit = h.store.submit

    def counted(fn, *args):  # the engine's committer asks the store through `submit`
        nonlocal writes
        writes += 1
        return submit(fn, *args)

    h.store.submit = counted
    await h.advance(2 * 3600, step=60)
    # Two hours of waiting behind a code that will not leave: a look a minute at most, not a
    # commit per step.
    assert 0 < writes <= 3 * 120, writes
    h.driver.lock("front").fail_clears = 0
    await h.advance(3600, step=60)
    assert a.access_code_id not in h.engine.codes or not h.engine.codes[a.access_code_id].on_lock
    assert h.engine.codes[b.access_code_id].status is AccessCodeStatus.SET


async def test_a_refused_preferred_pin_is_replaced_and_says_so(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("s", "Schlage", fixed_length=4)])
    dev = h.device_id("s")
    c = await h.engine.create_code(dev, CodeRequest(name="Guest", preferred_code="123456"))
    await h.settle()
    code = h.engine.codes[c.access_code_id]
    assert code.status is AccessCodeStatus.SET
    assert code.code is not None and len(code.code) == 4 and code.code in h.slots("s").values()
    assert "code_differs_from_requested" in warnings(h, c.access_code_id)
    # A preferred PIN the lock can take is used as asked, with no warning.
    d = await h.engine.create_code(dev, CodeRequest(name="Staff", preferred_code="4321"))
    await h.settle()
    assert h.engine.codes[d.access_code_id].code == "4321"
    assert "code_differs_from_requested" not in warnings(h, d.access_code_id)


async def test_pin_rules_the_operator_knows_apply_to_every_code(harness_factory) -> None:  # type: ignore[no-untyped-def]
    # A Schlage whose programming code starts 271, with every code 5 digits long: the driver
    # cannot read either rule from the lock, the config gives them.
    h = await harness_factory([SimLockSpec("back", "Back")], device_overrides={
        "back": DeviceOverride(pin_length=5, pin_forbidden_prefixes=["271"])})
    dev = h.device_id("back")
    with pytest.raises(EngineError) as refused:
        await h.engine.create_code(dev, CodeRequest(code="27199"))
    assert "programming code" in str(refused.value) and "271" not in str(refused.value)
    with pytest.raises(EngineError):
        await h.engine.create_code(dev, CodeRequest(code="3141"))  # not 5 digits
    for _ in range(50):
        pin = h.engine.generate_code(dev)
        assert len(pin) == 5 and not pin.startswith("271")
    made = await h.engine.create_code(dev, CodeRequest(name="Guest"))
    await h.settle()
    assert made.code in h.slots("back").values() and len(made.code or "") == 5


async def test_a_changed_stay_reaches_a_lock_with_schedules(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front", native_schedules=True)],
                              time_zone="America/New_York")
    dev = h.device_id("front")
    c = await h.engine.create_code(dev, CodeRequest(
        name="Guest", type=AccessCodeType.TIME_BOUND, starts_at=START - D,
        ends_at=START + 2 * D))
    await h.settle()
    lock = h.driver.lock("front")

    def end_on_lock() -> object:
        [held] = lock.slots.values()
        return held.window.ends_at if held.window else None

    assert h.engine.codes[c.access_code_id].status is AccessCodeStatus.SET
    # 2026-03-03 12:00 UTC is 07:00 in New York (EST).
    assert end_on_lock() == datetime(2026, 3, 3, 7, 0)
    for new_end, local_end in ((START + 3 * D, datetime(2026, 3, 4, 7, 0)),
                               (START + D, datetime(2026, 3, 2, 7, 0))):
        updated = await h.engine.update_code(c.access_code_id, CodeRequest(ends_at=new_end))
        assert updated.status is AccessCodeStatus.SETTING
        await h.settle()
        assert end_on_lock() == local_end
        assert h.engine.codes[c.access_code_id].status is AccessCodeStatus.SET


async def test_an_ongoing_code_given_times_becomes_time_bound(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """Found by the chaos soak: an update with starts_at/ends_at and no type kept the code
    ongoing, so its new window showed everywhere and the PIN stayed on the lock outside it.
    The rule is the application layer's (every front calls it), so the updates go through it."""
    h = await harness_factory([SimLockSpec("front", "Front")], time_zone="Europe/Lisbon")
    app = Application(h.engine)
    dev = h.device_id("front")
    code = await h.engine.create_code(dev, CodeRequest(name="Guest", code="13579"))
    await h.settle()
    assert h.slots("front") == {1: "13579"}
    updated = await app.update_code(code.access_code_id, CodeChanges(
        starts_at=START + D, ends_at=START + 2 * D))
    assert updated.type is AccessCodeType.TIME_BOUND
    await h.settle()
    assert h.slots("front") == {}, "not on the lock before its window"
    await app.update_code(code.access_code_id, CodeChanges(type=AccessCodeType.ONGOING))
    with pytest.raises(EngineError) as refused:  # a window needs both ends
        await app.update_code(code.access_code_id, CodeChanges(ends_at=START + D / 2))
    assert refused.value.kind == "invalid_input"


async def test_keypad_edit_over_a_masked_slot_is_put_back(harness_factory) -> None:  # type: ignore[no-untyped-def]
    """Found by the chaos soak: on a lock that masks PINs, a code typed at the keypad over a
    managed slot was trusted as ours (the slot reads occupied). Its name gives it away."""
    h = await harness_factory([SimLockSpec("g", "Garage", masks_pins=True)])
    c = await h.engine.create_code(h.device_id("g"), CodeRequest(name="Guest", code="13579"))
    await h.settle()
    await h.advance(120)  # well past the confirmation window of our own write
    await h.driver.keypad_set("g", 1, "99999")
    await h.advance(120)
    assert h.slots("g") == {1: "13579"}
    assert "code_modified_external_to_seam" in warnings(h, c.access_code_id)
    writes = dict(h.driver.lock("g").writes)
    await h.advance(3 * 3600, step=600)  # reconciliations read the slot: ours, left alone
    assert h.driver.lock("g").writes == writes
