"""The broker is killed (SIGKILL, no persistence) in the middle of work and started again: every
lock of both MQTT drivers converges, no command is lost and none is applied twice."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bridge.clock import FakeClock
from bridge.driver import Availability
from bridge.engine import CodeRequest
from bridge.model import AccessCodeStatus, DeviceErrorCode
from bridge.records import CodeRecord
from tests.conftest import START
from tests.fakes.zigbee2mqtt import FakeZigbeeLock
from tests.fakes.zwavejs_ui import FakeNode
from tests.harness import Harness, start_engine, until
from tests.mqtt_env import make_z2m, make_zui, running_z2m, running_zui, unique

if TYPE_CHECKING:
    from tests.mosquitto import Mosquitto

pytest_plugins = ["tests.mosquitto"]

Z2M_LOCKS = ("front", "back")
NODES = (5, 6)


def all_set(h: Harness, codes: list[CodeRecord]) -> bool:
    return all(c.access_code_id in h.engine.codes
               and h.code(c.access_code_id).status is AccessCodeStatus.SET for c in codes)


async def test_broker_killed_and_restarted_mid_way(private_mosquitto: Mosquitto, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    broker = private_mosquitto
    base, prefix = unique("z2m-restart"), unique("zw-restart")
    z_locks = [FakeZigbeeLock(name, f"0x{i:04x}") for i, name in enumerate(Z2M_LOCKS, 1)]
    async with running_z2m(broker, base, z_locks) as z2m, \
            running_zui(broker, prefix, "home", [FakeNode(n) for n in NODES]) as zui:
        clock = FakeClock(START)
        drivers = {
            "z2m": make_z2m(broker, clock, tmp_path, base),
            "zwave": make_zui(broker, clock, tmp_path, prefix, "home",
                              [{"node_id": n, "id": f"node{n}"} for n in NODES]),
        }
        h = await start_engine(tmp_path, drivers, clock=clock)
        try:
            devices = [h.device_id(n, driver="z2m") for n in Z2M_LOCKS] + \
                [h.device_id(f"node{n}", driver="zwave") for n in NODES]
            pins = iter(f"{4000 + i * 37:04d}" for i in range(100))

            async def one_code_each() -> list[CodeRecord]:
                return [await h.engine.create_code(d, CodeRequest(name="Guest", code=next(pins)))
                        for d in devices]

            # 1. Normal work.
            first = await one_code_each()
            await h.until(lambda: all_set(h, first), what="first codes set")

            # 2. More work, and the broker dies while it is under way: right after the first
            # of these commands reached its lock, before the lock's answer could get back.
            killed_at: list[object] = []

            def kill_once(lock: object, slot: int, pin: str | None) -> None:
                if not killed_at and pin is not None and pin in second_pins:
                    killed_at.append((lock, slot, pin))
                    broker.kill()

            z2m.after_apply = kill_once
            zui.after_apply = kill_once
            second_pins = [f"{6000 + i * 41:04d}" for i in range(len(devices))]
            second = [await h.engine.create_code(d, CodeRequest(name="Guest", code=pin))
                      for d, pin in zip(devices, second_pins, strict=True)]
            await h.until(lambda: all(h.engine.devices[d].availability
                                      is Availability.DISCONNECTED for d in devices),
                          what="every lock disconnected")
            assert all(any(e.code == DeviceErrorCode.DEVICE_DISCONNECTED
                           for e in h.engine.devices[d].errors) for d in devices)

            # 3. Work requested while the broker is away waits in the per-lock queue.
            third = await one_code_each()
            gone = first[0]
            await h.engine.delete_code(gone.access_code_id)
            await h.until(lambda: True, advance=5.0)
            assert all(h.code(c.access_code_id).status is AccessCodeStatus.SETTING
                       for c in third)

            # 4. The broker comes back on the same port, empty; the services reconnect.
            broker.start()
            await until(lambda: z2m.sessions == 2 and zui.sessions == 2, timeout=5.0,
                        what="the services reconnected")
            wanted = [c for c in first + second + third if c is not gone]
            await h.until(lambda: all_set(h, wanted) and gone.access_code_id not in
                          h.engine.codes, timeout=30.0, advance=1.0, what="convergence")
            assert all(h.engine.devices[d].availability is Availability.ONLINE for d in devices)
        finally:
            await h.stop()

        # Every lock holds exactly what it should ...
        expected: dict[str, dict[int, str]] = {d: {} for d in devices}
        for code in wanted:
            record = h.engine.codes[code.access_code_id]
            assert record.slot is not None and record.code is not None
            expected[record.device_id][record.slot] = record.code
        for name, device in zip(Z2M_LOCKS, devices[:2], strict=True):
            assert z2m.lock(name).table == expected[device]
        for node, device in zip(NODES, devices[2:], strict=True):
            assert zui.node(node).codes == expected[device]
        # ... and every command reached its lock exactly once, including the one whose answer
        # the broker's death swallowed.
        assert len(killed_at) == 1
        lock_id, slot, pin = killed_at[0]  # type: ignore[misc]
        log = z2m.lock(lock_id).applied if isinstance(lock_id, str) else zui.node(lock_id).applied
        assert log.count((slot, pin)) == 1
        applied = [z2m.lock(n).applied for n in Z2M_LOCKS] + [zui.node(n).applied for n in NODES]
        for log in applied:
            assert len(log) == len(set(log)), f"a command was applied twice: {log}"
        assert z2m.lock(Z2M_LOCKS[0]).applied.count((0, None)) == 1  # the deletion
        # One warning per outage per link, and a "recovered" line when it ended.
        lost = [r for r in caplog.records if r.levelno == logging.WARNING
                and "mqtt link" in r.getMessage() and "reconnecting" in r.getMessage()]
        recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
        assert len(lost) == 2 and len(recovered) == 2
