"""A PostgreSQL database of the test's own: created on the machine's server (127.0.0.1:5432,
user postgres) and dropped afterwards, or, when none answers, a server made with `initdb` in a
temp dir on a free port (as the `postgres` user when the tests run as root, which initdb
refuses)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tests.nats_cluster import free_ports

MACHINE = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else name


def _machine_answers() -> bool:
    try:
        with psycopg.connect(MACHINE, autocommit=True):
            return True
    except psycopg.OperationalError:
        return False


@contextlib.contextmanager
def _own_server(root: Path) -> Iterator[str]:
    data = root / "pgdata"
    data.mkdir(parents=True)
    port = free_ports(1)[0]
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, _bin("initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    subprocess.run([*prefix, _bin("pg_ctl"), "-D", str(data), "-w", "-l", str(root / "pg.log"),
                    "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=3"
    finally:
        subprocess.run([*prefix, _bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)


@contextlib.contextmanager
def fresh_database(root: Path) -> Iterator[str]:
    """The conninfo of a fresh, empty database, gone after the block."""
    with contextlib.ExitStack() as stack:
        admin = MACHINE if _machine_answers() else stack.enter_context(_own_server(root))
        name = f"lockbridge_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        try:
            yield admin.replace("dbname=postgres", f"dbname={name}")
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
