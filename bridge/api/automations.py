"""The automation routes: Seam's spaces, customers' push_data / delete_data, access grants and
access methods, and lockbridge's own /automation_runs/list, over the reservation service
(bridge/reservations/). Objects are shaped as Seam's SDK reads them.

The routes are served by every daemon, but most never get a request: the service and its
modules are imported and built by the first request that needs them (`Automations.service`),
so this module imports nothing of bridge/reservations/ at load."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import wraps
from typing import TYPE_CHECKING, Any

from bridge.api import automation_models as am
from bridge.api.errors import not_found
from bridge.api.paging import page
from bridge.api.routes import Body, Call, Route
from bridge.serialize import iso, workspace_id

if TYPE_CHECKING:
    from bridge.reservations.records import AccessGrant, AccessMethod, AutomationRun, Space
    from bridge.reservations.service import ReservationService

_ISSUE_ERRORS = frozenset({"failed_to_set_on_device", "no_space_for_access_code_on_device",
                           "duplicate_code_on_device", "duplicate_code_attempt_prevented"})
Handler = Callable[[Call], Awaitable[Body]]


class AutomationRoutes:
    """The handlers over the reservation service that `service` builds on its first call (and
    returns from then on)."""

    def __init__(self, service: Callable[[], Awaitable[ReservationService]],
                 bridge_id: str) -> None:
        self._get_service = service
        self._service: ReservationService | None = None
        self.bridge_id = bridge_id

    @property
    def service(self) -> ReservationService:
        """The reservation service (every handler is called through `_with_service`)."""
        assert self._service is not None, "called before the service was built"
        return self._service

    def routes(self) -> list[Route]:
        """Every automation route, with the methods Seam's SDK uses and POST."""
        return [replace(route, handler=self._with_service(route.handler))
                for route in self._table()]

    def _with_service(self, handler: Handler) -> Handler:
        @wraps(handler)
        async def call(params: Call) -> Body:
            if self._service is None:
                self._service = await self._get_service()
            return await handler(params)

        return call

    def _table(self) -> list[Route]:
        get, patch, delete = ("GET", "POST"), ("PATCH", "POST", "PUT"), ("DELETE", "POST")
        post = ("POST",)
        return [
            Route("/spaces/create", post, am.SpacesCreate, self.spaces_create, ("space",),
                  "Create a space with its locks"),
            Route("/spaces/list", get, am.SpacesList, self.spaces_list,
                  ("spaces", "pagination"), "List spaces"),
            Route("/spaces/get", get, am.SpacesGet, self.spaces_get, ("space",), "Get a space"),
            Route("/spaces/update", patch, am.SpacesUpdate, self.spaces_update, ("space",),
                  "Rename a space or change its locks (its grants follow)"),
            Route("/spaces/delete", delete, am.SpacesGet, self.spaces_delete, (),
                  "Delete a space (its grants lose its locks)"),
            Route("/spaces/add_devices", ("PUT", "POST"), am.SpacesDevices,
                  self.spaces_add_devices, (), "Add locks to a space"),
            Route("/spaces/remove_devices", delete, am.SpacesDevices,
                  self.spaces_remove_devices, (), "Remove locks from a space"),
            Route("/customers/push_data", ("POST", "PUT"), am.PushData, self.push_data,
                  ("automation_run_id",), "Push user identities and reservations"),
            Route("/customers/delete_data", delete, am.DeleteData, self.delete_data,
                  ("automation_run_id",), "Delete customer data and revoke its access"),
            Route("/access_grants/create", post, am.AccessGrantsCreate, self.grants_create,
                  ("access_grant",), "Create an access grant"),
            Route("/access_grants/list", get, am.AccessGrantsList, self.grants_list,
                  ("access_grants", "pagination"), "List access grants"),
            Route("/access_grants/get", get, am.AccessGrantsGet, self.grants_get,
                  ("access_grant",), "Get an access grant"),
            Route("/access_grants/update", patch, am.AccessGrantsUpdate, self.grants_update,
                  (), "Rename an access grant or move its times"),
            Route("/access_grants/delete", delete, am.AccessGrantsDelete, self.grants_delete,
                  (), "Delete an access grant (its codes are revoked)"),
            Route("/access_methods/list", get, am.AccessMethodsList, self.methods_list,
                  ("access_methods", "pagination"), "List access methods"),
            Route("/access_methods/get", get, am.AccessMethodsGet, self.methods_get,
                  ("access_method",), "Get an access method (with its PIN)"),
            Route("/automation_runs/list", get, am.AutomationRunsList, self.runs_list,
                  ("automation_runs", "pagination"),
                  "What each push, delete or feed update did (lockbridge's own)"),
        ]

    # -- spaces ----------------------------------------------------------------------------

    async def spaces_create(self, call: Call) -> Body:
        """A new space."""
        p: am.SpacesCreate = call.params
        space = await _found(self.service.create_space(
            p.name, p.space_key, [str(d) for d in p.device_ids], p.customer_key))
        return {"space": self._space(space)}

    async def spaces_list(self, call: Call) -> Body:
        """Spaces, filtered."""
        p: am.SpacesList = call.params
        needle = (p.search or "").lower()
        spaces = [s for s in self.service.state.spaces.values()
                  if (p.customer_key is None or s.customer_key == p.customer_key)
                  and (p.space_key is None or s.space_key == p.space_key)
                  and (not needle or any(needle in (f or "").lower()
                                         for f in (s.name, s.space_key, s.customer_key)))]
        chosen, pagination = page(spaces, p.limit, p.page_cursor, call.url)
        return {"spaces": [self._space(s) for s in chosen], "pagination": pagination}

    async def spaces_get(self, call: Call) -> Body:
        """One space by id or key."""
        return {"space": self._space(self._find_space(call.params))}

    async def spaces_update(self, call: Call) -> Body:
        """Rename a space or set its locks."""
        p: am.SpacesUpdate = call.params
        space = self._find_space(p)
        updated = await _found(self.service.update_space(
            space, name=p.name, space_key=p.space_key if p.space_id else None,
            device_ids=[str(d) for d in p.device_ids] if p.device_ids is not None else None))
        return {"space": self._space(updated)}

    async def spaces_delete(self, call: Call) -> Body:
        """Forget a space."""
        await _found(self.service.delete_space(self._find_space(call.params)))
        return {}

    async def spaces_add_devices(self, call: Call) -> Body:
        """Add locks to a space."""
        p: am.SpacesDevices = call.params
        space = _sync_found(lambda: self.service.space(str(p.space_id)))
        wanted = [*space.device_ids, *(str(d) for d in p.device_ids)]
        await _found(self.service.update_space(space, device_ids=wanted))
        return {}

    async def spaces_remove_devices(self, call: Call) -> Body:
        """Remove locks from a space."""
        p: am.SpacesDevices = call.params
        space = _sync_found(lambda: self.service.space(str(p.space_id)))
        gone = {str(d) for d in p.device_ids}
        await _found(self.service.update_space(
            space, device_ids=[d for d in space.device_ids if d not in gone]))
        return {}

    # -- customers --------------------------------------------------------------------------

    async def push_data(self, call: Call) -> Body:
        """Upsert identities and reservations; the run says what happened on each lock."""
        from bridge.reservations.service import IdentityInput, ReservationInput

        p: am.PushData = call.params
        identities = [IdentityInput(i.user_identity_key, i.name or i.full_name,
                                    i.email_address, i.phone_number)
                      for i in p.user_identities or []]
        identities += [IdentityInput(g.guest_key, g.name, g.email_address, g.phone_number)
                       for g in p.guests or []]
        reservations = [ReservationInput(r.reservation_key, r.starts_at, r.ends_at,
                                         tuple(r.space_keys),
                                         r.user_identity_key or r.guest_key, r.name,
                                         r.preferred_code) for r in p.reservations or []]
        ignored = [f"{name}: not acted on by lockbridge" for name in sorted(p.model_fields_set)
                   if name not in am.PUSH_ACTED_ON and getattr(p, name) is not None]
        run = await self.service.push_data(p.customer_key, identities, reservations, ignored)
        return {"automation_run_id": run.automation_run_id}

    async def delete_data(self, call: Call) -> Body:
        """Forget what the keys name; its access is revoked before the answer."""
        p: am.DeleteData = call.params
        ignored = [f"{name}: not acted on by lockbridge" for name in sorted(p.model_fields_set)
                   if name not in am.DELETE_ACTED_ON and getattr(p, name)]
        run = await self.service.delete_data(
            customer_keys=p.customer_keys or [], reservation_keys=p.reservation_keys or [],
            user_identity_keys=[*(p.user_identity_keys or []), *(p.guest_keys or [])],
            space_keys=p.space_keys or [], access_grant_keys=p.access_grant_keys or [],
            ignored=ignored)
        return {"automation_run_id": run.automation_run_id}

    # -- access grants ----------------------------------------------------------------------

    async def grants_create(self, call: Call) -> Body:
        """A grant with a code access method, its codes created at once."""
        from bridge.reservations.service import GrantInput

        p: am.AccessGrantsCreate = call.params
        identity = p.user_identity
        wanted = GrantInput(
            starts_at=p.starts_at or self.service.app.clock.now(), ends_at=p.ends_at,
            device_ids=tuple(str(d) for d in p.device_ids),
            space_ids=tuple(str(s) for s in p.space_ids), space_keys=tuple(p.space_keys),
            name=p.name or (identity.full_name if identity else None),
            code=p.requested_access_methods[0].code, access_grant_key=p.access_grant_key,
            reservation_key=p.reservation_key,
            user_identity_key=identity.user_identity_key if identity else None)
        grant = await _found(self.service.create_grant(wanted))
        return {"access_grant": self._grant(grant)}

    async def grants_list(self, call: Call) -> Body:
        """Grants, filtered."""
        p: am.AccessGrantsList = call.params
        wanted = {str(i) for i in p.access_grant_ids} if p.access_grant_ids else None
        grants = [g for g in self.service.state.grants.values() if _grant_matches(g, p, wanted)
                  and (p.access_code_id is None or str(p.access_code_id) in self._code_ids(g))]
        chosen, pagination = page(grants, p.limit, p.page_cursor, call.url)
        return {"access_grants": [self._grant(g) for g in chosen], "pagination": pagination}

    async def grants_get(self, call: Call) -> Body:
        """One grant by id or key."""
        return {"access_grant": self._grant(self._find_grant(call.params))}

    async def grants_update(self, call: Call) -> Body:
        """Rename a grant or move it; its codes follow."""
        p: am.AccessGrantsUpdate = call.params
        await _found(self.service.update_grant(self._find_grant(p), name=p.name,
                                               starts_at=p.starts_at, ends_at=p.ends_at))
        return {}

    async def grants_delete(self, call: Call) -> Body:
        """Revoke a grant."""
        p: am.AccessGrantsDelete = call.params
        grant = _sync_found(lambda: self.service.grant(str(p.access_grant_id)))
        await _found(self.service.delete_grant(grant))
        return {}

    # -- access methods and runs ------------------------------------------------------------

    async def methods_list(self, call: Call) -> Body:
        """Access methods, filtered."""
        p: am.AccessMethodsList = call.params
        grant_ids = None
        if p.access_grant_id is not None or p.access_grant_key is not None:
            grant_ids = {g.access_grant_id for g in self.service.state.grants.values()
                         if (p.access_grant_id is None
                             or g.access_grant_id == str(p.access_grant_id))
                         and (p.access_grant_key is None
                              or g.access_grant_key == p.access_grant_key)}
        devices = self.service.devices_of([str(p.space_id)]) if p.space_id else None
        methods = [m for m in self.service.state.methods.values()
                   if (grant_ids is None or m.access_grant_id in grant_ids)
                   and (p.device_id is None or str(p.device_id) in m.codes)
                   and (devices is None or set(devices) & set(m.codes))
                   and (p.access_code_id is None or str(p.access_code_id)
                        in m.codes.values())]
        chosen, pagination = page(methods, p.limit, p.page_cursor, call.url)
        return {"access_methods": [self._method(m) for m in chosen], "pagination": pagination}

    async def methods_get(self, call: Call) -> Body:
        """One access method, with its PIN."""
        p: am.AccessMethodsGet = call.params
        method = _sync_found(lambda: self.service.method(str(p.access_method_id)))
        return {"access_method": self._method(method)}

    async def runs_list(self, call: Call) -> Body:
        """Automation runs, oldest first."""
        from bridge.reservations.records import run_json

        p: am.AutomationRunsList = call.params
        runs = [r for r in self.service.state.runs
                if (p.customer_key is None or r.customer_key == p.customer_key)
                and (p.trigger is None or r.trigger == p.trigger)
                and (p.reservation_key is None or self._run_names(r, p.reservation_key))]
        chosen, pagination = page(runs, p.limit, p.page_cursor, call.url)
        return {"automation_runs": [run_json(r) for r in chosen], "pagination": pagination}

    # -- shapes -----------------------------------------------------------------------------

    def _space(self, space: Space) -> Body:
        return {"space_id": space.space_id, "workspace_id": workspace_id(self.bridge_id),
                "name": space.name, "display_name": space.name, "space_key": space.space_key,
                "customer_key": space.customer_key, "device_count": len(space.device_ids),
                "acs_entrance_count": 0, "created_at": iso(space.created_at), "warnings": [],
                # lockbridge's own: the locks themselves, and where the space came from.
                "device_ids": list(space.device_ids), "source": space.source}

    def _grant(self, grant: AccessGrant) -> Body:
        from bridge.reservations.apply import shown_issued

        methods = self.service.state.methods_of(grant.access_grant_id)
        identity = self.service.state.identities.get(grant.user_identity_key or "")
        method_ids = [m.access_method_id for m in methods]
        return {
            "access_grant_id": grant.access_grant_id,
            "workspace_id": workspace_id(self.bridge_id),
            "access_grant_key": grant.access_grant_key, "reservation_key": grant.reservation_key,
            "customer_key": grant.customer_key, "name": grant.name,
            "display_name": grant.name or grant.access_grant_id,
            "user_identity_id": identity.user_identity_id if identity else None,
            "starts_at": iso(grant.starts_at), "ends_at": iso(grant.ends_at),
            "created_at": iso(grant.created_at), "space_ids": list(grant.space_ids),
            "location_ids": [], "device_ids": list(grant.device_ids),
            "access_method_ids": method_ids,
            "requested_access_methods": [{
                "mode": "code", "display_name": "PIN code", "created_at": iso(grant.created_at),
                "created_access_method_ids": method_ids}],
            "errors": [], "warnings": [], "pending_mutations": [],
            "display_status": "issued" if methods and all(
                shown_issued(m, self.service.app.state.codes) for m in methods) else "pending",
        }

    def _method(self, method: AccessMethod) -> Body:
        from bridge.reservations.apply import method_codes, shown_issued

        codes = method_codes(method, self.service.app.state.codes)
        issued = shown_issued(method, self.service.app.state.codes)
        pin = next((c.code for c in codes.values() if c is not None and c.code), None)
        errors = [{"error_code": "failed_to_issue", "message": f"{device_id}: {why}",
                   "created_at": iso(method.created_at)}
                  for device_id, why in method.refused.items()]
        warnings: list[Body] = []
        for device_id, code in codes.items():
            if code is None:
                continue
            for issue in code.errors:
                if issue.code in _ISSUE_ERRORS:
                    errors.append({"error_code": "failed_to_issue",
                                   "message": f"{device_id}: {issue.message}",
                                   "created_at": iso(issue.created_at)})
            warnings += [{"warning_code": w.code, "message": f"{device_id}: {w.message}",
                          "created_at": iso(w.created_at)} for w in code.warnings]
        return {
            "access_method_id": method.access_method_id,
            "workspace_id": workspace_id(self.bridge_id),
            "access_grant_id": method.access_grant_id, "mode": "code", "code": pin,
            "display_name": "PIN code", "created_at": iso(method.created_at),
            "is_issued": issued, "issued_at": iso(method.issued_at) if method.issued_at
            else None, "errors": errors, "warnings": warnings, "pending_mutations": [],
            "is_encoding_required": False,
            # lockbridge's own: the managed code on each lock.
            "device_ids": list(method.codes), "access_code_ids": list(method.codes.values()),
        }

    def _code_ids(self, grant: AccessGrant) -> set[str]:
        return {c for m in self.service.state.methods_of(grant.access_grant_id)
                for c in m.codes.values()}

    def _run_names(self, run: AutomationRun, reservation_key: str) -> bool:
        grant = self.service.state.grant_of(reservation_key)
        return grant is not None and any(e.access_grant_id == grant.access_grant_id
                                         for e in run.entries)

    def _find_space(self, p: am.SpacesGet) -> Space:
        space: Space = _sync_found(lambda: self.service.space(
            str(p.space_id) if p.space_id else None, p.space_key))
        return space

    def _find_grant(self, p: am.AccessGrantsGet) -> AccessGrant:
        grant: AccessGrant = _sync_found(lambda: self.service.grant(
            str(p.access_grant_id) if p.access_grant_id else None, p.access_grant_key))
        return grant


def _grant_matches(g: AccessGrant, p: am.AccessGrantsList, wanted: set[str] | None) -> bool:
    checks: list[tuple[Any, Any]] = [
        (p.access_grant_key, g.access_grant_key), (p.customer_key, g.customer_key),
        (p.reservation_key, g.reservation_key)]
    if any(want is not None and want != have for want, have in checks):
        return False
    if p.device_id is not None and str(p.device_id) not in g.device_ids:
        return False
    if p.space_id is not None and str(p.space_id) not in g.space_ids:
        return False
    if p.search and p.search.lower() not in (g.name or "").lower():
        return False
    return wanted is None or g.access_grant_id in wanted


async def _found(work: Any) -> Any:
    """`work` awaited, its NotFound as the API's not-found answer."""
    from bridge.reservations.service import NotFound

    try:
        return await work
    except NotFound as exc:
        raise not_found(exc.error_type, str(exc)) from None


def _sync_found(find: Callable[[], Any]) -> Any:
    from bridge.reservations.service import NotFound

    try:
        return find()
    except NotFound as exc:
        raise not_found(exc.error_type, str(exc)) from None
