"""Every configured feed under one supervisor: one HTTP session, one named task per feed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType

import aiohttp

from bridge.clock import Clock
from bridge.ical.config import IcalFeedConfig
from bridge.ical.poller import USER_AGENT, FeedPoller, FeedSink
from bridge.ical.status import FeedStatus


class IcalFeeds:
    """The feeds of every space; `async with` it, then `await run()` in the daemon's group."""

    def __init__(self, feeds: Iterable[tuple[str, IcalFeedConfig]], sink: FeedSink,
                 clock: Clock) -> None:
        self._feeds = [(space_key, config) for space_key, config in feeds]
        keys = [(space_key, config.key) for space_key, config in self._feeds]
        if len(set(keys)) != len(keys):
            raise ValueError("two feeds of one space share a key")
        self._sink = sink
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._pollers: dict[tuple[str, str], FeedPoller] = {}

    async def __aenter__(self) -> IcalFeeds:
        """Open the shared session and build a poller per feed."""
        self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        self._pollers = {(space_key, config.key): FeedPoller(space_key, config, self._sink,
                                                             self._clock, self._session)
                         for space_key, config in self._feeds}
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        """Close the shared session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        """Poll every feed on its own interval until cancelled."""
        async with asyncio.TaskGroup() as group:
            for (space_key, feed_key), poller in self._pollers.items():
                group.create_task(poller.run(), name=f"ical:{space_key}:{feed_key}")

    def statuses(self, space_key: str | None = None) -> list[FeedStatus]:
        """Each feed's status (of one space, when given), by space then feed."""
        return [self._pollers[k].status for k in sorted(self._pollers)
                if space_key is None or k[0] == space_key]
