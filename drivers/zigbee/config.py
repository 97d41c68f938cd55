"""Settings of the zigpy driver, and building it; imports nothing heavy.

zigpy and the radio libraries (the `zigbee` extra and one radio extra) are imported only in
`build` and when the radio starts, so a gateway without them can still check a configuration.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.drivercontext import DriverContext
from bridge.zones import TimeZoneName
from drivers.unavailable import UnavailableDriver

# Radio type -> zigpy's ControllerApplication of the radio library that drives it, and the pip
# package (a lockbridge extra) that brings it.
RADIOS: dict[str, tuple[str, str]] = {
    "znp": ("zigpy_znp.zigbee.application:ControllerApplication", "zigpy-znp"),
    "ezsp": ("bellows.zigbee.application:ControllerApplication", "bellows"),
    "deconz": ("zigpy_deconz.zigbee.application:ControllerApplication", "zigpy-deconz"),
    "zigate": ("zigpy_zigate.zigbee.application:ControllerApplication", "zigpy-zigate"),
    "xbee": ("zigpy_xbee.zigbee.application:ControllerApplication", "zigpy-xbee"),
}
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class RadioConfig(BaseModel):
    """The USB stick (or network-attached coordinator) the Zigbee network runs on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A known radio type, or "module:Class" of another zigpy radio library's application.
    type: str
    path: str
    baudrate: Annotated[int, Field(gt=0)] | None = None
    flow_control: Literal["hardware", "software"] | None = None

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in RADIOS and not _IMPORT_PATH.match(value):
            raise ValueError(f"unknown radio type {value!r}; use one of "
                             f"{', '.join(sorted(RADIOS))} or module:Class of a zigpy radio "
                             "library")
        return value

    def application_path(self) -> str:
        """module:Class of the radio library's ControllerApplication."""
        return RADIOS[self.type][0] if self.type in RADIOS else self.type


class NetworkConfig(BaseModel):
    """The Zigbee network to form or join; the network key only from a file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Annotated[int, Field(ge=11, le=26)] | None = None
    pan_id: Annotated[int, Field(ge=1, le=0xFFFE)] | None = None
    # 16 bytes as 32 hex digits (colons allowed), first line of the file.
    key_file: Path | None = None


class LockConfig(BaseModel):
    """Settings for one lock, by IEEE address."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    time_zone: TimeZoneName | None = None
    # The first user id lockbridge may use: many locks keep user 0 for a master code.
    first_slot: Annotated[int, Field(ge=0, le=65534)] | None = None
    # Used only when the lock does not say how many PIN users it holds.
    slot_count: Annotated[int, Field(ge=1, le=65535)] | None = None
    reserved_slots: list[Annotated[int, Field(ge=0, le=65535)]] = []
    fixed_length: Annotated[int, Field(ge=1, le=12)] | None = None
    no_leading_zero: bool = False
    native_schedules: bool = True
    ignore: bool = False


class Config(BaseModel):
    """The zigpy driver's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["zigbee"]
    name: str = "zigbee"
    property: str | None = None
    radio: RadioConfig
    # zigpy's own device database, under state_dir unless absolute.
    database: Path = Path("zigbee.db")
    network: NetworkConfig = NetworkConfig()
    # Default zone of the locks' clocks (year-day schedules); a lock's own setting wins.
    time_zone: TimeZoneName | None = None
    first_slot: Annotated[int, Field(ge=0, le=65534)] = 1
    locks: dict[str, LockConfig] = {}
    command_spacing_s: Annotated[float, Field(ge=0)] = 1.0
    # Sleepy locks answer after their parent's poll: replies can take many seconds.
    command_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    probe_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    reconnect_min_s: Annotated[float, Field(gt=0)] = 2.0
    reconnect_max_s: Annotated[float, Field(gt=0)] = 120.0

    @field_validator("locks")
    @classmethod
    def _ieee_keys(cls, value: dict[str, LockConfig]) -> dict[str, LockConfig]:
        for key in value:
            if not re.fullmatch(r"([0-9a-fA-F]{2}:){7}[0-9a-fA-F]{2}", key):
                raise ValueError(f"lock key {key!r} is not an IEEE address like "
                                 "00:0d:6f:00:0a:90:69:e7")
        return {key.lower(): cfg for key, cfg in value.items()}

    @model_validator(mode="after")
    def _checks(self) -> Config:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s is larger than reconnect_max_s")
        return self

    def lock(self, ieee: str) -> LockConfig:
        """One lock's settings (defaults when the file says nothing about it)."""
        return self.locks.get(ieee.lower()) or LockConfig()


def build(config: Config, context: DriverContext) -> object:
    """Make the zigpy driver; without the `zigbee` extra, a driver that reports the problem."""
    try:
        from drivers.zigbee.driver import ZigbeeDriver
    except ImportError:
        return UnavailableDriver(config.name, "zigbee", "zigpy", "zigbee")
    return ZigbeeDriver(config, context.clock, context.state_dir)
