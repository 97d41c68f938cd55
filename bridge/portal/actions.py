"""What a portal session may change: create and revoke a code, hand out a backup, retry a
failed code, take a lock out of lockbridge. Each goes through the application layer
(bridge/application.py) as the API's routes do, so the rules and the errors are the same; the
portal only adds who may ask (a session, not read-only, on its own locks, from its own page)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.api.errors import ApiError, from_validation
from bridge.application import CodeChanges
from bridge.engine import CodeRequest
from bridge.instants import Instant
from bridge.logs import REDACTOR
from bridge.portal import views
from bridge.records import CodeRecord

if TYPE_CHECKING:
    from bridge.portal.web import Portal, Viewer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Body(BaseModel):
    # Built by its first request, as the API's models are (bridge/api/models.py).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


_M = TypeVar("_M", bound=_Body)


class CreateCode(_Body):
    """A new code from the Access page."""

    device_id: Annotated[str, Field(max_length=64)]
    name: Annotated[str, Field(max_length=200)] | None = None
    code: Annotated[str, Field(pattern=r"^[0-9]{1,12}$")] | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    use_backup_access_code_pool: bool = False


class CodeAction(_Body):
    """An action on one code."""

    access_code_id: Annotated[str, Field(max_length=64)]


class DeviceAction(_Body):
    """An action on one lock."""

    device_id: Annotated[str, Field(max_length=64)]


class Actions:
    """The portal's write routes."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.app = portal.app

    def routes(self) -> dict[str, Handler]:
        """Path under /portal/api/ -> handler."""
        return {
            "codes/create": self._guarded(CreateCode, self.create),
            "codes/delete": self._guarded(CodeAction, self.delete),
            "codes/pull_backup": self._guarded(CodeAction, self.pull_backup),
            "codes/retry": self._guarded(CodeAction, self.retry),
            "devices/unmanage": self._guarded(DeviceAction, self.unmanage),
        }

    async def create(self, viewer: Viewer, p: CreateCode) -> dict[str, Any]:
        """A managed code on one of the session's locks (time-bound when it has times)."""
        device = self.portal.device(viewer, p.device_id)
        if p.code:
            REDACTOR.remember(p.code)
        code = await self.app.create_code(device.device_id, CodeRequest(
            name=p.name, code=p.code, starts_at=p.starts_at, ends_at=p.ends_at,
            use_backup_access_code_pool=p.use_backup_access_code_pool or None))
        return {"access_code": self._view(viewer, code)}

    async def delete(self, viewer: Viewer, p: CodeAction) -> dict[str, Any]:
        """Revoke a code: it comes off its lock."""
        code = self._code(viewer, p.access_code_id)
        deletion = await self.app.delete_code(code.access_code_id)
        return {"access_code_id": deletion.code.access_code_id, "repeated": deletion.repeated}

    async def pull_backup(self, viewer: Viewer, p: CodeAction) -> dict[str, Any]:
        """Hand out a backup for a guest's code; its PIN is in the answer, to pass on."""
        original = self._code(viewer, p.access_code_id)
        backup, _ = await self.app.pull_backup(original.access_code_id)
        return {"backup_access_code": self._view(viewer, backup)}

    async def retry(self, viewer: Viewer, p: CodeAction) -> dict[str, Any]:
        """Try a failed code again: an update that changes nothing, which clears the errors a
        retry can change and sends the code again (as re-saving it through the API does)."""
        code = self._code(viewer, p.access_code_id)
        updated = await self.app.update_code(code.access_code_id, CodeChanges())
        return {"access_code": self._view(viewer, updated)}

    async def unmanage(self, viewer: Viewer, p: DeviceAction) -> dict[str, Any]:
        """Take a lock out of lockbridge (its backup codes come off it)."""
        device = self.portal.device(viewer, p.device_id)
        await self.app.update_device(device.device_id, is_managed=False)
        return {"device_id": device.device_id}

    # -- helpers ---------------------------------------------------------------------------

    def _code(self, viewer: Viewer, access_code_id: str) -> CodeRecord:
        code = self.portal.state.codes.get(access_code_id)
        if code is None or not code.is_managed or not viewer.scope.allows(code.device_id):
            raise ApiError(404, "access_code_not_found", "Access code not found")
        return code

    def _view(self, viewer: Viewer, code: CodeRecord) -> dict[str, Any]:
        device = self.portal.state.devices[code.device_id]
        listed = views.codes_view(self.portal.state, device, show_pins=not viewer.read_only,
                                  origins=views.code_origins(self.portal.reservations()))
        return next(c for c in listed if c["access_code_id"] == code.access_code_id)

    def _guarded(self, model: type[_M],
                 action: Callable[[Viewer, _M], Awaitable[dict[str, Any]]]) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            viewer = await self.portal.viewer(request)
            assert viewer is not None
            if viewer.read_only:
                raise ApiError(403, "read_only_session", "This portal link is read-only: it "
                               "can show locks and codes but change nothing")
            _same_origin(request)
            body = await _parse(request, model)
            return self.portal.json({**await action(viewer, body), "ok": True})
        return handle


def _same_origin(request: web.Request) -> None:
    """Writes come from the portal's own page: a JSON body (another site's form cannot send
    one without a CORS preflight this server never grants) from this origin."""
    origin = request.headers.get("Origin")
    if origin != f"{request.scheme}://{request.host}":
        raise ApiError(403, "forbidden", "A portal change must come from the portal's page")
    if request.content_type != "application/json":
        raise ApiError(415, "invalid_input", "Send the change as JSON")


async def _parse(request: web.Request, model: type[_M]) -> _M:
    try:
        raw = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_input", "The body is not valid JSON") from exc
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid_input", "The body must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise from_validation(exc) from None
