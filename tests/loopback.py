"""Loopback addresses for peers that need an address of their own on a fixed port (python-miio
always talks to UDP 54321): "127.0.0." in a plain run, and a /24 of its own for each
pytest-xdist worker, so two workers' fakes never take the same address."""

import os

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# gw0 -> 127.10.0., gw1 -> 127.11.0., ...: all on the loopback interface (127.0.0.0/8).
LOOPBACK = f"127.{10 + int(_WORKER[2:])}.0." if _WORKER.startswith("gw") else "127.0.0."
