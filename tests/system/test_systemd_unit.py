"""systemd/lockbridge.service: what the daemon relies on, `systemd-analyze verify`, and an
offline security exposure of 2.0 or lower."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bridge.cli import EXIT_CONFIG
from bridge.startup import EXIT_STARTUP
from tests.paths import ROOT

UNIT = ROOT / "systemd" / "lockbridge.service"
EXEC = "/opt/lockbridge/venv/bin/lockbridge"
MAX_EXPOSURE = 2.0

needs_tool = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed (Debian package systemd)")


def settings() -> dict[str, list[str]]:
    """Every `Key=value` of the unit, values in file order (keys repeat)."""
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def test_unit_keeps_the_daemon_contract() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(UNIT.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]
    s = settings()
    assert s["Type"] == ["notify"]
    assert s["ExecStart"] == [f"{EXEC} run -c /etc/lockbridge/config.yaml"]
    assert s["Restart"] == ["always"]
    assert s["StartLimitIntervalSec"] == ["0"]
    assert s["RestartPreventExitStatus"] == [f"{EXIT_CONFIG} {EXIT_STARTUP}"]
    assert s["WatchdogSec"] and s["StateDirectory"] == ["lockbridge"]
    assert s["UMask"] == ["0077"]
    assert s["CapabilityBoundingSet"] == [""]
    assert s["DevicePolicy"] == ["closed"]
    assert all(re.fullmatch(r"char-tty(USB|ACM|AMA|S) rw", d) for d in s["DeviceAllow"])
    assert s["SupplementaryGroups"] == ["dialout"]


@needs_tool
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # A root with systemd's own units, the unit, and a stand-in for the installed entry point.
    root = tmp_path / "root"
    system_units = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
                        if p.is_dir())
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system")
    entry = root / EXEC.lstrip("/")
    entry.parent.mkdir(parents=True)
    entry.write_text("#!/bin/sh\n")
    entry.chmod(0o755)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", UNIT.name],
        capture_output=True, text=True, timeout=60,
    )
    # Unknown keys and bad values are only warnings: any output is a failure.
    assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), \
        result.stdout + result.stderr


@needs_tool
def test_offline_security_exposure() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager",
         f"--threshold={int(MAX_EXPOSURE * 10)}", str(UNIT)],
        capture_output=True, text=True, timeout=60,
    )
    match = re.search(r"Overall exposure level for lockbridge\.service: (\d+\.\d+)",
                      result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stderr
