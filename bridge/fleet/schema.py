"""The backend's PostgreSQL schema: numbered migrations, all pending ones applied in one
transaction under an advisory lock, so replicas starting together migrate once and a failed
migration leaves the schema as it was."""

from __future__ import annotations

import logging

from psycopg import AsyncConnection

_LOG = logging.getLogger(__name__)
# pg_advisory_xact_lock key: "lockbrid" as a number, held for the migrating transaction only.
_LOCK_KEY = 0x6C6F636B62726964

# (number, SQL); append only: a number once released never changes.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, """
    CREATE TABLE bridges (
        bridge_id TEXT PRIMARY KEY,
        last_seen TIMESTAMPTZ NOT NULL,
        status TEXT NOT NULL
    );
    CREATE TABLE events (
        event_id TEXT PRIMARY KEY,
        bridge_id TEXT NOT NULL,
        sequence_number BIGINT NOT NULL,
        event_type TEXT NOT NULL,
        device_id TEXT,
        access_code_id TEXT,
        body JSONB NOT NULL,
        received_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX events_by_bridge ON events (bridge_id, sequence_number);
    -- The present, from the bridges' state bucket; `revision` is the bucket's stream sequence,
    -- so a late or repeated message never overwrites a newer one; a deleted key keeps its row
    -- (body NULL) as the tombstone that holds its revision.
    CREATE TABLE devices (
        bridge_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        revision BIGINT NOT NULL,
        body JSONB,
        PRIMARY KEY (bridge_id, device_id)
    );
    CREATE INDEX devices_by_id ON devices (device_id);
    CREATE TABLE access_codes (
        bridge_id TEXT NOT NULL,
        access_code_id TEXT NOT NULL,
        managed BOOLEAN NOT NULL,
        revision BIGINT NOT NULL,
        device_id TEXT,
        body JSONB,
        PRIMARY KEY (bridge_id, access_code_id)
    );
    CREATE INDEX access_codes_by_device ON access_codes (device_id);
    CREATE TABLE commands (
        command_id TEXT PRIMARY KEY,
        bridge_id TEXT NOT NULL,
        body JSONB NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE command_results (
        command_id TEXT PRIMARY KEY,
        bridge_id TEXT NOT NULL,
        ok BOOLEAN NOT NULL,
        body JSONB NOT NULL,
        received_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    """),
    # A command is recorded, then published: `published_at` says the second step happened, so
    # a command whose replica died in between is published by another (bridge/fleet/resend.py).
    # Commands recorded before this migration were published by their replica's request.
    (2, """
    ALTER TABLE commands ADD COLUMN published_at TIMESTAMPTZ;
    UPDATE commands SET published_at = created_at;
    CREATE INDEX commands_unpublished ON commands (created_at) WHERE published_at IS NULL;
    """),
)


async def migrate(conn: AsyncConnection[object]) -> list[int]:
    """Apply every pending migration in one transaction; returns the numbers applied."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                           "number INTEGER PRIMARY KEY, "
                           "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        cursor = await conn.execute("SELECT number FROM schema_migrations")
        done = {int(row[0]) for row in await cursor.fetchall()}  # type: ignore[index]
        applied = []
        for number, sql in MIGRATIONS:
            if number in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (number) VALUES (%s)", (number,))
            applied.append(number)
    if applied:
        _LOG.info("fleet database migrated: %s", ", ".join(map(str, applied)))
    return applied
