"""The daemon run in the test's own event loop through its composition root (`serve`), with
its real HTTP API on a free port and a key for it: for peers that live in the test process (a
fake radio, a fake clock) and still want the daemon's public surface."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bridge.api.auth import create_key
from bridge.clock import Clock
from bridge.config import load_config
from bridge.daemon import Bridge, serve


@dataclass
class RunningDaemon:
    """A daemon serving in this process, and an API session with a key."""

    bridge: Bridge
    http: aiohttp.ClientSession
    base: str
    config: Path
    key: str
    task: asyncio.Task[None]

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """One API call: (status, JSON body)."""
        async with self.http.post(self.base + path, json=body) as response:
            return response.status, await response.json()

    async def get(self, path: str) -> tuple[int, str]:
        """One GET of a page without a key's JSON (metrics, status)."""
        async with self.http.get(self.base + path) as response:
            return response.status, await response.text()


@contextlib.asynccontextmanager
async def running_daemon(config: Path, clock: Clock | None = None,
                         start_timeout_s: float = 30.0) -> AsyncIterator[RunningDaemon]:
    """Serve `config` until the block ends, then stop the daemon cleanly."""
    stop = asyncio.Event()
    ready: asyncio.Future[Bridge] = asyncio.get_running_loop().create_future()

    async def on_ready(bridge: Bridge) -> None:
        ready.set_result(bridge)

    task = asyncio.create_task(serve(load_config(config), clock, on_ready=on_ready, stop=stop),
                               name="daemon")
    try:
        bridge = await asyncio.wait_for(asyncio.shield(ready), start_timeout_s)
        _, key = await create_key(bridge.store, "test", bridge.clock.now())
        base = f"http://127.0.0.1:{bridge.extras['api_port']}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
            yield RunningDaemon(bridge, http, base, config, key, task)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 20)
