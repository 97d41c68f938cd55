"""What both upstream links (the websocket of link.py, the NATS of nats_link.py) are to the
daemon: sessions kept up by a reconnect supervisor until cancelled, whether one is up now, and
how many committed events still wait for the upstream's acknowledgement."""

from __future__ import annotations

import asyncio
import contextlib

from bridge.reconnect import LinkState, ReconnectSupervisor
from bridge.upstream.commands import CommandRunner
from bridge.upstream.outbox import Outbox


class SupervisedLink:
    """The lifecycle an upstream link shares; the link makes these four in its __init__ and
    sets `_up` while a session is up."""

    supervisor: ReconnectSupervisor
    commands: CommandRunner
    outbox: Outbox
    _up: asyncio.Event

    async def run(self) -> None:
        """Keep the link up until cancelled."""
        try:
            await self.supervisor.run()
        finally:
            self._up.clear()
            await self.commands.close()

    @property
    def state(self) -> LinkState:
        """The supervisor's state."""
        return self.supervisor.state

    @property
    def connected(self) -> bool:
        """True while a session is up (for the websocket: past `welcome`)."""
        return self._up.is_set()

    @property
    def outbox_depth(self) -> int:
        """Events committed but not yet acknowledged by the upstream (or JetStream)."""
        return self.outbox.unacked

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a session; True if one is up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._up.wait()
        return self._up.is_set()
