"""`lockbridge matter commission` when it cannot work: it says why and exits non-zero (the
commissioning itself runs against the real server in test_matter_contract.py)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.api_helpers import ROOT, lockbridge


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lockbridge("matter", "commission", "34970112332", "-c", str(config),
                                     *args),
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


def test_a_server_that_does_not_answer_is_named(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    url = f"ws://127.0.0.1:{_free_port()}/ws"
    config.write_text(f"state_dir: {tmp_path / 'state'}\ndrivers:\n"
                      f"  - {{kind: matter, url: '{url}', connect_timeout_s: 2}}\n")
    done = _run(config)
    assert done.returncode == 1
    assert f"cannot reach the Matter server at {url}" in done.stderr


def test_a_config_without_one_matter_driver_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\ndrivers:\n"
                      "  - {kind: matter, name: a}\n  - {kind: matter, name: b, "
                      "url: 'ws://127.0.0.1:5581/ws'}\n")
    done = _run(config)
    assert done.returncode == 2 and "--driver" in done.stderr
    done = _run(config, "--driver", "c")
    assert done.returncode == 2 and "0 matter drivers named 'c'" in done.stderr
