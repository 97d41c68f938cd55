"""The reference upstream: a small aiohttp server that speaks the protocol and stores what it gets.

It is what the demo and the tests talk to, and the worked example for integrators: check the
bearer token, answer `hello` with the stored ack watermark, store snapshots and events (unique
`event_id`, so redelivery is harmless), acknowledge cumulatively, and send commands, resending
the unanswered ones after a reconnect. Plain ws:// without TLS: loopback only.

Test knobs: `acks` (stop acknowledging), `drop_after_events` (cut the connection mid-stream),
`send_raw` (any frame), `bridge_errors` (what the bridge answered to bad frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import sqlite3
import ssl
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from bridge.upstream.protocol import (
    PROTOCOL_VERSION,
    CommandResult,
    ErrorMessage,
    Events,
    Hello,
    ProtocolProblem,
    RestoreState,
    Snapshot,
    Welcome,
    dump,
    parse_bridge,
)

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")
# Snapshots of big properties are large; events batches and results are small.
MAX_FRAME_BYTES = 64 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bridges (
    bridge_id TEXT PRIMARY KEY, acked_seq INTEGER NOT NULL DEFAULT 0,
    software_version TEXT, last_command_id TEXT, last_hello_at TEXT
);
CREATE TABLE IF NOT EXISTS snapshots (
    bridge_id TEXT NOT NULL, snapshot_id TEXT NOT NULL, upto_seq INTEGER NOT NULL,
    body TEXT NOT NULL, received_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS events (
    bridge_id TEXT NOT NULL, event_id TEXT NOT NULL, seq INTEGER NOT NULL, device_id TEXT,
    body TEXT NOT NULL, received_at TEXT NOT NULL DEFAULT (datetime('now')),
    PRIMARY KEY (bridge_id, event_id)
);
CREATE TABLE IF NOT EXISTS commands (
    bridge_id TEXT NOT NULL, command_id TEXT NOT NULL, command TEXT NOT NULL, result TEXT,
    PRIMARY KEY (bridge_id, command_id)
);
-- Every command_result that arrived, repeats included: proves each command got one answer.
CREATE TABLE IF NOT EXISTS results_received (
    bridge_id TEXT NOT NULL, command_id TEXT NOT NULL, result TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT (datetime('now'))
);
"""


@dataclass
class _Connection:
    bridge_id: str
    ws: web.WebSocketResponse
    request: web.Request
    events_received: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, text: str) -> None:
        async with self.lock:
            await self.ws.send_str(text)


class DevUpstream:
    """The reference upstream server (`lockbridge upstream-dev`)."""

    def __init__(self, db_path: Path, token: str) -> None:
        self.db_path = db_path
        self._token = token
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="devupstream-db")
        self._db: sqlite3.Connection | None = None
        self._runner: web.AppRunner | None = None
        self.connections: dict[str, _Connection] = {}
        self._results: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._connected = asyncio.Condition()
        self.port = 0
        # Test knobs and counters.
        self.acks = True
        self.drop_after_events: int | None = None
        self.want_snapshot = False
        self.bridge_errors: list[dict[str, Any]] = []
        self.results_received: list[dict[str, Any]] = []
        self.gaps: list[tuple[int, int]] = []
        self.duplicates = 0
        self.rejected_tokens = 0
        self.hellos = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0,
                    ssl_context: ssl.SSLContext | None = None) -> int:
        """Open the database and listen (over TLS with `ssl_context`); returns the port."""
        await self._call(self._open)
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/ws", self._websocket)
        app.router.add_post("/commands", self._post_command)
        app.on_shutdown.append(self._close_all)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        return self.port

    async def stop(self) -> None:
        """Close every connection and the database."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for future in self._results.values():
            future.cancel()
        self._results.clear()
        await self._call(self._close)
        self._db_thread.shutdown(wait=True)

    # -- what tests and the HTTP endpoint use ------------------------------------------------

    async def wait_connected(self, bridge_id: str, timeout: float = 10.0) -> None:
        """Wait until the bridge has said hello."""
        async with asyncio.timeout(timeout), self._connected:
            await self._connected.wait_for(lambda: bridge_id in self.connections)

    async def send_command(self, bridge_id: str, command: dict[str, Any],
                           command_id: str | None = None, timeout: float = 10.0,
                           resend: bool = False) -> dict[str, Any]:
        """Send a command (stored first, so a reconnect resends it) and wait for its result;
        a command id already answered returns the stored result unless `resend` is set."""
        command_id = command_id or str(uuid.uuid4())
        key = (bridge_id, command_id)
        stored = await self._call(self._stored_result, bridge_id, command_id)
        if stored is not None and not resend:
            result: dict[str, Any] = json.loads(stored)
            return result
        future = self._results.get(key)
        if future is None or future.done():
            future = self._results[key] = asyncio.get_running_loop().create_future()
        if stored is None:
            await self._call(self._store_command, bridge_id, command_id, command)
        conn = self.connections.get(bridge_id)
        if conn is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.send(_command_frame(command_id, command))
        async with asyncio.timeout(timeout):
            answer = await asyncio.shield(future)
        if self._results.get(key) is future:
            del self._results[key]
        return answer

    async def send_raw(self, bridge_id: str, text: str) -> None:
        """Send any frame to a connected bridge (protocol tests)."""
        await self.connections[bridge_id].send(text)

    async def drop(self, bridge_id: str) -> None:
        """Cut a bridge's connection without a close handshake."""
        conn = self.connections.get(bridge_id)
        if conn is not None and conn.request.transport is not None:
            conn.request.transport.close()

    async def events(self, bridge_id: str) -> list[dict[str, Any]]:
        """Every stored event of a bridge, in sequence order."""
        rows = await self._call(self._query, "SELECT body FROM events WHERE bridge_id = ? "
                                "ORDER BY seq", (bridge_id,))
        return [json.loads(r[0]) for r in rows]

    async def snapshots(self, bridge_id: str) -> list[dict[str, Any]]:
        """Every snapshot of a bridge, oldest first."""
        rows = await self._call(self._query, "SELECT body FROM snapshots WHERE bridge_id = ? "
                                "ORDER BY rowid", (bridge_id,))
        return [json.loads(r[0]) for r in rows]

    async def unanswered(self, bridge_id: str) -> list[str]:
        """Ids of commands sent to a bridge that have no result yet."""
        return [command_id for command_id, _ in await self._call(self._unanswered, bridge_id)]

    async def acked_seq(self, bridge_id: str) -> int:
        """The highest sequence number acknowledged to a bridge."""
        rows = await self._call(self._query, "SELECT acked_seq FROM bridges WHERE bridge_id = ?",
                                (bridge_id,))
        return int(rows[0][0]) if rows else 0

    # -- websocket ----------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            self.rejected_tokens += 1
            raise web.HTTPUnauthorized(text="bad token")
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=20.0)
        await ws.prepare(request)
        try:
            async with asyncio.timeout(10):
                first = await ws.receive()
            hello = parse_bridge(first.data, MAX_FRAME_BYTES) \
                if first.type is WSMsgType.TEXT else None
        except (TimeoutError, ProtocolProblem):
            hello = None
        if not isinstance(hello, Hello):
            await ws.close(code=1002, message=b"expected hello")
            return ws
        self.hellos += 1
        conn = _Connection(hello.bridge_id, ws, request)
        old = self.connections.get(hello.bridge_id)
        if old is not None:
            await old.ws.close(code=1008, message=b"replaced by a new connection")
        acked, has_snapshot = await self._call(self._hello, hello)
        restore = await self._call(self._restore_state, hello.bridge_id) \
            if hello.restore_wanted else None
        await conn.send(dump(Welcome(protocol_version=PROTOCOL_VERSION, acked_seq=acked,
                                     snapshot_wanted=self.want_snapshot or not has_snapshot,
                                     restore=restore)))
        self.want_snapshot = False
        async with self._connected:
            self.connections[hello.bridge_id] = conn
            self._connected.notify_all()
        try:
            for command_id, command in await self._call(self._unanswered, hello.bridge_id):
                await conn.send(_command_frame(command_id, command))
            await self._converse(conn, acked)
        except ConnectionError:
            pass  # the bridge went away mid-send; it resends what we did not acknowledge
        finally:
            if self.connections.get(hello.bridge_id) is conn:
                del self.connections[hello.bridge_id]
        return ws

    async def _converse(self, conn: _Connection, acked: int) -> None:
        snapshot_at: int | None = None
        async for msg in conn.ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            try:
                message = parse_bridge(msg.data, MAX_FRAME_BYTES)
            except ProtocolProblem as problem:
                _LOG.warning("bridge %s sent an unusable message: %s", conn.bridge_id,
                             problem.message)
                continue
            if isinstance(message, Snapshot):
                await self._call(self._store_snapshot, conn.bridge_id, message, msg.data)
                snapshot_at = message.upto_seq
            elif isinstance(message, Events):
                first = message.events[0].sequence_number
                if first != acked + 1 and snapshot_at is None:
                    self.gaps.append((acked, first))
                snapshot_at = None
                fresh = await self._call(self._store_events, conn.bridge_id, message)
                self.duplicates += len(message.events) - fresh
                acked = message.events[-1].sequence_number
                conn.events_received += len(message.events)
                if self.drop_after_events is not None \
                        and conn.events_received >= self.drop_after_events:
                    self.drop_after_events = None
                    await self.drop(conn.bridge_id)
                    return
                if self.acks:
                    await self._call(self._set_acked, conn.bridge_id, acked)
                    await conn.send(json.dumps({"type": "ack", "seq": acked}))
            elif isinstance(message, CommandResult):
                body = message.model_dump()
                self.results_received.append(body)
                await self._call(self._store_result, conn.bridge_id, message)
                future = self._results.get((conn.bridge_id, message.command_id))
                if future is not None and not future.done():
                    future.set_result(body)
            elif isinstance(message, ErrorMessage):
                self.bridge_errors.append(message.model_dump())

    async def _post_command(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            raise web.HTTPUnauthorized(text="bad token")
        try:
            body = await request.json()
            bridge_id = str(body["bridge_id"])
            command = dict(body["command"])
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(text='expected {"bridge_id", "command", '
                                     '"command_id"?}') from None
        command_id = str(body.get("command_id") or uuid.uuid4())
        try:
            result = await self.send_command(bridge_id, command, command_id,
                                             timeout=float(body.get("timeout", 30)))
        except TimeoutError:
            return web.json_response({"command_id": command_id, "status": "queued"},
                                     status=202)
        return web.json_response(result)

    def _authorized(self, request: web.Request) -> bool:
        offered = request.headers.get("Authorization", "")
        return hmac.compare_digest(offered.encode(), f"Bearer {self._token}".encode())

    async def _close_all(self, _: web.Application) -> None:
        for conn in list(self.connections.values()):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"server shutting down")

    # -- database (on its own thread) ------------------------------------------------------

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)

    def _open(self) -> None:
        self._db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(_SCHEMA)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the reference upstream is not started")
        return self._db

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._conn().execute(sql, params).fetchall()

    def _hello(self, hello: Hello) -> tuple[int, bool]:
        db = self._conn()
        db.execute("INSERT INTO bridges (bridge_id) VALUES (?) ON CONFLICT DO NOTHING",
                   (hello.bridge_id,))
        db.execute("UPDATE bridges SET software_version = ?, last_command_id = ?, "
                   "last_hello_at = datetime('now') WHERE bridge_id = ?",
                   (hello.software_version, hello.last_command_id, hello.bridge_id))
        acked = db.execute("SELECT acked_seq FROM bridges WHERE bridge_id = ?",
                           (hello.bridge_id,)).fetchone()[0]
        snap = db.execute("SELECT count(*) FROM snapshots WHERE bridge_id = ?",
                          (hello.bridge_id,)).fetchone()[0]
        return int(acked), bool(snap)

    def _restore_state(self, bridge_id: str) -> RestoreState | None:
        """The reference server's view of a bridge: its newest snapshot's managed codes (a real
        upstream would keep them current from the events that followed)."""
        row = self._conn().execute("SELECT body FROM snapshots WHERE bridge_id = ? "
                                   "ORDER BY rowid DESC LIMIT 1", (bridge_id,)).fetchone()
        if row is None:
            return None
        body = json.loads(row[0])
        return RestoreState(upto_seq=body["upto_seq"], access_codes=body["access_codes"])

    def _store_snapshot(self, bridge_id: str, snapshot: Snapshot, text: str) -> None:
        self._conn().execute("INSERT INTO snapshots (bridge_id, snapshot_id, upto_seq, body) "
                             "VALUES (?, ?, ?, ?)",
                             (bridge_id, snapshot.snapshot_id, snapshot.upto_seq, text))

    def _store_events(self, bridge_id: str, events: Events) -> int:
        db = self._conn()
        db.execute("BEGIN")
        before = db.total_changes
        db.executemany(
            "INSERT OR IGNORE INTO events (bridge_id, event_id, seq, device_id, body) "
            "VALUES (?, ?, ?, ?, ?)",
            [(bridge_id, e.event_id, e.sequence_number, getattr(e, "device_id", None),
              json.dumps(e.model_dump())) for e in events.events])
        fresh = db.total_changes - before
        db.execute("COMMIT")
        return fresh

    def _set_acked(self, bridge_id: str, seq: int) -> None:
        self._conn().execute("UPDATE bridges SET acked_seq = max(acked_seq, ?) "
                             "WHERE bridge_id = ?", (seq, bridge_id))

    def _store_command(self, bridge_id: str, command_id: str, command: dict[str, Any]) -> None:
        self._conn().execute("INSERT OR IGNORE INTO commands (bridge_id, command_id, command) "
                             "VALUES (?, ?, ?)", (bridge_id, command_id, json.dumps(command)))

    def _stored_result(self, bridge_id: str, command_id: str) -> str | None:
        row = self._conn().execute("SELECT result FROM commands WHERE bridge_id = ? AND "
                                   "command_id = ?", (bridge_id, command_id)).fetchone()
        return row[0] if row else None

    def _store_result(self, bridge_id: str, result: CommandResult) -> None:
        db = self._conn()
        text = dump(result)
        db.execute("BEGIN")
        db.execute("INSERT INTO results_received (bridge_id, command_id, result) "
                   "VALUES (?, ?, ?)", (bridge_id, result.command_id, text))
        db.execute("UPDATE commands SET result = ? WHERE bridge_id = ? AND command_id = ? "
                   "AND result IS NULL", (text, bridge_id, result.command_id))
        db.execute("COMMIT")

    def _unanswered(self, bridge_id: str) -> list[tuple[str, dict[str, Any]]]:
        rows = self._conn().execute("SELECT command_id, command FROM commands WHERE "
                                    "bridge_id = ? AND result IS NULL ORDER BY rowid",
                                    (bridge_id,)).fetchall()
        return [(r[0], json.loads(r[1])) for r in rows]


def _command_frame(command_id: str, command: dict[str, Any]) -> str:
    return json.dumps({"type": "command", "command_id": command_id, "command": command})


async def serve_forever(db_path: Path, token: str, host: str, port: int,
                        stop: asyncio.Event) -> None:
    """Run the reference upstream until `stop` is set (the CLI's loop)."""
    server = DevUpstream(db_path, token)
    bound = await server.start(host, port)
    _LOG.info("reference upstream listening on ws://%s:%d/ws (database %s)", host, bound,
              db_path)
    try:
        await stop.wait()
    finally:
        await server.stop()
