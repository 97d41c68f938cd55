"""Settings of the TTLock Open API driver, and building it.

TTLock is a vendor cloud: the bridge logs in over HTTPS with a developer application's client id
and secret and the TTLock *app* account that owns the locks, and TTLock's servers reach each
lock through its Wi-Fi gateway. The client secret and the app password are secrets: each only as
${ENV_VAR} or from a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.drivercontext import DriverContext
from bridge.zones import TimeZoneName
from drivers.cloud_config import ClientSecretSettings, require_https, require_one


class LockConfig(BaseModel):
    """Settings for one lock, by its TTLock lockId."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    time_zone: TimeZoneName | None = None
    ignore: bool = False


class Config(ClientSecretSettings):
    """The TTLock driver's settings."""

    kind: Literal["ttlock"]
    name: str = "ttlock"
    property: str | None = None
    url: str = "https://euapi.ttlock.com"
    # The config loader refuses a literal password, as the client_secret: ${ENV_VAR} or a file.
    # The TTLock app account that administers the locks (not the developer account).
    username: Annotated[str, Field(min_length=1)]
    password: str | None = Field(default=None, repr=False)
    password_file: Path | None = None
    # TTLock keeps windows as instants; the locks' zone, reported to the engine, which picks
    # the zone by its one rule (bridge.zones.lock_zone) and sends it with every window.
    time_zone: TimeZoneName | None = None
    locks: dict[Annotated[int, Field(ge=1)], LockConfig] = {}
    # How often the account's locks and gateways are fetched.
    poll_interval_s: Annotated[float, Field(gt=0)] = 60.0
    # Per HTTP request to the cloud; a gateway command waits for the lock, so it has its own.
    request_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    gateway_timeout_s: Annotated[float, Field(gt=0)] = 45.0
    # A busy gateway (-3003) is asked again after this, doubling, this many times.
    busy_retry_s: Annotated[float, Field(gt=0)] = 2.0
    busy_retries: Annotated[int, Field(ge=0, le=10)] = 4
    # Calls to the account leave at most this many a second on average, a second's worth at
    # once (TTLock publishes no rate).
    max_calls_per_s: Annotated[float, Field(gt=0)] = 5.0
    # Refused for the rate (30006) with no Retry-After: wait this long, doubling to the cap.
    rate_limit_backoff_s: Annotated[float, Field(gt=0)] = 5.0
    rate_limit_backoff_cap_s: Annotated[float, Field(gt=0)] = 300.0
    # The monthly quota is spent (30007): ask again this rarely.
    monthly_limit_backoff_s: Annotated[float, Field(gt=0)] = 3600.0
    # The access token is refreshed this long before it expires.
    refresh_margin_s: Annotated[float, Field(gt=0)] = 86_400.0
    # A login TTLock refused is not sent again with the same secrets before this (a changed
    # secret file is tried at once).
    refused_retry_s: Annotated[float, Field(gt=0)] = 900.0
    # TTLock keeps listing an unplugged gateway online for minutes (its heartbeat is 8
    # minutes): once a command found it offline, it counts as offline this long whatever the
    # list says.
    gateway_offline_hold_s: Annotated[float, Field(ge=0)] = 600.0
    confirmation_window_s: Annotated[float, Field(ge=0)] = 0.0
    command_spacing_s: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _checks(self) -> Config:
        require_one(self.password, self.password_file, "password")
        require_https(self.url, malformed="url must look like https://euapi.ttlock.com",
                      carried="the password and tokens")
        return self

    def lock(self, lock_id: int) -> LockConfig:
        """The settings of one lock (defaults when the file says nothing about it)."""
        return self.locks.get(lock_id) or LockConfig()


def build(config: Config, context: DriverContext) -> object:
    """Make the TTLock driver (it needs only aiohttp, which the core has)."""
    from drivers.ttlock.driver import TTLockDriver

    return TTLockDriver(config, context.clock)
