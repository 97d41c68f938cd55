"""The daemon's starter for `upstream.kind: nats`; nats-py (the `nats` extra) is imported only
when a NATS upstream is configured, so a gateway without the extra still starts."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bridge.config import NatsUpstreamConfig

if TYPE_CHECKING:
    from bridge.daemon import Bridge


async def start_nats_upstream(bridge: Bridge,
                              group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
    """Start the NATS link when the upstream is `kind: nats`."""
    config = bridge.loaded.config.upstream
    if not isinstance(config, NatsUpstreamConfig):
        return []
    from bridge.upstream.nats_link import NatsLink

    link = NatsLink(config, bridge.store, bridge.engine, bridge.clock,
                    bridge.loaded.config.bridge.id)
    await link.prepare()
    bridge.extras["upstream"] = link
    return [group.create_task(link.run(), name="upstream-nats")]
