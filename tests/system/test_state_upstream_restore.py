"""Restore from the upstream, as on a new SD card without a state backup: the state directory
is empty (new key too), `lockbridge restore --from-upstream` prepares it, and the daemon gets its
managed codes back from `lockbridge upstream-dev`, adopts each where it is on its lock without
writing it again, does not create the declared code a second time, and continues the upstream's
sequence numbers."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drivers.simulator.driver import load_write_counts
from tests.api_helpers import CONFIG, ROOT, Daemon, lockbridge, start_daemon, wait_until
from tests.state_helpers import (
    DECLARED,
    TOKEN,
    UPSTREAM,
    bridge_newest,
    create_set_code,
    post,
    reference_upstream,
    upstream_acked,
    upstream_events,
)

pytestmark = pytest.mark.slow


def _codes(d: Daemon) -> dict[str, dict[str, Any]]:
    """Every managed code of every lock, by id."""
    found: dict[str, dict[str, Any]] = {}
    for device in post(d, "/devices/list", {})["devices"]:
        for code in post(d, "/access_codes/list", {"device_id": device["device_id"]})[
                "access_codes"]:
            found[code["access_code_id"]] = code
    return found


def _unmanaged_pins(d: Daemon) -> set[str]:
    pins: set[str] = set()
    for device in post(d, "/devices/list", {})["devices"]:
        for code in post(d, "/access_codes/unmanaged/list",
                         {"device_id": device["device_id"]})["access_codes"]:
            pins.add(code["code"])
    return pins


def _shape(codes: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {i: (c["device_id"], c["code"], c["name"], c["type"], c["ends_at"])
            for i, c in codes.items()}


def test_new_sd_card_restores_codes_from_the_upstream_and_adopts_them_on_the_locks(
        tmp_path: Path) -> None:
    with reference_upstream(tmp_path) as (port, updb, token):
        config_text = CONFIG + UPSTREAM.format(port=port, token=token) + DECLARED
        d = start_daemon(tmp_path, config_text)
        try:
            wait_until(lambda: len(_codes(d)) == 1, what="the declared code")
            create_set_code(d, "Side door", "4716")
            back = next(x["device_id"] for x in post(d, "/devices/list", {})["devices"]
                        if x["display_name"] == "Back door")
            now = datetime.now(UTC)
            d.pins.add("7294")
            post(d, "/access_codes/create", {
                "device_id": back, "code": "7294", "name": "Guest 7294",
                "starts_at": (now - timedelta(minutes=5)).isoformat(),
                "ends_at": (now + timedelta(days=2)).isoformat()})
            wait_until(lambda: all(c["status"] == "set" for c in _codes(d).values())
                       and len(_codes(d)) == 3, what="three codes set")
            sent = subprocess.run(
                lockbridge("upstream-send", "--server", f"http://127.0.0.1:{port}", "--bridge",
                           "api-test", "--token-file", str(token), '{"action": "snapshot"}'),
                capture_output=True, text=True, cwd=ROOT, timeout=60)
            assert sent.returncode == 0, sent.stderr
            wait_until(lambda: upstream_acked(updb) == bridge_newest(d.state) > 0,
                       what="upstream caught up")
            before = _codes(d)
        finally:
            d.stop()
        events_before = upstream_events(updb)
        writes = load_write_counts(d.state / "sim.json")
        # A new SD card: nothing left but the simulated locks' own memory.
        for path in d.state.iterdir():
            if path.name != "sim.json":
                path.unlink()

        prepared = subprocess.run(lockbridge("restore", "-c", str(d.config), "--from-upstream"),
                                  capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert prepared.returncode == 0, prepared.stderr

        again = start_daemon(tmp_path, config_text)
        try:
            wait_until(lambda: _shape(_codes(again)) == _shape(before)
                       and all(c["status"] == "set" for c in _codes(again).values()),
                       what="the same managed codes, set")
            assert not _unmanaged_pins(again) & {"7381", "4716", "7294"}
            assert load_write_counts(again.state / "sim.json") == writes, \
                "no code written to a lock again"
            create_set_code(again, "Side door", "3958")
            wait_until(lambda: upstream_acked(updb) == bridge_newest(again.state)
                       > events_before[-1], what="upstream acknowledged the new events")
        finally:
            log = again.stop()
    after = upstream_events(updb)
    assert after[:len(events_before)] == events_before
    assert after[len(events_before)] == events_before[-1] + 1
    assert after == sorted(set(after))
    assert "restored 3 managed codes from the upstream" in log
    assert "Traceback" not in log
    assert TOKEN not in log
