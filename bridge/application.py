"""The application layer: what a request to change locks and codes means, once for every front.

The HTTP API (bridge/api/routes.py) and the upstream commands (bridge/upstream/commands.py) are
two front doors to the same requests. Each parses its own wire format, then calls this layer,
which holds the domain rules a request carries before the engine runs it: an ongoing code given
times becomes time-bound, a backup pool stays on once switched on, a code already being deleted
is not deleted again, a lock asked to be what it already is stays as it is. A front then shapes
the answer its clients expect (an action attempt, a command result) from what this layer returns.

What a front must keep with a change, in the same transaction (the API's action attempt, the
upstream's applied-command marker), it hands over as a `Receipt` (the engine's protocol,
bridge/engine/requests.py; the receipts below): the engine asks it to write itself in the
change's transaction, so no front touches a store transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from bridge.engine import CodeRequest, Engine, EngineError, ErrorKind, Receipt
from bridge.model import AccessCodeType, Event
from bridge.records import CodeRecord, DeviceRecord
from bridge.stateview import StateView

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from bridge.clock import Clock
    from bridge.store import Tx

POOL_FIELD = "backup_access_code_pool_enabled"


@dataclass(frozen=True, slots=True)
class AttemptReceipt:
    """An action attempt (the API's handle on a change) kept with the change it tracks."""

    action_attempt_id: str
    attempt: dict[str, Any]

    def record(self, tx: Tx) -> None:
        """Keep the action attempt."""
        tx.put_action_attempt(self.action_attempt_id, self.attempt)


@dataclass(frozen=True, slots=True)
class CommandReceipt:
    """An upstream command marked applied with its change, so a crash before its result is
    stored does not apply it twice (bridge/upstream/commands.py)."""

    command_id: str
    marker: str

    def record(self, tx: Tx) -> None:
        """Mark the command applied."""
        tx.mark_command_applied(self.command_id, self.marker)


@dataclass(frozen=True, slots=True)
class DeclaredReceipt:
    """A code declared under `codes:` in the configuration, noted as created with it, so a
    crash in between does not create it twice at the next start (bridge/daemon.py)."""

    key: str
    access_code_id: str

    def record(self, tx: Tx) -> None:
        """Note the declared code as created."""
        tx.set_declared(self.key, self.access_code_id)


@dataclass(frozen=True, slots=True)
class RestoreReceipt:
    """A restore from the upstream done, kept with the codes it brought back: the `codes:`
    entries of the configuration they are (key -> access_code_id) noted as created, and the
    store's mark that a restore is pending (`pending_mark`) cleared, so a crash in between
    neither loses the codes nor restores them twice (bridge/upstreamrestore.py)."""

    declared: Mapping[str, str]
    pending_mark: str

    def record(self, tx: Tx) -> None:
        """Note the restored codes' `codes:` entries and clear the restore's pending mark."""
        for key, access_code_id in self.declared.items():
            tx.set_declared(key, access_code_id)
        tx.drop_kv(self.pending_mark)



@dataclass(frozen=True, slots=True)
class CodeChanges:
    """What an update asks to change on a managed code; None leaves a field as it is."""

    name: str | None = None
    code: str | None = None
    type: AccessCodeType | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    allow_external_modification: bool | None = None
    use_backup_access_code_pool: bool | None = None


@dataclass(frozen=True, slots=True)
class Deletion:
    """A managed code asked to come off its lock; `repeated` when its removal was already
    under way (nothing new was asked of the engine)."""

    code: CodeRecord
    repeated: bool


class Application:
    """The requests both fronts make, with their rules, over the engine's public methods."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.state = StateView(engine)

    @property
    def clock(self) -> Clock:
        """The engine's clock (requests are stamped with it)."""
        return self._engine.clock

    # -- managed codes ---------------------------------------------------------------------

    async def create_code(self, device_id: str, request: CodeRequest, *,
                          access_code_id: str | None = None,
                          receipt: Receipt | None = None) -> CodeRecord:
        """A new managed code: time-bound when it has times, ongoing otherwise."""
        self.state.device(device_id)
        kind = AccessCodeType.TIME_BOUND if request.starts_at or request.ends_at \
            else request.type or AccessCodeType.ONGOING
        request = replace(request, type=kind)
        return await self._engine.create_code(device_id, request, access_code_id=access_code_id,
                                              receipt=receipt)

    async def update_code(self, access_code_id: str, changes: CodeChanges, *,
                          device_id: str | None = None,
                          receipt: Receipt | None = None) -> CodeRecord:
        """Change a managed code; an ongoing code given times becomes time-bound (as in Seam:
        kept ongoing, its window would show everywhere and be enforced nowhere)."""
        current = self._managed_code(access_code_id, device_id)
        kind = changes.type
        if kind is None and (changes.starts_at or changes.ends_at) \
                and current.type is AccessCodeType.ONGOING:
            kind = AccessCodeType.TIME_BOUND
        request = CodeRequest(
            name=changes.name, code=changes.code, type=kind, starts_at=changes.starts_at,
            ends_at=changes.ends_at,
            allow_external_modification=changes.allow_external_modification,
            use_backup_access_code_pool=changes.use_backup_access_code_pool)
        return await self._engine.update_code(current.access_code_id, request,
                                              receipt=receipt)

    async def delete_code(self, access_code_id: str, *, device_id: str | None = None,
                          receipt: Receipt | None = None) -> Deletion:
        """Take a managed code off its lock; asking again while it comes off changes nothing
        (no second `access_code.deleted`)."""
        current = self._managed_code(access_code_id, device_id)
        if current.deleted:
            return Deletion(current, repeated=True)
        await self._engine.delete_code(current.access_code_id, receipt=receipt)
        return Deletion(current, repeated=False)

    async def pull_backup(self, access_code_id: str, *, receipt: Receipt | None = None,
                          ) -> tuple[CodeRecord, CodeRecord]:
        """A backup code for a time-bound code (the same one when asked again): (backup,
        original)."""
        self._managed_code(access_code_id, None)
        return await self._engine.pull_backup(access_code_id, receipt=receipt)

    def generate_code(self, device_id: str) -> str:
        """A PIN that fits the lock's rules and clashes with none of its codes (kept nowhere)."""
        return self._engine.generate_code(self.state.device(device_id).device_id)

    # -- unmanaged codes -------------------------------------------------------------------

    async def convert_unmanaged(self, access_code_id: str, *, name: str | None = None,
                                allow_external_modification: bool | None = None,
                                receipt: Receipt | None = None) -> CodeRecord:
        """Make a code found on a lock managed: lockbridge keeps it there from now on."""
        self.state.code(access_code_id, managed=False)
        request = CodeRequest(name=name, allow_external_modification=allow_external_modification)
        return await self._engine.convert_unmanaged(access_code_id, request,
                                                    receipt=receipt)

    async def delete_unmanaged(self, access_code_id: str, *,
                               receipt: Receipt | None = None) -> CodeRecord:
        """Remove a code lockbridge did not put on the lock (done when this returns); the code
        as it was."""
        code = self.state.code(access_code_id, managed=False)
        await self._engine.delete_unmanaged(access_code_id, receipt=receipt)
        return code

    # -- devices ---------------------------------------------------------------------------

    async def update_device(self, device_id: str, *, is_managed: bool | None = None,
                            backup_pool_enabled: bool | None = None,
                            receipt: Receipt | None = None) -> DeviceRecord:
        """Bring a lock under lockbridge or take it out, or switch its backup pool on.

        A lock asked to be what it already is stays as it is. A backup pool stays on once
        enabled: guests may hold its codes; taking the lock out of lockbridge
        (`is_managed: false`) is what takes its backup codes off."""
        device = self.state.any_device(device_id)
        if is_managed is None and backup_pool_enabled is None:
            raise EngineError(ErrorKind.INVALID_INPUT, "Nothing to change: give is_managed or "
                              f"{POOL_FIELD}", "is_managed")
        if backup_pool_enabled is False and device.backup_pool_enabled:
            raise EngineError(
                ErrorKind.INVALID_INPUT, "A backup access code pool stays on once enabled; "
                "remove the device from lockbridge (is_managed: false) to take its backup codes "
                "off",
                POOL_FIELD)
        steps: list[Callable[[Receipt | None], Awaitable[DeviceRecord]]] = []
        if is_managed and not device.is_managed:
            steps.append(partial(self._engine.manage_device, device_id))
        if backup_pool_enabled and not device.backup_pool_enabled:
            steps.append(partial(self._switch_pool_on, device_id))
        if is_managed is False and device.is_managed:
            steps.append(partial(self._engine.unmanage_device, device_id))
        for step in steps:
            # The receipt goes with the last change: every step finds its work done when run
            # again, so a crash before the last one is repaired by running the request again.
            device = await step(receipt if step is steps[-1] else None)
        return device

    async def _switch_pool_on(self, device_id: str, receipt: Receipt | None) -> DeviceRecord:
        """Switch the backup pool of a managed lock on (after it was brought back, if asked)."""
        return await self._engine.enable_backup_pool(self.state.device(device_id).device_id,
                                                     receipt)

    # -- restore from the upstream -----------------------------------------------------------

    async def restore_codes(self, codes: Sequence[CodeRecord], receipt: RestoreReceipt) -> None:
        """Commit managed codes the upstream kept for a bridge whose state was lost (each
        awaiting adoption: looked for on its lock before anything is written), with the
        receipt that ends the restore."""
        await self._engine.restore_codes(codes, receipt)

    # -- automations -------------------------------------------------------------------------

    async def record(self, events: list[Event], rows: Receipt | None) -> None:
        """Commit an automation's own rows (a receipt that writes them) with its events in one
        transaction; the upstream and every listener hear of the events
        (bridge/reservations/)."""
        await self._engine.record_events(events, receipt=rows)

    # -- helpers ---------------------------------------------------------------------------

    def _managed_code(self, access_code_id: str, device_id: str | None) -> CodeRecord:
        """A managed code; on another device than the one named it is not found."""
        code = self.state.code(access_code_id)
        if device_id is not None and code.device_id != device_id:
            raise EngineError(ErrorKind.ACCESS_CODE_NOT_FOUND,
                              "No such access code on that device", "access_code_id")
        return code
