"""Live activity for the portal: the engine's committed events fanned out to each open
server-sent-events stream, through a bounded queue per stream."""

from __future__ import annotations

import asyncio
import logging

from bridge.model import Event

_LOG = logging.getLogger(__name__)
# A stream that falls this far behind is closed; the browser's EventSource reconnects and
# the page reloads the activity it missed.
QUEUE_EVENTS = 1000


class EventFeed:
    """Subscribers' queues; `publish` is the engine listener (called after each commit)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Event | None]] = set()

    def publish(self, events: list[Event]) -> None:
        """Hand committed events to every stream; a stream that is full is ended."""
        for queue in list(self._queues):
            try:
                for event in events:
                    queue.put_nowait(event)
            except asyncio.QueueFull:
                _LOG.info("portal: an activity stream fell behind; closing it")
                self._end(queue)

    def subscribe(self) -> asyncio.Queue[Event | None]:
        """A new stream's queue; None in it means the stream must end."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_EVENTS + 1)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event | None]) -> None:
        """Forget a stream that ended."""
        self._queues.discard(queue)

    def close(self) -> None:
        """End every stream (the server is shutting down)."""
        for queue in list(self._queues):
            self._end(queue)

    def _end(self, queue: asyncio.Queue[Event | None]) -> None:
        self._queues.discard(queue)
        while True:
            try:
                queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                queue.get_nowait()
