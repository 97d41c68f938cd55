"""How long the engine waits for one driver call: the engine's command timeout, raised (never
lowered) by what a driver states for its locks. An operator's longer setting for a slow mesh
must hold for every lock, and a driver whose own waits are longer must not be cut short."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from bridge.driver import DeviceInfo, LockCapabilities, LockDriver, PinConstraints, RetryLater
from bridge.engine.faults import Faults
from bridge.engine.gateway import DriverGateway
from bridge.engine.state import EngineState
from bridge.records import DeviceRecord

T0 = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def device(stated: float | None) -> DeviceRecord:
    caps = LockCapabilities(command_timeout_s=stated)
    info = DeviceInfo("x", "X", "m", "m", "lock", caps, PinConstraints())
    return DeviceRecord("d", "sim", "x", info, T0)


def gateway(engine_timeout_s: float) -> DriverGateway:
    # Neither the state nor the faults are reached by a call that ends or times out.
    state = cast(EngineState, object())
    drivers = cast(dict[str, LockDriver], {"sim": object()})
    return DriverGateway(state, drivers, cast(Faults, object()),
                         command_timeout_s=engine_timeout_s, concurrency_per_driver=1)


@pytest.mark.parametrize(("engine_s", "stated_s", "expected_s"), [
    (30.0, None, 30.0),    # no statement: the engine's
    (30.0, 109.0, 109.0),  # a Z-Wave lock's Supervision waits exceed the engine's default
    (300.0, 109.0, 300.0),  # the operator's longer setting is kept
    (30.0, 5.0, 30.0),     # a driver cannot shorten the operator's bound
])
def test_the_longer_of_the_engine_s_and_the_driver_s_timeout_counts(
        engine_s: float, stated_s: float | None, expected_s: float) -> None:
    assert gateway(engine_s).command_timeout(device(stated_s)) == expected_s


async def _answer_after(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


async def test_a_call_is_not_cut_at_a_shorter_stated_time() -> None:
    # The driver states 0.05 s, the operator set 2 s: an answer after 0.2 s is taken.
    assert await gateway(2.0).call(device(0.05), _answer_after(0.2)) == "done"


async def test_a_call_past_both_bounds_is_retried_later() -> None:
    slow: Any = _answer_after(5.0)
    with pytest.raises(RetryLater):
        await gateway(0.05).call(device(0.1), slow)
