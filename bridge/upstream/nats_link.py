"""`upstream.kind: nats`: the bridge's side of a fleet on NATS JetStream (docs/fleet.md).

One connection is one session, kept up by the same reconnect supervisor as the websocket link:

- events: the outbox after its acknowledged watermark, published to JetStream with the event
  id as the message id (a replay inside the stream's duplicate window is dropped; the backend
  is idempotent by event id beyond it); a batch's rows are acknowledged in the outbox only
  once JetStream has acknowledged every publish in it;
- commands: a durable pull consumer on the bridge's own subject, run by the same
  `CommandRunner` as the websocket's (exactly once through its applied marker); the result is
  published (message id `result:<command id>`) and only then the command is acknowledged, so a
  crash anywhere before the ack redelivers it and the runner answers from what it stored;
- the present: the state bucket, through `StateMirror`;
- liveness: a heartbeat on core NATS every `heartbeat_s`, a last one saying `down` at a clean
  stop, from which the backend shows `bridge_disconnected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import AuthorizationError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NoStreamResponseError

from bridge.application import Application
from bridge.clock import Clock
from bridge.config import NatsUpstreamConfig
from bridge.engine import Engine
from bridge.model import Event
from bridge.reconnect import Backoff, FailureKind, ReconnectSupervisor
from bridge.statecheck import StateLost
from bridge.stateview import StateView
from bridge.store import Store
from bridge.upstream.commands import CommandRunner, retry_later
from bridge.upstream.lifecycle import SupervisedLink
from bridge.upstream.nats_state import StateMirror
from bridge.upstream.nats_subjects import (
    KV_OPERATION,
    MSG_ID,
    FleetNames,
    close_client,
    connect_options,
    raise_if_cancelled,
    subscription_tasks,
)
from bridge.upstream.outbox import Outbox
from bridge.upstream.protocol import (
    Command,
    CommandResult,
    ErrorBody,
    ProtocolProblem,
    dump,
    parse_upstream,
)

_LOG = logging.getLogger(__name__)
# How long a fetch for commands waits before asking again (it also bounds noticing a drop).
FETCH_WAIT_S = 2.0
# A command the bridge cannot store now comes back this much later.
RETRY_DELAY_S = 5.0
# The state bucket is brought up to date at most this often.
STATE_PASS_S = 0.25


# JetStream's answers while a stream elects a new leader (a node of the cluster died): the
# connection is fine, so the publish is retried on it after a pause instead of reconnecting.
STREAM_BUSY = (NatsTimeout, NoStreamResponseError, NoRespondersError)
STREAM_BUSY_RETRY_S = (0.1, 0.25, 0.5, 1.0, 2.0)


class SessionEnded(Exception):
    """The NATS connection closed; the supervisor reconnects."""


def classify(error: BaseException) -> FailureKind:
    """Refused credentials are retried slowly; lost state stops the bridge."""
    if isinstance(error, StateLost):
        return FailureKind.FATAL
    if isinstance(error, AuthorizationError | ssl.SSLCertVerificationError):
        return FailureKind.REFUSED
    if isinstance(error, OSError) and "uthoriz" in str(error):
        return FailureKind.REFUSED
    return FailureKind.TRANSIENT


class NatsLink(SupervisedLink):
    """The outbox, the command runner and the state mirror over supervised NATS sessions."""

    def __init__(self, config: NatsUpstreamConfig, store: Store, engine: Engine, clock: Clock,
                 bridge_id: str) -> None:
        self.config = config
        self._store = store
        self._engine = engine
        self._clock = clock
        self._bridge_id = bridge_id
        self.names = FleetNames.of(config)
        self.outbox = Outbox(store, bridge_id, keep_acked=config.keep_acked_events,
                             max_unacked=config.max_unacked_events)
        self.mirror = StateMirror(StateView(engine), store, self.names, bridge_id)
        self.commands = CommandRunner(store, Application(engine), bridge_id,
                                      outbox_full=lambda: self.outbox.full,
                                      send_snapshot=self._snapshot_now)
        self.supervisor = ReconnectSupervisor(
            f"upstream NATS link ({config.host()})", clock, self._session, classify=classify,
            backoff=Backoff(config.backoff_base_s, config.backoff_cap_s),
            refused_retry_s=config.refused_retry_s, logger=_LOG)
        self._events_wake = asyncio.Event()
        self._state_wake = asyncio.Event()
        self._up = asyncio.Event()
        self._js: JetStreamContext | None = None
        self._busy = 0
        self.sessions = 0
        self.published = 0
        self.results_published = 0

    async def prepare(self) -> None:
        """Subscribe to the engine and read the outbox watermarks; call before `run`."""
        self._engine.subscribe(self._committed)
        await self.outbox.load()

    def _committed(self, events: list[Event]) -> None:
        self.outbox.committed(events)
        self._events_wake.set()
        self._state_wake.set()

    async def _snapshot_now(self) -> None:
        """The `snapshot` command: write every key of the present again, now."""
        if self._js is None:
            raise SessionEnded("no session to write the state on")
        self.mirror.forget_written()
        await self._sync_state(self._js)

    # -- one session ------------------------------------------------------------------------

    async def _connect(self, closed: asyncio.Event) -> NatsClient:
        """One connection to the first server that takes it; `closed` is set when it ends."""
        async def on_closed() -> None:
            closed.set()

        errors: list[Exception] = []

        async def on_error(error: Exception) -> None:
            errors.append(error)
            _LOG.debug("NATS: %s", error)

        cfg = self.config
        try:
            async with asyncio.timeout(cfg.connect_timeout_s * 2 * len(cfg.servers) + 1):
                return await nats.connect(**connect_options(cfg, self._bridge_id),
                                          closed_cb=on_closed, disconnected_cb=on_closed,
                                          error_cb=on_error)
        except Exception as exc:
            # nats-py reports why each server failed to the error callback and then raises a
            # generic error: the last reason is what the supervisor should judge.
            raise (errors[-1] if errors else exc) from exc

    async def _session(self, established: Callable[[], None]) -> None:
        closed = asyncio.Event()
        nc = await self._connect(closed)
        delivery: list[asyncio.Task[Any]] = []
        try:
            js = nc.jetstream(timeout=self.config.publish_timeout_s)
            subscription = await js.pull_subscribe(
                self.names.commands(self._bridge_id),
                durable=self.names.command_consumer(self._bridge_id),
                stream=self.names.commands_stream,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT,
                                      deliver_policy=DeliverPolicy.ALL,
                                      ack_wait=self.config.command_ack_wait_s, max_deliver=-1,
                                      max_ack_pending=self.config.max_commands_in_flight * 4))
            # The request mux's delivery task exists now; a lost connection makes nats-py
            # cancel and forget it, and the session's end waits for it.
            delivery = subscription_tasks(nc)
            await self.outbox.load()
            self.mirror.forget_written()
            self._js = js
            self.sessions += 1
            self._up.set()
            established()
            _LOG.info("upstream NATS link up: publishing events after %d (%d held)",
                      self.outbox.acked_seq, self.outbox.unacked)
            await self._heartbeat(nc, "up")
            tasks = [
                asyncio.create_task(self._publish_events(js), name="nats-events"),
                asyncio.create_task(self._read_commands(js, subscription), name="nats-commands"),
                asyncio.create_task(self._mirror_state(js), name="nats-state"),
                asyncio.create_task(self._beat(nc), name="nats-heartbeat"),
                asyncio.create_task(closed.wait(), name="nats-closed"),
            ]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in tasks:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    raise error
            raise SessionEnded("the NATS connection closed")
        finally:
            self._up.clear()
            self._js = None
            if not nc.is_closed:
                # Nothing to drain: a command not yet acknowledged is delivered again.
                with contextlib.suppress(Exception):
                    await self._heartbeat(nc, "down")
            await close_client(nc, delivery)

    # -- events -----------------------------------------------------------------------------

    async def _publish_events(self, js: JetStreamContext) -> None:
        subject = self.names.events(self._bridge_id)
        while True:  # bounded by the session: a failed publish ends it
            raise_if_cancelled()
            self._events_wake.clear()
            batch = await self.outbox.batch(self.outbox.acked_seq, self.config.batch_events)
            if not batch:
                await self._events_wake.wait()
                continue
            # Concurrent publishes; the watermark moves only when every one is acknowledged.
            try:
                await asyncio.gather(*(js.publish(
                    subject, _encode(event), headers={MSG_ID: str(event["event_id"])})
                    for event in batch))
            except STREAM_BUSY as exc:
                await self._stream_busy(exc)
                continue  # the whole batch again: JetStream drops the copies it has
            self.published += len(batch)
            self._busy = 0
            await self.outbox.ack(int(batch[-1]["sequence_number"]))
            self.supervisor.worked()

    async def _stream_busy(self, exc: BaseException) -> None:
        """Pause before a retry on the same connection; too many in a row end the session."""
        self._busy += 1
        if self._busy > len(STREAM_BUSY_RETRY_S):
            self._busy = 0
            raise SessionEnded(f"JetStream does not answer ({exc!r})")
        _LOG.debug("JetStream busy (%r); retrying", exc)
        await self._clock.sleep(STREAM_BUSY_RETRY_S[self._busy - 1])

    # -- commands ---------------------------------------------------------------------------

    async def _read_commands(self, js: JetStreamContext,
                             subscription: JetStreamContext.PullSubscription) -> None:
        batch = self.config.max_commands_in_flight
        while True:  # bounded by the session: a closed connection ends the fetch with an error
            raise_if_cancelled()
            try:
                messages = await subscription.fetch(batch, timeout=FETCH_WAIT_S)
            except (TimeoutError, NatsTimeout):
                continue
            # Every command of the batch finishes (each is shielded in the runner anyway)
            # before a failure ends the session; an unacknowledged one comes back.
            outcomes = await asyncio.gather(*(self._command(js, m) for m in messages),
                                            return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome

    async def _command(self, js: JetStreamContext, msg: Msg) -> None:
        try:
            message = parse_upstream(msg.data.decode(errors="replace"),
                                     self.config.max_message_bytes)
        except ProtocolProblem as problem:
            _LOG.warning("a NATS command the bridge cannot use (%s): %s", problem.kind,
                         problem.message)
            if problem.command_id is not None:
                await self._publish_result(js, CommandResult(
                    command_id=problem.command_id, ok=False,
                    error=ErrorBody(type=problem.kind, message=problem.message,
                                    field=problem.field)))
            await msg.term()
            return
        if not isinstance(message, Command):
            _LOG.warning("a NATS message of type %s on the command subject is ignored",
                         message.type)
            await msg.term()
            return
        result = await self.commands.answer(message)
        if retry_later(result):
            await msg.nak(delay=RETRY_DELAY_S)
            return
        try:
            await self._publish_result(js, result)
        except STREAM_BUSY:
            await msg.nak(delay=1.0)  # answered again from the stored result
            return
        # Acknowledged only after its result is committed and published: a crash before this
        # line redelivers it, and the runner answers from the stored result or its marker.
        await msg.ack_sync()

    async def _publish_result(self, js: JetStreamContext, result: CommandResult) -> None:
        await js.publish(self.names.results(self._bridge_id), dump(result).encode(),
                         headers={MSG_ID: f"result:{self._bridge_id}:{result.command_id}"})
        self.results_published += 1

    # -- the present ------------------------------------------------------------------------

    async def _mirror_state(self, js: JetStreamContext) -> None:
        while True:  # bounded by the session
            raise_if_cancelled()
            self._state_wake.clear()
            try:
                await self._sync_state(js)
                self._busy = 0
            except STREAM_BUSY as exc:
                self._state_wake.set()  # not done: the next pass finishes it
                await self._stream_busy(exc)
            await self._clock.sleep(STATE_PASS_S)
            await self._state_wake.wait()

    async def _sync_state(self, js: JetStreamContext) -> None:
        names = self.names

        async def put(key: str, value: bytes) -> None:
            await js.publish(names.state_subject(key), value)

        async def delete(key: str) -> None:
            await js.publish(names.state_subject(key), b"", headers={KV_OPERATION: "DEL"})

        await self.mirror.sync(put, delete)

    # -- liveness ---------------------------------------------------------------------------

    async def _beat(self, nc: NatsClient) -> None:
        while True:  # bounded by the session
            raise_if_cancelled()
            await self._clock.sleep(self.config.heartbeat_s)
            await self._heartbeat(nc, "up")

    async def _heartbeat(self, nc: NatsClient, status: str) -> None:
        body = {"bridge_id": self._bridge_id, "status": status,
                "sent_at": self._clock.now().isoformat(), "outbox": self.outbox.unacked}
        await nc.publish(self.names.heartbeat(self._bridge_id), _encode(body))
        await nc.flush(timeout=2)


def _encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()
