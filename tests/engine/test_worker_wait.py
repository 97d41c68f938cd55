"""A lock worker's wait: woken or timed out on the engine's clock, with one future per sleeping
lock (no tasks of its own), and nothing left behind when it ends or is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from bridge.backoff import Backoff, Throttle
from bridge.clock import FakeClock
from bridge.engine.worker import LockWorker


def _worker() -> LockWorker:
    return LockWorker("d1", probes=Throttle(Backoff(1.0, 2.0)),
                      read_failures=Throttle(Backoff(1.0, 2.0)))


async def test_a_wake_up_ends_the_wait_with_true() -> None:
    clock, worker = FakeClock(), _worker()
    waiting = asyncio.create_task(worker.wait(clock, 60.0))
    await clock.advance(10.0)
    assert worker.waiting and not waiting.done()
    worker.wake.set()
    assert await asyncio.wait_for(waiting, 5) is True
    assert not worker.waiting and not worker.wake.is_set()
    assert clock.pending_sleepers() == 0  # the timer went with the wait


async def test_the_clock_ends_the_wait_with_false() -> None:
    clock, worker = FakeClock(), _worker()
    waiting = asyncio.create_task(worker.wait(clock, 60.0))
    await clock.advance(59.0)
    assert not waiting.done()
    await clock.advance(1.0)
    assert await asyncio.wait_for(waiting, 5) is False
    assert not worker.waiting


async def test_a_wake_up_before_the_wait_is_taken_at_once() -> None:
    clock, worker = FakeClock(), _worker()
    worker.wake.set()
    assert await worker.wait(clock, 60.0) is True
    assert not worker.wake.is_set()
    # Taken: the next wait sleeps again.
    waiting = asyncio.create_task(worker.wait(clock, 5.0))
    await clock.advance(5.0)
    assert await asyncio.wait_for(waiting, 5) is False


async def test_a_cancelled_wait_leaves_no_timer_and_is_not_waiting() -> None:
    clock, worker = FakeClock(), _worker()
    waiting = asyncio.create_task(worker.wait(clock, 60.0))
    await clock.advance(1.0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not worker.waiting
    assert clock.pending_sleepers() == 0
    worker.wake.set()  # no one waits: kept for the next wait
    assert await worker.wait(clock, 60.0) is True


async def test_sleeping_locks_hold_no_tasks_of_their_own() -> None:
    """A sleeping lock costs one future, not two tasks and an asyncio.wait (about 2 MB at
    1,000 locks)."""
    clock = FakeClock()
    workers = [_worker() for _ in range(50)]
    before = len(asyncio.all_tasks())
    waits = [asyncio.create_task(w.wait(clock, 3600.0)) for w in workers]
    await clock.advance(1.0)
    assert all(w.waiting for w in workers)
    assert len(asyncio.all_tasks()) == before + len(waits)
    for worker in workers:
        worker.wake.set()
    assert await asyncio.wait_for(asyncio.gather(*waits), 5) == [True] * len(waits)
