"""A portal session sees the locks of its customer's spaces: a space created for a customer
scopes that customer's portal to the space's lock, through the same HTTP a browser uses; a
customer without a space (and without an entry in the scope file) sees every lock. A code a
reservation made names that reservation on the Access page, and the activity page lists the
automation runs and filters by reservation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.inprocess import RunningDaemon, running_daemon

pytestmark = pytest.mark.slow

CONFIG = """\
bridge: {{id: portal-spaces}}
state_dir: {state}
api: {{port: 0}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    locks:
      - {{id: door, name: Flat door}}
      - {{id: barn, name: Barn door}}
"""


async def _ok(daemon: RunningDaemon, path: str, body: dict[str, Any]) -> Any:
    status, answer = await daemon.post(path, body)
    assert status == 200, answer
    return answer


async def _portal_get(daemon: RunningDaemon, customer_key: str, path: str) -> Any:
    """What a browser opening the customer's portal link is answered at `path`."""
    portal = (await _ok(daemon, "/customers/create_portal",
                        {"customer_data": {"customer_key": customer_key}}))["customer_portal"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(portal["url"]) as opened:
            assert opened.status == 200
        async with browser.get(daemon.base + path) as answer:
            assert answer.status == 200, await answer.text()
            return await answer.json()


async def _locks_seen_by(daemon: RunningDaemon, customer_key: str) -> set[str]:
    answer = await _portal_get(daemon, customer_key, "/portal/api/locks")
    return {lock["name"] for lock in answer["locks"]}


async def test_a_customers_portal_shows_the_locks_of_its_spaces(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    async with running_daemon(config) as daemon:
        devices = (await _ok(daemon, "/devices/list", {}))["devices"]
        door = next(d["device_id"] for d in devices if d["display_name"] == "Flat door")
        await _ok(daemon, "/spaces/create", {"name": "Flat 2", "space_key": "flat-2",
                                             "device_ids": [door], "customer_key": "acme"})
        assert await _locks_seen_by(daemon, "acme") == {"Flat door"}
        assert await _locks_seen_by(daemon, "nobody") == {"Flat door", "Barn door"}

        await _ok(daemon, "/customers/push_data", {
            "customer_key": "acme",
            "user_identities": [{"user_identity_key": "guest-1", "full_name": "Ana"}],
            "reservations": [{"reservation_key": "stay-1", "user_identity_key": "guest-1",
                              "starts_at": "2030-05-01T15:00:00Z",
                              "ends_at": "2030-05-04T10:00:00Z", "space_keys": ["flat-2"]}]})
        codes = (await _portal_get(daemon, "acme", f"/portal/api/codes?device_id={door}"))[
            "codes"]
        [origin] = [c["origin"] for c in codes if c["origin"]]
        assert origin["reservation_key"] == "stay-1" and "stay-1" in origin["label"]

        # The activity page's automation runs and its filter by reservation.
        runs = (await _portal_get(daemon, "acme", "/portal/api/runs?reservation_key=stay-1"))[
            "runs"]
        assert runs and runs[0]["trigger"] == "push_data"
        assert {e["device_name"] for r in runs for e in r["entries"]} == {"Flat door"}
        assert {e["reservation_key"] for r in runs for e in r["entries"]} == {"stay-1"}
        none = await _portal_get(daemon, "acme", "/portal/api/runs?reservation_key=other")
        assert none["runs"] == []
        events = (await _portal_get(daemon, "acme",
                                    "/portal/api/events?reservation_key=stay-1"))["events"]
        assert events and {e["device_name"] for e in events} == {"Flat door"}
        assert all(e["access_code_id"] for e in events)
