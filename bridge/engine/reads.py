"""What a read of a lock's slots means for its codes: managed codes confirmed, found changed or
missing, writes interrupted by a restart settled, unmanaged codes found, restored codes adopted."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from bridge.driver import SlotRead, SlotState
from bridge.engine import outcomes
from bridge.engine.ids import new_id
from bridge.engine.issues import drop_codes, with_issue
from bridge.engine.outcomes import EventMaker
from bridge.engine.state import EngineState
from bridge.engine.worker import LockWorker
from bridge.logs import REDACTOR
from bridge.model import (
    AccessCodeErrorCode,
    AccessCodeStatus,
    AccessCodeWarningCode,
    DeviceWarningCode,
    Event,
    EventType,
)
from bridge.planner import (
    Policy,
    ReadVerdict,
    held_after_read,
    judge_read,
    outcome_known,
)
from bridge.records import CodeRecord, DeviceRecord
from bridge.store import Intent, IntentOp

_LOG = logging.getLogger("bridge.engine")

# Slot reads that all showed nothing, with none showing a PIN or an empty slot, before a lock
# counts as write-only.
UNREADABLE_READS_FOR_WRITE_ONLY = 5


@dataclass(slots=True)
class _Batch:
    """What one read of a lock changes, committed together."""

    device: DeviceRecord
    worker: LockWorker
    now: datetime
    window: timedelta
    managed_slots: dict[int, CodeRecord]
    unmanaged_slots: dict[int, CodeRecord]
    changed: list[CodeRecord] = field(default_factory=list)
    dropped_codes: list[str] = field(default_factory=list)
    # Slots whose interrupted command the read settled.
    settled_intents: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # Restored codes already adopted in this read.
    adopted: set[str] = field(default_factory=set)


class ReadApplier:
    """Judges slot reads against what should be there and commits what they show."""

    def __init__(self, state: EngineState, rng: random.Random) -> None:
        self._state = state
        self._rng = rng

    async def apply(self, device_id: str, reads: Sequence[SlotRead], full: bool) -> None:
        """Judge slot reads against what should be there; update codes, unmanaged codes, events."""
        state = self._state
        async with state.lock_for(device_id):
            await self._note_readability(device_id, reads)
            device = state.devices[device_id]
            by_slot: dict[int, SlotRead] = {r.slot: r for r in reads}
            if full:
                for known in state.codes_of(device_id):
                    if known.slot is not None and known.slot not in by_slot:
                        by_slot[known.slot] = SlotRead(known.slot, SlotState.EMPTY)
            codes = state.codes_of(device_id)
            batch = _Batch(
                device=device, worker=state.workers[device_id], now=state.clock.now(),
                window=timedelta(seconds=device.info.capabilities.confirmation_window_s),
                managed_slots={c.slot: c for c in codes if c.is_managed and c.slot is not None},
                unmanaged_slots={c.slot: c for c in codes
                                 if not c.is_managed and c.slot is not None})
            for slot, read in sorted(by_slot.items()):
                REDACTOR.remember(read.pin)
                self._read_slot(batch, slot, read)
            changed = batch.changed
            if full:
                changed.extend(self.end_adoption(device_id, changed))
            changed = [state.refresh(c, device, batch.now) for c in changed]
            await state.commit(codes=changed, drop=batch.dropped_codes, events=batch.events,
                               drop_intents=[(device_id, s) for s in batch.settled_intents])
            for slot in batch.settled_intents:
                batch.worker.intents.pop(slot, None)

    def _read_slot(self, batch: _Batch, slot: int, read: SlotRead) -> None:
        code = self._settle_intent(batch, batch.managed_slots.get(slot), slot, read)
        if code is not None:
            code = outcome_known(code)  # the slot was read: what is there is known
        if code is not None and code.deleted and not code.on_lock:
            # Deleted, and the slot shows it is off the lock: nothing is left to do.
            batch.dropped_codes.append(code.access_code_id)
            batch.events.append(self._state.event(EventType.ACCESS_CODE_REMOVED_FROM_DEVICE,
                                                  batch.device.device_id, code.access_code_id,
                                                  {}))
            return
        if code is not None and code.on_lock:
            updated, more = self._judge_managed(code, read, batch.device, batch.now,
                                                batch.window)
            batch.events.extend(more)
            if updated != code or code is not batch.managed_slots.get(slot):
                batch.changed.append(updated)
            return
        if code is not None and self._found_ours(batch, code, slot, read):
            return
        self._read_other(batch, code, slot, read)

    def _settle_intent(self, batch: _Batch, code: CodeRecord | None, slot: int,
                       read: SlotRead) -> CodeRecord | None:
        """A command was in flight for this slot when the process stopped: did it land?"""
        intent = batch.worker.intents.get(slot)
        if code is None or intent is None:
            return code
        code, settled = settle_intent(code, intent, read)
        if settled:
            batch.settled_intents.append(slot)
        return code

    def _found_ours(self, batch: _Batch, code: CodeRecord, slot: int, read: SlotRead) -> bool:
        """A managed code not on the lock (as far as we knew) in a slot that was read: True if
        the read settled it (an empty slot, or our PIN found there)."""
        if code is not batch.managed_slots.get(slot):
            batch.changed.append(code)
        if read.state is SlotState.EMPTY:
            return True
        if read.failed and read.pin == code.code:
            # Listed but never on the lock: written again, deleted when it goes.
            batch.changed.append(replace(code, on_lock_pin=read.pin, verified=False,
                                         sync=replace(code.sync, not_applied=True)))
            return True
        if read.state is SlotState.KNOWN and read.pin == code.code:
            # Our code is there though we did not know it (a replayed intent), or
            # on its way there (then read again until the lock has it).
            updated = replace(code, on_lock_pin=read.pin, on_lock_held=held_after_read(
                replace(code, on_lock_held=None), read))
            if read.pending:
                batch.worker.pending_reads.add(slot)
            else:
                updated, more = outcomes.confirmed(updated, batch.device, batch.now,
                                                   self._state.event)
                batch.events.extend(more)
            batch.changed.append(updated)
            return True
        return False

    def _read_other(self, batch: _Batch, code: CodeRecord | None, slot: int,
                    read: SlotRead) -> None:
        """A slot holding no code of ours: an unmanaged code found, changed or gone, or a
        restored code found where it already is."""
        state = self._state
        device_id = batch.device.device_id
        unmanaged = batch.unmanaged_slots.get(slot)
        if read.state is SlotState.EMPTY:
            if unmanaged is not None:
                batch.changed.extend(outcomes.retry_no_space(state.codes_of(device_id),
                                                             exclude=""))
                batch.dropped_codes.append(unmanaged.access_code_id)
                batch.events.append(state.event(EventType.ACCESS_CODE_UNMANAGED_REMOVED,
                                                device_id, unmanaged.access_code_id, {}))
            return
        if code is not None:
            # Our slot holds someone else's code: it is theirs until we overwrite it.
            return
        pin = read.pin if read.state is SlotState.KNOWN else None
        adopted = self._adopt(device_id, pin, batch.device, batch.now, batch.adopted)
        if adopted is not None:
            # A restored code found where it already is: ours again, not written.
            claimed, more = adopted
            claimed = replace(claimed, slot=slot)
            batch.adopted.add(claimed.access_code_id)
            batch.changed.append(claimed)
            batch.events.extend(more)
            if unmanaged is not None:
                batch.dropped_codes.append(unmanaged.access_code_id)
            return
        if unmanaged is None:
            new = CodeRecord(access_code_id=new_id(), device_id=device_id,
                             created_at=batch.now, is_managed=False, name=read.name,
                             code=pin, slot=slot, status=AccessCodeStatus.SET)
            batch.changed.append(new)
            batch.events.append(state.event(EventType.ACCESS_CODE_UNMANAGED_CREATED,
                                            device_id, new.access_code_id, {}))
        elif unmanaged.code != pin or unmanaged.name != read.name:
            batch.changed.append(replace(unmanaged, code=pin, name=read.name))

    # -- restored codes ---------------------------------------------------------------------

    def _adopt(self, device_id: str, pin: str | None, device: DeviceRecord, now: datetime,
               taken: set[str]) -> tuple[CodeRecord, list[Event]] | None:
        """The restored code awaiting adoption whose PIN a slot holds, confirmed there."""
        if pin is None:
            return None
        for code in self._state.codes_of(device_id):
            if code.is_managed and code.sync.awaiting_adoption and code.code == pin \
                    and code.access_code_id not in taken:
                found = replace(code, sync=replace(code.sync, awaiting_adoption=False),
                                on_lock_pin=pin, last_write_at=None)
                return outcomes.confirmed(found, device, now, self._state.event)
        return None

    def end_adoption(self, device_id: str, changed: Sequence[CodeRecord]) -> list[CodeRecord]:
        """After a full read, restored codes not found on the lock are written as usual."""
        done = {c.access_code_id for c in changed}
        return [replace(c, sync=replace(c.sync, awaiting_adoption=False))
                for c in self._state.codes_of(device_id)
                if c.sync.awaiting_adoption and c.access_code_id not in done]

    # -- one managed code ---------------------------------------------------------------------

    def _judge_managed(self, code: CodeRecord, read: SlotRead, device: DeviceRecord,
                       now: datetime, window: timedelta) -> tuple[CodeRecord, list[Event]]:
        verdict = judge_read(code, read, now, window)
        worker = self._state.workers[code.device_id]
        if verdict in (ReadVerdict.CONFIRMED, ReadVerdict.TRUSTED):
            worker.pending_polls.reset()
            held = held_after_read(code, read)
            if held != code.on_lock_held:
                code = replace(code, on_lock_held=held)
            if code.on_lock_pin == code.code:
                return outcomes.confirmed(code, device, now, self._state.event)
            return code, []
        if verdict is ReadVerdict.STILL_PENDING:
            worker.pending_reads.add(read.slot)
            if read.pending and (code.last_write_at is None
                                 or now - code.last_write_at >= window):
                # Listed but not yet on the lock past the confirmation window (a lock the
                # cloud cannot reach now): look again after a growing pause, not at every
                # step. The code stays `setting`, so the delay warning comes once it is late.
                worker.reads_resume_at = max(
                    worker.reads_resume_at,
                    self._state.clock.monotonic() + worker.pending_polls.failed(self._rng))
            return code, []
        worker.pending_polls.reset()
        if verdict is ReadVerdict.NOT_APPLIED:
            return not_applied(code, now, self._state.policy, self._rng,
                               self._state.event)
        if not code.verified and not code.ever_set:
            # Never confirmed: the write did not take; try again.
            return replace(code, on_lock_pin=None, verified=False), []
        return changed_externally(code, read, verdict, now, self._state.event)

    # -- readability --------------------------------------------------------------------------

    async def _note_readability(self, device_id: str, reads: Sequence[SlotRead]) -> None:
        """A lock that answers writes but whose every slot read shows nothing, not even an empty
        slot, is write-only: say so on the device instead of taking it for a readable lock."""
        state = self._state
        if state.devices[device_id].info.capabilities.masks_pins_on_read:
            return  # an occupied slot of such a lock reads unreadable by design
        worker = state.workers[device_id]
        for read in reads:
            if read.state is SlotState.UNREADABLE:
                worker.unreadable_reads += 1
            else:
                worker.readable_reads += 1
        write_only = worker.readable_reads == 0 and \
            worker.unreadable_reads >= UNREADABLE_READS_FOR_WRITE_ONLY
        device = state.devices[device_id]
        flagged = any(w.code == DeviceWarningCode.WRITE_ONLY_LOCK for w in device.warnings)
        if write_only == flagged:
            return
        if write_only:
            _LOG.warning("lock %s: %d slot reads in a row showed nothing; treating it as a "
                         "lock whose codes cannot be read back", device_id,
                         worker.unreadable_reads)
            warnings = with_issue(
                device.warnings, DeviceWarningCode.WRITE_ONLY_LOCK,
                "This lock takes codes but never shows what a slot holds: lockbridge cannot "
                "verify them or see codes changed at the keypad; a code counts as set when the "
                "lock accepted it", state.clock.now())
        else:
            warnings = drop_codes(device.warnings, {DeviceWarningCode.WRITE_ONLY_LOCK})
        await state.commit(devices=[replace(device, warnings=warnings)])


# -- pure judgements of one read ----------------------------------------------------------------


def settle_intent(code: CodeRecord, intent: Intent, read: SlotRead) -> tuple[CodeRecord, bool]:
    """What a read of the slot says of a command in flight for it when the process stopped:
    (the code, whether the read settles that command)."""
    if intent.op is IntentOp.WRITE and intent.access_code_id == code.access_code_id:
        landed = (read.state is SlotState.KNOWN and read.pin == intent.pin) or \
            read.state is SlotState.UNREADABLE
        if landed:
            code = replace(code, on_lock_pin=intent.pin, last_write_at=None,
                           on_lock_held=held_after_read(replace(code, on_lock_held=None), read))
        return code, True
    if intent.op is IntentOp.CLEAR:
        if read.state is SlotState.EMPTY:
            code = replace(code, on_lock_pin=None)
        return code, True
    return code, False


def not_applied(code: CodeRecord, now: datetime, policy: Policy, rng: random.Random,
                event: EventMaker) -> tuple[CodeRecord, list[Event]]:
    """The change never reached the lock (the lock keeps what it had): send it again
    after a backoff, and give up as for any write that keeps failing."""
    if code.deleted:
        return code, []
    attempts = code.attempts + 1
    failed = replace(code, verified=False, attempts=attempts,
                     sync=replace(code.sync, not_applied=True),
                     next_attempt_at=now + timedelta(
                         seconds=policy.retry_backoff.delay(attempts, rng)))
    if attempts < policy.max_attempts:
        return failed, []
    error = AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE
    message = (f"Failed to set code on device after {attempts} attempts: the change "
               "never reached the lock")
    events = [] if code.has_error(error) else [event(
        EventType.ACCESS_CODE_FAILED_TO_SET_ON_DEVICE, code.device_id,
        code.access_code_id, {"error_code": error.value, "message": message})]
    return replace(failed, gave_up=True, errors=with_issue(code.errors, error, message,
                                                           now)), events


def changed_externally(code: CodeRecord, read: SlotRead, verdict: ReadVerdict, now: datetime,
                       event: EventMaker) -> tuple[CodeRecord, list[Event]]:
    """A code lockbridge had set, changed or removed behind its back: kept as the lock has it
    where external changes are allowed, else put back."""
    message = ("Code was modified or removed externally after lockbridge successfully set "
               "it on the device")
    events = [event(EventType.ACCESS_CODE_MODIFIED_EXTERNAL_TO_SEAM, code.device_id,
                    code.access_code_id, {"slot": read.slot,
                                          "removed": verdict is ReadVerdict.MISSING})]
    warnings = with_issue(code.warnings, AccessCodeWarningCode.CODE_MODIFIED_EXTERNAL_TO_SEAM,
                          message, now)
    if code.deleted:
        return replace(code, on_lock_pin=None, verified=False, warnings=warnings), events
    if code.allow_external_modification:
        if verdict is ReadVerdict.CHANGED and read.pin is not None:
            return replace(code, code=read.pin, on_lock_pin=read.pin, verified=True,
                           warnings=warnings), events
        return replace(code, on_lock_pin=None, verified=False, warnings=warnings,
                       sync=replace(code.sync, external_hold=True)), events
    # Put it back: the slot is ours, the next write overwrites whatever is there.
    return replace(code, on_lock_pin=None, verified=False, warnings=warnings,
                   pending_since=now), events
