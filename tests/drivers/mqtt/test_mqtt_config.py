"""The MQTT drivers' settings in the YAML file: validated strictly, secrets never inline."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.clock import FakeClock
from bridge.config import ConfigError, load_config
from bridge.drivercontext import DriverContext
from drivers import registry
from drivers.zigbee2mqtt.driver import Zigbee2MqttDriver
from drivers.zwavejs_mqtt.driver import ZwaveJsMqttDriver

CONFIG = """\
state_dir: ./state
drivers:
  - kind: zigbee2mqtt
    name: zigbee
    base_topic: z2m
    broker:
      host: 127.0.0.1
      port: 1883
      username: lockbridge
      password: ${LB_TEST_MQTT_PASSWORD}
      tls:
        ca_file: /etc/ssl/certs/ca-certificates.crt
    locks:
      - friendly_name: front door
        slot_count: 30
        reserved_slots: [0]
  - kind: zwavejs_mqtt
    name: zwave
    prefix: zwave
    gateway_name: home
    broker:
      username: lockbridge
      password_file: /run/secrets/mqtt
    locks:
      - node_id: 5
        id: back
        name: Back door
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "lockbridge.yaml"
    path.write_text(text)
    return load_config(path)


def test_both_kinds_are_registered() -> None:
    assert {"zigbee2mqtt", "zwavejs_mqtt"} <= set(registry.kinds())


def test_a_full_config_loads_and_builds(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LB_TEST_MQTT_PASSWORD", "s3cret")
    loaded = load(tmp_path, CONFIG)
    z2m, zwave = loaded.drivers  # type: ignore[attr-defined]
    assert z2m.broker.password == "s3cret" and z2m.broker.tls.ca_file is not None
    assert zwave.broker.password_file == Path("/run/secrets/mqtt")
    context = DriverContext(clock=FakeClock(), state_dir=tmp_path)
    built = [registry.module(d.kind).build(d, context) for d in loaded.drivers]  # type: ignore[attr-defined]
    assert isinstance(built[0], Zigbee2MqttDriver) and built[0].name == "zigbee"
    assert isinstance(built[1], ZwaveJsMqttDriver) and built[1].name == "zwave"
    [back] = built[1].devices()
    assert (back.external_id, back.display_name) == ("back", "Back door")
    assert back.capabilities.first_slot == 1
    [front] = built[0].devices()
    assert front.capabilities.first_slot == 0 and front.capabilities.reserved_slots == {0}


@pytest.mark.parametrize(("change", "where", "reason"), [
    (("password: ${LB_TEST_MQTT_PASSWORD}", "password: hunter2"),
     "drivers.0.broker.password", "secrets may not be written in the file"),
    (("base_topic: z2m", "base_topic: z2m\n    colour: blue"), "drivers.0.colour",
     "unknown key"),
    (("      port: 1883", "      port: 99999"), "drivers.0.broker.port", "less than or equal"),
    (("      - node_id: 5", "      - node_id: 0"), "drivers.1.locks.0.node_id",
     "greater than or equal to 1"),
    (("      password_file: /run/secrets/mqtt", "      password_file: /run/secrets/mqtt\n"
      "      password: ${LB_TEST_MQTT_PASSWORD}"), "drivers.1.broker",
     "password or password_file, not both"),
    (("base_topic: z2m", "base_topic: z2m/#"), "drivers.0.base_topic", "pattern"),
])
def test_mistakes_are_reported_with_their_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                change: tuple[str, str], where: str,
                                                reason: str) -> None:
    monkeypatch.setenv("LB_TEST_MQTT_PASSWORD", "s3cret")
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, CONFIG.replace(*change))
    problems = [(p.path, p.reason) for p in raised.value.problems]
    assert any(path == where and reason in why for path, why in problems), problems


def test_password_file_is_read_at_each_connect(tmp_path: Path) -> None:
    from drivers.mqtt.config import BrokerConfig, PasswordUnavailable

    secret = tmp_path / "mqtt.secret"
    config = BrokerConfig(username="u", password_file=secret)
    with pytest.raises(PasswordUnavailable):
        config.read_password()
    secret.write_text("first\n")
    assert config.read_password() == "first"
    secret.write_text("rotated\n")
    assert config.read_password() == "rotated"
