"""Every value the API accepts works end to end, or is refused up front with a 4xx naming the
field: times anywhere in the calendar with any offset (booking systems write "for ever" as
9999-12-31T23:59:59Z), names of any length and script, PINs of any length, and bodies of any
shape the JSON parser can be handed. Driven with hypothesis against the real daemon; afterwards
every list route, the status page data and `lockbridge status` still answer, and no lock's
worker hit an unexpected error."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.api_helpers import Daemon, lockbridge, start_daemon, wait_until

pytestmark = pytest.mark.slow
EXAMPLES = 120


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("values"))
    try:
        yield d
    finally:
        log = d.stop()
        assert "Traceback" not in log, log[-3000:]


def _devices(daemon: Daemon) -> list[str]:
    response = httpx.post(daemon.url + "/devices/list", headers=_auth(daemon), json={})
    return [d["device_id"] for d in response.json()["devices"]]


def _auth(daemon: Daemon) -> dict[str, str]:
    return {"Authorization": f"Bearer {daemon.key}"}


offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))
instants = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=offsets),
    st.sampled_from([datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
                     datetime(1, 1, 1, tzinfo=UTC),
                     datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
                     datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-12)))]))
times = st.one_of(instants.map(lambda d: d.isoformat()),
                  st.just("9999-12-31T23:59:59Z"), st.just("0001-01-01T00:00:00Z"))
names = st.text(max_size=260)
pins = st.text(alphabet="0123456789", min_size=1, max_size=14)


@st.composite
def create_bodies(draw: st.DrawFn, device_ids: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"device_id": draw(st.sampled_from(device_ids))}
    if draw(st.booleans()):
        body["name"] = draw(names)
    if draw(st.booleans()):
        body["code"] = draw(pins)
    if draw(st.booleans()):
        body["starts_at"], body["ends_at"] = draw(times), draw(times)
    if draw(st.booleans()):
        body["preferred_code_length"] = draw(st.integers(min_value=-2, max_value=20))
    return body


def test_any_accepted_value_goes_through_planning_storage_and_every_list(
        daemon: Daemon) -> None:
    device_ids = _devices(daemon)
    accepted: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(body=create_bodies(device_ids), update=st.fixed_dictionaries(
        {}, optional={"name": names, "starts_at": times, "ends_at": times, "code": pins}))
    def create_then_update(body: dict[str, Any], update: dict[str, Any]) -> None:
        created = httpx.post(daemon.url + "/access_codes/create", headers=_auth(daemon),
                             json=body, timeout=10)
        assert created.status_code < 500, (body, created.text)
        if created.status_code != 200:
            _refusal_names_a_field(created)
            return
        code_id = created.json()["access_code"]["access_code_id"]
        accepted.append(code_id)
        updated = httpx.post(daemon.url + "/access_codes/update", headers=_auth(daemon),
                             json={"access_code_id": code_id, **update}, timeout=10)
        assert updated.status_code < 500, (update, updated.text)
        if updated.status_code != 200:
            _refusal_names_a_field(updated)

    create_then_update()
    # "For ever" in the form booking systems use is accepted, not only survived.
    forever = httpx.post(daemon.url + "/access_codes/create", headers=_auth(daemon), json={
        "device_id": device_ids[0], "name": "Owner", "starts_at": "2026-01-01T00:00:00Z",
        "ends_at": "9999-12-31T23:59:59Z"})
    assert forever.status_code == 200, forever.text
    accepted.append(forever.json()["access_code"]["access_code_id"])
    assert len(accepted) > 10

    # Let the workers plan, write and keep house over what was accepted.
    wait_until(lambda: _idle(daemon), timeout=60, what="the locks to settle")
    for path, body in [("/access_codes/list", {}), ("/devices/list", {}),
                       ("/events/list", {"limit": 10000}), ("/action_attempts/list", {})]:
        response = httpx.post(daemon.url + path, headers=_auth(daemon), json=body, timeout=30)
        assert response.status_code == 200, (path, response.text)
    for device_id in device_ids:
        response = httpx.post(daemon.url + "/access_codes/list", headers=_auth(daemon),
                              json={"device_id": device_id}, timeout=30)
        assert response.status_code == 200
    for code_id in accepted:
        response = httpx.post(daemon.url + "/access_codes/get", headers=_auth(daemon),
                              json={"access_code_id": code_id}, timeout=10)
        assert response.status_code in (200, 404), response.text
    assert httpx.get(daemon.url + "/status.json").status_code == 200
    status = daemon.cli("status", "--json")
    assert json.loads(status.stdout)
    metrics = httpx.get(daemon.url + "/metrics").text
    faults = re.findall(r"^lockbridge_lock_faults_total\{.*\} (\S+)$", metrics, re.M)
    assert not faults, "a lock's worker hit an unexpected error: " + metrics
    assert daemon.proc.poll() is None


def _idle(daemon: Daemon) -> bool:
    response = httpx.post(daemon.url + "/access_codes/list", headers=_auth(daemon), json={},
                          timeout=30)
    return all(c["status"] != "setting" or c["errors"] or c["warnings"]
               for c in response.json()["access_codes"])


def _refusal_names_a_field(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500
    error = response.json()["error"]
    assert error["type"] and error["message"], error


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,
    '{"a":' * 50_000 + "1" + "}" * 50_000,
    '{"device_id": "' + "9" * 60_000 + '"}',
    '"just a string"',
    "1e999999",
    '{"name": "\\ud800"}',
    "\xff\xfe not utf-8",
])
def test_any_body_the_parser_can_be_handed_gets_a_4xx(daemon: Daemon, body: str) -> None:
    for path in ("/access_codes/create", "/access_codes/list", "/devices/update"):
        response = httpx.post(daemon.url + path, headers={**_auth(daemon),
                                                          "Content-Type": "application/json"},
                              content=body.encode("utf-8", "surrogatepass"), timeout=30)
        assert 400 <= response.status_code < 500, (path, body[:40], response.text[:300])
    assert httpx.get(daemon.url + "/health").status_code == 200


def test_a_config_offset_beyond_the_calendar_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"""\
state_dir: {tmp_path}/state
drivers:
  - kind: simulator
    name: sim
    locks: [{{id: a, name: A}}]
codes:
  - {{key: k, device: a, name: Far, type: time_bound, starts_at: "+1d", ends_at: "+1e300d"}}
""")
    checked = subprocess.run(lockbridge("check-config", str(config)), capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 2, checked.stderr
    assert "Traceback" not in checked.stderr
    assert "ends_at" in checked.stderr
