"""Reservation automations: spaces, reservations pushed by a property manager (or read from a
feed) and access grants made directly, each turned into managed access codes on its locks, with
Seam's access_grant.* and access_method.* events and a run record of every push or delete.

Every change goes through the application layer (bridge/application.py): the codes are ordinary
managed codes with the engine's events, and the automation's own rows commit with their events.
One change at a time (a lock): a push, a delete and a feed update never interleave."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bridge.application import Application
from bridge.engine import EngineError, ErrorKind
from bridge.model import Event, EventType
from bridge.reservations.apply import GrantApplier, Rules, RunLog
from bridge.reservations.issuance import Issuance
from bridge.reservations.records import (
    SOURCE_API,
    AccessGrant,
    AccessMethod,
    AutomationRun,
    Reservation,
    Space,
    UserIdentity,
)
from bridge.reservations.state import (
    AutomationState,
    Change,
    grant_event_data,
    method_event_data,
    new_event,
)
from bridge.store import Store

_LOG = logging.getLogger(__name__)
# How long an ended stay's grant is kept by default (automations.forget_ended_grants_after_days).
DEFAULT_RETENTION = timedelta(days=30)
# The trigger of the run that tells what the retention forgot.
PRUNE_TRIGGER = "forget_ended"


class NotFound(Exception):
    """A space, grant or method that is not there; `error_type` is the API's error type."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True, slots=True)
class IdentityInput:
    """A user identity (or guest) as pushed."""

    user_identity_key: str
    name: str | None = None
    email_address: str | None = None
    phone_number: str | None = None


@dataclass(frozen=True, slots=True)
class ReservationInput:
    """A reservation as pushed (or read from a feed)."""

    reservation_key: str
    starts_at: datetime
    ends_at: datetime
    space_keys: tuple[str, ...]
    user_identity_key: str | None = None
    name: str | None = None
    preferred_code: str | None = None


@dataclass(frozen=True, slots=True)
class Booking:
    """One booking a feed sees for a space: its stable id (the iCal UID), its stay and who."""

    uid: str
    starts_at: datetime
    ends_at: datetime
    name: str | None = None


@dataclass(frozen=True, slots=True)
class GrantInput:
    """An access grant asked for directly (`/access_grants/create`)."""

    starts_at: datetime
    ends_at: datetime
    device_ids: tuple[str, ...] = ()
    space_ids: tuple[str, ...] = ()
    space_keys: tuple[str, ...] = ()
    name: str | None = None
    code: str | None = None
    access_grant_key: str | None = None
    reservation_key: str | None = None
    user_identity_key: str | None = None


class ReservationService:
    """Spaces, reservations and access grants, kept as managed codes on the locks."""

    def __init__(self, app: Application, rules: Rules | None = None,
                 rng: random.Random | None = None,
                 retention: timedelta = DEFAULT_RETENTION) -> None:
        self.app = app
        # An ended grant is kept this long after its ends_at, then forgotten.
        self.retention = retention
        self.state = AutomationState()
        self._applier = GrantApplier(app, rules or Rules(), rng or random.Random(),
                                     self._persist)
        self._lock = asyncio.Lock()
        self.issuance = Issuance(app, self.state, self._lock)

    async def load(self, store: Store) -> None:
        """Read the automations' records; call before anything else."""
        await self.state.load(store)

    # -- spaces ----------------------------------------------------------------------------

    def space(self, space_id: str | None = None, space_key: str | None = None) -> Space:
        """A space by id or key, or NotFound."""
        found = self.state.spaces.get(space_id or "") if space_id else \
            self.state.space_by_key(space_key or "")
        if found is None:
            raise NotFound("space_not_found", "Space not found")
        return found

    async def create_space(self, name: str, space_key: str | None, device_ids: Sequence[str],
                           customer_key: str | None = None, source: str = SOURCE_API) -> Space:
        """A new space with its locks."""
        self._check_devices(device_ids)
        async with self._lock:
            if space_key is not None and self.state.space_by_key(space_key) is not None:
                raise EngineError(ErrorKind.INVALID_INPUT, f"space_key {space_key!r} is taken",
                                  "space_key")
            space = Space(str(uuid.uuid4()), space_key, name, tuple(dict.fromkeys(device_ids)),
                          self.app.clock.now(), customer_key, source)
            await self.state.commit(self.app, Change(put=[space]))
            return space

    async def update_space(self, space: Space, *, name: str | None = None,
                           space_key: str | None = None,
                           device_ids: Sequence[str] | None = None) -> Space:
        """Rename a space or change its locks; its grants follow its locks at once."""
        if device_ids is not None:
            self._check_devices(device_ids)
        async with self._lock:
            current = self.space(space.space_id)
            other = self.state.space_by_key(space_key) if space_key is not None else None
            if other is not None and other.space_id != current.space_id:
                raise EngineError(ErrorKind.INVALID_INPUT, f"space_key {space_key!r} is taken",
                                  "space_key")
            updated = replace(current, name=name if name is not None else current.name,
                              space_key=space_key if space_key is not None
                              else current.space_key,
                              device_ids=tuple(dict.fromkeys(device_ids))
                              if device_ids is not None else current.device_ids)
            await self.state.commit(self.app, Change(put=[updated]))
            if updated.device_ids != current.device_ids:
                await self._resync_spaces({updated.space_id}, "spaces/update")
            return updated

    async def delete_space(self, space: Space) -> None:
        """Forget a space; its grants lose its locks at once."""
        async with self._lock:
            await self.state.commit(self.app, Change(drop=[space]))
            await self._resync_spaces({space.space_id}, "spaces/delete")

    def devices_of(self, space_ids: Iterable[str]) -> tuple[str, ...]:
        """The locks of some spaces, each once."""
        out: dict[str, None] = {}
        for space_id in space_ids:
            space = self.state.spaces.get(space_id)
            if space is not None:
                out.update(dict.fromkeys(space.device_ids))
        return tuple(out)

    def _check_devices(self, device_ids: Sequence[str]) -> None:
        for device_id in device_ids:
            if device_id not in self.app.state.devices:
                raise EngineError(ErrorKind.DEVICE_NOT_FOUND, f"Device {device_id} not found",
                                  "device_ids")

    # -- push_data / delete_data / feeds ----------------------------------------------------

    async def push_data(self, customer_key: str, identities: Sequence[IdentityInput],
                        reservations: Sequence[ReservationInput],
                        ignored: Sequence[str] = ()) -> AutomationRun:
        """Upsert user identities and reservations; each reservation's grant is created, moved
        or re-issued (whatever is missing on a lock goes back on)."""
        async with self._lock:
            log = RunLog(ignored=list(ignored))
            now = self.app.clock.now()
            people = [UserIdentity(i.user_identity_key, customer_key, now,
                                   self._identity_id(i.user_identity_key), i.name,
                                   i.email_address, i.phone_number) for i in identities]
            await self.state.commit(self.app, Change(put=list(people)))
            for item in reservations:
                await self._upsert_reservation(customer_key, item, SOURCE_API, log)
            return await self._finish_run("push_data", customer_key, log)

    async def delete_data(self, *, customer_keys: Sequence[str] = (),
                          reservation_keys: Sequence[str] = (),
                          user_identity_keys: Sequence[str] = (),
                          space_keys: Sequence[str] = (), access_grant_keys: Sequence[str] = (),
                          ignored: Sequence[str] = ()) -> AutomationRun:
        """Forget what the keys name and revoke its access at once."""
        async with self._lock:
            log = RunLog(ignored=list(ignored))
            st = self.state
            customers, people = set(customer_keys), set(user_identity_keys)
            gone = [r for r in st.reservations.values() if r.reservation_key in
                    reservation_keys or r.customer_key in customers
                    or (r.user_identity_key or "") in people]
            for reservation in gone:
                await self._drop_reservation(reservation, log)
            grants = [g for g in st.grants.values() if g.access_grant_key is not None
                      and g.access_grant_key in access_grant_keys]
            for grant in grants:
                await self._revoke(grant, log, drop=[])
            identities = [i for i in st.identities.values()
                          if i.user_identity_key in people or i.customer_key in customers]
            spaces = [s for s in st.spaces.values() if (s.space_key or "") in space_keys
                      or (s.customer_key or "") in customers]
            await st.commit(self.app, Change(drop=[*identities, *spaces]))
            await self._resync_spaces({s.space_id for s in spaces}, "delete_data", log)
            return await self._finish_run("delete_data", next(iter(customer_keys), None), log)

    async def replace_feed_reservations(self, feed_key: str, space_key: str,
                                        bookings: Sequence[Booking]) -> AutomationRun:
        """The whole set of bookings one feed sees now for one space.

        Each booking becomes the reservation `feed:<feed_key>:<uid>` on that space (created,
        or moved when its times changed); the reservations of the same feed and space that
        are no longer given are revoked at once (a grace period, if any, is the caller's).
        The feed's customer key is `feed:<feed_key>`. Returns the run, whose trigger is
        `feed:<feed_key>`."""
        source = f"feed:{feed_key}"
        if self.state.space_by_key(space_key) is None:
            raise NotFound("space_not_found", f"No space with key {space_key!r}")
        async with self._lock:
            log = RunLog()
            wanted = {f"{source}:{b.uid}": b for b in bookings}
            for reservation in list(self.state.reservations.values()):
                if reservation.source == source and space_key in reservation.space_keys \
                        and reservation.reservation_key not in wanted:
                    await self._drop_reservation(reservation, log)
            for key, booking in wanted.items():
                item = ReservationInput(key, booking.starts_at, booking.ends_at, (space_key,),
                                        name=booking.name)
                await self._upsert_reservation(source, item, source, log)
            return await self._finish_run(source, source, log)

    async def declare_reservation(self, customer_key: str, item: ReservationInput,
                                  source: str) -> AutomationRun | None:
        """A reservation from the configuration, pushed once (None when it already was)."""
        async with self._lock:
            if item.reservation_key in self.state.reservations:
                return None
            log = RunLog()
            await self._upsert_reservation(customer_key, item, source, log)
            return await self._finish_run(source, customer_key, log)

    # -- access grants made directly ------------------------------------------------------

    def grant(self, access_grant_id: str | None = None,
              access_grant_key: str | None = None) -> AccessGrant:
        """A grant by id or key, or NotFound."""
        found = self.state.grants.get(access_grant_id or "") if access_grant_id else next(
            (g for g in self.state.grants.values()
             if access_grant_key and g.access_grant_key == access_grant_key), None)
        if found is None:
            raise NotFound("access_grant_not_found", "Access grant not found")
        return found

    async def create_grant(self, wanted: GrantInput) -> AccessGrant:
        """A grant on the named locks and spaces, its codes created at once."""
        self._check_devices(wanted.device_ids)
        space_ids = [*wanted.space_ids, *(self.space(space_key=k).space_id
                                          for k in wanted.space_keys)]
        for space_id in space_ids:
            self.space(space_id)
        devices = tuple(dict.fromkeys([*wanted.device_ids, *self.devices_of(space_ids)]))
        if not devices:
            raise EngineError(ErrorKind.INVALID_INPUT, "Name at least one device or space",
                              "device_ids")
        _check_window(wanted.starts_at, wanted.ends_at)
        async with self._lock:
            log = RunLog()
            grant = AccessGrant(str(uuid.uuid4()), self.app.clock.now(), wanted.starts_at,
                                wanted.ends_at, devices, tuple(dict.fromkeys(space_ids)),
                                wanted.access_grant_key, wanted.reservation_key, None,
                                wanted.user_identity_key, wanted.name, wanted.code)
            await self._sync_grant(grant, None, log)
            await self._finish_run("access_grants/create", None, log)
            return self.state.grants[grant.access_grant_id]

    async def update_grant(self, grant: AccessGrant, *, name: str | None = None,
                           starts_at: datetime | None = None,
                           ends_at: datetime | None = None) -> AccessGrant:
        """Rename a grant or move its times; its codes follow."""
        async with self._lock:
            current = self.grant(grant.access_grant_id)
            updated = replace(current, name=name if name is not None else current.name,
                              starts_at=starts_at or current.starts_at,
                              ends_at=ends_at or current.ends_at)
            _check_window(updated.starts_at, updated.ends_at)
            log = RunLog()
            await self._sync_grant(updated, current, log)
            await self._finish_run("access_grants/update", current.customer_key, log)
            return self.state.grants[current.access_grant_id]

    async def delete_grant(self, grant: AccessGrant) -> None:
        """Revoke a grant's codes at once and forget it."""
        async with self._lock:
            log = RunLog()
            await self._revoke(self.grant(grant.access_grant_id), log, drop=[])
            await self._finish_run("access_grants/delete", grant.customer_key, log)

    def method(self, access_method_id: str) -> AccessMethod:
        """An access method by id, or NotFound."""
        found = self.state.methods.get(access_method_id)
        if found is None:
            raise NotFound("access_method_not_found", "Access method not found")
        return found

    # -- retention ---------------------------------------------------------------------------

    async def forget_ended(self) -> AutomationRun | None:
        """Forget the grants (with their access methods) whose stay ended more than the
        retention ago, now by the clock; their codes come off the locks first if one is somehow
        still there. The run telling of it, or None when nothing had ended that long ago."""
        async with self._lock:
            cutoff = self.app.clock.now() - self.retention
            ended = [g for g in self.state.grants.values() if g.ends_at <= cutoff]
            if not ended:
                return None
            log = RunLog()
            for grant in ended:
                await self._revoke(grant, log, drop=[], reason="ended")
            _LOG.info("forgot %d access grant(s) ended before %s", len(ended),
                      cutoff.isoformat())
            return await self._finish_run(PRUNE_TRIGGER, None, log)

    async def forget_ended_forever(self, every_s: float) -> None:
        """`forget_ended` now and every `every_s` seconds of the clock, until cancelled."""
        while True:  # until cancelled at shutdown
            try:
                await self.forget_ended()
            except Exception:  # the store failed: tried again next round
                _LOG.exception("ended access grants could not be forgotten")
            await self.app.clock.sleep(every_s)

    def _beyond_retention(self, ends_at: datetime) -> bool:
        return ends_at <= self.app.clock.now() - self.retention

    # -- internals ---------------------------------------------------------------------------

    async def _upsert_reservation(self, customer_key: str, item: ReservationInput,
                                  source: str, log: RunLog) -> None:
        try:
            _check_window(item.starts_at, item.ends_at)
        except EngineError as exc:
            log.errors.append(f"{item.reservation_key}: {exc}")
            return
        spaces = []
        for key in item.space_keys:
            space = self.state.space_by_key(key)
            if space is None:
                log.errors.append(f"{item.reservation_key}: no space with key {key!r}")
            else:
                spaces.append(space)
        now = self.app.clock.now()
        known = self.state.reservations.get(item.reservation_key)
        reservation = Reservation(item.reservation_key, customer_key, item.starts_at,
                                  item.ends_at, item.space_keys,
                                  known.created_at if known else now,
                                  item.user_identity_key, item.name, source)
        current = self.state.grant_of(item.reservation_key)
        person = self.state.identities.get(item.user_identity_key or "")
        grant = AccessGrant(
            current.access_grant_id if current else str(uuid.uuid4()),
            current.created_at if current else now, item.starts_at, item.ends_at,
            self.devices_of(s.space_id for s in spaces), tuple(s.space_id for s in spaces),
            None, item.reservation_key, customer_key, item.user_identity_key,
            item.name or (person.name if person else None) or item.reservation_key,
            item.preferred_code)
        await self.state.commit(self.app, Change(put=[reservation]))
        if current is None and self._beyond_retention(item.ends_at):
            # A stay the retention forgot (or would at once), pushed again by a feed that
            # still lists it or a re-sent push: no grant is made only to be forgotten.
            log.ignored.append(f"{item.reservation_key}: ended more than "
                               f"{_days(self.retention)} days ago, no access granted")
            return
        await self._sync_grant(grant, current, log)

    async def _drop_reservation(self, reservation: Reservation, log: RunLog) -> None:
        grant = self.state.grant_of(reservation.reservation_key)
        if grant is None:
            await self.state.commit(self.app, Change(drop=[reservation]))
            return
        await self._revoke(grant, log, drop=[reservation])

    async def _sync_grant(self, grant: AccessGrant, before: AccessGrant | None,
                          log: RunLog) -> None:
        """Bring the grant's codes in line, then commit it, its methods and its events."""
        methods = self.state.methods_of(grant.access_grant_id)
        applied = await self._applier.apply(grant, methods, log)
        events: list[Event] = []
        grant_data = grant_event_data(grant)
        if before is None:
            events.append(new_event(self.app, EventType.ACCESS_GRANT_CREATED, grant_data))
        elif (before.starts_at, before.ends_at) != (grant.starts_at, grant.ends_at):
            events.append(new_event(self.app, EventType.ACCESS_GRANT_ACCESS_TIMES_CHANGED, {
                **grant_data, "starts_at": grant.starts_at.isoformat(),
                "ends_at": grant.ends_at.isoformat()}))
        keep = [m for m in applied if m.codes or m.refused]
        before_refused = {m.access_method_id: m.refused for m in methods}
        events += [new_event(self.app, EventType.ACCESS_METHOD_FAILED_TO_ISSUE, {
            **method_event_data(m, grant), "message": "; ".join(m.refused.values())})
            for m in keep if set(m.refused) - set(before_refused.get(m.access_method_id, {}))]
        empty = [m for m in applied if not (m.codes or m.refused)
                 and m.access_method_id in self.state.methods]
        events += [new_event(self.app, EventType.ACCESS_METHOD_DELETED,
                             method_event_data(m, grant)) for m in empty]
        await self.state.commit(self.app, Change(put=[grant, *keep], drop=list(empty),
                                                 events=events))
        await self.issuance.check_locked([m.access_method_id for m in keep])

    async def _revoke(self, grant: AccessGrant, log: RunLog,
                      drop: list[Reservation], reason: str | None = None) -> None:
        """Take the grant's codes off and forget it and its methods; `reason` goes into the
        events' data (`ended`: the retention forgot it)."""
        methods = self.state.methods_of(grant.access_grant_id)
        await self._applier.revoke(grant, methods, log)
        why: dict[str, object] = {"reason": reason} if reason else {}
        events = [new_event(self.app, EventType.ACCESS_METHOD_DELETED,
                            {**method_event_data(m, grant), **why}) for m in methods]
        events.append(new_event(self.app, EventType.ACCESS_GRANT_DELETED,
                                {**grant_event_data(grant), **why}))
        await self.state.commit(self.app, Change(drop=[grant, *methods, *drop], events=events))

    async def _resync_spaces(self, space_ids: set[str], trigger: str,
                             log: RunLog | None = None) -> None:
        """Grants on these spaces follow the spaces' locks now."""
        if not space_ids:
            return
        own = log is None
        log = log or RunLog()
        for grant in list(self.state.grants.values()):
            if not space_ids & set(grant.space_ids):
                continue
            remaining = tuple(s for s in grant.space_ids if s in self.state.spaces)
            devices = self.devices_of(remaining)
            await self._sync_grant(replace(grant, space_ids=remaining, device_ids=devices),
                                   grant, log)
        if own:
            await self._finish_run(trigger, None, log)

    async def _finish_run(self, trigger: str, customer_key: str | None,
                          log: RunLog) -> AutomationRun:
        run = AutomationRun(str(uuid.uuid4()), trigger, self.app.clock.now(), customer_key,
                            tuple(log.entries), tuple(log.substitutions), tuple(log.errors),
                            tuple(log.ignored))
        await self.state.commit(self.app, Change(run=run))
        return run

    async def _persist(self, grant: AccessGrant, method: AccessMethod) -> None:
        await self.state.commit(self.app, Change(put=[grant, method]))

    def _identity_id(self, key: str) -> str:
        known = self.state.identities.get(key)
        return known.user_identity_id if known else str(uuid.uuid4())


def _days(span: timedelta) -> str:
    return f"{span / timedelta(days=1):g}"


def _check_window(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise EngineError(ErrorKind.INVALID_INPUT, "ends_at must be after starts_at", "ends_at")
