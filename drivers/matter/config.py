"""Settings of the Matter driver, and building it; imports nothing heavy."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.drivercontext import DriverContext
from bridge.zones import TimeZoneName
from drivers.websocket_server import WebSocketServerConfig


class NodeConfig(BaseModel):
    """Settings for one Matter node, by node id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    # The lock's own wall-clock zone: year-day schedules are sent in its local time.
    time_zone: TimeZoneName | None = None
    # False: switch time-bound codes from the bridge even where the lock keeps schedules.
    native_schedules: bool = True
    ignore: bool = False


class Config(WebSocketServerConfig):
    """The Matter driver's settings."""

    SERVER_NAME = "the Matter server"

    kind: Literal["matter"]
    name: str = "matter"
    property: str | None = None
    # The Matter server has no authentication: it must listen on loopback only.
    url: str = "ws://127.0.0.1:5580/ws"
    # Default zone of the locks' clocks (year-day schedules); a node's own setting wins.
    time_zone: TimeZoneName | None = None
    nodes: dict[Annotated[int, Field(ge=1)], NodeConfig] = {}
    command_spacing_s: Annotated[float, Field(ge=0)] = 1.0
    # One command to a lock; Thread locks can take seconds.
    command_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    # Timed interactions (SetUser, SetCredential, Clear*): Home Assistant uses 10 s for Thread.
    timed_request_timeout_ms: Annotated[int, Field(ge=100, le=60000)] = 10000
    # BUSY and TIMEOUT answers are retried this many times, this far apart.
    busy_retries: Annotated[int, Field(ge=0, le=10)] = 3
    busy_retry_s: Annotated[float, Field(ge=0)] = 1.0

    def node(self, node_id: int) -> NodeConfig:
        """The settings of one node (defaults when the file says nothing about it)."""
        return self.nodes.get(node_id) or NodeConfig()


def build(config: Config, context: DriverContext) -> object:
    """Make the Matter driver (aiohttp only, which the core already needs)."""
    from drivers.matter.driver import MatterDriver

    return MatterDriver(config, context.clock, context.state_dir)
