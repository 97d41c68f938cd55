"""What the broker-based drivers (Zigbee2MQTT, Z-Wave JS UI) share: the supervised MQTT link
(`drivers.mqtt.link`, needs the `mqtt` extra), broker settings (`drivers.mqtt.config`, which
imports nothing heavy, so a configuration validates without the extra) and small helpers."""
