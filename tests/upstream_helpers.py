"""Shared pieces of the upstream tests: a link over a harness, a reference upstream, a proxy."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.clock import Clock, SystemClock
from bridge.config import UpstreamConfig
from bridge.driver import DriverEvent, DriverEventKind
from bridge.engine import Engine
from bridge.upstream.devserver import DevUpstream
from bridge.upstream.link import UpstreamLink

TOKEN = "test-token-0123456789"
BRIDGE_ID = "t-bridge"


def upstream_config(port: int, tmp_path: Path, **overrides: Any) -> UpstreamConfig:
    """A loopback upstream config with a token file and test-sized timings."""
    token_file = tmp_path / "upstream.token"
    if not token_file.exists():
        token_file.write_text(TOKEN + "\n")
    values: dict[str, Any] = {"url": f"ws://127.0.0.1:{port}/ws", "token_file": token_file,
                              "backoff_base_s": 0.05, "backoff_cap_s": 0.2,
                              "connect_timeout_s": 5.0, "half_open_timeout_s": 5.0}
    values.update(overrides)
    return UpstreamConfig.model_validate(values)


@dataclass
class RunningLink:
    """An upstream link running as a task."""

    link: UpstreamLink
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """Cancel the link and wait for it."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def start_link(engine: Engine, config: UpstreamConfig,
                     clock: Clock | None = None) -> RunningLink:
    """Prepare and run an upstream link over an engine."""
    link = UpstreamLink(config, engine.store, engine, clock or SystemClock(), BRIDGE_ID)
    await link.prepare()
    return RunningLink(link, asyncio.create_task(link.run(), name="upstream"))


async def unlock_events(engine: Engine, device_id: str, count: int) -> None:
    """Commit `count` lock.unlocked events on a lock, as its keypad would report them."""
    device = engine.devices[device_id]
    for _ in range(count):
        await engine.on_driver_event(device.driver, DriverEvent(
            DriverEventKind.KEYPAD_USED, device.external_id, slot=1))


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0,
                     what: str = "condition") -> None:
    """Poll an async or sync predicate on real time (network peers) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout} s")


async def bridge_event_ids(engine: Engine) -> list[str]:
    """Every event id in the bridge's store, in sequence order."""
    events = await engine.store.read(lambda r: r.events(0, 1_000_000))
    return [e.event_id for e in events]


async def start_server(tmp_path: Path, port: int = 0, name: str = "upstream.db") -> DevUpstream:
    """A reference upstream on loopback."""
    server = DevUpstream(tmp_path / name, TOKEN)
    await server.start("127.0.0.1", port)
    return server


@dataclass
class SwallowingProxy:
    """A TCP proxy on loopback that can start silently dropping every byte, both ways."""

    target_port: int
    swallow: bool = False
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self) -> int:
        """Listen on an ephemeral port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Close everything."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst), name="proxy-pipe")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                if not self.swallow:
                    dst.write(data)
                    await dst.drain()
        dst.close()
