"""Ending a driver's background work, written once: cancel it and wait until it has ended."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(work: asyncio.Future[Any] | None) -> None:
    """Cancel `work` (a task, or a future such as a gather) and wait until it has ended, so
    nothing of it runs on after its owner stopped; None: nothing runs."""
    if work is None:
        return
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
