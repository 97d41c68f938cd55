"""Settings of the Zigbee2MQTT driver, and building it.

Importing this module needs nothing beyond the core, so a configuration validates without the
`mqtt` extra; only `build` needs aiomqtt (and says so when it is missing).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from bridge.driver import LockDriver
from bridge.drivercontext import DriverContext
from bridge.zones import TimeZoneName
from drivers.mqtt.config import MqttDriverSettings, PinLengthSettings
from drivers.unavailable import UnavailableDriver


class LockConfig(PinLengthSettings):
    """One lock, by its Zigbee2MQTT friendly name; every other key overrides discovery."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    friendly_name: Annotated[str, Field(min_length=1, pattern=r"^[^#+]+$")]
    name: str | None = None
    slot_count: Annotated[int, Field(ge=1, le=1000)] | None = None
    reserved_slots: list[Annotated[int, Field(ge=0)]] = []
    expose_pin: bool | None = None
    time_zone: TimeZoneName | None = None
    # Write into a user that has given no answer since lockbridge started (its content
    # unknown); off, such a user is read first and never overwritten blind.
    write_unread_users: bool = False


class Config(MqttDriverSettings):
    """The Zigbee2MQTT driver's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["zigbee2mqtt"]
    name: str = "zigbee2mqtt"
    property: str | None = None
    base_topic: Annotated[str, Field(min_length=1, pattern=r"^[^#+]+$")] = "zigbee2mqtt"
    # Manage every device that exposes pin_code, not only those listed under locks.
    discover: bool = True
    locks: list[LockConfig] = []
    answer_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    confirmation_window_s: Annotated[float, Field(ge=0, le=3600)] = 60.0

    @model_validator(mode="after")
    def _unique(self) -> Config:
        names = [lock.friendly_name for lock in self.locks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"locks listed twice: {', '.join(dupes)}")
        return self


def build(config: Config, context: DriverContext) -> LockDriver:
    """Make the driver and its broker link; without aiomqtt, a stand-in that says so."""
    try:
        from drivers.mqtt.link import MqttLink
        from drivers.zigbee2mqtt.driver import LockOptions, Options, Zigbee2MqttDriver
    except ImportError:
        return UnavailableDriver(config.name, "zigbee2mqtt", "aiomqtt", "mqtt")
    options = Options(
        base_topic=config.base_topic, discover=config.discover,
        locks=tuple(LockOptions(
            friendly_name=lock.friendly_name, display_name=lock.name,
            slot_count=lock.slot_count, reserved_slots=tuple(lock.reserved_slots),
            expose_pin=lock.expose_pin, min_length=lock.min_length, max_length=lock.max_length,
            time_zone=lock.time_zone, write_unread_users=lock.write_unread_users)
            for lock in config.locks),
        **config.base_options(context.state_dir, "zigbee2mqtt"))
    link = MqttLink(config.name, config.broker, context.clock)
    return Zigbee2MqttDriver(config.name, options, context.clock, link)
