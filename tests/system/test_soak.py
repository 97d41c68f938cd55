"""The chaos soak for 60 s on a fixed seed: every fault at once against the real daemon, then
every invariant (tests/soak/, docs/reliability.md). A failure prints the report; the seed
replays the same plan with `bash scripts/soak.sh --minutes 1 --seed 6`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mosquitto import MOSQUITTO
from tests.soak.run import soak
from tests.soak.schedule import FAULTS
from tests.soak.world import FAKETIME

SEED = 6


@pytest.mark.slow
@pytest.mark.timeout(170)
async def test_chaos_soak_holds_every_invariant(tmp_path: Path) -> None:
    if MOSQUITTO is None:
        pytest.fail("mosquitto is not installed: run scripts/test.sh (it installs it)")
    if FAKETIME is None:
        pytest.fail("libfaketime is not installed: run scripts/test.sh (it installs it)")
    report = await soak(60, SEED, tmp_path, settle_s=30)
    print(report.text())
    assert report.ok, report.text()
    figures = report.figures
    # The run did what it is for: every fault struck, the daemon was killed and came back,
    # and the checks judged codes on their locks, deleted ones and ended stays.
    faults = {k.removeprefix("fault:") for k, v in report.counts.items() if k.startswith("fault:")}
    assert faults == set(FAULTS), faults
    assert figures["daemon_kills"] >= 1
    assert figures["clock_jumps"], "no clock jump was injected"
    assert figures["codes_on_their_lock"] > 0 and figures["codes_deleted_off_every_lock"] > 0
    assert figures["codes_ended_off_every_lock"] > 0
