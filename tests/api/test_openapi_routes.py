"""/openapi.json describes every route the API serves: each JSON route of the daemon's router
(Seam's, the reservation automations', the portal's create_portal) is in the document with its
request and its answer, so a route added later cannot be left out; and an answer the daemon
gives fits the schema the document states for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the venv
from aiohttp import web

from bridge.api.server import build_api, make_app
from bridge.api.status_page import STATIC_FILES
from bridge.portal.web import PREFIX as PORTAL_PREFIX
from tests.inprocess import RunningDaemon, running_daemon

CONFIG = """\
bridge: {{id: openapi-test}}
state_dir: {state}
api: {{port: 0}}
schedule: {{require_synchronized_clock: false}}
spaces:
  - key: loft
    name: Loft
    devices: [front]
drivers:
  - kind: simulator
    name: sim
    locks: [{{id: front, name: Front door}}]
"""
# What the listener serves that is not the JSON API: the status page and its data, the
# metrics, the document itself; and the portal's pages and their cookie-session data routes
# (the portal page's own, not for API clients; docs/portal.md).
NOT_API = frozenset({"/", "/status.json", "/metrics", "/openapi.json", *STATIC_FILES})


def _is_not_api(path: str) -> bool:
    return path in NOT_API or path == PORTAL_PREFIX or path.startswith(PORTAL_PREFIX + "/")


def _served(app: web.Application) -> set[tuple[str, str]]:
    """(path, method) of every API route the application's router answers."""
    served = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method != "HEAD" and not _is_not_api(path):
            served.add((path, route.method.lower()))
    return served


async def _document(daemon: RunningDaemon) -> dict[str, Any]:
    async with daemon.http.get(daemon.base + "/openapi.json") as answer:
        assert answer.status == 200
        document: dict[str, Any] = await answer.json()
        return document


def _answer_schema(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    ok: dict[str, Any] = document["paths"][path][method]["responses"]["200"]
    schema: dict[str, Any] = ok["content"]["application/json"]["schema"]
    return schema


async def test_every_served_route_is_in_the_document(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    async with running_daemon(config) as daemon:
        app = make_app(await build_api(daemon.bridge), daemon.bridge)
        served = _served(app)
        document = await _document(daemon)
    paths = document["paths"]
    # The route groups of every package are there (not just Seam's core routes).
    assert {"/customers/create_portal", "/spaces/list", "/customers/push_data",
            "/customers/delete_data", "/access_grants/list", "/access_methods/get",
            "/automation_runs/list", "/devices/list", "/health"} <= {p for p, _ in served}
    missing = sorted(f"{m.upper()} {p}" for p, m in served if m not in paths.get(p, {}))
    assert not missing, f"served but not in /openapi.json: {missing}"
    for path, method in served:
        operation = paths[path][method]
        if path != "/health":
            assert "requestBody" in operation or "parameters" in operation, (path, method)
        assert _answer_schema(document, path, method)["properties"]["ok"], (path, method)
    # Nothing is documented that is not served.
    documented = {(p, m) for p, ops in paths.items() for m in ops}
    assert documented <= served, sorted(documented - served)


async def test_create_portal_answers_as_the_document_says(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    async with running_daemon(config) as daemon:
        document = await _document(daemon)
        status, body = await daemon.post("/customers/create_portal",
                                         {"customer_data": {"customer_key": "owner-1"}})
    assert status == 200, body
    schema = _answer_schema(document, "/customers/create_portal", "post")
    assert schema["required"] == ["customer_portal", "ok"]
    # The answer's schema refers to the document's components: resolve them in place.
    jsonschema.Draft202012Validator(
        {**schema, "components": document["components"]}).validate(body)
    portal = body["customer_portal"]
    assert portal["customer_key"] == "owner-1" and "/portal/open?token=" in portal["url"]
