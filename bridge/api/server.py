"""The local HTTP API: aiohttp on the configured address, Seam's routes, keys and error shapes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from bridge.api import auth
from bridge.api.attempts import ActionAttempts
from bridge.api.errors import ApiError, errors_middleware, from_validation
from bridge.api.health import health as bridge_health
from bridge.api.models import Request, list_fields
from bridge.api.routes import Api, Call, Route
from bridge.api.status_page import SECURITY_HEADERS, STATIC_FILES, static_file, status_summary
from bridge.application import Application
from bridge.listener import LOOPBACK_KEYLESS, beyond_loopback, keyless_paths
from bridge.metrics import CONTENT_TYPE, BridgeMetrics
from bridge.portal import PREFIX as PORTAL_PREFIX
from bridge.reservations.starter import HANDLE_KEY as AUTOMATIONS_KEY
from bridge.serialize import access_code_json
from bridge.version import software_version

if TYPE_CHECKING:
    from bridge.daemon import Bridge

_LOG = logging.getLogger(__name__)
PORT_FILE = "api.port"
# Routes anyone who reaches a loopback listener may call: health, the API's own description,
# and metrics (counts only, no ids of codes, no PINs) so a local Prometheus needs no key. Beyond
# loopback only /health and the routes named in api.public_routes (bridge/listener.py).
OPEN_PATHS = LOOPBACK_KEYLESS
_API_KEY: web.AppKey[Api] = web.AppKey("api", Api)
_KEYLESS: web.AppKey[frozenset[str]] = web.AppKey("keyless", frozenset)
_THROTTLE: web.AppKey[auth.Throttle] = web.AppKey("throttle", auth.Throttle)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _QuietParseErrors(logging.Filter):
    """aiohttp logs a request it cannot even parse (a request line over 8 KiB, say) at ERROR
    with a traceback, and the message quotes the raw bytes, which may hold a PIN from a query
    string. That is the client's fault: one warning line, without the bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "refused a malformed HTTP request (%s, status %s)", (
                type(exc).__name__, exc.code)
            record.exc_info, record.exc_text = None, None
        return True


_PARSE_ERRORS_FILTER = _QuietParseErrors()


async def start_api(bridge: Bridge, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
    """Serve the API until cancelled; the bound port goes to `state_dir/api.port`."""
    config = bridge.loaded.config
    if not config.api.enabled:
        return []
    logging.getLogger("aiohttp.server").addFilter(_PARSE_ERRORS_FILTER)
    api = await build_api(bridge)
    keyless = keyless_paths(config.api.host, config.api.public_routes)
    app = make_app(api, bridge, max_body_bytes=config.api.max_body_bytes, keyless=keyless)
    # No access log: query strings may carry a PIN (`/access_codes/get?code=...`).
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.api.host, config.api.port, ssl_context=bridge.api_tls)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    port = bound_port(runner)
    bridge.extras["api_port"] = port
    port_file = config.state_dir / PORT_FILE
    port_file.write_text(f"{port}\n")
    scheme = "https" if bridge.api_tls is not None else "http"
    _LOG.info("API listening on %s://%s:%d", scheme, config.api.host, port)
    if beyond_loopback(config.api.host):
        _LOG.warning("API reachable beyond loopback over %s; without a key: %s", scheme.upper(),
                     ", ".join(sorted(keyless)))
    return [group.create_task(_serve_until_cancelled(runner, port_file), name="api")]


async def build_api(bridge: Bridge) -> Api:
    """The handlers over a bridge's application layer and store, with action attempts loaded."""
    bridge_id = bridge.loaded.config.bridge.id
    app = Application(bridge.engine)
    attempts = ActionAttempts(bridge.engine, bridge.store,
                              lambda code: access_code_json(code, app.state, bridge_id))
    await attempts.load()
    api = Api(app, bridge.drivers, bridge.store, bridge_id, attempts)
    automations = bridge.extras.get(AUTOMATIONS_KEY)
    if automations is not None:
        from bridge.api.automations import AutomationRoutes

        # The service is built by the first request of these routes where the start did not.
        api.extensions.append(AutomationRoutes(automations.service, bridge_id).routes)
    return api


def make_app(api: Api, bridge: Bridge, max_body_bytes: int = 65536,
             keyless: frozenset[str] = OPEN_PATHS) -> web.Application:
    """The aiohttp application: every route under Seam's path, with auth and error shapes;
    `keyless` are the paths served without a key."""
    app = web.Application(client_max_size=max_body_bytes,
                          middlewares=[errors_middleware(max_body_bytes), _auth_middleware])
    app[_API_KEY] = api
    app[_KEYLESS] = keyless
    app[_THROTTLE] = auth.Throttle(bridge.clock)
    portal = None
    if bridge.loaded.config.portal.enabled:
        # Imported only when enabled: its pages and sessions are no part of most bridges.
        from bridge.portal.web import Portal

        portal = Portal(bridge, api.app)
    routes = api.routes() + (portal.api_routes() if portal else [])
    # Built on first request: most bridges never serve it, and building it costs startup time.
    document: dict[str, Any] = {}
    for route in routes:
        handler = _handler(route)
        for method in route.methods:
            app.router.add_route(method, route.path, handler)

    metrics = BridgeMetrics(bridge)

    async def health(request: web.Request) -> web.Response:
        status, body = bridge_health(bridge)
        return web.json_response(body, status=status)

    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def openapi(request: web.Request) -> web.Response:
        if not document:
            from bridge.api.openapi import openapi_document

            document.update(openapi_document(routes))
        return web.json_response(document)

    app.router.add_get("/health", health)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/metrics", prometheus)
    _add_status_page(app, bridge)
    if portal is not None:
        portal.attach(app)
    return app


def _add_status_page(app: web.Application, bridge: Bridge) -> None:
    """`/status` (and `/`): the page, its script and style, and the data it renders."""
    # Read on the page's first refresh, not before READY: it searches the installed packages.
    version = functools.cache(software_version)
    files = {path: (static_file(name), kind) for path, (name, kind) in STATIC_FILES.items()}

    async def summary(request: web.Request) -> web.Response:
        return web.json_response(status_summary(bridge, bridge.clock.now(), version()),
                                 headers=SECURITY_HEADERS)

    async def home(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/status"})

    def serve(body: bytes, kind: str) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            return web.Response(body=body, headers={**SECURITY_HEADERS, "Content-Type": kind})
        return handle

    for path, (body, kind) in files.items():
        app.router.add_get(path, serve(body, kind))
    app.router.add_get("/status.json", summary)
    app.router.add_get("/", home)


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port the runner's first site listens on (useful when port 0 was asked for)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the API is not listening")


async def _serve_until_cancelled(runner: web.AppRunner, port_file: Any) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(OSError):
            port_file.unlink()
        # A client holding a connection open must not hold up shutdown for long.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await runner.cleanup()


def _handler(route: Route) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        params = await parse(request, route.model)
        body = await route.handler(Call(params, request.url))
        return web.json_response({**body, "ok": True})

    handle.__name__ = route.path
    return handle


async def parse(request: web.Request, model: type[Request]) -> Request:
    """The request's query string and JSON body, validated by `model` (body wins)."""
    lists = list_fields(model)
    data: dict[str, Any] = {}
    for key in request.query:
        if key == "_strict" or key in data:
            continue
        values = request.query.getall(key)
        if key in lists:
            data[key] = [v for v in values if v != ""]
        elif values[-1] != "":
            data[key] = values[-1]
    if request.can_read_body:
        raw = await request.read()
        if raw.strip():
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ApiError(400, "invalid_input", "The body is not valid JSON") from exc
            if not isinstance(body, dict):
                raise ApiError(400, "invalid_input", "The body must be a JSON object")
            body.pop("_strict", None)
            data.update(body)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc) from None


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in request.app[_KEYLESS] or _is_portal(request.path):
        # The portal's routes check its own session (bridge/portal/web.py).
        return await handler(request)
    api = request.app[_API_KEY]
    throttle = request.app[_THROTTLE]
    client = request.remote or "?"
    key_id = await auth.verify(api.store, request.headers.get("Authorization"))
    if key_id is None:
        delay = throttle.delay_for(client)
        throttle.failed(client)
        if delay:
            _LOG.warning("API: bad key from %s again; answering after %.1f s", client, delay)
            await throttle.clock.sleep(delay)
        raise ApiError(401, "unauthorized", "Unauthorized")
    throttle.succeeded(client)
    return await handler(request)


def _is_portal(path: str) -> bool:
    return path == PORTAL_PREFIX or path.startswith(PORTAL_PREFIX + "/")
