"""Settings of the Z-Wave JS UI MQTT driver, and building it.

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

_TOPIC_PART = r"^[^#+]+$"


class LockConfig(PinLengthSettings):
    """One lock node; every key but `node_id` overrides what `getNodes` reports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node_id: Annotated[int, Field(ge=1, le=4000)]
    # lockbridge's id for the lock (`devices:` and `codes:` refer to it); default `node<N>`.
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    name: str | None = None
    # The node's topic under the prefix, only for a layout lockbridge cannot derive; by default
    # it follows the gateway settings below and the node's name and location from getNodes.
    topic: Annotated[str, Field(min_length=1, pattern=_TOPIC_PART)] | None = None
    slot_count: Annotated[int, Field(ge=1, le=1000)] | None = None
    reserved_slots: list[Annotated[int, Field(ge=1)]] = []
    masks_pins: bool = False
    time_zone: TimeZoneName | None = None


class Config(MqttDriverSettings):
    """The Z-Wave JS UI MQTT driver's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["zwavejs_mqtt"]
    name: str = "zwavejs_mqtt"
    property: str | None = None
    # Z-Wave JS UI's MQTT settings: "Prefix" and "Name" (its client id is ZWAVE_GATEWAY-<name>).
    prefix: Annotated[str, Field(min_length=1, pattern=_TOPIC_PART)] = "zwave"
    gateway_name: Annotated[str, Field(min_length=1, pattern=r"^[^#+/]+$")] = "zwave-js-ui"
    # Z-Wave JS UI's Gateway settings, which shape the nodes' topics: "Topic type" (ValueID or
    # Named; Manual is not supported), "Use nodes name instead of numeric nodeIDs" and
    # "Ignore location". The defaults are the gateway's.
    topic_type: Literal["valueid", "named"] = "valueid"
    node_names: bool = True
    ignore_location: bool = False
    locks: list[LockConfig] = []
    answer_timeout_s: Annotated[float, Field(gt=0, le=300)] = 30.0
    confirmation_window_s: Annotated[float, Field(ge=0, le=3600)] = 10.0

    @model_validator(mode="after")
    def _unique(self) -> Config:
        for what, values in (("node ids", [str(lock.node_id) for lock in self.locks]),
                             ("lock ids", [_id(lock) for lock in self.locks])):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"{what} used twice: {', '.join(dupes)}")
        return self


def _id(lock: LockConfig) -> str:
    return lock.id or f"node{lock.node_id}"


def build(config: Config, context: DriverContext) -> LockDriver:
    """Make the driver and its broker link; without aiomqtt, a stand-in that says so."""
    try:
        from drivers.mqtt.link import MqttLink
        from drivers.zwavejs_mqtt.driver import LockOptions, Options, ZwaveJsMqttDriver
        from drivers.zwavejs_mqtt.mapping import TopicLayout, TopicType
    except ImportError:
        return UnavailableDriver(config.name, "zwavejs_mqtt", "aiomqtt", "mqtt")
    options = Options(
        prefix=config.prefix, gateway_name=config.gateway_name,
        layout=TopicLayout(TopicType(config.topic_type), node_names=config.node_names,
                           ignore_location=config.ignore_location),
        locks=tuple(LockOptions(
            node_id=lock.node_id, external_id=_id(lock),
            topic=lock.topic, display_name=lock.name,
            slot_count=lock.slot_count, reserved_slots=tuple(lock.reserved_slots),
            masks_pins=lock.masks_pins, min_length=lock.min_length, max_length=lock.max_length,
            time_zone=lock.time_zone) for lock in config.locks),
        **config.base_options(context.state_dir, "zwavejs_mqtt"))
    link = MqttLink(config.name, config.broker, context.clock)
    return ZwaveJsMqttDriver(config.name, options, context.clock, link)
