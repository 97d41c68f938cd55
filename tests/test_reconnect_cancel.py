"""A link supervisor stops when cancelled, even when its session swallows the cancellation
(Python 3.11's asyncio.wait_for can, inside aiomqtt's disconnect): a daemon told to stop must
not hang reconnecting forever."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bridge.clock import SystemClock
from bridge.reconnect import ReconnectSupervisor


async def test_a_swallowed_cancellation_still_stops_the_link() -> None:
    sessions = 0

    async def session(established: Callable[[], None]) -> None:
        nonlocal sessions
        sessions += 1
        established()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return  # what a library that loses the cancellation on its way out amounts to

    link = ReconnectSupervisor("test", SystemClock(), session)
    task = asyncio.create_task(link.run())
    while sessions == 0:
        await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert task in done and task.cancelled()
    assert sessions == 1
