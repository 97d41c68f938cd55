"""A link supervisor stops when cancelled, even when its session swallows the cancellation
(Python 3.11's asyncio.wait_for can, inside aiomqtt's disconnect): a daemon told to stop must
not hang reconnecting forever."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bridge.clock import SystemClock
from bridge.reconnect import ReconnectSupervisor
from drivers.tasks import cancel_and_wait


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


async def test_stopping_a_worker_that_swallowed_its_cancellation_still_ends_it() -> None:
    """A worker whose publish swallowed the cancel goes back to waiting on its queue: a single
    cancel() and await would wait for good (a fake Zigbee2MQTT's stop hung so); the stop asks
    again until it has ended."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    handled: list[str] = []

    async def publish() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return  # wait_for's completion racing the cancel, on Python 3.11

    async def worker() -> None:
        while True:
            item = await queue.get()
            await publish()
            handled.append(item)

    task = asyncio.create_task(worker())
    queue.put_nowait("set pin")
    while queue.qsize():
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(cancel_and_wait(task))
    done, _ = await asyncio.wait({stopping}, timeout=5)
    stopped = stopping in done
    if not stopped:  # leave nothing behind for the next test
        stopping.cancel()
        task.cancel()
        await asyncio.gather(stopping, task, return_exceptions=True)
    assert stopped and task.done() and handled == ["set pin"]
