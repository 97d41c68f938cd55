"""Upstream commands: each command id runs once, its result is stored and repeated on request.

A command's execution belongs to the runner, not to the connection it arrived on: a dropped
connection does not cancel a half-done command, and the upstream gets the stored result when it
sends the same command id again.

Exactly once across a crash: the engine's change and an *applied marker* for the command id
commit in one SQLite transaction; the result is stored (clearing the marker) in the next one.
A command id redelivered with a marker but no result was applied before the process died: it
is not applied again, its result is rebuilt from the current state and stored. A disk that fills
after the change's commit is the same window without the crash: the command's true result is
answered though it cannot be stored, never `store_unavailable`, and the marker answers a
redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.application import Application, CodeChanges, CommandReceipt
from bridge.engine import CodeRequest, EngineError
from bridge.model import AccessCodeType
from bridge.records import CodeRecord
from bridge.serialize import access_code_json, device_json
from bridge.store import Store, StoreUnavailable
from bridge.upstream.protocol import (
    MUTATING_ACTIONS,
    Command,
    CommandAction,
    CommandResult,
    ConvertUnmanagedAccessCode,
    CreateAccessCode,
    DeleteAccessCode,
    DeleteUnmanagedAccessCode,
    ErrorBody,
    ProtocolProblem,
    PullBackupAccessCode,
    UpdateAccessCode,
    UpdateDevice,
    dump,
    parse_command,
)

_LOG = logging.getLogger(__name__)
# Fixed, so a create redelivered after a crash maps to the code it already made.
_CREATED_CODE_NAMESPACE = uuid.UUID("c6b3d0a1-5e0f-4f57-8d7e-3b1f6b9e2a44")
KEEP_RESULTS = 10_000
# The one answer that is not final: nothing was applied or stored.
STORE_UNAVAILABLE = "store_unavailable"


def created_code_id(bridge_id: str, command_id: str) -> str:
    """The access_code_id an `access_codes.create` command gives its code."""
    return str(uuid.uuid5(_CREATED_CODE_NAMESPACE, f"{bridge_id}:{command_id}"))


class CommandRunner:
    """Runs upstream commands through the application layer, exactly once per command id."""

    def __init__(self, store: Store, app: Application, bridge_id: str, *,
                 outbox_full: Callable[[], bool],
                 send_snapshot: Callable[[], Awaitable[None]],
                 keep_results: int = KEEP_RESULTS) -> None:
        self._store = store
        self._app = app
        self._state = app.state
        self._bridge_id = bridge_id
        self._outbox_full = outbox_full
        self._send_snapshot = send_snapshot
        self._keep = keep_results
        self._running: dict[str, asyncio.Task[CommandResult]] = {}
        self.executed = 0
        # Commands found applied (marker) but unanswered, answered from the current state.
        self.rebuilt = 0

    async def result_for(self, command: Command) -> CommandResult:
        """The command's one result: stored, still running, or from running it now."""
        stored = await self._store.read(lambda r: r.command_result(command.command_id))
        if stored is not None:
            return CommandResult.model_validate_json(stored)
        task = self._running.get(command.command_id)
        if task is None:
            task = asyncio.create_task(self._run_and_store(command),
                                       name=f"upstream-command:{command.command_id[:32]}")
            self._running[command.command_id] = task
            task.add_done_callback(lambda _: self._running.pop(command.command_id, None))
        # Shielded: the connection may drop while the command is still applying.
        return await asyncio.shield(task)

    async def answer(self, command: Command) -> CommandResult:
        """The command's result for any transport: `result_for`, with a store that cannot
        write answered `store_unavailable` (nothing applied or stored: the upstream may send
        it again, see `retry_later`) and a bug answered `internal_error`, neither stored."""
        try:
            return await self.result_for(command)
        except StoreUnavailable as exc:
            return _failed(command.command_id, STORE_UNAVAILABLE, str(exc))
        except Exception:  # a bug, not a refusal: answer, log, and do not store it
            _LOG.exception("upstream command %s failed", command.command_id)
            return _failed(command.command_id, "internal_error",
                           "the bridge failed to run this command")

    async def close(self) -> None:
        """Cancel commands still running (shutdown); their ids run again when redelivered."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run_and_store(self, command: Command) -> CommandResult:
        cid = command.command_id
        stored, marker = await self._store.read(
            lambda r: (r.command_result(cid), r.command_marker(cid)))
        if stored is not None:
            # A copy that finished between result_for's read and this task's start.
            return CommandResult.model_validate_json(stored)
        try:
            result = await self._execute(command, marker)
        except StoreUnavailable:
            # The disk may have filled after the change committed with its marker (a write
            # that follows the commit, such as an action attempt's, failed): then the command
            # was applied, and saying otherwise would make the upstream believe it was not.
            applied = await self._store.read(lambda r: r.command_marker(cid))
            if applied is None:
                raise  # nothing was applied: the upstream may send it again
            result = self._rebuild(cid, applied)
        try:
            await self._store_result(result)
        except StoreUnavailable as exc:
            # Applied (its marker is committed) or refused, the result is what happened: it is
            # answered unstored, and a redelivery is answered from the marker (as after a crash).
            _LOG.warning("upstream command %s: its result cannot be stored (%s); answered "
                         "anyway", cid, exc)
        return result

    async def _store_result(self, result: CommandResult) -> None:
        """Store a command's final result and clear its applied marker, in one transaction."""
        keep = self._keep
        await self._store.write(
            lambda tx: tx.put_command_result(result.command_id, dump(result), keep))

    async def _execute(self, command: Command, marker: str | None) -> CommandResult:
        cid = command.command_id
        try:
            body = parse_command(command)
        except ProtocolProblem as problem:
            _LOG.info("upstream command %s refused: %s", cid, problem.message)
            return _failed(cid, problem.kind, problem.message, problem.field)
        if marker is not None:
            self.rebuilt += 1
            _LOG.info("upstream command %s: %s was applied before its result was stored; "
                      "answering from the current state", cid, body.action)
            return self._rebuild(cid, marker)
        if body.action in MUTATING_ACTIONS and self._outbox_full():
            return _failed(cid, "outbox_full", "The bridge's outbox of events is full: it "
                           "accepts changes again once the upstream acknowledges its backlog")
        self.executed += 1
        _LOG.info("upstream command %s: %s", cid, body.action)
        try:
            return CommandResult(command_id=cid, ok=True, result=await self._apply(cid, body))
        except EngineError as exc:
            return _failed(cid, exc.kind, str(exc), exc.field_name)

    async def _apply(self, cid: str, body: CommandAction) -> dict[str, Any]:
        app = self._app
        if isinstance(body, CreateAccessCode):
            code_id = created_code_id(self._bridge_id, cid)
            if code_id not in self._state.codes:
                await app.create_code(body.device_id, CodeRequest(
                    name=body.name, code=body.code, starts_at=body.starts_at,
                    ends_at=body.ends_at, preferred_code_length=body.preferred_code_length,
                    allow_external_modification=body.allow_external_modification,
                    common_code_key=body.common_code_key,
                    use_backup_access_code_pool=body.use_backup_access_code_pool,
                ), access_code_id=code_id, receipt=_mark(cid, body.action, code_id))
            return {"access_code": self._code(code_id)}
        if isinstance(body, UpdateAccessCode):
            code = await app.update_code(body.access_code_id, CodeChanges(
                name=body.name, code=body.code,
                type=AccessCodeType(body.type) if body.type else None,
                starts_at=body.starts_at, ends_at=body.ends_at,
                allow_external_modification=body.allow_external_modification,
                use_backup_access_code_pool=body.use_backup_access_code_pool,
            ), receipt=_mark(cid, body.action, body.access_code_id))
            return {"access_code": self._code(code.access_code_id)}
        if isinstance(body, DeleteAccessCode):
            await app.delete_code(body.access_code_id,
                                  receipt=_mark(cid, body.action, body.access_code_id))
            return {}
        if isinstance(body, PullBackupAccessCode):
            backup, original = await app.pull_backup(
                body.access_code_id, receipt=_mark(cid, body.action, body.access_code_id))
            return {"access_code": self._code(original.access_code_id),
                    "backup_access_code": self._code(backup.access_code_id)}
        if isinstance(body, ConvertUnmanagedAccessCode):
            code = await app.convert_unmanaged(
                body.access_code_id, name=body.name,
                allow_external_modification=body.allow_external_modification,
                receipt=_mark(cid, body.action, body.access_code_id))
            return {"access_code": self._code(code.access_code_id)}
        if isinstance(body, DeleteUnmanagedAccessCode):
            await app.delete_unmanaged(body.access_code_id,
                                       receipt=_mark(cid, body.action, body.access_code_id))
            return {}
        if isinstance(body, UpdateDevice):
            device = await app.update_device(
                body.device_id, is_managed=body.is_managed,
                backup_pool_enabled=body.backup_access_code_pool_enabled,
                receipt=_mark(cid, body.action, "", device_id=body.device_id))
            return {"device": device_json(device, self._bridge_id)}
        await self._send_snapshot()
        return {}

    def _rebuild(self, cid: str, marker: str) -> CommandResult:
        """The result of a command applied before a crash, from the current state; nothing
        is applied again."""
        applied = json.loads(marker)
        action, code_id = str(applied["action"]), str(applied["access_code_id"])
        if action == "devices.update":
            device = self._state.devices.get(str(applied.get("device_id")))
            if device is None:
                return _failed(cid, "device_not_found", "The command was applied, but the "
                               "device is gone since", "device_id")
            return CommandResult(command_id=cid, ok=True,
                                 result={"device": device_json(device, self._bridge_id)})
        if action in ("access_codes.delete", "access_codes.unmanaged.delete"):
            return CommandResult(command_id=cid, ok=True, result={})
        code = self._live(code_id)
        if code is None:
            return _gone(cid, code_id, "access_code_id")
        result = {"access_code": self._code(code_id)}
        if action == "access_codes.pull_backup_access_code":
            backup_id = code.pulled_backup_access_code_id
            if backup_id is None or self._live(backup_id) is None:
                return _gone(cid, backup_id or "of the pulled backup", None)
            result["backup_access_code"] = self._code(backup_id)
        return CommandResult(command_id=cid, ok=True, result=result)

    def _live(self, access_code_id: str) -> CodeRecord | None:
        code = self._state.codes.get(access_code_id)
        return code if code is not None and code.is_managed and not code.deleted else None

    def _code(self, access_code_id: str) -> dict[str, Any]:
        return access_code_json(self._state.codes[access_code_id], self._state, self._bridge_id)


def retry_later(result: CommandResult) -> bool:
    """True for an answer that is not the command's result: it should be delivered again."""
    return result.error is not None and result.error.type == STORE_UNAVAILABLE


def _mark(command_id: str, action: str, access_code_id: str,
          device_id: str | None = None) -> CommandReceipt:
    """The receipt that marks the command applied in its change's transaction."""
    applied = {"action": action, "access_code_id": access_code_id}
    if device_id is not None:
        applied["device_id"] = device_id
    return CommandReceipt(command_id, json.dumps(applied))


def _gone(command_id: str, access_code_id: str, field: str | None) -> CommandResult:
    return _failed(command_id, "access_code_not_found",
                   f"The command was applied, but access code {access_code_id} has been "
                   "deleted since, so its result cannot be shown", field)


def _failed(command_id: str, kind: str, message: str,
            field: str | None = None) -> CommandResult:
    return CommandResult(command_id=command_id, ok=False,
                         error=ErrorBody(type=kind, message=message, field=field))
