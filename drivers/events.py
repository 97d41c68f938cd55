"""Event delivery from a driver to the engine, in one place.

The engine's sink may wait on the engine (a commit, a lock's turn), and the engine may itself be
waiting on the driver's command: so a driver never awaits the sink from a command or from a
library callback a command waits on. It queues events here, and the pump delivers them from its
own task, in order. A bounded pump drops events when the engine falls far behind and says so
once: the periodic reconcile catches up.
"""

from __future__ import annotations

import asyncio
import logging

from bridge.driver import Availability, DriverEvent, DriverEventKind, DriverEventSink
from drivers.tasks import cancel_and_wait

_LOG = logging.getLogger(__name__)


class EventPump:
    """Hands driver events to the engine from its own task, in order, so a message handler
    never waits on the engine (which may itself be waiting for this driver)."""

    def __init__(self, name: str, maxsize: int = 0) -> None:
        self._name = name
        self._queue: asyncio.Queue[DriverEvent] = asyncio.Queue(maxsize)
        self._task: asyncio.Task[None] | None = None
        self._sink: DriverEventSink | None = None
        self.dropped = 0

    def start(self, sink: DriverEventSink) -> None:
        """Begin delivering to `sink`."""
        self._sink = sink
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"events:{self._name}")

    def emit(self, event: DriverEvent) -> None:
        """Queue one event; never blocks (a full bounded pump drops it, said once)."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1:
                _LOG.warning("%s: the engine is not taking events; dropping them (the periodic "
                             "reconcile catches up)", self._name)

    def availability(self, external_id: str, availability: Availability) -> None:
        """Queue an availability report."""
        self.emit(DriverEvent(DriverEventKind.AVAILABILITY, external_id,
                              availability=availability))

    async def drain(self) -> None:
        """Wait until every queued event was delivered (for tests and orderly stops)."""
        await self._queue.join()

    async def stop(self) -> None:
        """Stop delivering; safe to call twice."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self._sink = None

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                if self._sink is not None:
                    await self._sink(event)
            except Exception:
                _LOG.exception("%s: delivering %s for %s failed", self._name, event.kind.value,
                               event.external_id)
            finally:
                self._queue.task_done()
