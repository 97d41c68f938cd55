"""A replica's consumer waits out what a dead NATS node or a PostgreSQL hiccup causes (a fetch
that fails, a batch it could not write) instead of ending the replica: before, any error but a
fetch timeout left the pump and the whole replica exited, leaving recovery to a restart by
systemd (none in the scale run). A connection closed for good still ends it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import ConnectionReconnectingError, NoRespondersError

from bridge.clock import FakeClock
from bridge.fleet.consumer import RETRY_PAUSES_S, FleetConsumer
from bridge.fleet.db import FleetDb
from bridge.upstream.nats_subjects import FleetNames


class RecordingClock(FakeClock):
    """Sleeps return at once; their lengths are kept."""

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)


@dataclass
class Metadata:
    num_delivered: int
    stream: str = "LOCKBRIDGE_EVENTS"


@dataclass
class Message:
    metadata: Metadata
    acks: int = 0

    async def ack(self) -> None:
        self.acks += 1


@dataclass
class Subscription:
    """Fetch answers in order (an exception is raised); then nothing more comes."""

    answers: list[Any]

    async def fetch(self, batch: int, timeout: float) -> list[Message]:
        if not self.answers:
            await asyncio.Event().wait()
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return cast(list[Message], answer)


@dataclass
class Connection:
    is_closed: bool = False

    def jetstream(self) -> object:
        return object()


@dataclass
class Writer:
    """`take`: fails as told, then records the batches it wrote."""

    failures: list[BaseException]
    written: list[list[Message]] = field(default_factory=list)

    async def __call__(self, messages: list[Message]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.written.append(messages)


def consumer(nc: Connection, clock: FakeClock) -> FleetConsumer:
    return FleetConsumer(cast(NatsClient, nc), cast(FleetDb, None), FleetNames(), clock)


async def test_failed_fetches_and_writes_are_waited_out_and_nothing_is_acked_unwritten(
) -> None:
    first = Message(Metadata(num_delivered=1))
    again = Message(Metadata(num_delivered=2))  # the same message, given again after ack_wait
    subscription = Subscription([NoRespondersError(), ConnectionReconnectingError(), [first],
                                 [again]])
    writer = Writer([psycopg.OperationalError("the server closed the connection")])
    clock = RecordingClock()
    fleet = consumer(Connection(), clock)
    pump = asyncio.create_task(fleet._pump(cast(Any, subscription), writer))
    try:
        async with asyncio.timeout(5):
            while not writer.written:
                await asyncio.sleep(0.01)
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    assert clock.slept == list(RETRY_PAUSES_S[:3])
    assert (first.acks, again.acks) == (0, 1), "acknowledged only once written"
    assert writer.written == [[again]] and fleet.redelivered == 1


async def test_a_connection_closed_for_good_ends_the_consumer() -> None:
    subscription = Subscription([NoRespondersError()])
    fleet = consumer(Connection(is_closed=True), RecordingClock())
    with pytest.raises(NoRespondersError):
        async with asyncio.timeout(5):
            await fleet._pump(cast(Any, subscription), Writer([]))
