"""Settings of the Z-Wave driver, and building it; imports nothing heavy.

zwave-js-server-python (the `zwave` extra) is imported only in `build`, so a gateway without
the extra can still check a configuration that mentions Z-Wave, and only this driver is lost.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.drivercontext import DriverContext
from bridge.zones import TimeZoneName
from drivers.unavailable import UnavailableDriver
from drivers.websocket_server import WebSocketServerConfig


class NodeConfig(BaseModel):
    """Settings for one Z-Wave node, by node id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    # The lock's own wall-clock zone; needed for native schedules (Schedule Entry Lock CC).
    time_zone: TimeZoneName | None = None
    # Slots lockbridge must never touch (a master code, codes managed by someone else).
    reserved_slots: list[Annotated[int, Field(ge=1, le=65535)]] = []
    # Schlage-style locks: every code must have this one length.
    fixed_length: Annotated[int, Field(ge=1, le=10)] | None = None
    no_leading_zero: bool = False
    native_schedules: bool = True
    # False: read every write back even when the lock's Supervision Report says Success (a
    # model that answers Success and then refuses the code, or keeps nothing).
    trust_supervision: bool = True
    ignore: bool = False



class Config(WebSocketServerConfig):
    """The Z-Wave driver's settings."""

    SERVER_NAME = "zwave-js-server"

    kind: Literal["zwave"]
    name: str = "zwave"
    property: str | None = None
    # zwave-js-server has no authentication: it must listen on loopback only.
    url: str = "ws://127.0.0.1:3000"
    # Default zone of the locks' clocks (native schedules); a node's own setting wins.
    time_zone: TimeZoneName | None = None
    nodes: dict[Annotated[int, Field(ge=2, le=4000)], NodeConfig] = {}
    command_spacing_s: Annotated[float, Field(ge=0)] = 2.0
    command_timeout_s: Annotated[float, Field(gt=0)] = 25.0
    duplicate_wait_s: Annotated[float, Field(ge=0)] = 1.5
    clock_sync_interval_h: Annotated[float, Field(gt=0)] = 24.0
    use_checksum: bool = True
    remember_locks: bool = True


    def node(self, node_id: int) -> NodeConfig:
        """The settings of one node (defaults when the file says nothing about it)."""
        return self.nodes.get(node_id) or NodeConfig()



def build(config: Config, context: DriverContext) -> object:
    """Make the Z-Wave driver; without the `zwave` extra, a driver that reports the problem."""
    try:
        from drivers.zwave.driver import ZWaveDriver
    except ImportError:
        return UnavailableDriver(config.name, "zwave", "zwave-js-server-python", "zwave")
    return ZWaveDriver(config, context.clock, context.state_dir)
