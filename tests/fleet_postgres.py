"""A PostgreSQL database of the test's own: created on the machine's server (127.0.0.1:5432,
user postgres) and dropped afterwards, or, when none answers (or `LOCKBRIDGE_TEST_POSTGRES=initdb`
asks for it), a server made with `initdb` in a temp dir on a free port (run as the `postgres`
user when the tests run as root, which initdb refuses)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tests.nats_cluster import free_ports

MACHINE = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
# `initdb`: always start a server of the test's own, even when the machine has one.
MODE_ENV = "LOCKBRIDGE_TEST_POSTGRES"
# Bounds on the server programs (pg_ctl's own wait is 60 s by default).
PROGRAM_TIMEOUT_S = 120
STOP_WAIT_S = 30


def pg_binary(name: str) -> str | None:
    """A PostgreSQL server program: Debian's versioned dirs first (the newest), then PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def own_server_wanted() -> bool:
    """True when the environment asks for a server of the test's own."""
    return os.environ.get(MODE_ENV, "").strip().lower() == "initdb"


def _machine_answers() -> bool:
    try:
        with psycopg.connect(MACHINE, autocommit=True):
            return True
    except psycopg.OperationalError:
        return False


def _run(command: list[str]) -> None:
    """Run a server program; when it fails, its own output is the error."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=PROGRAM_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                           f"{done.stdout}{done.stderr}")


@contextlib.contextmanager
def own_server() -> Iterator[str]:
    """A PostgreSQL server of its own (initdb, then pg_ctl start) on a free loopback port;
    yields its admin conninfo and stops it (fast shutdown, waited for) and removes its files
    afterwards. Raises FileNotFoundError when initdb or pg_ctl is not installed."""
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise FileNotFoundError("initdb or pg_ctl is not installed")
    # Its own dir under the system temp dir, not the test's: as root the server runs as
    # `postgres`, which cannot enter pytest's (mode 0700, root's) tmp dirs, and the socket's
    # path must stay under the 107 bytes a unix socket name allows.
    home = Path(tempfile.mkdtemp(prefix="lockbridge-pg-"))
    data = home / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_ports(1)[0]
    started = False
    try:
        _run([*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
              "--no-sync"])
        _run([*prefix, pg_ctl, "-D", str(data), "-w", "-t", str(STOP_WAIT_S),
              "-l", str(home / "server.log"),
              "-o", f"-p {port} -k {home} -c listen_addresses=127.0.0.1", "start"])
        started = True
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=3"
    finally:
        if started:
            _run([*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", str(STOP_WAIT_S),
                  "stop"])
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(root: Path | None = None) -> Iterator[str]:
    """The conninfo of a fresh, empty database, gone after the block. `root` is kept for the
    callers that pass their temp dir; a server of its own lives in a dir of its own."""
    with contextlib.ExitStack() as stack:
        use_machine = not own_server_wanted() and _machine_answers()
        admin = MACHINE if use_machine else stack.enter_context(own_server())
        name = f"lockbridge_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        try:
            yield admin.replace("dbname=postgres", f"dbname={name}")
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
