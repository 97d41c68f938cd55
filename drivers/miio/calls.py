"""python-miio's blocking calls, one at a time per device, in a thread, under a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def one_at_a_time(guard: asyncio.Lock, call: Callable[[], T], bound_s: float) -> T:
    """Run `call` in a thread while holding `guard`; TimeoutError after `bound_s`.

    A thread cannot be stopped: when the bound passes (or the caller is cancelled), the caller
    is answered at once but `guard` stays held until the thread ends, so the next exchange with
    the device never overlaps one still in flight (python-miio's socket timeouts end it).
    """
    await guard.acquire()
    job = asyncio.ensure_future(asyncio.to_thread(call))
    try:
        done, _ = await asyncio.wait({job}, timeout=bound_s)
    except BaseException:
        job.add_done_callback(lambda finished: _release(guard, finished))
        raise
    if not done:
        job.add_done_callback(lambda finished: _release(guard, finished))
        raise TimeoutError(f"no answer within {bound_s:.0f} s")
    guard.release()
    return job.result()


def _release(guard: asyncio.Lock, finished: asyncio.Future[Any]) -> None:
    if not finished.cancelled():
        finished.exception()  # retrieved: nobody waits for this answer any more
    guard.release()
