"""Ending a driver's background work, written once: cancel it and wait until it has ended."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# How long a cancelled task gets before it is asked again.
_ASK_AGAIN_S = 0.5


async def cancel_and_wait(work: asyncio.Future[Any] | None) -> None:
    """Cancel `work` (a task, or a future such as a gather) and wait until it has ended, so
    nothing of it runs on after its owner stopped; None: nothing runs.

    Asked again while it runs on: on Python 3.11, `asyncio.wait_for` (inside aiomqtt's publish
    and subscribe, among others) swallows a cancellation that arrives just as what it waits for
    completes, so a task can go round its loop again and wait on its queue for good; a single
    `cancel()` and `await` then never return (seen as a fake Zigbee2MQTT whose stop hung until
    the test's timeout, one run in two on a busy machine)."""
    if work is None:
        return
    while not work.done():
        work.cancel()
        await asyncio.wait({work}, timeout=_ASK_AGAIN_S)
    with contextlib.suppress(asyncio.CancelledError):
        await work
