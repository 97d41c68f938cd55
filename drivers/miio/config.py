"""Settings of the miIO driver, and building it; imports nothing heavy.

python-miio (the `miio` extra) is imported only in `build`, so a gateway without it can still
check a configuration that mentions these locks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.drivercontext import DriverContext
from bridge.zones import TimeZoneName
from drivers.unavailable import UnavailableDriver

# An Aqara sub-device id: "lumi." and hex digits, 14 in every published one (python-miio#728,
# XiaomiGateway3#143); a few more or fewer are let through.
SUB_DEVICE_ID = r"^lumi\.[0-9a-f]{6,16}$"


def _host_without_port(value: str) -> str:
    if ":" in value or "/" in value:
        raise ValueError("host is an IP address or name without a port (miIO always uses "
                         "UDP port 54321)")
    return value


class LockConfig(BaseModel):
    """One lock on the LAN: its address, its token (from a file) and its MiOT model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    name: str | None = None
    host: str
    # The 32-hex-digit miIO token, first line of the file; never in the YAML.
    token_file: Path
    model: str
    time_zone: TimeZoneName | None = None

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from drivers.miio.models import MODELS

        if value not in MODELS:
            raise ValueError(f"no published MiOT lock spec is known for {value!r}; supported: "
                             f"{', '.join(sorted(MODELS))}")
        return value

    @field_validator("host")
    @classmethod
    def _no_port(cls, value: str) -> str:
        return _host_without_port(value)

    @field_validator("id")
    @classmethod
    def _not_a_sub_device_id(cls, value: str) -> str:
        # A gateway's locks are known by their sub-device ids; a Wi-Fi lock may not take one.
        if value.startswith("lumi."):
            raise ValueError("ids starting with 'lumi.' are the ids of Aqara gateway locks")
        return value


class GatewayConfig(BaseModel):
    """An Aqara/Xiaomi Zigbee gateway: every Aqara lock paired with it is watched."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    host: str
    # The gateway's 32-hex-digit miIO token, first line of the file; never in the YAML.
    token_file: Path
    # The two models whose sub-devices python-miio can list over miIO.
    model: Literal["lumi.gateway.v3", "lumi.gateway.mgl03"]
    # Display names of its locks, by sub-device id.
    names: dict[Annotated[str, Field(pattern=SUB_DEVICE_ID)], str] = {}
    time_zone: TimeZoneName | None = None

    @field_validator("host")
    @classmethod
    def _no_port(cls, value: str) -> str:
        return _host_without_port(value)


class Config(BaseModel):
    """The miIO driver's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["miio"]
    name: str = "miio"
    property: str | None = None
    locks: list[LockConfig] = []
    gateways: list[GatewayConfig] = []
    # How often each lock (each gateway) is read (python-miio has no push locally).
    poll_interval_s: Annotated[float, Field(ge=1)] = 30.0
    timeout_s: Annotated[float, Field(gt=0)] = 5.0

    @field_validator("locks")
    @classmethod
    def _unique(cls, value: list[LockConfig]) -> list[LockConfig]:
        ids = [lock.id for lock in value]
        if len(ids) != len(set(ids)):
            raise ValueError("lock ids must be unique")
        return value

    @field_validator("gateways")
    @classmethod
    def _unique_gateways(cls, value: list[GatewayConfig]) -> list[GatewayConfig]:
        ids = [gateway.id for gateway in value]
        if len(ids) != len(set(ids)):
            raise ValueError("gateway ids must be unique")
        return value

    @model_validator(mode="after")
    def _something_to_watch(self) -> Config:
        if not self.locks and not self.gateways:
            raise ValueError("name at least one lock or one gateway")
        return self


def build(config: Config, context: DriverContext) -> object:
    """Make the miIO driver; without the `miio` extra, a driver that reports the problem."""
    try:
        from drivers.miio.driver import MiioDriver
    except ImportError:
        return UnavailableDriver(config.name, "miio", "python-miio", "miio")
    return MiioDriver(config, context.clock, context.state_dir / f"miio-{config.name}.json")
