"""The backend's PostgreSQL access, through psycopg 3's async connection pool. Every write is
idempotent (a redelivered message changes nothing), so any replica may take any message and
nothing lives only in a replica's memory."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from bridge.fleet.schema import migrate


@dataclass(frozen=True, slots=True)
class StateChange:
    """One message of the state bucket: a key's new value (None: deleted) at a revision."""

    bridge_id: str
    kind: str  # device, code or unmanaged
    object_id: str
    revision: int
    body: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class BridgeSeen:
    """When a bridge was last heard of, and what it last said (up or down)."""

    bridge_id: str
    last_seen: datetime
    status: str


class FleetDb:
    """Reads and idempotent writes of the fleet's tables."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 8) -> None:
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn, min_size=min_size, max_size=max_size, open=False)

    async def open(self) -> None:
        """Open the pool and bring the schema up to date."""
        await self.pool.open(wait=True, timeout=30)
        async with self.pool.connection() as conn:
            await migrate(conn)

    async def close(self) -> None:
        """Close the pool."""
        await self.pool.close()

    # -- writes (each a no-op when repeated) ------------------------------------------------

    async def record(self, events: Sequence[tuple[str, dict[str, Any]]],
                     results: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Events and command results of any bridges, in one transaction; a repeat is dropped
        by its unique event id or command id."""
        async with self.pool.connection() as conn, conn.cursor() as cur:
            if events:
                await cur.executemany(
                    "INSERT INTO events (event_id, bridge_id, sequence_number, event_type, "
                    "device_id, access_code_id, body) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    [(e["event_id"], bridge, int(e["sequence_number"]), e["event_type"],
                      e.get("device_id"), e.get("access_code_id"), Jsonb(e))
                     for bridge, e in events])
            if results:
                await cur.executemany(
                    "INSERT INTO command_results (command_id, bridge_id, ok, body) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (command_id) DO NOTHING",
                    [(r["command_id"], bridge, bool(r["ok"]), Jsonb(r))
                     for bridge, r in results])

    async def apply_state(self, changes: Iterable[StateChange]) -> None:
        """Bucket messages in one transaction; an older revision never overwrites a newer."""
        devices, codes = [], []
        for c in changes:
            body = Jsonb(c.body) if c.body is not None else None
            if c.kind == "device":
                devices.append((c.bridge_id, c.object_id, c.revision, body))
            else:
                device = c.body.get("device_id") if c.body else None
                codes.append((c.bridge_id, c.object_id, c.kind == "code", c.revision, device,
                              body))
        async with self.pool.connection() as conn, conn.cursor() as cur:
            if devices:
                await cur.executemany(
                    "INSERT INTO devices AS d (bridge_id, device_id, revision, body) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (bridge_id, device_id) DO UPDATE "
                    "SET revision = excluded.revision, body = excluded.body "
                    "WHERE d.revision < excluded.revision", devices)
            if codes:
                await cur.executemany(
                    "INSERT INTO access_codes AS c (bridge_id, access_code_id, managed, "
                    "revision, device_id, body) VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (bridge_id, access_code_id) DO UPDATE SET "
                    "managed = excluded.managed, revision = excluded.revision, "
                    "device_id = COALESCE(excluded.device_id, c.device_id), "
                    "body = excluded.body WHERE c.revision < excluded.revision", codes)

    async def seen(self, bridge_id: str, status: str, at: datetime) -> None:
        """A heartbeat: the bridge's newest sign of life wins."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO bridges AS b (bridge_id, last_seen, status) VALUES (%s, %s, %s) "
                "ON CONFLICT (bridge_id) DO UPDATE SET last_seen = excluded.last_seen, "
                "status = excluded.status WHERE b.last_seen <= excluded.last_seen",
                (bridge_id, at, status))

    async def add_command(self, command_id: str, bridge_id: str,
                          body: dict[str, Any]) -> None:
        """Record a command before it is published, so what was asked outlives the replica."""
        async with self.pool.connection() as conn:
            await conn.execute("INSERT INTO commands (command_id, bridge_id, body) "
                               "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                               (command_id, bridge_id, Jsonb(body)))

    async def mark_published(self, command_id: str) -> None:
        """JetStream has the command: no replica needs to publish it again."""
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE commands SET published_at = now() "
                               "WHERE command_id = %s AND published_at IS NULL", (command_id,))

    async def unpublished(self, older_than_s: float, newer_than_s: float, limit: int = 500
                          ) -> list[tuple[str, str, dict[str, Any]]]:
        """(command id, bridge id, command) of commands recorded between `newer_than_s` and
        `older_than_s` seconds ago (the database's clock, so replicas agree) and never marked
        published, oldest first."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT command_id, bridge_id, body FROM commands WHERE published_at IS NULL "
                "AND created_at < now() - make_interval(secs => %s) "
                "AND created_at > now() - make_interval(secs => %s) "
                "ORDER BY created_at LIMIT %s", (older_than_s, newer_than_s, limit))
            return [(str(r[0]), str(r[1]), dict(r[2])) for r in await cursor.fetchall()]

    # -- reads ------------------------------------------------------------------------------

    async def devices(self, device_ids: Sequence[str] | None = None
                      ) -> list[tuple[str, dict[str, Any]]]:
        """(bridge id, device object) of every present device, or of the ones named."""
        sql = "SELECT bridge_id, body FROM devices WHERE body IS NOT NULL"
        args: tuple[Any, ...] = ()
        if device_ids is not None:
            sql += " AND device_id = ANY(%s)"
            args = (list(device_ids),)
        return await self._pairs(sql + " ORDER BY bridge_id, device_id", args)

    async def codes(self, device_id: str | None = None,
                    access_code_ids: Sequence[str] | None = None, managed: bool = True
                    ) -> list[tuple[str, dict[str, Any]]]:
        """(bridge id, access code object) of present codes, filtered."""
        sql = "SELECT bridge_id, body FROM access_codes WHERE body IS NOT NULL AND managed = %s"
        args: list[Any] = [managed]
        if device_id is not None:
            sql += " AND device_id = %s"
            args.append(device_id)
        if access_code_ids is not None:
            sql += " AND access_code_id = ANY(%s)"
            args.append(list(access_code_ids))
        return await self._pairs(sql + " ORDER BY bridge_id, access_code_id", tuple(args))

    async def bridges(self) -> dict[str, BridgeSeen]:
        """Every bridge ever heard of."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT bridge_id, last_seen, status FROM bridges")
            return {r[0]: BridgeSeen(r[0], r[1], r[2]) for r in await cursor.fetchall()}

    async def result(self, command_id: str) -> dict[str, Any] | None:
        """A command's result, once its bridge has answered."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT body FROM command_results WHERE command_id = %s", (command_id,))
            row = await cursor.fetchone()
        return None if row is None else dict(row[0])

    async def _pairs(self, sql: str, args: tuple[Any, ...]
                     ) -> list[tuple[str, dict[str, Any]]]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(sql, args)
            return [(str(r[0]), dict(r[1])) for r in await cursor.fetchall()]
