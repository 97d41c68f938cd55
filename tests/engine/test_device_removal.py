"""Taking a lock out of lockbridge (Seam: unmanaging a device) takes its backup codes off it
(as Seam's pools behave: docs/seam-model.md), and it can be brought back."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from seam import AsyncSeam
from seam.exceptions import SeamHttpApiError, SeamHttpInvalidInputError

from bridge.application import Application, CommandReceipt
from bridge.driver import Availability
from bridge.engine import CodeRequest, EngineError
from bridge.model import AccessCodeType, EventType
from bridge.records import DeviceRecord
from drivers.simulator import SimLockSpec
from tests.api_helpers import Daemon, start_daemon, wait_until
from tests.conftest import START, make_harness, stop_harness
from tests.harness import Harness

H = timedelta(hours=1)
Factory = Callable[..., Awaitable[Harness]]


def guest() -> CodeRequest:
    return CodeRequest(name="Guest", type=AccessCodeType.TIME_BOUND, starts_at=START + 2 * H,
                       ends_at=START + 26 * H, use_backup_access_code_pool=True)


async def test_removal_takes_the_backups_off_and_survives_a_restart(tmp_path: Path) -> None:
    locks = tmp_path / "locks.json"  # the simulated lock keeps its slots across the restart
    h = await make_harness(tmp_path, [SimLockSpec("front", "Front")], state_file=locks)
    try:
        await _remove_then_restart(h, tmp_path, locks)
    finally:
        await stop_harness(h)


async def _remove_then_restart(h: Harness, tmp_path: Path, locks: Path) -> None:
    dev = h.device_id("front")
    code = await h.engine.create_code(dev, guest())
    await h.settle()
    assert len(h.slots("front")) == 5  # the pool; the guest code waits for its hour

    # A guest's code is still managed here: nobody would take it off afterwards.
    with pytest.raises(EngineError) as refused:
        await h.engine.unmanage_device(dev)
    assert refused.value.kind == "device_has_access_codes"
    assert h.engine.devices[dev].is_managed and len(h.slots("front")) == 5

    await h.engine.delete_code(code.access_code_id)
    await h.settle()
    # The lock drops off the network: its backups cannot be taken off now (docs/seam-model.md).
    await h.driver.set_availability("front", Availability.OFFLINE)
    await h.settle()
    with pytest.raises(EngineError) as offline:
        await h.engine.unmanage_device(dev)
    assert offline.value.kind == "device_disconnected" and "Reconnect" in str(offline.value)
    await h.driver.set_availability("front", Availability.ONLINE)
    await h.settle()

    await h.engine.unmanage_device(dev)
    await h.settle()
    assert h.slots("front") == {}
    device = h.engine.devices[dev]
    assert not device.is_managed and not device.backup_pool_enabled
    assert not [c for c in h.engine.codes_of(dev) if c.is_backup]
    kinds = [e.event_type for e in await h.store.read(lambda r: r.events(device_id=dev))]
    assert EventType.DEVICE_CONVERTED_TO_UNMANAGED in kinds
    assert kinds.count(EventType.ACCESS_CODE_REMOVED_FROM_DEVICE) >= 5
    with pytest.raises(EngineError) as gone:
        await h.engine.create_code(dev, CodeRequest(code="4711"))
    assert gone.value.kind == "device_not_found"
    # The pool does not come back by itself, not even after a restart.
    await h.advance(3600)
    assert h.slots("front") == {}
    await stop_harness(h)
    h.task = None
    again = await make_harness(tmp_path, [SimLockSpec("front", "Front")], clock=h.clock,
                               state_file=locks)
    try:
        assert not again.engine.devices[dev].is_managed
        await again.engine.manage_device(dev)
        await again.settle()
        assert again.engine.devices[dev].is_managed
        assert not again.engine.devices[dev].backup_pool_enabled
        assert again.slots("front") == {}
        await again.engine.create_code(dev, CodeRequest(code="4711"))
        await again.settle()
        assert list(again.slots("front").values()) == ["4711"]
    finally:
        await stop_harness(again)


@pytest.mark.slow
async def test_removal_through_the_seam_sdk_and_the_cli(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path)
    try:
        async with AsyncSeam(api_key=daemon.key, endpoint=daemon.url) as seam:
            await _sdk_scenario(seam, daemon)
        # The CLI says the same through the same routes.
        daemon.cli("devices", "remove", "Back door")
        unmanaged = json.loads(daemon.cli("devices", "list", "--unmanaged", "--json").stdout)
        assert [d["display_name"] for d in unmanaged] == ["Back door"]
        assert "Back door" not in daemon.cli("devices", "list").stdout
        daemon.cli("devices", "restore", "Back door")
        assert "Back door" in daemon.cli("devices", "list").stdout
        refused = daemon.cli("devices", "remove", "Nowhere", check=False)
        assert refused.returncode != 0 and "not found" in refused.stderr.lower()
    finally:
        log = daemon.stop()
        for pin in daemon.pins:
            assert pin not in log


async def _sdk_scenario(seam: AsyncSeam, daemon: Daemon) -> None:
    side = next(d.device_id for d in await seam.devices.list()
                if d.display_name == "Side door")
    now = datetime.now(UTC)
    guest_code = await seam.access_codes.create(
        device_id=side, name="Guest", starts_at=(now + timedelta(days=5)).isoformat(),
        ends_at=(now + timedelta(days=7)).isoformat(), use_backup_access_code_pool=True)
    wait_until(lambda: len(daemon.slots("side")) == 5, what="the backup pool on the lock")
    daemon.pins.update(daemon.slots("side").values())

    with pytest.raises(SeamHttpApiError) as refused:
        await seam.devices.update(device_id=side, is_managed=False)
    assert refused.value.code == "device_has_access_codes"
    with pytest.raises(SeamHttpInvalidInputError):
        await seam.devices.update(device_id=side, backup_access_code_pool_enabled=False)
    assert len(daemon.slots("side")) == 5

    await seam.access_codes.delete(access_code_id=guest_code.access_code_id)
    await seam.devices.update(device_id=side, is_managed=False)
    wait_until(lambda: daemon.slots("side") == {}, what="the backups off the lock")
    assert side not in [d.device_id for d in await seam.devices.list()]
    unmanaged = await seam.devices.unmanaged.list()
    assert [d.device_id for d in unmanaged] == [side]
    assert (await seam.devices.unmanaged.get(device_id=side)).is_managed is False
    with pytest.raises(SeamHttpApiError) as missing:
        await seam.devices.get(device_id=side)
    assert missing.value.code == "device_not_found"
    events = await seam.events.list(device_id=side,
                                    event_types=["device.converted_to_unmanaged"])
    assert len(events) == 1

    await seam.devices.unmanaged.update(device_id=side, is_managed=True)
    assert side in [d.device_id for d in await seam.devices.list()]
    await seam.access_codes.create(device_id=side, name="Staff", code="52525")
    daemon.pins.add("52525")
    wait_until(lambda: list(daemon.slots("side").values()) == ["52525"],
               what="a code on the lock brought back")


async def test_a_lock_brought_back_with_its_pool_keeps_the_receipt_with_the_last_change(
        harness_factory: Factory) -> None:
    """An upstream `devices.update` that brings a lock back and switches its pool on is marked
    applied only with the pool's switch-on: stopped in between, it is not marked, and run
    again it finishes (the lock already back) and is marked then."""
    h = await harness_factory([SimLockSpec("front", "Front")])
    app = Application(h.engine)
    dev = h.device_id("front")
    await h.engine.unmanage_device(dev)
    receipt = CommandReceipt("bring-back-1", '{"action": "devices.update"}')
    switch_on = h.engine.enable_backup_pool

    async def stopped_here(device_id: str, receipt: object = None) -> DeviceRecord:
        raise RuntimeError("the process died")

    h.engine.enable_backup_pool = stopped_here  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await app.update_device(dev, is_managed=True, backup_pool_enabled=True, receipt=receipt)
    assert h.engine.devices[dev].is_managed
    assert await h.store.read(lambda r: r.command_marker("bring-back-1")) is None

    h.engine.enable_backup_pool = switch_on  # type: ignore[method-assign]
    device = await app.update_device(dev, is_managed=True, backup_pool_enabled=True,
                                     receipt=receipt)
    assert device.is_managed and device.backup_pool_enabled
    assert await h.store.read(lambda r: r.command_marker("bring-back-1")) == receipt.marker
