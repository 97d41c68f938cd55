"""Settings of the Matter driver, and building it; imports nothing heavy."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.drivercontext import DriverContext
from bridge.hosts import is_loopback
from bridge.zones import TimeZoneName


class NodeConfig(BaseModel):
    """Settings for one Matter node, by node id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    # The lock's own wall-clock zone: year-day schedules are sent in its local time.
    time_zone: TimeZoneName | None = None
    # False: switch time-bound codes from the bridge even where the lock keeps schedules.
    native_schedules: bool = True
    ignore: bool = False


class Config(BaseModel):
    """The Matter driver's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["matter"]
    name: str = "matter"
    property: str | None = None
    # The Matter server has no authentication: it must listen on loopback only.
    url: str = "ws://127.0.0.1:5580/ws"
    allow_remote: bool = False
    # Default zone of the locks' clocks (year-day schedules); a node's own setting wins.
    time_zone: TimeZoneName | None = None
    nodes: dict[Annotated[int, Field(ge=1)], NodeConfig] = {}
    command_spacing_s: Annotated[float, Field(ge=0)] = 1.0
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    start_timeout_s: Annotated[float, Field(ge=0)] = 30.0
    # One command to a lock; Thread locks can take seconds.
    command_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    probe_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    # Timed interactions (SetUser, SetCredential, Clear*): Home Assistant uses 10 s for Thread.
    timed_request_timeout_ms: Annotated[int, Field(ge=100, le=60000)] = 10000
    # BUSY and TIMEOUT answers are retried this many times, this far apart.
    busy_retries: Annotated[int, Field(ge=0, le=10)] = 3
    busy_retry_s: Annotated[float, Field(ge=0)] = 1.0
    reconnect_min_s: Annotated[float, Field(gt=0)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0)] = 60.0

    @field_validator("url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError("url must look like ws://127.0.0.1:5580/ws")
        try:
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError:
            raise ValueError("url has an invalid port") from None
        return value

    @model_validator(mode="after")
    def _checks(self) -> Config:
        host = urlsplit(self.url).hostname or ""
        if not self.allow_remote and not is_loopback(host):
            raise ValueError(f"the Matter server has no authentication, so lockbridge only "
                             f"talks to it on loopback; {host!r} is not (set allow_remote: true "
                             "only behind a private, trusted link)")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s is larger than reconnect_max_s")
        return self

    def node(self, node_id: int) -> NodeConfig:
        """The settings of one node (defaults when the file says nothing about it)."""
        return self.nodes.get(node_id) or NodeConfig()


def build(config: Config, context: DriverContext) -> object:
    """Make the Matter driver (aiohttp only, which the core already needs)."""
    from drivers.matter.driver import MatterDriver

    return MatterDriver(config, context.clock, context.state_dir)
