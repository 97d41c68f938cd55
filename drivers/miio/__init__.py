"""Xiaomi and Aqara locks on the local network through python-miio (the `miio` extra).

Only `config` is imported when a configuration is checked; `driver` (and with it python-miio)
is imported when the driver is built.
"""
