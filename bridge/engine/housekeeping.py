"""Time-driven upkeep of a lock's records: statuses brought up to date, ended codes forgotten,
delay warnings, foresight (a code that will not fit), device warnings (time zone, clock), the
backup pool refilled and backups pulled automatically; and the watch on the system clock."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from bridge import backup
from bridge.engine.errors import EngineError
from bridge.engine.issues import (
    EXTERNAL_WARNING_KEPT,
    drop_codes,
    expire_external_warning,
    with_issue,
)
from bridge.engine.pool import BackupPool
from bridge.engine.state import EngineState
from bridge.instants import shifted
from bridge.model import (
    AccessCodeStatus,
    AccessCodeType,
    AccessCodeWarningCode,
    DeviceWarningCode,
    Event,
    EventType,
)
from bridge.planner import (
    foresee_problem,
    forgettable,
    goes_on_at,
    next_wakeup,
    uses_native_schedule,
)
from bridge.records import CodeRecord, DeviceRecord

_LOG = logging.getLogger("bridge.engine")


@dataclass(frozen=True, slots=True)
class _Upkept:
    """What one lock's last upkeep saw: until `until` (None: no such moment) none of the codes
    it looked at can change by itself, as long as the lock's record and the clock's trust are
    the ones it saw and time has not gone back."""

    device: DeviceRecord
    synced: bool
    at: datetime
    until: datetime | None

    def still_holds(self, device: DeviceRecord, synced: bool, now: datetime) -> bool:
        """True when the codes not committed since need no look at `now`."""
        return (device is self.device and synced == self.synced and self.at <= now
                and (self.until is None or now < self.until))


class Housekeeping:
    """Brings one lock's records up to date with the time; commits only what changed."""

    def __init__(self, state: EngineState, pool: BackupPool) -> None:
        self._state = state
        self._pool = pool
        self._clock_was_synced = True
        # device_id -> what its last upkeep saw (see `_Upkept`).
        self._upkept: dict[str, _Upkept] = {}

    async def run(self, device_id: str) -> None:
        """Bring statuses and time-driven warnings up to date; commit only what changed.

        A code is looked at again only when it was committed since, when its lock's record or
        the clock's trust changed, or when one of the lock's codes reached a moment at which
        its upkeep can change by itself: walking every code at every step made upkeep
        quadratic in codes per lock (see docs/performance.md)."""
        state = self._state
        async with state.lock_for(device_id):
            device = state.devices[device_id]
            now = state.clock.now()
            synced = state.clock_synchronized()
            codes = state.codes_of(device_id)
            changed_ids = state.take_changed(device_id)
            # Dropped first: a run that fails part way must leave the next one a full look.
            seen = self._upkept.pop(device_id, None)
            if seen is not None and seen.still_holds(device, synced, now):
                look = self._changed_codes(device_id, codes, changed_ids)
                until = seen.until
            else:
                look, until = codes, None
            changed, events, forgotten, until = self._walk(device, codes, look, now, until)
            if device.backup_pool_enabled:
                changed.extend(self._pool.refill(device, codes, now))
            # The lock's warnings follow its record and the clock's trust alone: the same two
            # as the last upkeep saw left it as it was (a change would have been committed,
            # and the lock's record would be another).
            same_lock = seen is not None and seen.device is device and seen.synced == synced
            device_updated = device if same_lock else self._device_warnings(device, now)
            if device_updated.backup_pool_enabled:  # (`issues` leaves any other lock as it is)
                device_updated = self._pool.issues(device_updated, [*codes, *changed], now)
            if changed or events or device_updated is not device:
                await state.commit(codes=changed, events=events, drop=sorted(forgotten),
                                   devices=[device_updated] if device_updated is not device
                                   else [])
            self._upkept[device_id] = _Upkept(device, synced, now, until)
        await self._auto_pull(device)

    def _changed_codes(self, device_id: str, codes: list[CodeRecord],
                       changed_ids: set[str]) -> list[CodeRecord]:
        """The lock's codes among `changed_ids`, in the lock's order."""
        if len(changed_ids) == 1:
            # Most steps follow one commit of one code: no walk of the lock for it.
            (code_id,) = changed_ids
            code = self._state.lock_code(device_id, code_id)
            return [code] if code is not None else []
        return [c for c in codes if c.access_code_id in changed_ids] if changed_ids else []

    def _walk(self, device: DeviceRecord, codes: list[CodeRecord], look: list[CodeRecord],
              now: datetime, until: datetime | None,
              ) -> tuple[list[CodeRecord], list[Event], set[str], datetime | None]:
        """Upkeep of the codes in `look` (`codes` are all of the lock's): what changed, the
        events, the ids of ended codes to forget, and the earliest moment at which a code
        looked at here needs a look again by itself (combined with `until`)."""
        state = self._state
        changed: list[CodeRecord] = []
        events: list[Event] = []
        ended = [c for c in look if c.ends_at is not None and forgettable(c, now, state.policy)]
        for code in ended:
            events.append(state.event(EventType.ACCESS_CODE_DELETED, device.device_id,
                                      code.access_code_id, {"reason": "ended"}))
        forgotten = {c.access_code_id for c in ended}
        for code in look:
            if not code.is_managed or code.access_code_id in forgotten:
                continue
            updated = state.refresh(code, device, now)
            updated, more = self._delay_warnings(updated, now)
            updated = self._foresight(updated, device, codes, now)
            if updated.warnings:
                updated = expire_external_warning(updated, now)
            events.extend(more)
            if updated is not code and updated != code:
                changed.append(updated)
            moment = self._next_look(updated, device, now)
            if moment is not None and (until is None or moment < until):
                until = moment
        return changed, events, forgotten, until

    def _next_look(self, code: CodeRecord, device: DeviceRecord,
                   now: datetime) -> datetime | None:
        """The earliest moment after `now` at which this code's upkeep can change with no
        change to it: `now` itself while its foresight depends on the lock's other codes."""
        policy = self._state.policy
        if (code.type is AccessCodeType.ONGOING and code.next_attempt_at is None
                and code.starts_at is None and code.ends_at is None and not code.warnings):
            # Of the moments below only its delay warning can come (every code, after each
            # commit of its own).
            if code.pending_since is None:
                return None
            warn_at = shifted(code.pending_since, policy.delay_warning_after)
            return warn_at if warn_at > now else None
        due = goes_on_at(code, device, policy)
        if (due is not None and due > now and code.starts_at is not None
                and now >= shifted(code.starts_at, -policy.errors_ahead)):
            return now
        moments = [moment for moment in (
            next_wakeup(device, (code,), now, policy),
            shifted(code.ends_at, policy.forget_ended_after) if code.ends_at else None,
            *(shifted(issue.created_at, EXTERNAL_WARNING_KEPT) for issue in code.warnings
              if issue.code == AccessCodeWarningCode.CODE_MODIFIED_EXTERNAL_TO_SEAM),
        ) if moment is not None and moment > now]
        return min(moments, default=None)

    async def _auto_pull(self, device: DeviceRecord) -> None:
        """Pull a backup for every code that is due one, where the pool does that by itself."""
        state = self._state
        settings = self._pool.settings(device)
        if not (device.backup_pool_enabled and settings.auto_pull):
            return
        for code in state.codes_of(device.device_id):
            if backup.due_for_auto_pull(code, state.devices[device.device_id],
                                        state.clock.now(), state.policy,
                                        self._pool.settings(device)):
                with contextlib.suppress(EngineError):
                    await self._pool.pull(code.access_code_id, automatic=True)

    def _foresight(self, code: CodeRecord, device: DeviceRecord, codes: Sequence[CodeRecord],
                   now: datetime) -> CodeRecord:
        if code.type is AccessCodeType.ONGOING and not code.warnings:
            # Nothing to foresee for it (it is due now), no warning to add or drop.
            return code
        policy = self._state.policy
        problem = foresee_problem(code, device, codes, now, policy)
        warning = AccessCodeWarningCode.WILL_NOT_FIT_ON_DEVICE
        if problem and not code.has_warning(warning):
            code = replace(code, warnings=with_issue(code.warnings, warning,
                                                     f"Checked ahead: {problem}", now))
        elif not problem and code.has_warning(warning):
            code = replace(code, warnings=drop_codes(code.warnings, {warning}))
        # An operator must know when a guest's window depends on this box being up.
        enforced = AccessCodeWarningCode.SCHEDULE_ENFORCED_BY_BRIDGE
        by_bridge = (code.type is AccessCodeType.TIME_BOUND and not code.deleted
                     and not uses_native_schedule(device))
        if by_bridge and not code.has_warning(enforced):
            lead = policy.bridge_lead.total_seconds() / 60
            code = replace(code, warnings=with_issue(
                code.warnings, enforced,
                "This lock cannot switch codes on and off by itself: lockbridge puts the code "
                f"on {lead:.0f} min before starts_at and takes it off at ends_at, so the "
                "bridge must be running at those times", now))
        elif not by_bridge and code.has_warning(enforced):
            code = replace(code, warnings=drop_codes(code.warnings, {enforced}))
        return code

    def _delay_warnings(self, code: CodeRecord, now: datetime) -> tuple[CodeRecord, list[Event]]:
        late = (code.pending_since is not None
                and now - code.pending_since >= self._state.policy.delay_warning_after)
        if not late and not code.warnings:
            return code, []  # no warning to add, none to drop
        events: list[Event] = []
        setting = code.status is AccessCodeStatus.SETTING and late
        removing = code.status is AccessCodeStatus.REMOVING and late
        warnings = code.warnings
        for active, warning, event in (
            (setting, AccessCodeWarningCode.DELAY_IN_SETTING_ON_DEVICE,
             EventType.ACCESS_CODE_DELAY_IN_SETTING_ON_DEVICE),
            (removing, AccessCodeWarningCode.DELAY_IN_REMOVING_FROM_DEVICE,
             EventType.ACCESS_CODE_DELAY_IN_REMOVING_FROM_DEVICE),
        ):
            has = any(w.code == warning for w in warnings)
            if active and not has:
                warnings = with_issue(warnings, warning, "Delay in " + (
                    "setting code on device" if warning.endswith("setting_on_device")
                    else "removing code from device"), now)
                events.append(self._state.event(event, code.device_id, code.access_code_id,
                                                {}))
            elif not active and has:
                warnings = drop_codes(warnings, {warning})
        if warnings is not code.warnings:
            code = replace(code, warnings=warnings)
        return code, events

    def _device_warnings(self, device: DeviceRecord, now: datetime) -> DeviceRecord:
        warnings = device.warnings
        needs_zone = device.info.capabilities.native_schedules and device.time_zone is None
        has_zone_warning = any(w.code == DeviceWarningCode.UNKNOWN_TIME_ZONE for w in warnings)
        if needs_zone and not has_zone_warning:
            warnings = with_issue(warnings, DeviceWarningCode.UNKNOWN_TIME_ZONE,
                                  "The lock's time zone is unknown, so lockbridge enforces "
                                  "start and end times itself; set time_zone in the config",
                                  now)
        elif not needs_zone and has_zone_warning:
            warnings = drop_codes(warnings, {DeviceWarningCode.UNKNOWN_TIME_ZONE})
        synced = self._state.clock_synchronized()
        has_sync = any(w.code == DeviceWarningCode.SYSTEM_CLOCK_UNSYNCHRONIZED for w in warnings)
        if not synced and not has_sync:
            warnings = with_issue(warnings, DeviceWarningCode.SYSTEM_CLOCK_UNSYNCHRONIZED,
                                  "The system clock is not synchronised; time-bound codes wait "
                                  "until it is", now)
        elif synced and has_sync:
            warnings = drop_codes(warnings, {DeviceWarningCode.SYSTEM_CLOCK_UNSYNCHRONIZED})
        return device if warnings is device.warnings else replace(device, warnings=warnings)

    async def watch_clock(self) -> None:
        """Wake every lock when the system clock becomes synchronised (or stops being)."""
        state = self._state
        while True:
            try:
                synced = state.clock_synchronized()
            except Exception:  # an unreadable clock state must not stop the locks
                _LOG.exception("cannot tell whether the system clock is synchronised")
                synced = False
            if synced != self._clock_was_synced:
                self._clock_was_synced = synced
                for device_id in state.workers:
                    state.wake(device_id)
            # Right after boot the clock jumps when NTP answers: look often until it is trusted.
            await state.clock.sleep(60.0 if synced else 5.0)
