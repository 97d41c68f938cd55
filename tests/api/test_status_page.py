"""The local status page, rendered by a real browser (Debian's Chromium, headless) from the
real daemon: it shows each lock's state, counts and problems, follows changes, and holds no
PIN and no guest's name."""

from __future__ import annotations

import html.parser
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.api_helpers import Daemon, start_daemon, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/peers.sh "
                                                "installs it)"),
]

CONFIG = """\
bridge: {{id: status-test}}
state_dir: {state}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    locks:
      - {{id: front, name: Front door}}
      - {{id: shed, name: "<b>Shed</b>", faults: {{offline: true}}}}
"""


class _Rows(html.parser.HTMLParser):
    """The lock table's rows as {lock name: {cell class: text}}, from the DOM Chromium dumps."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.summary = ""
        self._cell: str | None = None
        self._in_summary = False
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append({})
        elif tag == "td" and self.rows:
            self._cell = (found.get("class") or "?").split()[0]
            self.rows[-1][self._cell] = ""
        elif found.get("id") == "summary":
            self._in_summary = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        elif tag == "p":
            self._in_summary = False
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None and self.rows:
            self.rows[-1][self._cell] += data
        elif self._in_summary:
            self.summary += data


def render(url: str, profile: Path) -> tuple[str, _Rows]:
    """Load the page in headless Chromium, let its script run, return the DOM it built."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={profile}", "--virtual-time-budget=4000", "--dump-dom", url],
        capture_output=True, text=True, timeout=60, check=True)
    rows = _Rows()
    rows.feed(done.stdout)
    return done.stdout, rows


def by_name(rows: _Rows) -> dict[str, dict[str, str]]:
    return {r["name"]: r for r in rows.rows}


def test_the_status_page_in_a_real_browser(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, CONFIG)
    try:
        _scenario(daemon, tmp_path / "chromium")
    finally:
        daemon.stop()


def _scenario(daemon: Daemon, profile: Path) -> None:
    # `/` leads to the page; the page, its script and its data need no key.
    page = httpx.get(daemon.url + "/", follow_redirects=True)
    assert page.status_code == 200 and page.url.path == "/status"
    assert "script-src 'self'" in page.headers["content-security-policy"]

    dom, rows = render(daemon.url + "/status", profile)
    locks = by_name(rows)
    assert set(locks) == {"Front door", "<b>Shed</b>"}  # a name is text, never markup
    assert "<b>Shed</b>" not in dom  # it was escaped by the DOM, not injected
    assert locks["Front door"]["state"] == "online"
    assert locks["<b>Shed</b>"]["state"] == "offline"
    assert "device_offline" in locks["<b>Shed</b>"]["problems"]
    assert locks["Front door"]["codes-set"] == "0"
    assert "1 of 2 locks online" in rows.summary

    # A guest's code goes on the front door; the page follows.
    headers = {"Authorization": f"Bearer {daemon.key}"}
    devices = httpx.get(daemon.url + "/devices/list", headers=headers).json()["devices"]
    front_id = next(d["device_id"] for d in devices if d["display_name"] == "Front door")
    made = httpx.post(daemon.url + "/access_codes/create", headers=headers,
                      json={"device_id": front_id, "name": "Ms Guestname", "code": "73519"})
    assert made.status_code == 200, made.text
    daemon.pins.add("73519")
    wait_until(lambda: "73519" in daemon.slots("front").values(), what="code on the lock")
    wait_until(lambda: httpx.get(daemon.url + "/status.json").json()["codes_pending"] == 0,
               what="nothing pending")
    dom, rows = render(daemon.url + "/status", profile)
    assert by_name(rows)["Front door"]["codes-set"] == "1"
    assert "73519" not in dom and "Guestname" not in dom
    data = httpx.get(daemon.url + "/status.json").text
    assert "73519" not in data and "Guestname" not in data
