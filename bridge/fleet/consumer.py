"""What a backend replica takes from NATS: the fleet's events and command results and the state
bucket's changes, from durable pull consumers every replica shares (each message goes to one
replica; an unacknowledged one goes to another after `ack_wait`), and the bridges' heartbeats
through a queue group. A batch is written to PostgreSQL in one transaction, then acknowledged:
a replica killed in between leaves the batch to be delivered again, and the writes are
idempotent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import psycopg
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bridge.clock import Clock
from bridge.fleet.db import FleetDb, StateChange
from bridge.upstream.nats_subjects import KV_OPERATION, FleetNames, raise_if_cancelled

_LOG = logging.getLogger(__name__)
EVENTS_CONSUMER = "fleet_events"
STATE_CONSUMER = "fleet_state"
HEARTBEAT_QUEUE = "fleet"
FETCH_WAIT_S = 1.0
# Pauses after a failed fetch or write, one more step for each failure in a row.
RETRY_PAUSES_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class FleetConsumer:
    """The replica's share of the fleet's streams, written into the database."""

    def __init__(self, nc: NatsClient, db: FleetDb, names: FleetNames, clock: Clock, *,
                 batch: int = 256, ack_wait_s: float = 30.0) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._db = db
        self._names = names
        self._clock = clock
        self._batch = batch
        self._ack_wait = ack_wait_s
        self.events = 0
        self.results = 0
        self.state_changes = 0
        # Messages delivered before (to a replica that died or was slower than ack_wait).
        self.redelivered = 0

    async def run(self) -> None:
        """Consume until cancelled (or the connection fails)."""
        names = self._names
        events = await self._js.pull_subscribe(
            "", durable=EVENTS_CONSUMER, stream=names.events_stream,
            config=self._consumer_config())
        state = await self._js.pull_subscribe(
            "", durable=STATE_CONSUMER, stream=names.state_stream,
            config=self._consumer_config())
        beats = await self._nc.subscribe(f"{names.prefix}.heartbeat.*", queue=HEARTBEAT_QUEUE,
                                         cb=self._heartbeat)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(events, self._take_events), name="fleet-events")
                group.create_task(self._pump(state, self._take_state), name="fleet-state")
        finally:
            await beats.unsubscribe()
            # nats-py cancels the subscription's delivery task without waiting for it.
            pending = getattr(beats, "_wait_for_msgs_task", None)
            if isinstance(pending, asyncio.Task):
                with contextlib.suppress(BaseException):
                    await pending

    def _consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                              ack_wait=self._ack_wait, max_deliver=-1,
                              max_ack_pending=self._batch * 64)

    async def _pump(self, subscription: JetStreamContext.PullSubscription,
                    take: Any) -> None:
        failures = 0
        while True:  # until cancelled, or the connection is closed for good
            raise_if_cancelled()
            try:
                messages = await subscription.fetch(self._batch, timeout=FETCH_WAIT_S)
            except (TimeoutError, NatsTimeout):
                continue
            except NatsError as exc:
                failures = await self._pause(exc, failures)
                continue
            try:
                self._note_redelivered(messages)
                await take(messages)
                for msg in messages:
                    await msg.ack()
            except (NatsError, psycopg.Error) as exc:
                # Not acknowledged (or not all): JetStream gives them again after ack_wait.
                failures = await self._pause(exc, failures)
                continue
            failures = 0

    async def _pause(self, exc: Exception, failures: int) -> int:
        """A NATS node that died (its streams electing leaders, the client reconnecting) or a
        PostgreSQL that does not answer is waited out here, not by ending the replica; a
        client closed for good ends it. Returns the failures in a row."""
        if self._nc.is_closed:
            raise exc
        pause = RETRY_PAUSES_S[min(failures, len(RETRY_PAUSES_S) - 1)]
        _LOG.warning("fleet consumer: %r; trying again in %.1f s", exc, pause)
        await self._clock.sleep(pause)
        return failures + 1

    def _note_redelivered(self, messages: list[Msg]) -> None:
        again = sum(1 for m in messages if m.metadata.num_delivered > 1)
        if again:
            self.redelivered += again
            _LOG.info("fleet: %d of %d messages on %s were delivered before (a replica died "
                      "or was slower than ack_wait)", again, len(messages),
                      messages[0].metadata.stream)

    async def _take_events(self, messages: list[Msg]) -> None:
        events: list[tuple[str, dict[str, Any]]] = []
        results: list[tuple[str, dict[str, Any]]] = []
        prefix = self._names.prefix
        for msg in messages:
            kind, _, bridge = msg.subject.removeprefix(prefix + ".").partition(".")
            body = _json(msg)
            if body is None:
                continue
            if kind == "events" and "event_id" in body:
                events.append((bridge, body))
            elif kind == "results" and "command_id" in body:
                results.append((bridge, body))
        await self._db.record(events, results)
        self.events += len(events)
        self.results += len(results)

    async def _take_state(self, messages: list[Msg]) -> None:
        changes = []
        prefix = f"$KV.{self._names.state_bucket}."
        for msg in messages:
            parts = msg.subject.removeprefix(prefix).split(".", 2)
            if len(parts) != 3:
                continue
            bridge, kind, object_id = parts
            deleted = (msg.headers or {}).get(KV_OPERATION) in ("DEL", "PURGE")
            body = None if deleted else _json(msg)
            if not deleted and body is None:
                continue
            changes.append(StateChange(bridge, kind, object_id,
                                       msg.metadata.sequence.stream, body))
        await self._db.apply_state(changes)
        self.state_changes += len(changes)

    async def _heartbeat(self, msg: Msg) -> None:
        bridge = msg.subject.rsplit(".", 1)[-1]
        body = _json(msg) or {}
        status = "down" if body.get("status") == "down" else "up"
        try:
            await self._db.seen(bridge, status, self._clock.now())
        except Exception as exc:  # a missed beat is harmless: the next one comes soon
            _LOG.warning("heartbeat of %s not recorded: %s", bridge, exc)


def _json(msg: Msg) -> dict[str, Any] | None:
    try:
        body = json.loads(msg.data)
    except ValueError:
        _LOG.warning("a message on %s is not JSON; skipped", msg.subject)
        return None
    return body if isinstance(body, dict) else None
