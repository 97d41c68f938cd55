"""The demo (config/demo.yaml, the README's first command) shows a reservation becoming codes:
its declared stay is pushed at the first start, each lock of the space gets its code, the access
methods are issued with the real PINs, and the run tells which rule replaced the preferred PIN
on the lock that takes 4 digits. Run in this process (the demo's paths and port changed)."""

from __future__ import annotations

import importlib.util
import re
from datetime import date
from pathlib import Path

import pytest

from bridge.reservations.apply import is_issued
from bridge.reservations.service import ReservationService
from bridge.reservations.starter import EXTRA_KEY
from drivers.simulator.driver import load_state_file
from tests.api_helpers import ROOT
from tests.harness import until
from tests.inprocess import running_daemon

pytestmark = pytest.mark.slow
DEMO = ROOT / "config" / "demo.yaml"


async def test_the_demo_reservation_becomes_codes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    text = DEMO.read_text().replace("state_dir: ../state/demo", f"state_dir: {state}")
    text = text.replace("port: 8787", "port: 0")
    text = re.sub(r"\nupstream:\n(  .*\n)+", "\n", text)
    # The sample booking feed, written as scripts/demo.sh writes it.
    feed = state / "beach-house.ics"
    spec = importlib.util.spec_from_file_location("demo_feed", ROOT / "scripts" / "demo_feed.py")
    assert spec is not None and spec.loader is not None
    demo_feed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_feed)
    state.mkdir(parents=True, exist_ok=True)
    feed.write_text(demo_feed.sample_feed(date.today()))
    text = text.replace("ics_file: ../state/demo/beach-house.ics", f"ics_file: {feed}")
    assert "../state/demo" not in text
    config = tmp_path / "demo.yaml"
    config.write_text(text)

    def on_lock(lock_id: str) -> set[str]:
        path = state / "simulated-locks.json"
        return set(load_state_file(path).get(lock_id, {}).values()) if path.exists() else set()

    async with running_daemon(config) as daemon:
        service = daemon.bridge.extras[EXTRA_KEY]
        assert isinstance(service, ReservationService)
        grant = service.state.grant_of("demo-stay")
        assert grant is not None and grant.name == "Guest Bruno"
        methods = service.state.methods_of(grant.access_grant_id)
        assert len(methods) == 2  # the back door cannot take the 6-digit preferred PIN
        codes = service.app.state.codes
        await until(lambda: all(is_issued(service.state.methods[m.access_method_id], codes)
                                for m in methods), timeout=60, what="demo stay issued")
        pins = {codes[c].code for m in methods for c in m.codes.values()}
        assert "735193" in pins and "735193" in on_lock("front-door")
        assert {p for p in pins if p != "735193"} <= on_lock("back-door")
        [run] = [r for r in service.state.runs if r.trigger == "config"]
        assert any("length" in s for s in run.pin_substitutions)
        # The sample feed's stay is a reservation of the space too; the host's block is not.
        await until(lambda: service.state.grant_of("feed:airbnb-sample:demo-stay-1@airbnb.com")
                    is not None, timeout=60, what="the sample feed's stay")
        assert service.state.grant_of("feed:airbnb-sample:demo-block-1@airbnb.com") is None
        # Both methods told they were issued.
        await until(lambda: all(service.state.methods[m.access_method_id].issued_at
                                for m in methods), timeout=30, what="issued events")
