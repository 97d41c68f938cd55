"""One backend replica: NATS (streams ensured), PostgreSQL (schema migrated), the consumers and
the HTTP API, until stopped. Replicas share nothing but NATS and the database."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from aiohttp import web

from bridge.clock import Clock, SystemClock
from bridge.fleet.api import FleetApi
from bridge.fleet.consumer import FleetConsumer
from bridge.fleet.db import FleetDb
from bridge.fleet.resend import CommandResender
from bridge.fleet.streams import ensure_streams
from bridge.upstream.nats_subjects import FleetNames, close_client

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetSettings:
    """Everything a replica needs; secrets are values read from files or the environment."""

    nats_servers: list[str]
    dsn: str
    api_key: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 8790
    nats_user: str | None = None
    nats_password: str | None = None
    nats_creds_file: Path | None = None
    ca_file: Path | None = None
    replicas: int = 3
    stale_after_s: float = 15.0
    command_timeout_s: float = 20.0
    ack_wait_s: float = 30.0
    # A command recorded this long ago and still not marked published is published by any
    # replica (bridge/fleet/resend.py); longer than a request's own publish retries.
    resend_after_s: float = 30.0
    resend_every_s: float = 5.0
    pool_size: int = 8
    names: FleetNames = field(default_factory=FleetNames)


class FleetReplica:
    """A running replica; `port` is the API's once started."""

    def __init__(self, settings: FleetSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.db = FleetDb(settings.dsn, max_size=settings.pool_size)
        self.consumer: FleetConsumer | None = None
        self.resender: CommandResender | None = None
        self.port = 0
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set or the task is cancelled."""
        s = self.settings
        nc = await nats.connect(**self._nats_options())
        runner: web.AppRunner | None = None
        try:
            await ensure_streams(nc.jetstream(), s.names, s.replicas)
            await self.db.open()
            api = FleetApi(self.db, nc.jetstream(), s.names, self.clock, api_key=s.api_key,
                           stale_after_s=s.stale_after_s,
                           command_timeout_s=s.command_timeout_s)
            runner = web.AppRunner(api.app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, s.listen_host, s.listen_port)
            await site.start()
            self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
            self.consumer = FleetConsumer(nc, self.db, s.names, self.clock,
                                          ack_wait_s=s.ack_wait_s)
            consuming = asyncio.create_task(self.consumer.run(), name="fleet-consumer")
            self.resender = CommandResender(nc.jetstream(), self.db, s.names, self.clock,
                                            after_s=s.resend_after_s,
                                            every_s=s.resend_every_s)
            resending = asyncio.create_task(self.resender.run(), name="fleet-resend")
            self.ready.set()
            _LOG.info("fleet replica up: API on %s:%d", s.listen_host, self.port)
            waits: list[asyncio.Task[Any]] = [consuming, resending]
            if stop is not None:
                waits.append(asyncio.create_task(stop.wait(), name="fleet-stop"))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
            for task in (consuming, resending):
                error = task.exception() if task.done() and not task.cancelled() else None
                if error is not None:
                    raise error
        finally:
            if runner is not None:
                await runner.cleanup()
            await close_client(nc)
            await self.db.close()

    def _nats_options(self) -> dict[str, Any]:
        s = self.settings
        options: dict[str, Any] = {"servers": s.nats_servers, "name": "lockbridge-fleet",
                                   "max_reconnect_attempts": -1, "reconnect_time_wait": 0.5,
                                   "connect_timeout": 5}
        if s.nats_user is not None:
            options["user"] = s.nats_user
            options["password"] = s.nats_password
        if s.nats_creds_file is not None:
            options["user_credentials"] = str(s.nats_creds_file)
        if s.ca_file is not None or any(u.startswith(("tls://", "wss://"))
                                        for u in s.nats_servers):
            options["tls"] = ssl.create_default_context(
                cafile=str(s.ca_file) if s.ca_file else None)
        return options
