"""Lost state is never a silent fresh start: the real daemon refuses to run over a deleted or
replaced database, or under an upstream that is ahead of its store, with one line saying the
way out; `--accept-fresh-state` is that way out when the operator chooses it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.simulator.driver import load_write_counts
from tests.api_helpers import CONFIG, Daemon, start_daemon, wait_until
from tests.state_helpers import (
    DECLARED,
    UPSTREAM,
    assert_refusal,
    bridge_newest,
    create_set_code,
    reference_upstream,
    remove_database,
    run_refused,
    upstream_acked,
    upstream_events,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def stopped(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon that managed a code on the side door, then stopped cleanly."""
    d = start_daemon(tmp_path)
    try:
        create_set_code(d, "Side door", "4831")
    finally:
        d.stop()
    yield d


def test_deleted_database_is_refused_until_the_operator_accepts_a_fresh_start(
        stopped: Daemon) -> None:
    d = stopped
    on_lock = d.slots("side")
    remove_database(d.state)

    done = run_refused(d.config)

    assert_refusal(done, d.config)
    assert "is there but the database" in done.stderr
    assert not (d.state / "lockbridge.db").exists(), "refusing created nothing"
    assert d.slots("side") == on_lock

    fresh = start_daemon(d.config.parent, key="unused", run_args=("--accept-fresh-state",))
    log = fresh.stop()
    assert "fresh state by the operator's choice" in log
    again = start_daemon(d.config.parent, key="unused")
    again.stop()
    assert d.slots("side") == on_lock, "a fresh start leaves the old codes on the lock"


def test_database_younger_than_the_key_is_refused(stopped: Daemon) -> None:
    d = stopped
    remove_database(d.state)
    (d.state / "lockbridge.db").write_bytes(b"")
    key = d.state / "pin.key"
    made = time.time() - 3600
    os.utime(key, (made, made))

    done = run_refused(d.config)

    assert_refusal(done, d.config)
    assert "was made after the PIN key" in done.stderr


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """`lockbridge upstream-dev` on a free port: (port, its database, the token file)."""
    with reference_upstream(tmp_path) as running:
        yield running


def test_upstream_ahead_of_a_wiped_state_dir_is_refused_and_sequence_continues_when_accepted(
        tmp_path: Path, upstream: tuple[int, Path, Path]) -> None:
    port, updb, token = upstream
    config_text = CONFIG + UPSTREAM.format(port=port, token=token) + DECLARED
    d = start_daemon(tmp_path, config_text)
    try:
        create_set_code(d, "Side door", "5942")
        wait_until(lambda: upstream_acked(updb) == bridge_newest(d.state) > 0,
                   what="upstream acknowledged every event")
    finally:
        d.stop()
    before = upstream_events(updb)
    writes = load_write_counts(d.state / "sim.json")
    # A new SD card: the state directory is empty but for the simulated locks' own memory.
    for path in d.state.iterdir():
        if path.name != "sim.json":
            path.unlink()

    done = run_refused(d.config)

    assert_refusal(done, d.config)
    assert f"the upstream has acknowledged events of this bridge up to {before[-1]}" \
        in done.stderr
    assert " running: " not in done.stderr, "refused before the engine, drivers or API started"
    assert load_write_counts(d.state / "sim.json") == writes, "nothing written to a lock"

    fresh = start_daemon(tmp_path, config_text, run_args=("--accept-fresh-state",))
    try:
        wait_until(lambda: upstream_acked(updb) == bridge_newest(fresh.state) > before[-1],
                   what="the upstream acknowledged the fresh bridge's events")
    finally:
        fresh.stop()
    after = upstream_events(updb)
    assert after[:len(before)] == before
    assert after[len(before)] == before[-1] + 1, "sequence numbers continue, none reused"
    assert after == sorted(set(after))
