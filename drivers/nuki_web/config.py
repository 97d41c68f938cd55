"""Settings of the Nuki Web API driver, and building it.

Nuki Web is a vendor cloud: the bridge reaches it over HTTPS with an API token made in the Nuki
Web console, and Nuki's servers reach the locks through each lock's bridge or Wi-Fi. The token is
a secret: `token` only as ${ENV_VAR}, or `token_file`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.drivercontext import DriverContext
from bridge.zones import TimeZoneName
from drivers.cloud_config import TokenSettings, require_https


class SmartlockConfig(BaseModel):
    """Settings for one smart lock, by its Nuki smartlockId."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    time_zone: TimeZoneName | None = None
    ignore: bool = False


class Config(TokenSettings):
    """The Nuki Web driver's settings."""

    kind: Literal["nuki_web"]
    name: str = "nuki"
    property: str | None = None
    url: str = "https://api.nuki.io"
    # Nuki stores a code's validity in UTC. The locks' zone, reported to the engine, which picks
    # the zone by its one rule (bridge.zones.lock_zone) and sends it with every window.
    time_zone: TimeZoneName | None = None
    smartlocks: dict[Annotated[int, Field(ge=1)], SmartlockConfig] = {}
    # How often the account's locks and their online state are fetched.
    poll_interval_s: Annotated[float, Field(gt=0)] = 60.0
    request_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    # Nuki applies a new code asynchronously (it must reach the lock): how long to look for it.
    create_wait_s: Annotated[float, Field(gt=0)] = 90.0
    create_poll_s: Annotated[float, Field(gt=0)] = 3.0
    # A changed code may still show its old values this long after the change was accepted.
    confirmation_window_s: Annotated[float, Field(ge=0)] = 60.0
    command_spacing_s: Annotated[float, Field(ge=0)] = 1.0

    @model_validator(mode="after")
    def _checks(self) -> Config:
        require_https(self.url, malformed="url must look like https://api.nuki.io",
                      carried="the API token")
        return self

    def smartlock(self, smartlock_id: int) -> SmartlockConfig:
        """The settings of one lock (defaults when the file says nothing about it)."""
        return self.smartlocks.get(smartlock_id) or SmartlockConfig()



def build(config: Config, context: DriverContext) -> object:
    """Make the Nuki Web driver (it needs only aiohttp, which the core has)."""
    from drivers.nuki_web.driver import NukiWebDriver

    return NukiWebDriver(config, context.clock)
