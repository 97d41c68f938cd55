"""Building the MQTT drivers and their fakes against a test broker, with test-sized timeouts."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.clock import Clock
from bridge.drivercontext import DriverContext
from drivers.zigbee2mqtt import config as z2m_config
from drivers.zigbee2mqtt.driver import Zigbee2MqttDriver
from drivers.zwavejs_mqtt import config as zui_config
from drivers.zwavejs_mqtt.driver import ZwaveJsMqttDriver
from tests.fakes.zigbee2mqtt import FakeZigbee2MQTT, FakeZigbeeLock
from tests.fakes.zwavejs_ui import FakeNode, FakeZwaveJsUI

if TYPE_CHECKING:  # imported by pytest as a plugin; importing it here first would bypass that
    from tests.mosquitto import Mosquitto

_ids = itertools.count(1)


def unique(prefix: str) -> str:
    """A topic prefix no other test on the shared broker uses."""
    return f"{prefix}{next(_ids)}"


def broker_settings(broker: Mosquitto, **extra: Any) -> dict[str, Any]:
    """Broker settings with quick reconnects (on the fake clock) and short real timeouts."""
    return {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.4, "connect_timeout_s": 2.0, "publish_timeout_s": 2.0,
            **extra}


def make_z2m(broker: Mosquitto, clock: Clock, tmp_path: Path, base: str, *,
             name: str = "z2m", **settings: Any) -> Zigbee2MqttDriver:
    """A Zigbee2MQTT driver built from its config model, as the daemon builds it."""
    doc: dict[str, Any] = {"kind": "zigbee2mqtt", "name": name, "base_topic": base,
                           "broker": broker_settings(broker), "answer_timeout_s": 2.0,
                           "startup_wait_s": 3.0, "command_spacing_s": 0.0, **settings}
    config = z2m_config.Config.model_validate(doc)
    return z2m_config.build(config, DriverContext(clock=clock, state_dir=tmp_path))


def make_zui(broker: Mosquitto, clock: Clock, tmp_path: Path, prefix: str, gateway: str | None,
             locks: list[dict[str, Any]], *, name: str = "zwave",
             **settings: Any) -> ZwaveJsMqttDriver:
    """A Z-Wave JS UI MQTT driver built from its config model (`gateway` None: the default
    gateway name)."""
    doc: dict[str, Any] = {"kind": "zwavejs_mqtt", "name": name, "prefix": prefix,
                           "broker": broker_settings(broker),
                           "locks": locks, "answer_timeout_s": 2.0, "startup_wait_s": 3.0,
                           "command_spacing_s": 0.0, **settings}
    if gateway is not None:
        doc["gateway_name"] = gateway
    config = zui_config.Config.model_validate(doc)
    return zui_config.build(config, DriverContext(clock=clock, state_dir=tmp_path))


@contextlib.asynccontextmanager
async def running_z2m(broker: Mosquitto, base: str, locks: list[FakeZigbeeLock],
                      **kwargs: Any) -> AsyncIterator[FakeZigbee2MQTT]:
    """A fake Zigbee2MQTT, connected, for the duration of the block."""
    fake = FakeZigbee2MQTT(broker.host, broker.port, base, locks, **kwargs)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@contextlib.asynccontextmanager
async def running_zui(broker: Mosquitto, prefix: str, gateway: str, nodes: list[FakeNode],
                      **kwargs: Any) -> AsyncIterator[FakeZwaveJsUI]:
    """A fake Z-Wave JS UI gateway, connected, for the duration of the block."""
    fake = FakeZwaveJsUI(broker.host, broker.port, prefix, gateway, nodes, **kwargs)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
