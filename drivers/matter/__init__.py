"""Matter locks (Thread or Wi-Fi) through a Matter server's WebSocket (python-matter-server or its
matter.js successor, which serve the same API). Needs nothing beyond aiohttp.

Only `config` is imported when a configuration is checked; `driver` when the driver is built.
"""
