"""Z-Wave locks through a zwave-js-server websocket (the `zwave` extra).

Only `config` is imported when a configuration is checked; `driver` (and with it
zwave-js-server-python) is imported when the driver is built.
"""
