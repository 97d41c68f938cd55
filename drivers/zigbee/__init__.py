"""Zigbee door locks straight from a USB radio through zigpy (the `zigbee` extra).

Only `config` is imported when a configuration is checked; `driver` (and with it zigpy and the
radio library) is imported when the driver is built.
"""
