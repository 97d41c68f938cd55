"""The API does not import the customer portal unless it is enabled (a smaller, faster start
for the bridges that do not serve it)."""

from __future__ import annotations

import subprocess
import sys

from tests.paths import ROOT


def test_the_api_server_leaves_the_portal_unimported() -> None:
    script = ("import sys, bridge.api.server; "
              "print(sorted(m for m in sys.modules if m.startswith('bridge.portal.')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=ROOT, timeout=60)
    assert "bridge.portal.web" not in out.stdout
