"""The customer portal in a real browser (Debian's Chromium driven by Playwright) against the
real daemon on simulated locks: a link made with the official SDK opens a session; the pages
show a failing code's remedy, a new code becoming set, a backup's PIN to hand over and live
activity; an expired link, a read-only session and embedding from an allowed and a refused
origin behave as docs/portal.md says. Screenshots go to docs/portal/ when
LOCKBRIDGE_PORTAL_SCREENSHOTS is set (to refresh the docs), else to the test's directory."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright
from seam import Seam

from tests.api_helpers import ROOT, Daemon, lockbridge, start_daemon, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="chromium is not installed (scripts/peers.sh installs it)"),
]

CONFIG = """\
bridge: {{id: portal-test}}
state_dir: {state}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
backup_pool: {{size: 2}}
portal: {{frame_ancestors: ["ALLOWED_ORIGIN"], scope_file: {state}/../scope.yaml}}
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    locks:
      - {{id: front, name: Front door}}
      - {{id: garage, name: Garage door, faults: {{fail_next_sets: 1, reject_reason: unsupported}}}}
      - {{id: shed, name: Shed, faults: {{account_disconnected: true}}}}
"""
WAIT_MS = 20_000


class _Parent(BaseHTTPRequestHandler):
    """A page of another application embedding `?src=` in a 400 x 600 iframe."""

    def do_GET(self) -> None:
        src = parse_qs(urlparse(self.path).query).get("src", [""])[0]
        body = (f"<!doctype html><title>host app</title><iframe id=portal width=400 height=600 "
                f"src=\"{html.escape(src)}\"></iframe>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve_parent() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Parent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("LOCKBRIDGE_PORTAL_SCREENSHOTS"):
        return ROOT / "docs" / "portal"
    return tmp_path


def test_the_portal_in_a_real_browser(tmp_path: Path, shots: Path) -> None:
    allowed, refused = _serve_parent(), _serve_parent()
    allowed_origin = f"http://127.0.0.1:{allowed.server_address[1]}"
    (tmp_path / "scope.yaml").write_text("# every customer sees every lock\n")
    daemon = start_daemon(tmp_path, CONFIG.replace("ALLOWED_ORIGIN", allowed_origin))
    try:
        # Playwright's sync API runs an event loop of its own: in a thread, it stays clear
        # of the one pytest-asyncio keeps for this thread. One browser for the whole module.
        with ThreadPoolExecutor(1) as worker:
            worker.submit(_scenario, daemon, shots, allowed_origin,
                          f"http://127.0.0.1:{refused.server_address[1]}").result()
    finally:
        log = daemon.stop()
        allowed.shutdown()
        refused.shutdown()
    assert "Traceback" not in log, log[-3000:]
    for pin in daemon.pins:
        assert pin not in log


def _scenario(daemon: Daemon, shots: Path, allowed: str, refused: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            # The CLI makes a link that lives a second, while the browser does the rest.
            short_link = subprocess.Popen(
                lockbridge("portal", "link", "-c", str(daemon.config), "--customer-key",
                           "owner-2", "--expires-in", "1", "--json"),
                stdout=subprocess.PIPE, text=True, cwd=ROOT)
            seam = _sdk(daemon)
            _manager_flow(daemon, seam, browser, shots)
            out, _ = short_link.communicate(timeout=60)
            assert short_link.returncode == 0
            _links_that_do_not_open(daemon, browser, shots, json.loads(out)["url"])
            _read_only(daemon, seam, browser)
            _scoped(daemon, seam, daemon.state.parent / "scope.yaml")
            _embedded(daemon, seam, browser, allowed, refused)
        finally:
            browser.close()


def _row(page: Page, name: str) -> Locator:
    """The Access table's row of the code named `name` (not a backup pulled for it)."""
    cell = page.locator("td.name", has_text=re.compile("^" + re.escape(name)))
    return page.locator("tr", has=cell)


def _sdk(daemon: Daemon) -> Seam:
    return Seam(api_key=daemon.key, endpoint=daemon.url)


def _open(browser: Browser, url: str, **context: Any) -> Page:
    page = browser.new_context(**context).new_page()
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
    return page


def _manager_flow(daemon: Daemon, seam: Seam, browser: Browser, shots: Path) -> None:
    portal = seam.customers.create_portal(
        customer_data={"customer_key": "owner-1"})
    assert portal.url.startswith(daemon.url + "/portal/open?token=")
    assert portal.customer_key == "owner-1"
    assert datetime.fromisoformat(portal.expires_at) > datetime.now(UTC) + timedelta(hours=1)
    devices = {d.display_name: d.device_id for d in seam.devices.list()}
    failing = seam.access_codes.create(
        device_id=devices["Garage door"], name="Mr Retry", code="24680")
    daemon.pins.add("24680")
    _on_a_phone(daemon, browser, shots, portal.url, devices, failing.access_code_id)
    _on_a_desktop(daemon, seam, browser, shots, portal.url, devices)


def _on_a_phone(daemon: Daemon, browser: Browser, shots: Path, url: str,
                devices: dict[str, str], failing_id: str) -> None:
    """Locks with their problems, a failing code's remedy, and its retry."""
    page = _open(browser, url, viewport={"width": 390, "height": 844})
    cookie = next(c for c in page.context.cookies() if c["name"] == "lockbridge_portal")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/portal"
    assert page.url == daemon.url + "/portal/"  # the token is gone from the address bar
    shed = page.locator(f".card[data-device-id='{devices['Shed']}']")
    shed.locator("li[data-code=account_disconnected]").wait_for(timeout=WAIT_MS)
    assert "connected elsewhere" in shed.inner_text()
    page.screenshot(path=str(shots / "locks-phone.png"), full_page=True)

    # The refused code: its error with the cause and what to do.
    page.click(f"a[href='#lock={devices['Garage door']}']")
    row = page.locator(f"tr[data-id='{failing_id}']")
    problem = row.locator("li[data-code=failed_to_set_on_device]")
    problem.wait_for(timeout=WAIT_MS)
    assert "backup code" in problem.locator(".remedy").inner_text()
    page.screenshot(path=str(shots / "failing-code-phone.png"), full_page=True)
    # A refusal for good is not retried by itself; the Retry button sends it again.
    assert "24680" not in daemon.slots("garage").values()
    row.locator("button[data-action=retry]").click()
    page.locator("#message", has_text="again").wait_for(timeout=WAIT_MS)
    page.locator(f"tr[data-id='{failing_id}'][data-status=set]").wait_for(
        timeout=WAIT_MS)
    assert row.locator("li[data-code]").count() == 0
    assert "24680" in daemon.slots("garage").values()
    page.context.close()


def _on_a_desktop(daemon: Daemon, seam: Seam, browser: Browser, shots: Path, url: str,
                  devices: dict[str, str]) -> None:
    """A code created in the page becomes set, a backup is handed out, activity is live;
    all without a reload."""
    page = _open(browser, url, viewport={"width": 1280, "height": 900})
    page.evaluate("window.sameDocument = true")
    page.click(f"a[href='#lock={devices['Front door']}']")
    now = datetime.now().replace(second=0, microsecond=0)
    page.fill("input[name=name]", "Ms Guest")
    page.fill("input[name=code]", "73519")
    page.fill("input[name=starts_at]", (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"))
    page.fill("input[name=ends_at]", (now + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"))
    page.check("input[name=use_backup_access_code_pool]")
    daemon.pins.add("73519")
    page.click("#create-form button[type=submit]")
    row = _row(page, "Ms Guest")
    page.locator("tr[data-status=set]", has_text="Ms Guest").wait_for(timeout=WAIT_MS)
    assert "73519" in daemon.slots("front").values()
    assert row.locator("td.pin").inner_text() == "73519"

    # The pool fills (live, over server-sent events); a backup is pulled and its PIN shown.
    page.locator(".pool", has_text="2 of 2 ready").wait_for(timeout=WAIT_MS)
    row.locator("button[data-action=pull_backup]").click()
    page.wait_for_selector("#handover:not([hidden])", timeout=WAIT_MS)
    pin = page.inner_text("#handover-pin")
    daemon.pins.add(pin)
    assert pin.isdigit() and pin != "73519" and pin in daemon.slots("front").values()
    assert page.inner_text("#handover-for") == "Ms Guest"
    page.locator("tr", has_text="for Ms Guest").locator(".badge.backup").wait_for(
        timeout=WAIT_MS)
    page.screenshot(path=str(shots / "access-desktop.png"), full_page=True)

    # Activity, filtered by lock, follows a change made elsewhere (the API).
    page.click("a[href='#activity']")
    page.select_option("#activity-filter", devices["Front door"])
    page.locator("#activity li").first.wait_for(timeout=WAIT_MS)
    assert page.locator("#activity li", has_text="Cleaner").count() == 0
    seam.access_codes.create(device_id=devices["Front door"], name="Cleaner", code="86421")
    daemon.pins.add("86421")
    page.locator("#activity li[data-type='access_code.set_on_device']",
                 has_text="Cleaner").wait_for(timeout=WAIT_MS)
    assert page.locator("#activity li[data-type='access_code.created']",
                        has_text="Cleaner").count() == 1
    assert page.evaluate("window.sameDocument") is True
    assert page.locator(f"#activity li:not([data-device-id='{devices['Front door']}'])"
                        ).count() == 0
    page.screenshot(path=str(shots / "activity-desktop.png"), full_page=True)

    # Revoke the cleaner's code (the page asks first): it comes off the lock.
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#nav a[href='#locks']")
    page.click(f"a[href='#lock={devices['Front door']}']")
    _row(page, "Cleaner").locator("button[data-action=delete]").click()
    page.locator("#message", has_text="coming off").wait_for(timeout=WAIT_MS)
    _row(page, "Cleaner").wait_for(state="detached", timeout=WAIT_MS)
    assert "86421" not in daemon.slots("front").values()
    assert page.evaluate("window.sameDocument") is True
    page.context.close()


def _links_that_do_not_open(daemon: Daemon, browser: Browser, shots: Path, url: str) -> None:
    assert url.startswith(daemon.url + "/portal/open?token=")
    wait_until(lambda: httpx.get(url).status_code == 410, what="the short link expired")
    context = browser.new_context()
    page = context.new_page()
    answer = page.goto(url)
    assert answer is not None and answer.status == 410
    assert "has expired" in page.inner_text("#notice-title")
    assert "fresh link" in page.inner_text("#notice-todo")
    assert not context.cookies()
    page.screenshot(path=str(shots / "expired-link.png"))
    answer = page.goto(daemon.url + "/portal/open?token=not-a-token")
    assert answer is not None and answer.status == 404
    assert "not valid" in page.inner_text("#notice-title")
    answer = page.goto(daemon.url + "/portal/")
    assert answer is not None and answer.status == 401
    assert "not signed in" in page.inner_text("#notice-title")
    context.close()


def _read_only(daemon: Daemon, seam: Seam, browser: Browser) -> None:
    devices = {d.display_name: d.device_id for d in seam.devices.list()}
    # A read-only deep link into one lock, without navigation (as for an embedded view).
    portal = seam.customers.create_portal(
        customer_data={"customer_key": "owner-1"}, read_only=True,
        deep_link={"device_id": devices["Front door"]}, navigation_mode="restricted")
    page = _open(browser, portal.url)
    assert page.url.endswith(f"/portal/#lock={devices['Front door']}")
    assert not page.is_visible("#nav") and page.is_visible("#mode")
    row = _row(page, "Ms Guest")
    row.wait_for(timeout=WAIT_MS)
    assert page.locator("button[data-action], #create-form, #unmanage").count() == 0
    assert "73519" not in page.content()  # no PIN for a read-only session
    code_id = row.get_attribute("data-id")
    answer = page.evaluate("""async (id) => {
        const r = await fetch('/portal/api/codes/delete', {method: 'POST',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({access_code_id: id})});
        return [r.status, (await r.json()).error.type];
    }""", code_id)
    assert answer == [403, "read_only_session"]
    assert "73519" in daemon.slots("front").values()
    assert seam.access_codes.get(access_code_id=code_id).status == "set"
    page.context.close()


def _scoped(daemon: Daemon, seam: Seam, scope_file: Path) -> None:
    """A customer whose locks the scope file names sees those only, and its changes come
    from the portal's own page."""
    devices = {d.display_name: d.device_id for d in seam.devices.list()}
    scope_file.write_text(  # read on every request
        f"owner-3: [{devices['Front door']}, {devices['Shed']}]\n")
    portal = seam.customers.create_portal(customer_data={"customer_key": "owner-3"})
    with httpx.Client(base_url=daemon.url) as client:
        assert client.get(portal.url).status_code == 303  # the cookie is now in the client
        names = [lock["name"] for lock in client.get("/portal/api/locks").json()["locks"]]
        assert names == ["Front door", "Shed"]
        garage = client.get("/portal/api/codes", params={"device_id": devices["Garage door"]})
        assert garage.status_code == 404
        garage_code = seam.access_codes.list(device_id=devices["Garage door"])[0]
        same_origin = {"Origin": daemon.url}
        refused = client.post("/portal/api/codes/delete", headers=same_origin,
                              json={"access_code_id": garage_code.access_code_id})
        assert refused.status_code == 404
        elsewhere = client.post("/portal/api/codes/create", headers={
            "Origin": "http://evil.example"}, json={"device_id": devices["Front door"]})
        assert elsewhere.status_code == 403
        # Taking a lock out of lockbridge, through the application layer's rules.
        removed = client.post("/portal/api/devices/unmanage", headers=same_origin,
                              json={"device_id": devices["Shed"]})
        assert removed.status_code == 200, removed.text
        again = client.post("/portal/api/devices/unmanage", headers=same_origin,
                            json={"device_id": devices["Shed"]})
        assert again.status_code == 404 and again.json()["error"]["type"] == "device_not_found"
    assert [d.display_name for d in seam.devices.unmanaged.list()] == ["Shed"]
    assert seam.access_codes.get(access_code_id=garage_code.access_code_id).status == "set"


def _embedded(daemon: Daemon, seam: Seam, browser: Browser, allowed: str,
              refused: str) -> None:
    portal = seam.customers.create_portal(
        customer_data={"customer_key": "owner-1"}, is_embedded=True)
    context = browser.new_context(viewport={"width": 500, "height": 700})
    page = context.new_page()
    page.goto(f"{allowed}/?src={portal.url}")
    frame = page.frame_locator("#portal")
    frame.locator("body[data-ready=true] .card").first.wait_for(timeout=WAIT_MS)
    assert frame.locator(".card").count() == 2  # the shed was taken out

    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text))
    page.goto(f"{refused}/?src={portal.url}")
    wait_until(lambda: any("frame-ancestors" in m for m in blocked),
               what="the browser refusing the frame")
    assert page.frames[1].url != daemon.url + "/portal/"
    context.close()
