"""Backup access code pools end to end through the engine and the simulator (as Seam's pools
behave: docs/seam-model.md)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bridge.backup import PoolSettings
from bridge.driver import Availability
from bridge.engine import CodeRequest, EngineError
from bridge.model import AccessCodeType, EventType
from drivers.simulator import SimLockSpec
from tests.conftest import START

H = timedelta(hours=1)


def guest(start: timedelta = 2 * H, end: timedelta = 26 * H, **kw: object) -> CodeRequest:
    return CodeRequest(name="Guest", type=AccessCodeType.TIME_BOUND, starts_at=START + start,
                       ends_at=START + end, use_backup_access_code_pool=True, **kw)  # type: ignore[arg-type]


def backups(h, dev: str, pulled: bool | None = False) -> list:  # type: ignore[no-untyped-def]
    return [c for c in h.engine.codes_of(dev) if c.is_backup and (
        pulled is None or (c.backup_pulled_for is not None) == pulled)]


def device_issues(h, dev: str) -> list[str]:  # type: ignore[no-untyped-def]
    d = h.engine.devices[dev]
    return [i.code for i in (*d.errors, *d.warnings)]


async def test_pool_fills_pull_repeats_and_ends_with_the_guest(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    dev = h.device_id("front")
    code = await h.engine.create_code(dev, guest())
    await h.settle()
    pool = backups(h, dev)
    assert len(pool) == 5
    assert len(h.slots("front")) == 5  # the guest code waits for its hour; the pool is there
    assert all(b.name == f"Backup {b.access_code_id}" for b in pool)
    assert len({b.code for b in pool} | {code.code}) == 6
    assert h.engine.backup_available(h.engine.codes[code.access_code_id]) is True
    assert "empty_backup_access_code_pool" not in device_issues(h, dev)

    backup, original = await h.engine.pull_backup(code.access_code_id)
    assert backup.is_backup and backup.ends_at == original.ends_at
    assert original.pulled_backup_access_code_id == backup.access_code_id
    assert backup.code in h.slots("front").values()  # a working code, on the lock now
    again, _ = await h.engine.pull_backup(code.access_code_id)
    assert again.access_code_id == backup.access_code_id
    events = await h.store.read(lambda r: r.events(event_types=[
        EventType.ACCESS_CODE_BACKUP_PULLED]))
    assert len(events) == 1 and events[0].data["backup_code"] == backup.code
    await h.settle()
    assert len(backups(h, dev)) == 5  # refilled
    await h.advance(27 * 3600, step=3600)
    assert backup.code not in h.slots("front").values()  # off at the guest's checkout


async def test_a_pulled_backup_follows_its_stay_extended_then_cancelled(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    dev = h.device_id("front")
    code = await h.engine.create_code(dev, guest())
    await h.settle()
    backup, _ = await h.engine.pull_backup(code.access_code_id)
    await h.settle()
    # The stay is extended by a day: the backup works until the new checkout too.
    await h.engine.update_code(code.access_code_id, CodeRequest(ends_at=START + 50 * H))
    assert h.engine.codes[backup.access_code_id].ends_at == START + 50 * H
    await h.advance(30 * 3600, step=3600)
    assert backup.code in h.slots("front").values()
    # The reservation is cancelled: the backup stops working with the guest's own code.
    await h.engine.delete_code(code.access_code_id)
    await h.settle()
    assert backup.code not in h.slots("front").values()
    assert code.code not in h.slots("front").values()


async def test_an_update_that_ends_a_stay_before_it_starts_is_refused(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    code = await h.engine.create_code(h.device_id("front"), guest())
    with pytest.raises(EngineError):
        await h.engine.update_code(code.access_code_id, CodeRequest(ends_at=START + 1 * H))
    assert h.engine.codes[code.access_code_id].ends_at == START + 26 * H


async def test_two_failures_at_once_get_different_backups(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    dev = h.device_id("front")
    a = await h.engine.create_code(dev, guest())
    b = await h.engine.create_code(dev, guest(3 * H, 30 * H))
    await h.settle()
    (ba, _), (bb, _) = await asyncio.gather(h.engine.pull_backup(a.access_code_id),
                                             h.engine.pull_backup(b.access_code_id))
    assert ba.access_code_id != bb.access_code_id and ba.code != bb.code
    await h.settle()
    assert "many_active_backup_codes" in device_issues(h, dev)


async def test_exhaustion_and_refill(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front", slot_count=12)],
                              pool=PoolSettings(size=2, reserve_slots=0))
    dev = h.device_id("front")
    codes = [await h.engine.create_code(dev, guest(2 * H, (30 + i) * H)) for i in range(3)]
    await h.settle()
    assert len(backups(h, dev)) == 2
    await h.driver.set_availability("front", Availability.OFFLINE)
    await h.settle()
    await h.engine.pull_backup(codes[0].access_code_id)
    await h.engine.pull_backup(codes[1].access_code_id)
    await h.settle()
    assert "empty_backup_access_code_pool" in device_issues(h, dev)
    assert h.engine.backup_available(h.engine.codes[codes[2].access_code_id]) is False
    with pytest.raises(EngineError) as empty:
        await h.engine.pull_backup(codes[2].access_code_id)
    assert empty.value.kind == "no_backup_access_code_available"
    # The refill keeps failing while a slot is refused: partial pool warning.
    lock = h.driver.lock("front")
    lock.come_online()
    lock.fail_sets = 1
    from bridge.driver import RejectReason

    lock.fail_reason = RejectReason.OTHER
    await h.advance(3600, step=60)
    assert "empty_backup_access_code_pool" not in device_issues(h, dev)
    assert "partial_backup_access_code_pool" in device_issues(h, dev)
    # Something changes (reconnect): the failed backup is retried and the pool is whole again.
    await h.driver.set_availability("front", Availability.OFFLINE)
    await h.settle()
    await h.driver.set_availability("front", Availability.ONLINE)
    await h.settle()
    assert "partial_backup_access_code_pool" not in device_issues(h, dev)
    assert len([b for b in backups(h, dev) if b.status.value == "set"]) == 2


async def test_auto_pull_for_a_code_that_failed(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")],
                              pool=PoolSettings(auto_pull=True))
    dev = h.device_id("front")
    first = await h.engine.create_code(dev, CodeRequest(name="Staff", code="13579",
                                                        use_backup_access_code_pool=True))
    await h.settle()
    lock = h.driver.lock("front")
    from bridge.driver import RejectReason

    lock.fail_sets = 1
    lock.fail_reason = RejectReason.OTHER
    code = await h.engine.create_code(dev, guest(30 * timedelta(minutes=1), 10 * H))
    await h.settle()
    assert "failed_to_set_on_device" in [e.code for e in h.engine.codes[code.access_code_id]
                                         .errors]
    pulled = h.engine.codes[code.access_code_id].pulled_backup_access_code_id
    assert pulled is not None
    [event] = await h.store.read(lambda r: r.events(event_types=[
        EventType.ACCESS_CODE_BACKUP_PULLED]))
    assert event.data["original_access_code_id"] == code.access_code_id
    assert event.data["backup_access_code_id"] == pulled
    assert event.data["backup_code"] in h.slots("front").values()
    assert event.data["automatic"] is True
    assert first.access_code_id in h.engine.codes


async def test_ongoing_codes_cannot_pull_and_backups_stay_while_offline(
    harness_factory,  # type: ignore[no-untyped-def]
) -> None:
    h = await harness_factory([SimLockSpec("front", "Front")])
    dev = h.device_id("front")
    staff = await h.engine.create_code(dev, CodeRequest(name="Staff", code="13579",
                                                        use_backup_access_code_pool=True))
    await h.settle()
    with pytest.raises(EngineError, match="time_bound"):
        await h.engine.pull_backup(staff.access_code_id)
    await h.driver.set_availability("front", Availability.ACCOUNT_DISCONNECTED)
    await h.settle()
    one = backups(h, dev)[0]
    with pytest.raises(EngineError, match="only be deleted while their lock is connected"):
        await h.engine.delete_code(one.access_code_id)
    assert one.access_code_id in h.engine.codes


async def test_unsupported_locks_refuse_the_pool(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("tiny", "Tiny", slot_count=4),
                               SimLockSpec("algo", "Algo", algorithmic_pins=True)])
    for lock in ("tiny", "algo"):
        with pytest.raises(EngineError, match="does not support a backup"):
            await h.engine.create_code(h.device_id(lock), guest())
