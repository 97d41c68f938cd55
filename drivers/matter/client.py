"""One WebSocket session with a Matter server: JSON commands answered by `message_id`, and the
server's events handed to a callback. Knows the wire format, nothing about locks."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

_LOG = logging.getLogger(__name__)


class ServerError(Exception):
    """The server answered a command with an error (`error_code`, `details`)."""

    def __init__(self, error_code: int, details: str) -> None:
        super().__init__(f"error {error_code}: {details}")
        self.error_code = error_code
        self.details = details


class LinkLost(Exception):
    """The WebSocket closed before the answer came."""


EventHandler = Callable[[str, Any], None]


class MatterLink:
    """A connected WebSocket: `call` sends one command and waits for its answer."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, server_info: dict[str, Any]) -> None:
        self.server_info = server_info
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self.closed = asyncio.Event()

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, url: str,
                      timeout_s: float) -> MatterLink:
        """Open the WebSocket and read the server's greeting (its server info)."""
        async with asyncio.timeout(timeout_s):
            ws = await http.ws_connect(url, heartbeat=30, max_msg_size=0)
            try:
                greeting = await ws.receive_json()
            except BaseException:
                await ws.close()
                raise
        return cls(ws, greeting if isinstance(greeting, dict) else {})

    async def call(self, command: str, args: dict[str, Any] | None = None) -> Any:
        """Send one command; its `result`, or ServerError. Cancelling it stops waiting only."""
        if self.closed.is_set():
            raise LinkLost("the Matter server link is closed")
        message_id = str(next(self._ids))
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = answer
        try:
            await self._ws.send_str(json.dumps({"message_id": message_id, "command": command,
                                                "args": args or {}}))
            return await answer
        finally:
            self._waiting.pop(message_id, None)

    async def pump(self, on_event: EventHandler) -> None:
        """Read messages until the socket closes: answers wake their callers, events go to
        `on_event(name, data)` (which must not block)."""
        try:
            async for message in self._ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    if message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                        break
                    continue
                try:
                    doc = json.loads(message.data)
                except ValueError:
                    _LOG.warning("matter: the server sent something that is not JSON")
                    continue
                if isinstance(doc, dict):
                    self._dispatch(doc, on_event)
        finally:
            self.closed.set()
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(LinkLost("the Matter server link closed"))

    def _dispatch(self, doc: dict[str, Any], on_event: EventHandler) -> None:
        if "event" in doc:
            on_event(str(doc["event"]), doc.get("data"))
            return
        waiter = self._waiting.get(str(doc.get("message_id")))
        if waiter is None or waiter.done():
            return
        if "error_code" in doc:
            waiter.set_exception(ServerError(int(doc.get("error_code") or 0),
                                             str(doc.get("details") or "")))
        else:
            waiter.set_result(doc.get("result"))

    async def close(self) -> None:
        """Close the socket; safe to call twice."""
        await self._ws.close()
        self.closed.set()
