"""Shared pieces of the lost-state tests: the real daemon, its refusal, the reference upstream."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from .api_helpers import ROOT, Daemon, lockbridge, wait_until

TOKEN = "state-lost-token"
# Block style: the text is formatted again by start_daemon, so it must keep no braces.
UPSTREAM = """\
upstream:
  url: ws://127.0.0.1:{port}/ws
  token_file: {token}
  backoff_base_s: 0.05
  backoff_cap_s: 0.2
"""
EXIT_STATE_LOST = 78  # bridge.startup.EXIT_STARTUP: systemd does not restart into it


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(d: Daemon, path: str, body: dict[str, Any]) -> Any:
    """One API call that must succeed."""
    answer = httpx.post(d.url + path, json=body, timeout=20,
                        headers={"Authorization": f"Bearer {d.key}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def create_set_code(d: Daemon, lock: str, pin: str) -> str:
    """Create an ongoing code on a lock and wait until it is on the lock; its id."""
    d.pins.add(pin)
    devices = post(d, "/devices/list", {})["devices"]
    device_id = next(x["device_id"] for x in devices if x["properties"]["name"] == lock
                     or x["display_name"] == lock)
    code = post(d, "/access_codes/create", {"device_id": device_id, "code": pin,
                                            "name": f"Guest {pin}"})["access_code"]
    wait_until(lambda: post(d, "/access_codes/get", {"access_code_id": code["access_code_id"]})
               ["access_code"]["status"] == "set", what=f"code {pin} set")
    return str(code["access_code_id"])


def run_refused(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`lockbridge run` expected to refuse and exit by itself."""
    return subprocess.run(lockbridge("run", "-c", str(config), *args), capture_output=True,
                          text=True, cwd=ROOT, timeout=30)


def assert_refusal(done: subprocess.CompletedProcess[str], config: Path) -> None:
    """Exit 3 with one line that says what is gone and the way out, and no traceback."""
    assert done.returncode == EXIT_STATE_LOST, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    refusals = [line for line in done.stderr.splitlines() if "refusing to start" in line]
    assert len(refusals) == 1, done.stderr
    line = refusals[0]
    assert done.stderr.rstrip().endswith(line)
    assert f"lockbridge restore -c {config}" in line
    assert f"lockbridge run -c {config} --accept-fresh-state" in line


def remove_database(state: Path) -> None:
    """What a dead SD card partition or a stray `rm` leaves: no database at all."""
    for suffix in ("", "-wal", "-shm"):
        (state / f"lockbridge.db{suffix}").unlink(missing_ok=True)


def upstream_events(db: Path) -> list[int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [int(r[0]) for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def upstream_acked(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT max(acked_seq) FROM bridges").fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()
    return int(row[0] or 0)


def bridge_newest(state: Path) -> int:
    conn = sqlite3.connect(f"file:{state / 'lockbridge.db'}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    finally:
        conn.close()
    return int(row[0]) if row else 0


@contextmanager
def reference_upstream(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """`lockbridge upstream-dev` on a free port: (port, its database, the token file)."""
    port = free_port()
    token = tmp_path / "upstream.token"
    token.write_text(TOKEN)
    db = tmp_path / "upstream.db"
    proc = subprocess.Popen(lockbridge("upstream-dev", "--listen", f"127.0.0.1:{port}", "--db",
                                       str(db), "--token-file", str(token)),
                            cwd=ROOT, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        def listening() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, what="the reference upstream listening")
        yield port, db, token
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# A code the file declares: a bridge starting empty would create it on the lock again.
DECLARED = """\
codes:
  - key: staff-side
    device: side
    name: Cleaning staff
    code: "7381"
"""
