"""Zigbee door locks through Zigbee2MQTT's MQTT API (`kind: zigbee2mqtt`; needs the `mqtt`
extra)."""
