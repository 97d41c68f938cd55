"""A WebSocket proxy between the driver and a real Matter server that can answer chosen
commands itself: the Matter server answers the peer cannot produce (matter.js answers FAILURE
where the spec says DUPLICATE or OCCUPIED; BUSY, TIMEOUT and a node not ready never happen on
an idle virtual lock). Everything else goes through unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web


@dataclass
class Injection:
    """Answer the next `times` calls of `command_name` (a device command's name, or the API
    command) with `answer` (a dict with `result`, or `error_code` and `details`); `forward`
    still sends the command to the server (its answer is dropped)."""

    command_name: str
    answer: dict[str, Any]
    times: int = 1
    forward: bool = False


@dataclass
class MatterProxy:
    upstream: str
    injections: list[Injection] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _clients: set[web.WebSocketResponse] = field(default_factory=set)
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def inject(self, command_name: str, answer: dict[str, Any], times: int = 1,
               forward: bool = False) -> None:
        self.injections.append(Injection(command_name, answer, times, forward))

    async def send_event(self, event: str, data: Any) -> None:
        """An event as if the server sent it, to every connected driver."""
        for client in list(self._clients):
            await client.send_str(json.dumps({"event": event, "data": data}))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for client in list(self._clients):
            await client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _injection_for(self, doc: dict[str, Any]) -> Injection | None:
        args = doc.get("args") or {}
        name = args.get("command_name") or doc.get("command")
        self.seen.append(str(name))
        for injection in self.injections:
            if injection.command_name == name and injection.times > 0:
                injection.times -= 1
                return injection
        return None

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        client = web.WebSocketResponse(max_msg_size=0)
        await client.prepare(request)
        self._clients.add(client)
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(self.upstream, max_msg_size=0) as server:
            dropped: set[str] = set()

            async def down() -> None:
                async for message in server:
                    doc = json.loads(message.data)
                    if doc.get("message_id") in dropped:
                        continue
                    await client.send_str(message.data)

            relay = asyncio.create_task(down())
            try:
                async for message in client:
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        continue
                    doc = json.loads(message.data)
                    injection = self._injection_for(doc)
                    if injection is None:
                        await server.send_str(message.data)
                        continue
                    if injection.forward:
                        dropped.add(str(doc.get("message_id")))
                        await server.send_str(message.data)
                    await client.send_str(json.dumps({"message_id": doc.get("message_id"),
                                                      **injection.answer}))
            finally:
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await relay
                self._clients.discard(client)
        return client
