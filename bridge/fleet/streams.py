"""The fleet's JetStream streams and state bucket, created (or kept) by the backend; bridges
never create them, so their users need no stream-management permission."""

from __future__ import annotations

import contextlib

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from bridge.upstream.nats_subjects import FleetNames

# A replayed event or result inside this window is dropped by JetStream itself; beyond it the
# backend's unique keys drop it (the window's memory grows with the message rate).
DUPLICATE_WINDOW_S = 3600.0
# Events and results are kept this long for a backend that is down or behind.
EVENTS_MAX_AGE_S = 7 * 24 * 3600.0


async def ensure_streams(js: JetStreamContext, names: FleetNames, replicas: int) -> None:
    """Create the events and commands streams and the state bucket if missing."""
    events = StreamConfig(
        name=names.events_stream,
        subjects=[f"{names.prefix}.events.*", f"{names.prefix}.results.*"],
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_S, max_age=EVENTS_MAX_AGE_S,
        discard=DiscardPolicy.OLD)
    # Work-queue retention: a command leaves the stream when its bridge acknowledges it.
    commands = StreamConfig(
        name=names.commands_stream, subjects=[f"{names.prefix}.commands.*"],
        retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE, num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_S)
    for config in (events, commands):
        # One that exists with another configuration (an operator's tuning) is kept as it is.
        with contextlib.suppress(BadRequestError):
            await js.add_stream(config)
    with contextlib.suppress(BadRequestError, NatsError):
        await js.create_key_value(KeyValueConfig(bucket=names.state_bucket, history=1,
                                                 replicas=replicas,
                                                 storage=StorageType.FILE))
