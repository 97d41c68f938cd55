"""The MQTT side of a fake service: its own connection to the broker, which it keeps up across
broker restarts (republishing its retained topics each time, as the real services do)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from typing import Any

import aiomqtt

from bridge.reconnect import cancel_requested
from drivers.tasks import cancel_and_wait

_LOG = logging.getLogger("tests.fakes")


class MqttPeer:
    """Subclasses implement `on_connected` (retained state, subscriptions) and `on_message`."""

    def __init__(self, host: str, port: int, client_id: str,
                 will: aiomqtt.Will | None = None) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.will = will
        self.sessions = 0
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._paused = False

    async def start(self) -> None:
        """Connect in the background and wait for the first session."""
        self._task = asyncio.create_task(self._run(), name=f"fake:{self.client_id}")
        await asyncio.wait_for(self.connected.wait(), 5)

    async def stop(self) -> None:
        """Disconnect for good."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def publish(self, topic: str, payload: Any, *, retain: bool = False,
                      timeout: float = 0.3) -> None:
        """Publish JSON (or raw bytes/str); dropped while the broker is away."""
        client = self._client
        if client is None:
            return
        if isinstance(payload, bytes | str):
            data: bytes | str = payload
        else:
            data = json.dumps(payload)
        with contextlib.suppress(aiomqtt.MqttError):
            # Short: a dead broker must not hold the fake's message loop for long.
            await client.publish(topic, data, qos=1, retain=retain, timeout=timeout)

    async def on_connected(self) -> None:
        """Publish retained state and subscribe; called on every (re)connect."""

    async def on_message(self, topic: str, payload: bytes) -> None:
        """Handle one message on a subscribed topic."""

    async def subscribe(self, *filters: str) -> None:
        """Subscribe on the current session."""
        if self._client is not None:
            await self._client.subscribe([(f, 1) for f in filters])

    async def _run(self) -> None:
        while True:
            try:
                client = aiomqtt.Client(self.host, self.port, identifier=self.client_id,
                                        will=self.will, clean_session=True, timeout=2,
                                        logger=logging.getLogger("tests.fakes.wire"),
                                        socket_options=[(socket.IPPROTO_TCP,
                                                         socket.TCP_NODELAY, 1)])
                async with client:
                    self._client = client
                    self.sessions += 1
                    await self.on_connected()
                    self.connected.set()
                    async for message in client.messages:
                        payload = message.payload
                        data = payload if isinstance(payload, bytes) else str(payload).encode()
                        try:
                            await self.on_message(message.topic.value, data)
                        except Exception:
                            _LOG.exception("fake %s: handler failed", self.client_id)
            except aiomqtt.MqttError:
                pass
            except Exception:
                # A fake that dies silently would look like a lockbridge bug: say so, go on.
                _LOG.exception("fake %s: session failed", self.client_id)
            finally:
                self._client = None
                self.connected.clear()
            if cancel_requested():
                raise asyncio.CancelledError  # swallowed on the way out of aiomqtt: it stands
            # A real service retries too; the broker is local, so retry quickly.
            await asyncio.sleep(0.05)
