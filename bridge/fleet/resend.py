"""Commands recorded but never published: the API records a command in PostgreSQL, publishes it
to its bridge's subject, then marks it published. A replica killed between the first and the
last step (or a stream that did not answer within the request's time) leaves a command that
only its memory knew was still to send; every replica's resender publishes such commands once
they are older than any request could still be publishing them. The message id is the command
id, so a copy inside JetStream's duplicate window is dropped, and the bridge applies a command
id once anyway (its applied marker); commands older than half that window are left alone."""

from __future__ import annotations

import logging

import psycopg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from bridge.clock import Clock
from bridge.fleet.api import command_message
from bridge.fleet.db import FleetDb
from bridge.fleet.streams import DUPLICATE_WINDOW_S
from bridge.upstream.nats_subjects import MSG_ID, FleetNames, raise_if_cancelled

_LOG = logging.getLogger(__name__)
# Older unpublished commands are not sent: beyond the duplicate window only the bridge's own
# marker (kept for a bounded number of commands) would stop a second application.
RESEND_HORIZON_S = DUPLICATE_WINDOW_S / 2


class CommandResender:
    """Publishes the commands a request recorded and did not live to publish."""

    def __init__(self, js: JetStreamContext, db: FleetDb, names: FleetNames, clock: Clock, *,
                 after_s: float, every_s: float) -> None:
        self._js = js
        self._db = db
        self._names = names
        self._clock = clock
        self._after = after_s
        self._every = every_s
        self.resent = 0

    async def run(self) -> None:
        """One pass every `every_s` until cancelled; a failed pass is tried at the next."""
        while True:  # until cancelled
            raise_if_cancelled()
            try:
                await self.pass_once()
            except (NatsError, psycopg.Error, OSError) as exc:
                _LOG.warning("unpublished commands not sent yet: %s", exc)
            await self._clock.sleep(self._every)

    async def pass_once(self) -> int:
        """Publish and mark every command due; returns how many."""
        due = await self._db.unpublished(self._after, RESEND_HORIZON_S)
        for command_id, bridge_id, command in due:
            raise_if_cancelled()
            await self._js.publish(self._names.commands(bridge_id),
                                   command_message(command_id, command),
                                   headers={MSG_ID: command_id})
            await self._db.mark_published(command_id)
            _LOG.info("command %s for bridge %s was recorded but not published; published",
                      command_id, bridge_id)
        self.resent += len(due)
        return len(due)
