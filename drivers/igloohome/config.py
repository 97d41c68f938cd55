"""Settings of the Igloohome (iglooaccess) driver, and building it.

Igloohome is a vendor cloud: the bridge logs in with an iglooaccess client id and secret (OAuth
client credentials) and asks the cloud for algoPINs, which the locks compute themselves, or,
for a lock linked to an igloohome Bridge, has the bridge put a custom PIN on it. The client
secret is a secret: only as ${ENV_VAR} or from a file.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.drivercontext import DriverContext
from bridge.zones import TimeZoneName
from drivers.cloud_config import ClientSecretSettings, require_https


class LockConfig(BaseModel):
    """Settings for one lock, by its Igloohome deviceId."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    time_zone: TimeZoneName | None = None
    ignore: bool = False
    # A lock linked to a bridge takes custom PINs through it; `algopin` makes it use algoPINs
    # anyway (the guest gets a PIN the lock computes, nothing goes through the bridge).
    pins: Literal["auto", "algopin"] = "auto"


class Config(ClientSecretSettings):
    """The Igloohome driver's settings."""

    kind: Literal["igloohome"]
    name: str = "igloohome"
    property: str | None = None
    # Igloohome's hosts: the token endpoint and the API (one URL for both in tests).
    auth_url: str = "https://auth.igloohome.co"
    url: str = "https://api.igloodeveloper.co"
    # Igloohome gives no time zone of a lock; algoPIN windows are sent with this zone's offset
    # unless a lock names its own (the engine's rule picks the zone and sends it with windows).
    time_zone: TimeZoneName | None = None
    locks: dict[str, LockConfig] = {}
    # How often the account's devices are listed.
    poll_interval_s: Annotated[float, Field(gt=0)] = 60.0
    # Per HTTP request to the cloud.
    request_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    # A bridge job is asked about every job_poll_s, for at most job_timeout_s (clients poll
    # every 2.5 s for up to 45 s).
    job_poll_s: Annotated[float, Field(gt=0)] = 2.5
    job_timeout_s: Annotated[float, Field(gt=0)] = 45.0
    # A bridge that refused a job for its full queue is asked again after this, doubling, this
    # many times within the command.
    busy_retry_s: Annotated[float, Field(gt=0)] = 5.0
    busy_retries: Annotated[int, Field(ge=0, le=10)] = 2
    # A lock whose bridge said it is offline counts as offline this long, then is tried again.
    bridge_offline_hold_s: Annotated[float, Field(ge=0)] = 300.0
    # Calls leave at most this many a second on average (Igloohome publishes no rate).
    max_calls_per_s: Annotated[float, Field(gt=0)] = 5.0
    # A 429 without Retry-After pauses calls this long, doubling to the cap.
    rate_limit_backoff_s: Annotated[float, Field(gt=0)] = 5.0
    rate_limit_backoff_cap_s: Annotated[float, Field(gt=0)] = 300.0
    # A login Igloohome refused is not sent again with the same secret before this.
    refused_retry_s: Annotated[float, Field(gt=0)] = 900.0
    command_spacing_s: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _checks(self) -> Config:
        for field, url in (("auth_url", self.auth_url), ("url", self.url)):
            require_https(url, malformed=f"{field} must look like https://api.igloodeveloper.co",
                          carried=f"{field}: the client secret and tokens")
        return self

    def lock(self, device_id: str) -> LockConfig:
        """The settings of one lock (defaults when the file says nothing about it)."""
        return self.locks.get(device_id) or LockConfig()


def build(config: Config, context: DriverContext) -> object:
    """Make the Igloohome driver (it needs only aiohttp, which the core has)."""
    from drivers.igloohome.driver import IgloohomeDriver

    return IgloohomeDriver(config, context.clock,
                           context.state_dir / f"igloohome-{config.name}.json")
