"""`lockbridge run` on a box that is wrong around it: one line with the fix, no traceback, and an
exit status the systemd unit does not restart on (docs/reliability.md)."""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.cli import EXIT_CONFIG
from bridge.startup import EXIT_STARTUP
from tests.paths import ROOT

UNIT = ROOT / "systemd" / "lockbridge.service"

CONFIG = """\
state_dir: {state}
api: {{enabled: false}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    locks: [{{id: front, name: Front door}}]
"""


def lockbridge(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge.cli", *args]


def run_cli(*args: str, limit_memory: bool = False) -> subprocess.CompletedProcess[str]:
    """One CLI command to its end; a daemon that starts after all is stopped by the timeout."""
    def cap_memory() -> None:
        # Room for the interpreter and its libraries, not for a document expanded a million
        # times: the refusal must come with bounded memory.
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(lockbridge(*args), capture_output=True, text=True, cwd=ROOT,
                          timeout=30, preexec_fn=cap_memory if limit_memory else None)


def assert_one_line(proc: subprocess.CompletedProcess[str], status: int, prefix: str,
                    *needles: str) -> None:
    """No traceback, the status, and exactly one line for the operator, holding `needles`."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, proc.stderr
    assert all(n in lines[0] for n in needles), lines[0]


def test_the_unit_does_not_restart_on_either_status() -> None:
    statuses = next(line.split("=", 1)[1].split() for line in UNIT.read_text().splitlines()
                    if line.startswith("RestartPreventExitStatus="))
    assert {str(EXIT_CONFIG), str(EXIT_STARTUP)} <= set(statuses)


# -- the state directory, the PIN key, the database ---------------------------------------------

def _state_is_a_file(state: Path) -> None:
    state.write_text("not a directory\n")


def _key_is_a_directory(state: Path) -> None:
    (state / "pin.key").mkdir(parents=True)


def _key_is_short(state: Path) -> None:
    state.mkdir()
    key = state / "pin.key"
    key.write_bytes(b"0123456789")
    key.chmod(0o600)


def _key_is_open_to_others(state: Path) -> None:
    state.mkdir()
    key = state / "pin.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)


def _key_is_open_to_the_group(state: Path) -> None:
    state.mkdir()
    key = state / "pin.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o640)


def _database_is_garbage(state: Path) -> None:
    state.mkdir()
    (state / "lockbridge.db").write_bytes(b"\x13not sqlite" * 500)


def _database_is_a_directory(state: Path) -> None:
    (state / "lockbridge.db").mkdir(parents=True)


def _database_is_newer(state: Path) -> None:
    state.mkdir()
    conn = sqlite3.connect(state / "lockbridge.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()


BAD_STATE: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "state_dir is a file": (_state_is_a_file, ("is not a directory", "point state_dir at")),
    "pin.key is a directory": (_key_is_a_directory, ("pin.key is not a file", "restore")),
    "pin.key is short": (_key_is_short, ("holds 10 bytes, not 32", "restore pin.key")),
    "pin.key readable by others": (_key_is_open_to_others, ("mode 0644", "chmod 600")),
    "pin.key readable by the group": (_key_is_open_to_the_group, ("mode 0640", "chmod 600")),
    "database is garbage": (_database_is_garbage, ("is not a lockbridge database",
                                                   "restore the database and pin.key")),
    "database is a directory": (_database_is_a_directory, ("cannot open the database",
                                                           "chown")),
    "database is newer": (_database_is_newer, ("schema version 99, newer than",
                                               "upgrade lockbridge")),
}


@pytest.mark.parametrize("case", list(BAD_STATE))
def test_a_bad_state_stops_start_with_one_line_and_no_restart(tmp_path: Path, case: str) -> None:
    make, needles = BAD_STATE[case]
    state = tmp_path / "state"
    make(state)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=state))
    assert_one_line(run_cli("run", "-c", str(config)), EXIT_STARTUP, "lockbridge: ", *needles)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes whatever the modes say")
def test_an_unwritable_state_dir_is_said_in_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o500)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=state))
    try:
        assert_one_line(run_cli("run", "-c", str(config)), EXIT_STARTUP, "lockbridge: ",
                        "not writable", "chown")
    finally:
        state.chmod(0o700)


def test_status_beside_a_newer_database_says_the_same(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _database_is_newer(state)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=state))
    assert_one_line(run_cli("status", "-c", str(config)), EXIT_STARTUP, "lockbridge: ",
                    "upgrade lockbridge")


# -- the configuration file ----------------------------------------------------------------------

BILLION_LAUGHS = "\n".join(
    ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]) + "\n"


@pytest.mark.parametrize("command", ["run", "check-config"])
@pytest.mark.parametrize("case", ["latin-1", "empty", "comments only", "billion laughs",
                                  "alias of itself"])
def test_a_bad_file_is_one_line_with_its_place(tmp_path: Path, command: str, case: str) -> None:
    config = tmp_path / "config.yaml"
    good = CONFIG.format(state=tmp_path / "state")
    body, needles = {
        "latin-1": (good.encode() + "bridge: {name: Caf\u00e9 Lisboa}\n".encode("latin-1"),
                    (f"{config}:8: ", "0xe9 is not UTF-8", "save the file as UTF-8")),
        "empty": (b"", (f"{config}:1: ", "no settings", "config/demo.yaml")),
        "comments only": (b"# lockbridge\n\n", (f"{config}:1: ", "no settings")),
        "billion laughs": (BILLION_LAUGHS.encode(), ("aliases expand to more than",
                                                     "write the settings out")),
        "alias of itself": (b"drivers: &d [*d]\n", (f"{config}:1: drivers.0: ",
                                                     "refers to a node that contains it")),
    }[case]
    config.write_bytes(body)
    args = ("run", "-c", str(config)) if command == "run" else ("check-config", str(config))
    assert_one_line(run_cli(*args, limit_memory=True), EXIT_CONFIG, f"{config}:", *needles)
    assert not (tmp_path / "state").exists()
