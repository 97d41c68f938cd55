"""The upstream link: one websocket to the operator's cloud, kept up by the reconnect supervisor.

A session says `hello`, learns from `welcome` what the upstream already has, sends a snapshot if
it needs one, then streams the outbox in order while reading acks and commands. Anything that
ends a session (a drop, a half-open connection caught by the heartbeat, a send that cannot
finish) hands control back to the supervisor, which reconnects with backoff; the next session
resends everything unacknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from bridge.application import Application
from bridge.clock import Clock
from bridge.config import UpstreamConfig
from bridge.engine import Engine
from bridge.model import Event
from bridge.reconnect import Backoff, FailureKind, ReconnectSupervisor
from bridge.serialize import access_code_json, device_json, unmanaged_code_json
from bridge.statecheck import CONTINUE_AFTER_UPSTREAM, StateLost
from bridge.stateview import StateView
from bridge.store import Store
from bridge.upstream.commands import CommandRunner
from bridge.upstream.lifecycle import SupervisedLink
from bridge.upstream.outbox import Outbox, OutboxState, plan_resume
from bridge.upstream.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Command,
    ErrorBody,
    ErrorMessage,
    Hello,
    ProtocolProblem,
    RestoreState,
    Welcome,
    dump,
    dumps,
    parse_upstream,
)
from bridge.version import software_version

if TYPE_CHECKING:
    from bridge.daemon import Bridge

_LOG = logging.getLogger(__name__)
# aiohttp itself closes the connection (1009) on a frame this many times the protocol limit;
# below it, an oversized frame is answered with `message_too_large` and the link stays up.
HARD_FRAME_FACTOR = 16


class TokenUnavailable(Exception):
    """The upstream token cannot be read: a configuration problem, not a network one."""


class UpstreamRefused(Exception):
    """The upstream will not talk to this bridge as configured (token, protocol version)."""


class SessionEnded(Exception):
    """The websocket closed; the supervisor reconnects."""


async def start_upstream(bridge: Bridge, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
    """Start the upstream link if one is configured; its task is cancelled at shutdown."""
    config = bridge.loaded.config.upstream
    if not isinstance(config, UpstreamConfig):
        return []  # none, or NATS (bridge/upstream/nats_link.py)
    link = UpstreamLink(config, bridge.store, bridge.engine, bridge.clock,
                        bridge.loaded.config.bridge.id, config_path=bridge.loaded.path,
                        accept_fresh_state=bridge.accept_fresh_state)
    await link.prepare()
    bridge.extras["upstream"] = link
    return [group.create_task(link.run(), name="upstream")]


async def check_before_start(bridge: Bridge) -> None:
    """A store that never assigned an event asks the upstream before anything starts: if the
    upstream acknowledged events of this bridge, its state is gone, and starting would create
    the declared codes again and find the guests' codes as unmanaged. An upstream that cannot
    be reached does not hold up the start; the link asks again when it connects."""
    config = bridge.loaded.config.upstream
    if not isinstance(config, UpstreamConfig):
        return  # the NATS upstream keeps no acknowledged watermark to compare with
    state = await Outbox(bridge.store, "", keep_acked=0, max_unacked=1).load()
    if state.last_seq or state.acked_seq:
        return
    flag = await bridge.store.read(lambda r: r.kv(CONTINUE_AFTER_UPSTREAM))
    if flag is not None:
        return
    if bridge.accept_fresh_state:
        # Whatever this new store numbers before the link connects follows the upstream's.
        await bridge.store.write(lambda tx: tx.put_kv(CONTINUE_AFTER_UPSTREAM, "fresh"))
        return
    try:
        acked = (await hello_once(config, bridge.loaded.config.bridge.id, state)).acked_seq
    except (OSError, TimeoutError, aiohttp.ClientError, SessionEnded, TokenUnavailable,
            UpstreamRefused) as exc:
        _LOG.warning("could not ask the upstream whether this bridge had state before (%s); "
                     "starting, and the upstream link asks again when it connects", exc)
        return
    if acked > state.last_seq:
        raise StateLost(f"this store is new but the upstream has acknowledged events of "
                        f"this bridge up to {acked}", bridge.loaded.path)


async def fetch_restore(config: UpstreamConfig, bridge_id: str) -> RestoreState | None:
    """What the upstream knows of this bridge's managed codes (None: nothing)."""
    empty = OutboxState(first_seq=1, last_seq=0, acked_seq=0, last_command_id=None)
    return (await hello_once(config, bridge_id, empty, restore_wanted=True)).restore


async def hello_once(config: UpstreamConfig, bridge_id: str, state: OutboxState,
                     restore_wanted: bool = False) -> Welcome:
    """One short session: hello, and the upstream's welcome."""
    token = read_token(config)
    async with aiohttp.ClientSession() as http, asyncio.timeout(config.connect_timeout_s):
        ws = await http.ws_connect(config.url, headers={"Authorization": f"Bearer {token}"},
                                   ssl=ssl_for(config),
                                   timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                                   max_msg_size=config.max_message_bytes * HARD_FRAME_FACTOR)
        async with ws:
            await ws.send_str(dump(Hello(
                protocol_version=PROTOCOL_VERSION, bridge_id=bridge_id,
                software_version=software_version(), last_command_id=state.last_command_id,
                last_seq=state.last_seq, first_seq=state.first_seq,
                restore_wanted=restore_wanted)))
            # A welcome carrying a restore holds every managed code: as large as a snapshot.
            limit = config.max_message_bytes * (HARD_FRAME_FACTOR if restore_wanted else 1)
            return await read_welcome(ws, config, limit)


async def read_welcome(ws: aiohttp.ClientWebSocketResponse, config: UpstreamConfig,
                       limit: int | None = None) -> Welcome:
    """The upstream's answer to hello, within the connect timeout."""
    async with asyncio.timeout(config.connect_timeout_s):
        msg = await ws.receive()
    if msg.type is not aiohttp.WSMsgType.TEXT:
        raise SessionEnded(f"upstream closed before welcome ({msg.type.name})")
    try:
        message = parse_upstream(msg.data, limit or config.max_message_bytes)
    except ProtocolProblem as problem:
        raise SessionEnded(f"bad welcome: {problem.message}") from None
    if not isinstance(message, Welcome):
        raise SessionEnded(f"expected welcome, got {message.type}")
    if message.protocol_version != PROTOCOL_VERSION:
        raise UpstreamRefused(f"upstream speaks protocol {message.protocol_version}, this "
                              f"bridge {PROTOCOL_VERSION}")
    return message


def ssl_for(config: UpstreamConfig) -> ssl.SSLContext | bool:
    """The system's trust store, or `ca_file`'s when given."""
    if config.ca_file is not None:
        return ssl.create_default_context(cafile=str(config.ca_file))
    return True


def read_token(config: UpstreamConfig) -> str:
    """The token now: `token_file` is read at every connect, so a rotated token is used."""
    if config.token_file is not None:
        try:
            token = config.token_file.read_text().strip()
        except OSError as exc:
            raise TokenUnavailable(
                f"cannot read token_file {config.token_file}: {exc.strerror}") from exc
    else:
        token = config.token or ""
    if not token:
        raise TokenUnavailable("the upstream token is empty")
    return token


def classify(error: BaseException) -> FailureKind:
    """A refused token, an unusable certificate or protocol are retried slowly, not stormed;
    lost state stops the bridge."""
    if isinstance(error, StateLost):
        return FailureKind.FATAL
    if isinstance(error, TokenUnavailable | UpstreamRefused):
        return FailureKind.REFUSED
    if isinstance(error, aiohttp.WSServerHandshakeError) and error.status in (401, 403):
        return FailureKind.REFUSED
    if isinstance(error, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return FailureKind.REFUSED
    return FailureKind.TRANSIENT


class UpstreamLink(SupervisedLink):
    """The outbox, the command runner and the supervised websocket sessions."""

    def __init__(self, config: UpstreamConfig, store: Store, engine: Engine, clock: Clock,
                 bridge_id: str, *, config_path: Path | str = "FILE",
                 accept_fresh_state: bool = False) -> None:
        self.config = config
        self._config_path = config_path
        self._accept_fresh = accept_fresh_state
        self._store = store
        self._engine = engine
        self._bridge_id = bridge_id
        self.outbox = Outbox(store, bridge_id, keep_acked=config.keep_acked_events,
                             max_unacked=config.max_unacked_events)
        self._state = StateView(engine)
        self.commands = CommandRunner(store, Application(engine), bridge_id,
                                      outbox_full=lambda: self.outbox.full,
                                      send_snapshot=self._snapshot_now)
        self.supervisor = ReconnectSupervisor(
            f"upstream link ({config.host()})", clock, self._session, classify=classify,
            backoff=Backoff(config.backoff_base_s, config.backoff_cap_s),
            refused_retry_s=config.refused_retry_s, logger=_LOG)
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        self._session_state: _Session | None = None
        # The newest sequence number the engine's in-memory state reflects (snapshot upto_seq).
        self._reflected_seq = 0
        self.sessions = 0
        self.snapshots_sent = 0

    async def prepare(self) -> None:
        """Subscribe to the engine and read the outbox watermarks; call before `run`."""
        self._engine.subscribe(self._committed)
        state = await self.outbox.load()
        self._reflected_seq = max(self._reflected_seq, state.last_seq)

    # -- engine side ------------------------------------------------------------------------

    def _committed(self, events: list[Event]) -> None:
        self.outbox.committed(events)
        self._reflected_seq = max(self._reflected_seq, self.outbox.last_seq)
        self._wake.set()

    def snapshot(self) -> dict[str, Any]:
        """Every device and code as the engine holds them now (synchronous, so consistent)."""
        state, bid = self._state, self._bridge_id
        managed, unmanaged = [], []
        for code in state.codes.values():
            if not code.is_managed:
                unmanaged.append(unmanaged_code_json(code, bid))
            elif not (code.deleted and not code.on_lock):
                managed.append(access_code_json(code, state, bid))
        return {"type": "snapshot", "snapshot_id": str(uuid.uuid4()),
                "upto_seq": self._reflected_seq,
                "devices": [device_json(d, bid) for d in state.devices.values()],
                "access_codes": managed, "unmanaged_access_codes": unmanaged}

    async def _snapshot_now(self) -> None:
        session = self._session_state
        if session is None:
            raise SessionEnded("no session to send the snapshot on")
        await session.send(dumps(self.snapshot()))
        self.snapshots_sent += 1

    # -- one session ------------------------------------------------------------------------

    async def _session(self, established: Callable[[], None]) -> None:
        cfg = self.config
        token = read_token(cfg)
        heartbeat = cfg.half_open_timeout_s / 1.5
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(cfg.connect_timeout_s):
                ws = await http.ws_connect(
                    cfg.url, headers={"Authorization": f"Bearer {token}"},
                    heartbeat=heartbeat, ssl=self._ssl(),
                    # A close handshake with a silent peer must not hold up a shutdown.
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                    max_msg_size=cfg.max_message_bytes * HARD_FRAME_FACTOR)
            async with ws:
                session = _Session(ws, cfg.half_open_timeout_s, cfg.max_commands_in_flight)
                state = await self.outbox.load()
                await session.send(dump(Hello(
                    protocol_version=PROTOCOL_VERSION, bridge_id=self._bridge_id,
                    software_version=software_version(), last_command_id=state.last_command_id,
                    last_seq=state.last_seq, first_seq=state.first_seq)))
                welcome = await self._welcome(ws)
                snapshot_wanted = welcome.snapshot_wanted
                flag = await self._store.read(lambda r: r.kv(CONTINUE_AFTER_UPSTREAM))
                if welcome.acked_seq > state.last_seq or flag is not None:
                    state = await self._upstream_ahead(state, welcome.acked_seq, flag)
                    snapshot_wanted = True
                resume = plan_resume(state, welcome.acked_seq, snapshot_wanted)
                if state.last_seq >= welcome.acked_seq > state.acked_seq:
                    await self.outbox.ack(welcome.acked_seq)
                self.sessions += 1
                self._session_state = session
                self._up.set()
                established()
                _LOG.info("upstream link up: sending events after %d (%d held)%s",
                          resume.after_seq, max(0, state.last_seq - resume.after_seq),
                          f"; snapshot first: {resume.reason}" if resume.snapshot else "")
                try:
                    if resume.snapshot:
                        await self._snapshot_now()
                    session.sent_seq = resume.after_seq
                    await self._converse(session)
                finally:
                    self._up.clear()
                    self._session_state = None

    async def _upstream_ahead(self, state: OutboxState, upstream_acked: int,
                              flag: str | None) -> OutboxState:
        """The upstream acknowledged events this store never assigned: its state is gone, unless
        it was restored or the operator chose to start fresh (`flag`); then numbering continues
        after the upstream's, also for events numbered since (the first session clears the
        flag, whether or not the upstream is ahead)."""
        if flag is None and not self._accept_fresh:
            raise StateLost(f"the upstream has acknowledged events up to {upstream_acked} but "
                            f"this store never assigned more than {state.last_seq}",
                            self._config_path)
        moved, _ = await self._store.write(
            lambda tx: tx.continue_after_upstream(upstream_acked, CONTINUE_AFTER_UPSTREAM))
        why = (flag or "fresh state accepted").partition(":")[0]
        if upstream_acked > state.last_seq or moved:
            _LOG.warning("upstream is ahead of this store (%s): sequence numbers continue after "
                         "%d; %d events it cannot have renumbered to follow", why,
                         upstream_acked, moved)
        self.outbox.last_seq = 0
        state = await self.outbox.load()
        self._reflected_seq = max(self._reflected_seq, state.last_seq)
        return state

    async def _welcome(self, ws: aiohttp.ClientWebSocketResponse) -> Welcome:
        return await read_welcome(ws, self.config)

    async def _converse(self, session: _Session) -> None:
        sender = asyncio.create_task(self._send_events(session), name="upstream-sender")
        reader = asyncio.create_task(self._read(session), name="upstream-reader")
        try:
            await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, reader, *session.handlers):
                task.cancel()
            await asyncio.gather(sender, reader, *session.handlers, return_exceptions=True)
        for task in (sender, reader):
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
        raise SessionEnded("closed by the upstream")

    async def _send_events(self, session: _Session) -> None:
        cfg = self.config
        while True:  # bounded by the session: ends when a send fails or the task is cancelled
            self._wake.clear()
            room = cfg.window_events - (session.sent_seq - max(session.acked_seq,
                                                               self.outbox.acked_seq))
            if room <= 0:
                await self._wake.wait()
                continue
            batch = await self.outbox.batch(session.sent_seq, min(cfg.batch_events, room))
            if not batch:
                await self._wake.wait()
                continue
            await session.send(dumps({"type": "events", "events": batch}))
            session.sent_seq = int(batch[-1]["sequence_number"])

    async def _read(self, session: _Session) -> None:
        ws = session.ws
        while True:  # bounded by the connection: every close or error ends it
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                await self._handle(session, msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await session.send(dump(ErrorMessage(error=ErrorBody(
                    type="unsupported_frame", message="binary frames are not part of the "
                    "protocol"))))
            else:
                if msg.type is aiohttp.WSMsgType.ERROR:
                    raise SessionEnded(f"websocket error: {ws.exception()!r}")
                return

    async def _handle(self, session: _Session, text: str) -> None:
        try:
            message = parse_upstream(text, self.config.max_message_bytes)
        except ProtocolProblem as problem:
            _LOG.warning("upstream sent a message the bridge cannot use (%s): %s",
                         problem.kind, problem.message)
            await session.send(dump(ErrorMessage(
                error=ErrorBody(type=problem.kind, message=problem.message,
                                field=problem.field), command_id=problem.command_id)))
            return
        # An answer from the upstream is the real work that proves the link has recovered.
        self.supervisor.worked()
        if isinstance(message, Ack):
            if message.seq > session.sent_seq:
                await session.send(dump(ErrorMessage(error=ErrorBody(
                    type="invalid_message", field="seq",
                    message=f"ack {message.seq} is beyond the last event sent "
                            f"({session.sent_seq})"))))
                return
            if message.seq > session.acked_seq:
                session.acked_seq = message.seq
                await self.outbox.ack(message.seq)
                self._wake.set()
        elif isinstance(message, Command):
            await session.slots.acquire()
            task = asyncio.create_task(self._command(session, message),
                                       name=f"upstream-result:{message.command_id[:32]}")
            session.handlers.add(task)
            task.add_done_callback(session.handlers.discard)
        else:
            await session.send(dump(ErrorMessage(error=ErrorBody(
                type="invalid_message", field="type",
                message="welcome is only valid as the answer to hello"))))

    async def _command(self, session: _Session, command: Command) -> None:
        try:
            await session.send(dump(await self.commands.answer(command)))
        finally:
            session.slots.release()

    def _ssl(self) -> ssl.SSLContext | bool:
        return ssl_for(self.config)


class _Session:
    """One connection's state: what was sent and acknowledged, and its command handlers."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, send_timeout_s: float,
                 max_commands: int) -> None:
        self.ws = ws
        self._send_timeout = send_timeout_s
        self._lock = asyncio.Lock()
        self.sent_seq = 0
        self.acked_seq = 0
        self.handlers: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(max_commands)

    async def send(self, text: str) -> None:
        """Send one frame; a send that cannot finish in time means the link is half-open."""
        async with self._lock, asyncio.timeout(self._send_timeout):
            await self.ws.send_str(text)
