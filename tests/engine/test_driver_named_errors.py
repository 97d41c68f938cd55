"""A device error only the driver can name (`DeviceInfo.errors`, e.g. TTLock's
`ttlock_lock_not_paired_to_gateway`): the engine shows it in the device's errors beside its
own, keeps when it began across a restart, and drops it once the driver no longer names it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from bridge.driver import DeviceInfo, DeviceProblem, DriverEvent, DriverEventKind
from bridge.model import DeviceErrorCode
from drivers.simulator import SimLockSpec, SimulatorDriver
from tests.conftest import make_harness, stop_harness

NOT_PAIRED = DeviceProblem(DeviceErrorCode.TTLOCK_LOCK_NOT_PAIRED_TO_GATEWAY,
                           "Lock is not paired with a Gateway.")


async def test_a_device_error_the_driver_names_comes_and_goes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    named: list[DeviceProblem] = []
    plain = SimulatorDriver.devices

    def devices(self: SimulatorDriver) -> Sequence[DeviceInfo]:
        return [replace(info, errors=tuple(named)) for info in plain(self)]

    monkeypatch.setattr(SimulatorDriver, "devices", devices)
    h = await make_harness(tmp_path, [SimLockSpec("front", "Front")])
    device_id = h.device_id("front")

    def codes() -> list[str]:
        return [e.code for e in h.engine.devices[device_id].errors]

    assert codes() == []
    named.append(NOT_PAIRED)
    await h.engine.on_driver_event("sim", DriverEvent(DriverEventKind.DEVICES_CHANGED, ""))
    assert codes() == ["ttlock_lock_not_paired_to_gateway"]
    began = h.engine.devices[device_id].errors[0].created_at
    await h.clock.advance(60)
    await h.engine.on_driver_event("sim", DriverEvent(DriverEventKind.DEVICES_CHANGED, ""))
    assert h.engine.devices[device_id].errors[0].created_at == began

    # Kept by the store and still named after a restart: the same error, the same start.
    await stop_harness(h)
    h = await make_harness(tmp_path, [SimLockSpec("front", "Front")], clock=h.clock)
    try:
        (stored,) = await h.store.read(lambda r: r.devices())
        assert stored.info.errors == (NOT_PAIRED,)
        assert [(e.code, e.created_at) for e in h.engine.devices[device_id].errors] == [
            ("ttlock_lock_not_paired_to_gateway", began)]

        # An error the engine derives itself stays when the driver's goes.
        h.driver.lock("front").go_offline()
        await h.engine.on_driver_event("sim", DriverEvent(
            DriverEventKind.AVAILABILITY, "front", availability=h.driver.availability("front")))
        assert set(codes()) == {"ttlock_lock_not_paired_to_gateway", "device_offline"}
        named.clear()
        await h.engine.on_driver_event("sim", DriverEvent(DriverEventKind.DEVICES_CHANGED, ""))
        assert codes() == ["device_offline"]
    finally:
        await stop_harness(h)
