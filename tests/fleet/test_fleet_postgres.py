"""The fixture's fallback when the machine has no PostgreSQL: a server of the test's own made
with `initdb`, forced here with LOCKBRIDGE_TEST_POSTGRES=initdb so it runs even where the
machine's server answers. The fleet's migrations run against it, and it is stopped cleanly."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from bridge.fleet.schema import MIGRATIONS, migrate
from tests.fleet_postgres import MODE_ENV, fresh_database, pg_binary

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]


def _port(conninfo: str) -> int:
    return int(str(psycopg.conninfo.conninfo_to_dict(conninfo)["port"]))


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(pg_binary("initdb") is None or pg_binary("pg_ctl") is None,
                    reason="initdb/pg_ctl not installed (Debian: postgresql), so the fixture's "
                           "own-server fallback cannot run")
async def test_own_server_from_initdb_runs_the_migrations_and_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODE_ENV, "initdb")
    with fresh_database(tmp_path) as dsn:
        port = _port(dsn)
        assert port != 5432, "the machine's server was used, not one of the test's own"
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            assert await migrate(conn) == [n for n, _ in MIGRATIONS]
            assert await migrate(conn) == []
            cursor = await conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ANY(%s)",
                (["bridges", "events", "devices", "access_codes", "commands",
                  "command_results"],))
            assert await cursor.fetchone() == (6,)
    # pg_ctl stop -w returned: the server is gone, nothing listens on its port.
    assert not _listening(port)
