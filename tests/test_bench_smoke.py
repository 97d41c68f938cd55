"""Every benchmark scenario runs at a tiny size, so the benchmarks cannot rot. No timing is
asserted: the numbers are reported by `python -m bench.run`, never judged here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_scenario_runs_at_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "bench.run", "--tiny", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    results = json.loads(out.read_text())["results"]
    assert set(results) >= {"cold_converge", "scale", "steady_state", "schedule_churn",
                            "startup"}
    assert results["cold_converge"]["codes"] == 12
    assert len(results["scale"]["points"]) == 2
    assert results["schedule_churn"]["decisions"] > 0
