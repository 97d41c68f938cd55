"""Action attempts: Seam's handle on a change that reaches the lock later.

The engine knows only codes; an attempt records which change was asked for and is judged against
the code's state whenever someone looks (and when the engine commits events), then persisted once
it is final, so `/action_attempts/get` answers the same after a restart. PINs are never stored
here: a success's `result` is rebuilt from the code when it is read.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from bridge.application import AttemptReceipt
from bridge.engine import Engine
from bridge.model import AccessCodeErrorCode, AccessCodeStatus, AccessCodeType, Event
from bridge.records import CodeRecord
from bridge.serialize import iso
from bridge.stateview import StateView
from bridge.store import Store, Tx

_LOG = logging.getLogger(__name__)

# Errors that end an attempt: the engine has given up or needs the user to act.
_FATAL_ON_SET = frozenset({
    AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE,
    AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE,
    AccessCodeErrorCode.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE,
})
_FATAL_ON_REMOVE = frozenset({AccessCodeErrorCode.FAILED_TO_REMOVE_FROM_DEVICE})
# Final attempts kept in the store; older ones are trimmed so the table stays small.
KEEP_ATTEMPTS = 5000


class ActionType(enum.StrEnum):
    """Seam's `action_type` of the attempts lockbridge makes."""

    CREATE_ACCESS_CODE = "CREATE_ACCESS_CODE"
    UPDATE_ACCESS_CODE = "UPDATE_ACCESS_CODE"
    DELETE_ACCESS_CODE = "DELETE_ACCESS_CODE"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One action attempt as stored."""

    action_attempt_id: str
    action_type: ActionType
    access_code_id: str
    device_id: str
    created_at: str
    status: str = "pending"
    error_type: str | None = None
    error_message: str | None = None
    # Revision of the code when the change was asked for (updates only).
    revision: int = 0

    def to_record(self) -> dict[str, Any]:
        """What the store keeps."""
        # Field by field: dataclasses.asdict deep-copies each value, twice per create.
        return {"action_attempt_id": self.action_attempt_id,
                "action_type": self.action_type.value, "access_code_id": self.access_code_id,
                "device_id": self.device_id, "created_at": self.created_at,
                "status": self.status, "error_type": self.error_type,
                "error_message": self.error_message, "revision": self.revision}

    @classmethod
    def from_record(cls, raw: dict[str, Any]) -> Attempt:
        """An attempt from `to_record`'s output."""
        return cls(**{**raw, "action_type": ActionType(raw["action_type"])})

    def receipt(self) -> AttemptReceipt:
        """The attempt as the application layer keeps it with the change it tracks."""
        return AttemptReceipt(self.action_attempt_id, self.to_record())


if [f.name for f in fields(Attempt)] != list(Attempt("", ActionType.CREATE_ACCESS_CODE, "", "",
                                                        "").to_record()):
    raise TypeError("Attempt.to_record must list every field of Attempt, in order")

CodeJson = Callable[[CodeRecord], dict[str, Any]]


class ActionAttempts:
    """Creates, judges and persists action attempts."""

    def __init__(self, engine: Engine, store: Store, code_json: CodeJson) -> None:
        self._engine = engine
        self._state = StateView(engine)
        self._store = store
        self._code_json = code_json
        self._attempts: dict[str, Attempt] = {}
        # access_code_id -> ids of its pending attempts: a commit judges those, not every
        # attempt kept (up to KEEP_ATTEMPTS, at each of a create's commits).
        self._pending: dict[str, dict[str, None]] = {}

    async def load(self) -> None:
        """Read every stored attempt and start judging pending ones on each engine commit."""
        rows = await self._store.read(lambda r: r.action_attempts())
        for raw in rows:
            try:
                attempt = Attempt.from_record(raw)
            except (TypeError, ValueError, KeyError):
                _LOG.warning("skipping an unreadable action attempt record")
                continue
            self._keep(attempt)
        self._engine.subscribe(self._on_events)

    def started(self, action_type: ActionType, code: CodeRecord, now: datetime) -> Attempt:
        """A new pending attempt for `code`, not yet kept (see `receipt` and `adopt`)."""
        return Attempt(str(uuid.uuid4()), action_type, code.access_code_id, code.device_id,
                       iso(now) or "", revision=code.revision)

    async def adopt(self, attempt: Attempt, persisted: bool = True) -> Attempt:
        """Keep an attempt (persisting it unless `persisted`) and judge it at once."""
        self._keep(attempt)
        if not persisted:
            await self._put(attempt)
        return await self.refresh(attempt)

    def get(self, action_attempt_id: str) -> Attempt | None:
        """An attempt by id (not judged again; see `refresh`)."""
        return self._attempts.get(action_attempt_id)

    def all(self) -> list[Attempt]:
        """Every attempt, oldest first."""
        return list(self._attempts.values())

    async def refresh(self, attempt: Attempt) -> Attempt:
        """Judge a pending attempt against the code now; persist it if it became final."""
        if attempt.status != "pending":
            return attempt
        judged = self._judge(attempt)
        if judged != attempt:
            self._keep(judged)
            await self._put(judged)
        return judged

    def to_json(self, attempt: Attempt) -> dict[str, Any]:
        """Seam's action_attempt object."""
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        if attempt.status == "success":
            if attempt.action_type is ActionType.DELETE_ACCESS_CODE:
                result = {}
            else:
                code = self._state.codes.get(attempt.access_code_id)
                result = {"access_code": self._code_json(code) if code else
                          {"access_code_id": attempt.access_code_id,
                           "device_id": attempt.device_id}}
        elif attempt.status == "error":
            error = {"type": attempt.error_type or "unknown_error",
                     "message": attempt.error_message or ""}
        return {"action_attempt_id": attempt.action_attempt_id,
                "action_type": attempt.action_type.value, "status": attempt.status,
                "result": result, "error": error}

    # -- internals ---------------------------------------------------------------------------

    def _judge(self, attempt: Attempt) -> Attempt:
        code = self._state.codes.get(attempt.access_code_id)
        if attempt.action_type is ActionType.DELETE_ACCESS_CODE:
            if code is None or (code.deleted and not code.on_lock):
                return replace(attempt, status="success")
            return _failed(attempt, code, _FATAL_ON_REMOVE) or attempt
        if code is None or code.deleted:
            return replace(attempt, status="error", error_type="access_code_not_found",
                           error_message="The access code was deleted before it was set")
        if attempt.action_type is ActionType.UPDATE_ACCESS_CODE and \
                code.revision < attempt.revision:
            return attempt
        failed = _failed(attempt, code, _FATAL_ON_SET)
        if failed is not None:
            return failed
        if code.status is AccessCodeStatus.SET:
            return replace(attempt, status="success")
        if _waits_for_its_start(code, self._engine.clock.now()):
            # Seam finishes the attempt once the code is accepted; a code that starts later
            # goes onto the lock (or is scheduled on it) before its start without a new attempt.
            return replace(attempt, status="success")
        return attempt

    def _keep(self, attempt: Attempt) -> None:
        self._attempts[attempt.action_attempt_id] = attempt
        if attempt.status == "pending":
            self._pending.setdefault(attempt.access_code_id, {})[attempt.action_attempt_id] = None
        else:
            self._unpend(attempt)

    def _unpend(self, attempt: Attempt) -> None:
        pending = self._pending.get(attempt.access_code_id)
        if pending is not None:
            pending.pop(attempt.action_attempt_id, None)
            if not pending:
                del self._pending[attempt.access_code_id]

    async def _on_events(self, events: list[Event]) -> None:
        touched = {e.access_code_id for e in events if e.access_code_id}
        due = [attempt_id for code_id in touched for attempt_id in self._pending.get(code_id, ())]
        for attempt_id in due:
            attempt = self._attempts.get(attempt_id)
            if attempt is not None and attempt.status == "pending":
                await self.refresh(attempt)

    async def _put(self, attempt: Attempt) -> None:
        record = attempt.to_record()
        trim = len(self._attempts) > KEEP_ATTEMPTS
        oldest = sorted(a.action_attempt_id for a in self._oldest_final()) if trim else []

        def write(tx: Tx) -> None:
            tx.put_action_attempt(attempt.action_attempt_id, record)
            for attempt_id in oldest:
                tx.execute("DELETE FROM action_attempts WHERE action_attempt_id = ?",
                           (attempt_id,))

        await self._store.write(write)
        for attempt_id in oldest:
            self._attempts.pop(attempt_id, None)

    def _oldest_final(self) -> list[Attempt]:
        excess = len(self._attempts) - KEEP_ATTEMPTS
        final = [a for a in self._attempts.values() if a.status != "pending"]
        return final[:max(0, excess)]


def _failed(attempt: Attempt, code: CodeRecord,
            fatal: frozenset[AccessCodeErrorCode]) -> Attempt | None:
    if not code.gave_up:
        return None
    for issue in code.errors:
        if issue.code in fatal:
            return replace(attempt, status="error", error_type=issue.code,
                           error_message=issue.message)
    return None


def _waits_for_its_start(code: CodeRecord, now: datetime) -> bool:
    return (code.type is AccessCodeType.TIME_BOUND and code.starts_at is not None
            and code.starts_at > now and code.status is AccessCodeStatus.UNSET)
