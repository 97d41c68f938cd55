"""The backend's Seam-shaped HTTP API across every bridge: `/devices/list`, `/devices/get`,
`/access_codes/list`, `/access_codes/get`, and `/access_codes/create` sent as a command to the
device's bridge, answered with that bridge's result. Everything it reads is in PostgreSQL, so
any replica answers any request."""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError

from bridge.clock import Clock
from bridge.fleet.db import BridgeSeen, FleetDb
from bridge.serialize import iso
from bridge.upstream.nats_subjects import MSG_ID, FleetNames, raise_if_cancelled

_LOG = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Seam's statuses for the error types a bridge answers with; others are a conflict.
_STATUS = {"invalid_input": 400, "device_not_found": 404, "access_code_not_found": 404,
           "duplicate_access_code": 409, "outbox_full": 503}
# Parameters `access_codes.create` carries to the bridge (docs/upstream-protocol.md).
_CREATE_PARAMS = ("device_id", "name", "code", "preferred_code_length", "starts_at", "ends_at",
                  "allow_external_modification", "common_code_key",
                  "use_backup_access_code_pool")
_PAGINATION = {"has_next_page": False, "next_page_cursor": None, "next_page_url": None}


class FleetError(Exception):
    """An error answer in Seam's shape."""

    def __init__(self, status: int, error_type: str, message: str,
                 data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message, self.data = status, error_type, message, data


def disconnected_error(seen: BridgeSeen | None, now: datetime,
                       stale_after: timedelta) -> dict[str, Any] | None:
    """Pure: Seam's `bridge_disconnected` device error for a bridge that said it was going or
    has not been heard of within `stale_after`, with the time it was last seen; None while it
    is up."""
    if seen is None:
        return None
    if seen.status == "up" and now - seen.last_seen <= stale_after:
        return None
    return {"error_code": "bridge_disconnected", "is_bridge_error": True,
            "is_connected_account_error": False, "is_device_error": True,
            "created_at": iso(seen.last_seen), "last_seen_at": iso(seen.last_seen),
            "message": f"The bridge {seen.bridge_id} that runs this device is disconnected; "
                       f"it was last seen at {iso(seen.last_seen)}"}


class FleetApi:
    """The routes, over the database and the JetStream context commands are published on."""

    def __init__(self, db: FleetDb, js: JetStreamContext, names: FleetNames, clock: Clock, *,
                 api_key: str, stale_after_s: float, command_timeout_s: float) -> None:
        self._db = db
        self._js = js
        self._names = names
        self._clock = clock
        self._key = api_key
        self._stale = timedelta(seconds=stale_after_s)
        self._timeout = command_timeout_s

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._auth])
        for path, handler in (("/devices/list", self.devices_list),
                              ("/devices/get", self.devices_get),
                              ("/access_codes/list", self.codes_list),
                              ("/access_codes/get", self.codes_get),
                              ("/access_codes/create", self.codes_create)):
            app.router.add_route("POST", path, handler)
            app.router.add_route("GET", path, handler)
        app.router.add_get("/health", self.health)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except FleetError as exc:
            error: dict[str, Any] = {"type": exc.error_type, "message": exc.message,
                                     "request_id": str(uuid.uuid4())}
            if exc.data:
                error["data"] = exc.data
            return web.json_response({"error": error, "ok": False}, status=exc.status)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/health":
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self._key.encode()):
                raise FleetError(401, "unauthorized", "A valid API key is required")
        return await handler(request)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    # -- devices ----------------------------------------------------------------------------

    async def devices_list(self, request: web.Request) -> web.Response:
        body = await _body(request)
        ids = body.get("device_ids")
        rows = await self._db.devices(list(ids) if isinstance(ids, list) else None)
        return web.json_response({"devices": await self._with_bridge_errors(rows),
                                  "pagination": _PAGINATION, "ok": True})

    async def devices_get(self, request: web.Request) -> web.Response:
        device_id = str((await _body(request)).get("device_id", ""))
        rows = _one_bridge(device_id, await self._db.devices([device_id]))
        return web.json_response({"device": (await self._with_bridge_errors(rows))[0],
                                  "ok": True})

    async def _with_bridge_errors(self, rows: list[tuple[str, dict[str, Any]]]
                                  ) -> list[dict[str, Any]]:
        bridges = await self._db.bridges()
        now = self._clock.now()
        out = []
        for bridge_id, device in rows:
            error = disconnected_error(bridges.get(bridge_id), now, self._stale)
            if error is not None:
                device = {**device, "errors": [*device.get("errors", []), error]}
            out.append(device)
        return out

    # -- access codes -----------------------------------------------------------------------

    async def codes_list(self, request: web.Request) -> web.Response:
        body = await _body(request)
        ids = body.get("access_code_ids")
        device_id = body.get("device_id")
        rows = await self._db.codes(str(device_id) if device_id else None,
                                    list(ids) if isinstance(ids, list) else None)
        return web.json_response({"access_codes": [c for _, c in rows],
                                  "pagination": _PAGINATION, "ok": True})

    async def codes_get(self, request: web.Request) -> web.Response:
        code_id = str((await _body(request)).get("access_code_id", ""))
        rows = await self._db.codes(access_code_ids=[code_id])
        if not rows:
            raise FleetError(404, "access_code_not_found", f"Access code {code_id} not found")
        return web.json_response({"access_code": rows[0][1], "ok": True})

    async def codes_create(self, request: web.Request) -> web.Response:
        body = await _body(request)
        device_id = body.get("device_id")
        if not isinstance(device_id, str) or not device_id:
            raise FleetError(400, "invalid_input", "device_id is required")
        bridge_id = _one_bridge(device_id, await self._db.devices([device_id]))[0][0]
        command = {"action": "access_codes.create",
                   **{k: body[k] for k in _CREATE_PARAMS if body.get(k) is not None}}
        result = await self.send(bridge_id, command)
        if not result["ok"]:
            error = result.get("error") or {}
            kind = str(error.get("type", "internal_error"))
            raise FleetError(_STATUS.get(kind, 409), kind, str(error.get("message", "")))
        return web.json_response({"access_code": result["result"]["access_code"], "ok": True})

    async def send(self, bridge_id: str, command: dict[str, Any]) -> dict[str, Any]:
        """Record, publish and wait for one command's result (from whichever replica wrote
        it into the database)."""
        command_id = str(uuid.uuid4())
        await self._db.add_command(command_id, bridge_id, command)
        clock = self._clock
        deadline = clock.monotonic() + self._timeout
        await self._publish(self._names.commands(bridge_id),
                            command_message(command_id, command), command_id, deadline)
        # A replica that dies before this line leaves the command to CommandResender.
        await self._db.mark_published(command_id)
        delay = 0.02
        while clock.monotonic() < deadline:  # bounded by the command timeout
            raise_if_cancelled()
            result = await self._db.result(command_id)
            if result is not None:
                return result
            await clock.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        raise FleetError(504, "bridge_timeout", f"Bridge {bridge_id} has not answered yet; the "
                         "command stays queued and is applied when it is back",
                         {"command_id": command_id})

    async def _publish(self, subject: str, payload: bytes, command_id: str,
                       deadline: float) -> None:
        """Publish until JetStream acknowledges: a stream electing a leader (a node died) does
        not answer for a moment, and the message id makes a repeat harmless."""
        clock = self._clock
        pause = 0.1
        while True:  # bounded by the deadline
            raise_if_cancelled()
            try:
                await self._js.publish(subject, payload, headers={MSG_ID: command_id})
                return
            except (NatsTimeout, NoRespondersError, NoStreamResponseError) as exc:
                if clock.monotonic() + pause >= deadline:
                    # Recorded, so it is not dropped: a replica publishes it once the stream
                    # answers (CommandResender). A retry would be a second command.
                    raise FleetError(503, "service_unavailable", "The fleet's message stream "
                                     "does not answer; the command is recorded and is sent "
                                     "to its bridge once it does",
                                     {"command_id": command_id}) from exc
                await clock.sleep(pause)
                pause = min(pause * 2, 1.0)


def _one_bridge(device_id: str, rows: list[tuple[str, dict[str, Any]]]
                ) -> list[tuple[str, dict[str, Any]]]:
    """The one bridge's row of a device id. A bridge derives its device ids from its driver
    and lock ids, so two properties can report the same id (Z-Wave node 5 at both): such an
    id is refused, never routed to whichever bridge sorts first (another property's door)."""
    if not rows:
        raise FleetError(404, "device_not_found", f"Device {device_id} not found")
    bridges = sorted({bridge_id for bridge_id, _ in rows})
    if len(bridges) > 1:
        raise FleetError(409, "ambiguous_device", f"Device id {device_id} is reported by more "
                         f"than one bridge ({', '.join(bridges)}); it cannot be addressed "
                         "until the bridges' device ids differ", {"bridge_ids": bridges})
    return rows


def command_message(command_id: str, command: dict[str, Any]) -> bytes:
    """A command as its bridge reads it (docs/upstream-protocol.md's `command`)."""
    return json.dumps({"type": "command", "command_id": command_id,
                       "command": command}).encode()


async def _body(request: web.Request) -> dict[str, Any]:
    if request.method == "GET":
        return dict(request.query)
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise FleetError(400, "invalid_input", "the body must be JSON") from None
    if not isinstance(body, dict):
        raise FleetError(400, "invalid_input", "the body must be a JSON object")
    return body
