"""Settings of the SmartThings driver, and building it.

SmartThings is a vendor cloud: the bridge calls its REST API with an OAuth access token of an
"OAuth-In" app the user authorized once. Access tokens live a day and every refresh replaces the
refresh token too, so the driver keeps the newest refresh token in its state directory
(`smartthings-<name>.json`). The client secret (a file, or ${ENV_VAR}) and the first refresh
token (a file) never sit in the configuration file in clear.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.drivercontext import DriverContext
from drivers.cloud_config import ClientSecretSettings, require_https


class LockConfig(BaseModel):
    """Settings for one lock, by its SmartThings deviceId."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    ignore: bool = False


class Config(ClientSecretSettings):
    """The SmartThings driver's settings."""

    kind: Literal["smartthings"]
    name: str = "smartthings"
    property: str | None = None
    # The API (…/v1 is added) and the OAuth token endpoint (default: <url>/v1/oauth/token).
    url: str = "https://api.smartthings.com"
    token_url: str | None = None
    # The refresh token of the first authorization. Read again when SmartThings refuses the
    # one the driver keeps: writing a new one here reconnects the account.
    refresh_token_file: Path
    # Only the locks of these locations (default: every location the token sees).
    location_ids: tuple[str, ...] = ()
    locks: dict[str, LockConfig] = {}
    # How often the account's locks, their health and their codes are read.
    poll_interval_s: Annotated[float, Field(gt=0)] = 30.0
    request_timeout_s: Annotated[float, Field(gt=0)] = 15.0
    # A command is only accepted by the cloud; the lock's outcome (codeChanged) is looked for
    # this long, every confirm_poll_s, and a setCode is sent again this many times.
    confirm_wait_s: Annotated[float, Field(gt=0)] = 40.0
    confirm_poll_s: Annotated[float, Field(gt=0)] = 3.0
    set_retries: Annotated[int, Field(ge=0, le=5)] = 2
    # The account's request budget: at most this many calls a second on average, a second's
    # worth at once (SmartThings publishes no device API rate).
    max_calls_per_s: Annotated[float, Field(gt=0)] = 2.0
    # Refused for the rate (429): pause the stated wait but at least this long, doubling while
    # 429s follow, up to the cap.
    rate_limit_backoff_s: Annotated[float, Field(gt=0)] = 10.0
    rate_limit_backoff_cap_s: Annotated[float, Field(gt=0)] = 300.0
    # The access token is refreshed this long before it expires (it lives about a day).
    refresh_margin_s: Annotated[float, Field(gt=0)] = 3600.0
    name_max_length: Annotated[int, Field(ge=4, le=64)] = 20
    command_spacing_s: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _checks(self) -> Config:
        for url in (self.url, self.token_url):
            if url is not None:
                require_https(url, carried="tokens", malformed="url and token_url must look "
                              "like https://api.smartthings.com")
        return self

    def lock(self, device_id: str) -> LockConfig:
        """The settings of one lock (defaults when the file says nothing about it)."""
        return self.locks.get(device_id) or LockConfig()

    def oauth_url(self) -> str:
        return self.token_url or f"{self.url.rstrip('/')}/v1/oauth/token"


def build(config: Config, context: DriverContext) -> object:
    """Make the SmartThings driver (it needs only aiohttp, which the core has)."""
    from drivers.smartthings.driver import SmartThingsDriver

    return SmartThingsDriver(config, context.clock,
                             context.state_dir / f"smartthings-{config.name}.json")
