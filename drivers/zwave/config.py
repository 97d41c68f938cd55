"""Settings of the Z-Wave driver, and building it; imports nothing heavy.

zwave-js-server-python (the `zwave` extra) is imported only in `build`, so a gateway without
the extra can still check a configuration that mentions Z-Wave, and only this driver is lost.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.drivercontext import DriverContext
from bridge.hosts import is_loopback
from bridge.zones import TimeZoneName
from drivers.unavailable import UnavailableDriver


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
    ignore: bool = False



class Config(BaseModel):
    """The Z-Wave driver's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["zwave"]
    name: str = "zwave"
    property: str | None = None
    # zwave-js-server has no authentication: it must listen on loopback only.
    url: str = "ws://127.0.0.1:3000"
    allow_remote: bool = False
    # Default zone of the locks' clocks (native schedules); a node's own setting wins.
    time_zone: TimeZoneName | None = None
    nodes: dict[Annotated[int, Field(ge=2, le=4000)], NodeConfig] = {}
    command_spacing_s: Annotated[float, Field(ge=0)] = 2.0
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    start_timeout_s: Annotated[float, Field(ge=0)] = 30.0
    command_timeout_s: Annotated[float, Field(gt=0)] = 25.0
    probe_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    duplicate_wait_s: Annotated[float, Field(ge=0)] = 1.5
    reconnect_min_s: Annotated[float, Field(gt=0)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0)] = 60.0
    clock_sync_interval_h: Annotated[float, Field(gt=0)] = 24.0
    use_checksum: bool = True
    remember_locks: bool = True


    @field_validator("url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError("url must look like ws://127.0.0.1:3000")
        try:
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError:
            raise ValueError("url has an invalid port") from None
        return value

    @model_validator(mode="after")
    def _checks(self) -> Config:
        host = urlsplit(self.url).hostname or ""
        if not self.allow_remote and not is_loopback(host):
            raise ValueError(f"zwave-js-server has no authentication, so lockbridge only talks "
                             f"to it on loopback; {host!r} is not (set allow_remote: true only "
                             "behind a private, trusted link)")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s is larger than reconnect_max_s")
        return self

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
