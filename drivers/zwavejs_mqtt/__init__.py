"""Z-Wave locks through Z-Wave JS UI's MQTT gateway API (`kind: zwavejs_mqtt`; needs the `mqtt`
extra)."""
