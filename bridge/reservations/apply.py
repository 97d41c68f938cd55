"""Bringing one access grant's codes in line with it: the pure plan (decide.py) carried out as
ordinary managed codes through the application layer, lock by lock, recorded in the run."""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from bridge.application import Application, CodeChanges
from bridge.engine import CodeRequest, EngineError
from bridge.model import AccessCodeStatus
from bridge.records import CodeRecord
from bridge.reservations.decide import LockPlan, LockView, SlotRule, group_by_pin, plan_locks
from bridge.reservations.records import AccessGrant, AccessMethod, RunEntry

_LOG = logging.getLogger(__name__)


@dataclass(slots=True)
class RunLog:
    """What a run collects while it works; frozen into an AutomationRun at its end."""

    entries: list[RunEntry] = field(default_factory=list)
    substitutions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def add(self, grant: AccessGrant, device_id: str, action: str, detail: str = "") -> None:
        """One thing decided or done for one lock of a grant."""
        self.entries.append(RunEntry(grant.access_grant_id, device_id, action, detail))


@dataclass(frozen=True, slots=True)
class Rules:
    """The automation rules from the configuration: PIN source and locks with time slots."""

    # Customer keys whose PINs are always generated (a preferred PIN is set aside).
    generated_pins_for: frozenset[str] = frozenset()
    generated_pins_by_default: bool = False
    # A lock's external id (as in the configuration's `devices:`) -> its slot rule.
    slot_rules: Mapping[str, SlotRule] = field(default_factory=dict)

    def preferred_allowed(self, customer_key: str | None) -> bool:
        """Whether a grant of this customer may use its preferred PIN."""
        if customer_key is not None and customer_key in self.generated_pins_for:
            return False
        return not self.generated_pins_by_default


def issued_now(code: CodeRecord | None) -> bool:
    """True when the code's PIN is on its lock (or scheduled there) as asked."""
    if code is None or code.deleted:
        return False
    return code.status is AccessCodeStatus.SET or (
        code.status is AccessCodeStatus.UNSET and code.is_scheduled_on_device)


class GrantApplier:
    """Creates, moves, re-issues and removes the managed codes of access grants."""

    def __init__(self, app: Application, rules: Rules, rng: random.Random,
                 persist: Callable[[AccessGrant, AccessMethod], Awaitable[None]]) -> None:
        self._app = app
        self._rules = rules
        self._rng = rng
        # Stores a grant and a method before a code of it is created (see _apply_lock).
        self._persist = persist

    async def apply(self, grant: AccessGrant, methods: list[AccessMethod],
                    log: RunLog) -> list[AccessMethod]:
        """The grant's access methods after its codes were brought in line with it (methods
        left without a lock are returned too, with no codes: the caller deletes them)."""
        codes = self._app.state.codes
        current = {device_id: (m, codes.get(code_id)) for m in methods
                   for device_id, code_id in m.codes.items()}
        devices = [d for d in grant.device_ids if d in self._app.state.devices]
        for missing in set(grant.device_ids) - set(devices):
            log.add(grant, missing, "skipped", "no such lock")
        views = [self._view(device_id, *current.get(device_id, (None, None)))
                 for device_id in devices]
        plans = plan_locks(grant.requested_code, views, grant.starts_at, grant.ends_at,
                           self._rng, self._rules.preferred_allowed(grant.customer_key))
        by_id = {m.access_method_id: m for m in methods}
        for group in group_by_pin(plans):
            method = self._method_for(grant, group, current, by_id)
            for plan in group:
                held, code = current.get(plan.device_id, (None, None))
                if held is not None and held.access_method_id != method.access_method_id:
                    # The lock's PIN now matches another method's: its code moves there.
                    old = by_id[held.access_method_id]
                    by_id[old.access_method_id] = replace(
                        old, codes=_without(old.codes, plan.device_id))
                if code is not None:
                    method = replace(method, codes={**method.codes,
                                                    plan.device_id: code.access_code_id})
                method = await self._apply_lock(grant, method, plan, code, log)
            by_id[method.access_method_id] = method
        for device_id, (method, code) in current.items():
            if device_id in devices:
                continue
            await self._remove(grant, device_id, code, log)
            held = by_id[method.access_method_id]
            by_id[method.access_method_id] = replace(
                held, codes={d: c for d, c in held.codes.items() if d != device_id})
        return list(by_id.values())

    async def revoke(self, grant: AccessGrant, methods: list[AccessMethod],
                     log: RunLog) -> None:
        """Take every code of the grant off its lock now."""
        codes = self._app.state.codes
        for method in methods:
            for device_id, code_id in method.codes.items():
                await self._remove(grant, device_id, codes.get(code_id), log)

    # -- one lock ------------------------------------------------------------------------

    def _view(self, device_id: str, method: AccessMethod | None,
              code: CodeRecord | None) -> LockView:
        device = self._app.state.devices[device_id]
        mine = code.access_code_id if code is not None else None
        current = code.code if code is not None and not code.deleted else None
        if current is None and method is not None:
            # The code is gone (deleted, or lost with the lock's memory): the guest still
            # holds the PIN that was issued, so it goes back on where it fits.
            current = method.issued_code
        taken = tuple(c.code for c in self._app.state.codes_of(device_id)
                      if c.code and not c.deleted and c.access_code_id != mine)
        return LockView(device_id, device.info.constraints,
                        generates_pins=device.info.capabilities.algorithmic_pins,
                        taken=taken,
                        current_pin=current,
                        slot_rule=self._rules.slot_rules.get(device.external_id),
                        time_zone=device.time_zone)

    def _method_for(self, grant: AccessGrant, group: list[LockPlan],
                    current: dict[str, tuple[AccessMethod, CodeRecord | None]],
                    by_id: dict[str, AccessMethod]) -> AccessMethod:
        """The method a group of locks sharing a PIN belongs to: the one most of them are in
        already, else a new one."""
        for plan in group:
            held = current.get(plan.device_id)
            if held is not None:
                return by_id[held[0].access_method_id]
        return AccessMethod(str(uuid.uuid4()), grant.access_grant_id, self._app.clock.now())

    async def _apply_lock(self, grant: AccessGrant, method: AccessMethod, plan: LockPlan,
                          code: CodeRecord | None, log: RunLog) -> AccessMethod:
        device_id = plan.device_id
        if plan.substitution:
            log.substitutions.append(f"{device_id}: {plan.substitution}")
        if plan.widened:
            log.add(grant, device_id, "widened", plan.widened)
        if plan.refused:
            log.errors.append(f"{device_id}: failed_to_issue: {plan.refused}")
            log.add(grant, device_id, "refused", plan.refused)
            if code is not None:
                await self._remove(grant, device_id, code, log)
            return replace(method, codes=_without(method.codes, device_id),
                           refused={**method.refused, device_id: plan.refused})
        method = replace(method, refused={d: r for d, r in method.refused.items()
                                          if d != device_id})
        try:
            if code is None or code.deleted:
                code_id = str(uuid.uuid4())
                if device_id in method.codes and method.issued_at is not None:
                    method = replace(method, reissue_pending=True)
                # The method names the code before it exists: a crash between the two
                # leaves a method whose code is missing, which the next push re-issues,
                # never a code no method knows of.
                method = replace(method, codes={**method.codes, device_id: code_id})
                await self._persist(grant, method)
                try:
                    made = await self._create(grant, method, plan, code_id)
                except EngineError:
                    method = replace(method, codes=_without(method.codes, device_id))
                    raise
                if plan.pin is not None and made.code not in (None, plan.pin):
                    # The engine saw a clash the plan did not (the issued code is the truth).
                    log.substitutions.append(f"{device_id}: in_use: the lock's codes left "
                                             "another PIN to use")
                log.add(grant, device_id, "created" if code is None else "reissued")
                return method
            return await self._update(grant, method, plan, code, log)
        except EngineError as exc:
            log.errors.append(f"{device_id}: {exc.kind.value}: {exc}")
            log.add(grant, device_id, "failed", str(exc))
            return method

    async def _create(self, grant: AccessGrant, method: AccessMethod, plan: LockPlan,
                      code_id: str) -> CodeRecord:
        device = self._app.state.device(plan.device_id)
        request = CodeRequest(
            name=grant.name or grant.reservation_key or "Access grant",
            preferred_code=plan.pin, starts_at=plan.starts_at, ends_at=plan.ends_at,
            # A code removed at the keypad stays off until the grant is pushed again (seed
            # 000: re-push is the fix), rather than being fought over with staff.
            allow_external_modification=True,
            # The locks of one method share its PIN (Seam's common code key).
            common_code_key=f"access_method:{method.access_method_id}" if plan.pin else None,
            use_backup_access_code_pool=device.backup_pool_enabled or None)
        return await self._app.create_code(plan.device_id, request, access_code_id=code_id)

    async def _update(self, grant: AccessGrant, method: AccessMethod, plan: LockPlan,
                      code: CodeRecord, log: RunLog) -> AccessMethod:
        moved = (code.starts_at, code.ends_at) != (plan.starts_at, plan.ends_at)
        # Removed at the keypad: held off until this push puts it back.
        missing = code.sync.external_hold
        new_pin = plan.pin is not None and plan.pin != code.code
        if not (moved or missing or new_pin):
            log.add(grant, code.device_id, "unchanged")
            return method
        changes = CodeChanges(starts_at=plan.starts_at, ends_at=plan.ends_at,
                              code=plan.pin if new_pin else code.code)
        await self._app.update_code(code.access_code_id, changes)
        what = "reissued" if missing else "moved" if moved else "pin_changed"
        log.add(grant, code.device_id, what,
                f"{plan.starts_at.isoformat()}..{plan.ends_at.isoformat()}" if moved else "")
        if method.issued_at is not None:
            method = replace(method, reissue_pending=True)
        return method

    async def _remove(self, grant: AccessGrant, device_id: str, code: CodeRecord | None,
                      log: RunLog) -> None:
        if code is None or code.deleted:
            return
        try:
            await self._app.delete_code(code.access_code_id)
        except EngineError as exc:
            log.errors.append(f"{device_id}: {exc.kind.value}: {exc}")
            return
        log.add(grant, device_id, "removed")


def _without(codes: dict[str, str], device_id: str) -> dict[str, str]:
    return {d: c for d, c in codes.items() if d != device_id}


def method_codes(method: AccessMethod, codes: Mapping[str, CodeRecord]
                 ) -> dict[str, CodeRecord | None]:
    """device_id -> the method's code there (None when it is gone)."""
    return {device_id: codes.get(code_id) for device_id, code_id in method.codes.items()}


def is_issued(method: AccessMethod, codes: Mapping[str, CodeRecord]) -> bool:
    """True when every lock of the method holds its PIN (and it has at least one)."""
    held = method_codes(method, codes)
    return bool(held) and not method.refused and all(issued_now(c) for c in held.values())


def shown_issued(method: AccessMethod, codes: Mapping[str, CodeRecord]) -> bool:
    """`is_issued` as the API shows it: issued now, and told so (access_method.issued or
    reissued already emitted), so a client never sees it before the event."""
    return method.issued_at is not None and not method.reissue_pending \
        and is_issued(method, codes)


def when(value: datetime | None) -> str | None:
    """ISO text of a time, or None."""
    return value.isoformat() if value is not None else None
