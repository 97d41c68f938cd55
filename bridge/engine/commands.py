"""Sending one write or clear to a lock and recording its answer.

The intent (lock, slot, op, sealed PIN) is committed before the command goes out; the answer,
or its absence, becomes the code's next state through `bridge.engine.outcomes`."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable
from dataclasses import replace
from datetime import datetime, timedelta

from bridge.driver import (
    Addressing,
    CodeWrite,
    CommandRejected,
    DriverError,
    FixConfig,
    LockDriver,
    RetryLater,
    WriteResult,
)
from bridge.engine import outcomes
from bridge.engine.availability import AvailabilityTracker
from bridge.engine.gateway import DriverGateway
from bridge.engine.outcomes import BLOCKED_RETRY, REFUSED_FOR_GOOD, without_first_sent
from bridge.engine.state import EngineState
from bridge.engine.worker import LockWorker
from bridge.logs import REDACTOR
from bridge.model import AccessCodeErrorCode, Event, EventType
from bridge.planner import (
    Command,
    choose_slot,
    local_window,
    outcome_known,
    outcome_unknown,
    pin_on_lock_conflict,
    should_be_on_lock,
    wanted_name,
)
from bridge.records import CodeRecord, DeviceRecord, replace_code
from bridge.store import Intent, IntentOp

_LOG = logging.getLogger("bridge.engine")


class CommandSender:
    """Writes and clears codes on locks, one command at a time per lock."""

    def __init__(self, state: EngineState, gateway: DriverGateway,
                 availability: AvailabilityTracker, rng: random.Random) -> None:
        self._state = state
        self._gateway = gateway
        self._availability = availability
        self._rng = rng

    # -- write --------------------------------------------------------------------------

    async def write(self, worker: LockWorker, device: DeviceRecord, driver: LockDriver,
                    command: Command) -> None:
        """Put one code on the lock (or change it there)."""
        assert command.access_code_id is not None
        prepared = await self._prepare_write(worker, device, command)
        if prepared is None:
            return
        code, request, intent_slot = prepared
        worker.last_command_at = self._state.clock.monotonic()
        outcome: Awaitable[None]
        try:
            result = await self._gateway.call(device, driver.write_code(device.external_id,
                                                                        request))
        except CommandRejected as exc:
            outcome = self._write_rejected(command.access_code_id, intent_slot, exc)
        except DriverError as exc:
            outcome = self._write_failed(command.access_code_id, intent_slot, exc)
        else:
            REDACTOR.remember(result.pin)
            outcome = self._record_write(code, device, request, result, intent_slot)
        await _settle_or_keep(worker, intent_slot, outcome)

    async def _prepare_write(self, worker: LockWorker, device: DeviceRecord, command: Command
                             ) -> tuple[CodeRecord, CodeWrite, int] | None:
        """Choose the slot, check the PIN can go on, and commit the intent: (the code, the
        write, the intent's slot), or None when nothing is to be sent now."""
        state = self._state
        device_id = device.device_id
        assert command.access_code_id is not None
        async with state.lock_for(device_id):
            code = state.codes.get(command.access_code_id)
            if code is None or code.revision != command.revision:
                return None
            codes = state.codes_of(device_id)
            caps = device.info.capabilities
            slot = code.slot
            if slot is None and caps.addressing is Addressing.SLOT:
                slot = choose_slot(device, codes, worker.intents)
                if slot is None:
                    await self.code_problem(code, AccessCodeErrorCode
                                            .NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE,
                                            "No free slot on the lock", give_up=True,
                                            event=EventType.ACCESS_CODE_NO_SPACE_ON_DEVICE)
                    return None
            pin = None if caps.algorithmic_pins else code.code
            if pin is not None and not await self._pin_can_go_on(code, pin, device, codes):
                return None
            name = wanted_name(code, device)
            first_sent = code.sync.first_sent_at if slot is None else None
            request = CodeWrite(slot=slot, pin=pin, name=name, key=code.access_code_id,
                                window=local_window(code, device), first_sent_at=first_sent)
            intent_slot = slot if slot is not None else -1
            intent = Intent(device_id, intent_slot, IntentOp.WRITE, code.access_code_id, pin)
            before_call = replace_code(code, slot=slot, appearance_name=name)
            if slot is None and not first_sent:
                # A lock that numbers codes itself answers a create with no id: when this create
                # first went out is what later proves a code with its PIN is ours.
                before_call = replace_code(before_call, sync=replace(
                    code.sync, first_sent_at=state.clock.now()))
            await state.commit(intents=[intent], codes=[before_call])
            worker.intents[intent_slot] = intent
        return code, request, intent_slot

    async def _pin_can_go_on(self, code: CodeRecord, pin: str, device: DeviceRecord,
                             codes: list[CodeRecord]) -> bool:
        """False (the code waits or is refused) when the PIN is on the lock for another code."""
        blocker = pin_on_lock_conflict(pin, code, device, codes)
        if blocker is not None and blocker.is_managed:
            # The same PIN for another window is still on the lock: wait for it to go.
            # Its end may be past while its removal backs off: then look again in a
            # minute, not at every step.
            now = self._state.clock.now()
            await self._state.commit(codes=[replace(code, next_attempt_at=max(
                blocker.ends_at or now + BLOCKED_RETRY, now + BLOCKED_RETRY))])
            return False
        ours_maybe = (blocker is not None and code.slot is None
                      and code.sync.first_sent_at is not None)
        if blocker is not None and not ours_maybe:
            # (A code listed since our create went out, its answer lost, may be that
            # create: the driver decides with its proof, never by the PIN alone.)
            await self.code_problem(
                code, AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE,
                "The PIN is already on the lock as an unmanaged code",
                give_up=True, event=EventType.ACCESS_CODE_DUPLICATE_CODE_ON_DEVICE)
            return False
        return True

    async def _record_write(self, before: CodeRecord, device: DeviceRecord, request: CodeWrite,
                            result: WriteResult, intent_slot: int) -> None:
        """The lock accepted the write: record what it now holds."""
        state = self._state
        device_id = device.device_id
        async with state.lock_for(device_id):
            code = state.codes.get(before.access_code_id)
            now = state.clock.now()
            if code is None or code.deleted:
                # Deleted while the write was in flight: the PIN is on the lock now and nobody
                # wants it there. Keep (or bring back) a deleted record so the worker clears it.
                gone = replace(code or before, deleted=True, slot=result.slot,
                               on_lock_pin=result.pin, verified=False, attempts=0,
                               next_attempt_at=None, gave_up=False, pending_since=now,
                               revision=(code or before).revision + 1)
                await state.commit(codes=[state.refresh(gone, device, now)],
                                   drop_intents=[(device_id, intent_slot)])
                return
            updated, verified = outcomes.written(code, request, result,
                                                 device.info.capabilities, now)
            events: list[Event] = []
            if verified:
                updated, more = outcomes.confirmed(updated, device, now, state.event)
                events.extend(more)
            else:
                state.workers[device_id].pending_reads.add(result.slot)
            updated = state.refresh(updated, device, now)
            # A code read as unmanaged in the slot the driver proved ours was our own create.
            ours = [c.access_code_id for c in state.codes_of(device_id)
                    if not c.is_managed and c.slot == result.slot]
            await state.commit(codes=[updated], events=events, drop=ours,
                               drop_intents=[(device_id, intent_slot)])

    async def _write_rejected(self, access_code_id: str, slot: int,
                              exc: CommandRejected) -> None:
        state = self._state
        if state.codes.get(access_code_id) is None:
            return
        error, event = outcomes.rejection(exc.reason)
        if exc.error_code is not None:
            # The maker's own name for the refusal (e.g. hubitat_no_free_positions_available).
            error = AccessCodeErrorCode(exc.error_code)
        async with state.lock_for(state.codes[access_code_id].device_id):
            code = state.codes.get(access_code_id)
            if code is None:
                return
            # A refused create made nothing on the lock: no later code can be its result.
            code = without_first_sent(code)
            await self.code_problem(code, error, f"The lock refused the code: {exc}",
                                    give_up=True, event=event, drop_intent=slot,
                                    free_slot=True,
                                    refused_for_good=exc.reason if exc.reason in
                                    REFUSED_FOR_GOOD else None)

    async def _write_failed(self, access_code_id: str, slot: int, exc: DriverError) -> None:
        state = self._state
        code = state.codes.get(access_code_id)
        if code is None:
            return
        device_id = code.device_id
        await self._availability.command_failed(device_id, exc)
        # No answer (a timeout, the link gone): the write may or may not have reached the lock.
        mark = outcome_unknown if isinstance(exc, RetryLater) else outcome_known
        if not state.devices[device_id].online:
            async with state.lock_for(device_id):
                code = state.codes.get(access_code_id)
                if code is None:
                    return
                await state.commit(codes=[state.refresh(mark(code), state.devices[device_id],
                                                        state.clock.now())],
                                   drop_intents=[(device_id, slot)])
            return
        async with state.lock_for(device_id):
            code = state.codes.get(access_code_id)
            if code is None:
                return
            code = mark(code)
            policy = state.policy
            attempts = code.attempts + 1
            if attempts >= policy.max_attempts or isinstance(exc, FixConfig):
                await self.code_problem(
                    code, AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE,
                    f"Failed to set code on device after {attempts} attempts: {exc}",
                    give_up=True, event=EventType.ACCESS_CODE_FAILED_TO_SET_ON_DEVICE,
                    drop_intent=slot, attempts=attempts)
                return
            delay = policy.retry_backoff.delay(attempts, self._rng)
            updated = replace(code, attempts=attempts,
                              next_attempt_at=state.clock.now() + timedelta(seconds=delay))
            await state.commit(codes=[updated], drop_intents=[(device_id, slot)])

    # -- clear --------------------------------------------------------------------------

    async def clear(self, worker: LockWorker, device: DeviceRecord, driver: LockDriver,
                    command: Command) -> None:
        """Take one code off the lock."""
        state = self._state
        device_id = device.device_id
        assert command.access_code_id is not None and command.slot is not None
        slot = command.slot
        async with state.lock_for(device_id):
            code = state.codes.get(command.access_code_id)
            if code is None or not code.on_lock:
                return
            intent = Intent(device_id, slot, IntentOp.CLEAR, code.access_code_id, None)
            await state.commit(intents=[intent])
            worker.intents[slot] = intent
        worker.last_command_at = state.clock.monotonic()
        outcome: Awaitable[None]
        try:
            await self._gateway.call(device, driver.clear_code(device.external_id, slot))
        except DriverError as exc:
            outcome = self._clear_failed(command.access_code_id, slot, exc)
        else:
            outcome = self._cleared(command.access_code_id, device_id, slot)
        await _settle_or_keep(worker, slot, outcome)

    async def _cleared(self, access_code_id: str, device_id: str, slot: int) -> None:
        state = self._state
        async with state.lock_for(device_id):
            code = state.codes.get(access_code_id)
            device = state.devices[device_id]
            now = state.clock.now()
            if code is None:
                await state.commit(drop_intents=[(device_id, slot)])
                return
            events = [state.event(EventType.ACCESS_CODE_REMOVED_FROM_DEVICE, device_id,
                                  access_code_id, {})]
            retry = outcomes.retry_no_space(state.codes_of(device_id), exclude=access_code_id)
            if code.deleted:
                await state.commit(drop=[access_code_id], events=events,
                                   drop_intents=[(device_id, slot)], codes=retry)
                return
            if retry:
                await state.commit(codes=retry)
            keep_slot = should_be_on_lock(code, device, now, state.policy)
            updated = state.refresh(outcomes.cleared(code, slot, keep_slot, now), device, now)
            await state.commit(codes=[updated], events=events, drop_intents=[(device_id, slot)])

    async def _clear_failed(self, access_code_id: str, slot: int, exc: DriverError) -> None:
        state = self._state
        code = state.codes.get(access_code_id)
        if code is None:
            return
        device_id = code.device_id
        await self._availability.command_failed(device_id, exc)
        async with state.lock_for(device_id):
            code = state.codes.get(access_code_id)
            if code is None:
                return
            if not state.devices[device_id].online:
                await state.commit(drop_intents=[(device_id, slot)])
                return
            policy = state.policy
            attempts = code.attempts + 1
            if attempts >= policy.max_attempts or isinstance(exc, CommandRejected):
                # Never give up on taking a code off: a guest whose stay ended must not keep
                # access. Report it, and keep trying at the slowest backoff step.
                await self.code_problem(
                    code, AccessCodeErrorCode.FAILED_TO_REMOVE_FROM_DEVICE,
                    f"Failed to remove code from device: {exc}; retrying every "
                    f"{policy.retry_cap_s / 60:.0f} min", give_up=False,
                    event=EventType.ACCESS_CODE_FAILED_TO_REMOVE_FROM_DEVICE, drop_intent=slot,
                    attempts=attempts, next_attempt_at=state.clock.now() + timedelta(
                        seconds=policy.retry_cap_s))
                return
            delay = policy.retry_backoff.delay(attempts, self._rng)
            await state.commit(codes=[replace(
                code, attempts=attempts,
                next_attempt_at=state.clock.now() + timedelta(seconds=delay))],
                drop_intents=[(device_id, slot)])

    # -- problems -----------------------------------------------------------------------

    async def code_problem(
        self, code: CodeRecord, error: AccessCodeErrorCode, message: str, *,
        give_up: bool, event: EventType, drop_intent: int | None = None,
        free_slot: bool = False, attempts: int | None = None,
        next_attempt_at: datetime | None = None, refused_for_good: str | None = None,
    ) -> None:
        """Record `error` on a code (the device's lock held), with its event the first time."""
        state = self._state
        now = state.clock.now()
        device = state.devices[code.device_id]
        already = code.has_error(error)
        updated = outcomes.with_problem(code, error, message, now, give_up=give_up,
                                        free_slot=free_slot, attempts=attempts,
                                        next_attempt_at=next_attempt_at,
                                        refused_for_good=refused_for_good)
        updated = state.refresh(updated, device, now)
        events = [] if already else [state.event(event, code.device_id, code.access_code_id,
                                                 {"error_code": error.value,
                                                  "message": message})]
        drops = [(code.device_id, drop_intent)] if drop_intent is not None else []
        await state.commit(codes=[updated], events=events, drop_intents=drops)
        _LOG.warning("lock %s code %s: %s", code.device_id, code.access_code_id, message)


async def _settle_or_keep(worker: LockWorker, slot: int, outcome: Awaitable[None]) -> None:
    """Record what a command to the lock did, then forget its intent. When that record cannot
    be committed (the store is out of space, or the bridge is stopping), the lock may hold what
    was sent while memory still shows the slot as before: the intent stays, and the slot is
    read back, so the read settles it as it does after a restart (a read without the intent
    would take our own write for a change made at the keypad)."""
    try:
        await outcome
    except BaseException:
        if slot >= 0:
            worker.pending_reads.add(slot)
        raise
    worker.intents.pop(slot, None)
