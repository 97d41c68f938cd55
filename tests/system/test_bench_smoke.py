"""Every benchmark scenario runs at a tiny size, so the benchmarks cannot rot. No timing is
asserted: the numbers are reported by `python -m bench.run`, never judged here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.paths import ROOT

SCENARIOS = ("cold_converge", "scale", "steady_state", "schedule_churn", "startup",
             "api_latency", "upstream_replay", "zigbee_radio")


def test_every_scenario_runs_at_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "bench.run", "--tiny", "--out", str(out),
                          "--only", *SCENARIOS], cwd=ROOT, check=True, capture_output=True,
                         text=True, timeout=300)
    results = json.loads(out.read_text())["results"]
    assert set(results) == set(SCENARIOS)
    assert results["cold_converge"]["codes"] == 12
    assert len(results["scale"]["points"]) == 2
    assert results["schedule_churn"]["decisions"] > 0
    assert results["api_latency"]["requests"] == 20
    assert results["startup"]["wall_s"] > 0
    assert results["upstream_replay"]["events"] == 200
    assert results["zigbee_radio"]["frames_per_code_converged"] > 0
    # The table names every scenario.
    for title in ("cold converge", "scale", "steady state", "schedule churn", "startup",
                  "API latency", "upstream replay", "zigbee radio"):
        assert title in run.stdout
