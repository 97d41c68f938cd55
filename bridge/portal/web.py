"""The portal on the API's listener: magic links open sessions, the page and its data.

Who may do what is decided here: a link opens a session (an HttpOnly cookie); every data
route needs a live session and shows only its scope; writes (bridge/portal/actions.py) also
need a session that is not read-only and a same-origin JSON request."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.api import auth
from bridge.api.errors import ApiError
from bridge.api.routes import Call, Route
from bridge.application import Application
from bridge.model import Event
from bridge.portal import PREFIX, create, pages, views
from bridge.portal.actions import Actions
from bridge.portal.feed import EventFeed
from bridge.portal.links import LinkState, PortalSession, find_session, open_link, start_session
from bridge.portal.scope import PortalScope, ScopeError, scope_for, space_devices
from bridge.records import DeviceRecord
from bridge.reservations.starter import EXTRA_KEY as RESERVATIONS_KEY
from bridge.serialize import iso

if TYPE_CHECKING:
    from bridge.daemon import Bridge
    from bridge.reservations.service import ReservationService

_LOG = logging.getLogger(__name__)
COOKIE = "lockbridge_portal"
# Events shown when the activity page opens, before live ones arrive.
RECENT_EVENTS = 100
HEARTBEAT_S = 15.0
_FILES = {
    "/portal/portal.js": ("portal.js", "text/javascript; charset=utf-8"),
    "/portal/portal.css": ("portal.css", "text/css; charset=utf-8"),
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Viewer:
    """A request's live session and the locks it may see."""

    session: PortalSession
    scope: PortalScope

    @property
    def read_only(self) -> bool:
        """True when the session may browse only."""
        return self.session.options.read_only


def content_security_policy(frame_ancestors: str) -> str:
    """The portal's CSP: its own script, style and data only; framed by `frame_ancestors`."""
    return ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "img-src 'self'; base-uri 'none'; form-action 'none'; "
            f"frame-ancestors {frame_ancestors}")


class Portal:
    """The portal's routes over the bridge's application layer, store and engine events."""

    def __init__(self, bridge: Bridge, app: Application) -> None:
        self.bridge = bridge
        self.app = app
        self.state = app.state
        self.config = bridge.loaded.config.portal
        self.store = bridge.store
        self.clock = bridge.clock
        self.tls = bridge.api_tls is not None
        self.feed = EventFeed()
        self._page = _static("portal.html")
        self.throttle = auth.Throttle(bridge.clock)
        bridge.engine.subscribe(self.feed.publish)

    # -- the API route ----------------------------------------------------------------------

    def api_routes(self) -> list[Route]:
        """`/customers/create_portal`, served with the API's key like every Seam route."""
        return [Route("/customers/create_portal", ("POST",), create.CreatePortal,
                      self.create_portal, ("customer_portal",),
                      "Create a customer portal magic link")]

    async def create_portal(self, call: Call) -> dict[str, Any]:
        """A magic link for a customer, as Seam's `customer_portal`."""
        p: create.CreatePortal = call.params
        options = create.portal_options(p, self.state)
        link = await create.make_link(self.store, self.config, options, p.expires_in_s,
                                      self.clock.now())
        base = self.config.public_url or str(call.url.origin())
        bridge_id = self.bridge.loaded.config.bridge.id
        return {"customer_portal": create.portal_json(link, base, bridge_id)}

    # -- mounting ---------------------------------------------------------------------------

    def attach(self, app: web.Application) -> None:
        """Add the portal's pages and data routes to the API's application."""
        actions = Actions(self)
        for path, (name, kind) in _FILES.items():
            app.router.add_get(path, self._file(_static(name), kind))
        app.router.add_get(PREFIX + "/open", self.open)
        app.router.add_get(PREFIX, self.page)
        app.router.add_get(PREFIX + "/", self.page)
        app.router.add_get(PREFIX + "/api/session", self.session_info)
        app.router.add_get(PREFIX + "/api/locks", self.locks)
        app.router.add_get(PREFIX + "/api/codes", self.codes)
        app.router.add_get(PREFIX + "/api/events", self.events)
        app.router.add_get(PREFIX + "/api/runs", self.runs)
        app.router.add_get(PREFIX + "/api/stream", self.stream)
        for path, handler in actions.routes().items():
            app.router.add_post(PREFIX + "/api/" + path, handler)
        app.on_shutdown.append(self._close_streams)

    # -- pages ------------------------------------------------------------------------------

    async def open(self, request: web.Request) -> web.StreamResponse:
        """A magic link: a session and a redirect to the page, or a page saying why not."""
        client = request.remote or "?"
        delay = self.throttle.delay_for(client)
        opened = await open_link(self.store, request.query.get("token", ""), self.clock.now())
        if opened.state is not LinkState.VALID or opened.options is None:
            self.throttle.failed(client)
            if delay:
                await self.clock.sleep(delay)
            notice = pages.EXPIRED_LINK if opened.state is LinkState.EXPIRED \
                else pages.UNKNOWN_LINK
            return self.notice(notice)
        self.throttle.succeeded(client)
        options = opened.options
        token, session = await start_session(
            self.store, options, self.clock.now(), timedelta(hours=self.config.session_ttl_hours))
        target = PREFIX + "/" + (f"#lock={options.deep_link_device_id}"
                                 if options.deep_link_device_id else "")
        response = web.Response(status=303, headers={
            **self.headers(options.is_embedded), "Location": target})
        self._set_cookie(response, token, session)
        return response

    async def page(self, request: web.Request) -> web.StreamResponse:
        """The portal's one page (its script renders the rest), for a signed-in browser."""
        viewer = await self.viewer(request, required=False)
        if viewer is None:
            return self.notice(pages.NO_SESSION)
        return web.Response(body=self._page, headers={
            **self.headers(viewer.session.options.is_embedded),
            "Content-Type": "text/html; charset=utf-8"})

    def notice(self, notice: pages.Notice) -> web.Response:
        """A page explaining a refusal; frameable where embedded links are, so an embedded
        portal shows it rather than a blank frame."""
        return web.Response(status=notice.status, text=pages.render(notice),
                            content_type="text/html", charset="utf-8",
                            headers=self.headers(embedded=True))

    # -- data -------------------------------------------------------------------------------

    async def session_info(self, request: web.Request) -> web.Response:
        """What the page needs to know of its session."""
        viewer = await self._viewer(request)
        options = viewer.session.options
        return self.json({
            "customer_key": options.customer_key, "read_only": options.read_only,
            "shows_pins": not options.read_only, "is_embedded": options.is_embedded,
            "navigation_mode": options.navigation_mode,
            "deep_link_device_id": options.deep_link_device_id, "locale": options.locale,
            "expires_at": iso(viewer.session.expires_at)})

    async def locks(self, request: web.Request) -> web.Response:
        """The session's locks."""
        viewer = await self._viewer(request)
        size = self.bridge.loaded.config.backup_pool.size
        return self.json({"locks": [views.lock_view(self.state, d, size)
                                    for d in views.visible_devices(self.state, viewer.scope)]})

    async def codes(self, request: web.Request) -> web.Response:
        """Every code on one of the session's locks."""
        viewer = await self._viewer(request)
        device = self.device(viewer, request.query.get("device_id", ""))
        return self.json({"codes": views.codes_view(
            self.state, device, show_pins=not viewer.read_only,
            origins=views.code_origins(self.reservations()))})

    async def events(self, request: web.Request) -> web.Response:
        """The latest events of the session's locks (of one, when asked), oldest first."""
        viewer = await self._viewer(request)
        wanted = request.query.get("device_id") or None
        if wanted is not None:
            self.device(viewer, wanted)
        found = await self.store.read(lambda r: r.events(
            after_seq=max(0, r.event_bounds()[1] - 20 * RECENT_EVENTS), limit=20 * RECENT_EVENTS,
            device_id=wanted))
        stay = request.query.get("reservation_key") or None
        # A reservation's events: those of the codes its access methods put on the locks.
        origins = views.code_origins(self.reservations()) if stay else {}
        shown = [views.event_view(self.state, e) for e in found
                 if e.device_id is not None and viewer.scope.allows(e.device_id)
                 and (stay is None or origins.get(e.access_code_id or "", {})
                      .get("reservation_key") == stay)]
        return self.json({"events": shown[-RECENT_EVENTS:]})

    async def runs(self, request: web.Request) -> web.Response:
        """The latest automation runs, as far as they touched the session's locks (one lock's,
        one reservation's, when asked)."""
        viewer = await self._viewer(request)
        wanted = request.query.get("device_id") or None
        if wanted is not None:
            self.device(viewer, wanted)
        return self.json({"runs": views.runs_view(
            self.reservations(), self.state, viewer.scope, wanted,
            request.query.get("reservation_key") or None, RECENT_EVENTS)})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: each new event of the session's locks as it is committed."""
        viewer = await self._viewer(request)
        wanted = request.query.get("device_id") or None
        if wanted is not None:
            self.device(viewer, wanted)
        response = web.StreamResponse(headers={
            **self.headers(viewer.session.options.is_embedded),
            "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue = self.feed.subscribe()
        try:
            await response.write(b": live\n\n")
            until = viewer.session.expires_at
            while (event := await self._next(queue, response, until)) is not None:
                if event.device_id is None or not viewer.scope.allows(event.device_id) or (
                        wanted is not None and event.device_id != wanted):
                    continue
                body = json.dumps(views.event_view(self.state, event))
                await response.write(f"event: activity\ndata: {body}\n\n".encode())
        except ConnectionResetError:
            pass  # the browser went away (a page closed): nothing to answer
        finally:
            self.feed.unsubscribe(queue)
        return response

    async def _next(self, queue: asyncio.Queue[Event | None], response: web.StreamResponse,
                    until: datetime) -> Event | None:
        """The stream's next event, None once it must end (the server stops, the session
        expired); a comment now and then keeps proxies from closing it."""
        while self.clock.now() < until:
            try:
                async with asyncio.timeout(HEARTBEAT_S):
                    return await queue.get()
            except TimeoutError:
                await response.write(b": still here\n\n")
        return None

    # -- sessions ---------------------------------------------------------------------------

    def reservations(self) -> ReservationService | None:
        """The reservation automations, once the daemon has built them (at start where they
        are in use, else at the first request to their routes; bridge/reservations/starter.py)."""
        service: ReservationService | None = self.bridge.extras.get(RESERVATIONS_KEY)
        return service

    async def viewer(self, request: web.Request, required: bool = True) -> Viewer | None:
        """The request's live session and scope; None (or a 401 when `required`) without."""
        session = await find_session(self.store, request.cookies.get(COOKIE), self.clock.now())
        if session is None:
            if required:
                raise ApiError(401, "unauthorized", "No portal session: open the portal link "
                               "again or ask for a fresh one")
            return None
        customer = session.options.customer_key
        try:
            devices = scope_for(customer, self.config.scope_file)
        except ScopeError as exc:
            _LOG.warning("portal: %s", exc)
            raise ApiError(503, "service_unavailable", "The portal's scope file cannot be "
                           "read; the box's log says why") from None
        if devices is None:
            devices = space_devices(customer, self.reservations())
        return Viewer(session, PortalScope(devices))

    async def _viewer(self, request: web.Request) -> Viewer:
        viewer = await self.viewer(request)
        assert viewer is not None
        return viewer

    def device(self, viewer: Viewer, device_id: str) -> DeviceRecord:
        """A managed lock the session may see, else device_not_found (as for no such lock)."""
        if not viewer.scope.allows(device_id):
            raise ApiError(404, "device_not_found", "Device not found")
        device = self.state.devices.get(device_id)
        if device is None or not device.is_managed:
            raise ApiError(404, "device_not_found", "Device not found")
        return device

    def headers(self, embedded: bool) -> dict[str, str]:
        """Security headers; embedded sessions may be framed by the configured origins."""
        ancestors = " ".join(self.config.frame_ancestors) if embedded else ""
        return {
            "Content-Security-Policy": content_security_policy(ancestors or "'none'"),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        }

    def json(self, body: dict[str, Any]) -> web.Response:
        """A JSON answer with the portal's headers."""
        return web.json_response(body, headers=self.headers(embedded=False))

    def _set_cookie(self, response: web.Response, token: str, session: PortalSession) -> None:
        # Lax, not Strict: a link arrives from another site (a message, a booking tool), and
        # Chrome withholds a Strict cookie from the page that link's redirect lands on. Lax
        # still keeps it off cross-site POSTs, and writes also check their Origin. An embedded
        # portal on another site needs SameSite=None, which browsers take only with Secure:
        # so only over TLS, partitioned to the embedding site (CHIPS).
        third_party = session.options.is_embedded and self.tls
        max_age = int((session.expires_at - self.clock.now()).total_seconds())
        response.set_cookie(COOKIE, token, max_age=max_age, path=PREFIX, httponly=True,
                            secure=self.tls or None,
                            samesite="None" if third_party else "Lax",
                            partitioned=True if third_party else None)

    def _file(self, body: bytes, kind: str) -> Handler:
        async def serve(request: web.Request) -> web.Response:
            return web.Response(body=body, headers={**self.headers(embedded=True),
                                                    "Content-Type": kind})
        return serve

    async def _close_streams(self, app: web.Application) -> None:
        with contextlib.suppress(Exception):
            self.feed.close()


def _static(name: str) -> bytes:
    return (resources.files("bridge.api") / "static" / name).read_bytes()
