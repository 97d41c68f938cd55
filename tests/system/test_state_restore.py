"""The encrypted state backup and `lockbridge restore`, with the real daemon, simulated locks that
remember every write, and `lockbridge upstream-dev`: the database is lost while the daemon is
stopped, the start is refused, the backup is restored, and the bridge comes back with the same
managed codes, writes no code to a lock twice, and continues the upstream's sequence numbers."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bridge.statebackup import write_backup
from drivers.simulator.driver import load_write_counts
from tests.api_helpers import CONFIG, ROOT, Daemon, lockbridge, start_daemon, wait_until
from tests.state_helpers import (
    UPSTREAM,
    assert_refusal,
    bridge_newest,
    create_set_code,
    post,
    reference_upstream,
    remove_database,
    run_refused,
    upstream_acked,
    upstream_events,
)

pytestmark = pytest.mark.slow
BACKUP = """\
store:
  backup_path: {backup}
  backup_interval_s: 0.2
"""


def _backups_written(backup: Path, count: int) -> None:
    """Wait until the backup file has been replaced `count` times from now."""
    seen: list[int] = []

    def replaced() -> bool:
        try:
            inode = backup.stat().st_ino
        except FileNotFoundError:
            return False
        if not seen or seen[-1] != inode:
            seen.append(inode)
        return len(seen) > count

    wait_until(replaced, what=f"{count} state backups written")


def _managed(d: Daemon) -> dict[str, str]:
    """Every managed code of every lock: {id: PIN}."""
    codes: list[dict[str, Any]] = []
    for device in post(d, "/devices/list", {})["devices"]:
        codes += post(d, "/access_codes/list", {"device_id": device["device_id"]})[
            "access_codes"]
    return {c["access_code_id"]: c["code"] for c in codes}


def _caught_up(updb: Path, state: Path, beyond: int = 0) -> bool:
    newest = bridge_newest(state)
    return upstream_acked(updb) == newest > beyond


def test_lost_database_restored_from_the_backup_same_codes_no_rewrite_sequence_continues(
        tmp_path: Path) -> None:
    with reference_upstream(tmp_path) as (port, updb, token):
        backup = tmp_path / "usb-stick" / "lockbridge.backup"
        config_text = CONFIG + UPSTREAM.format(port=port, token=token) + BACKUP.format(
            backup=backup)
        d = start_daemon(tmp_path, config_text)
        try:
            create_set_code(d, "Side door", "4716")
            create_set_code(d, "Back door", "7294")
            wait_until(lambda: _caught_up(updb, d.state), what="upstream caught up")
            _backups_written(backup, 2)
            # The last backup before the SD card died; the bridge works on after it.
            taken = tmp_path / "last.backup"
            shutil.copy(backup, taken)
            seq_at_backup = bridge_newest(d.state)
            front = next(x["device_id"] for x in post(d, "/devices/list", {})["devices"]
                         if x["display_name"] == "Front door")
            post(d, "/devices/update", {"device_id": front, "is_managed": False})
            post(d, "/devices/unmanaged/update", {"device_id": front, "is_managed": True})
            wait_until(lambda: _caught_up(updb, d.state, seq_at_backup),
                       what="upstream acknowledged events the backup lacks")
            codes_before = _managed(d)
        finally:
            d.stop()
        assert len(codes_before) == 2
        before = upstream_events(updb)
        remove_database(d.state)

        assert_refusal(run_refused(d.config), d.config)

        restored = subprocess.run(lockbridge("restore", "-c", str(d.config), "--from",
                                             str(taken)),
                                  capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert restored.returncode == 0, restored.stderr
        assert "restored" in restored.stdout and "2 managed codes" in restored.stdout
        assert "4716" not in restored.stdout + restored.stderr

        again = start_daemon(tmp_path, config_text, key=d.key)
        try:
            wait_until(lambda: _managed(again) == codes_before, what="the same managed codes")
            for code_id in codes_before:
                assert post(again, "/access_codes/get", {"access_code_id": code_id})[
                    "access_code"]["status"] == "set"
            create_set_code(again, "Side door", "3958")
            wait_until(lambda: _caught_up(updb, again.state, before[-1]),
                       what="upstream acknowledged the restored bridge's new events")
        finally:
            log = again.stop()
    after = upstream_events(updb)
    assert after[:len(before)] == before
    assert after[len(before)] == before[-1] + 1, "sequence numbers continue, none reused"
    assert after == sorted(set(after))
    writes = load_write_counts(d.state / "sim.json")
    assert all(count == 1 for lock in writes.values() for count in lock.values()), writes
    assert "Traceback" not in log
    assert "upstream is ahead of this store (restored)" in log
    for pin in ("4716", "7294", "3958"):
        assert pin not in log


def _restore(config: Path, source: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lockbridge("restore", "-c", str(config), "--from", str(source)),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_restore_refuses_a_backup_it_cannot_trust_and_keeps_the_database(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    state = tmp_path / "state"
    config.write_text(CONFIG.format(state=state))
    subprocess.run(lockbridge("api-key", "create", "-c", str(config), "--name", "t"),
                   capture_output=True, text=True, cwd=ROOT, check=True, timeout=60)
    db = state / "lockbridge.db"
    kept = db.read_bytes()
    foreign = tmp_path / "other-box.backup"
    write_backup(db, foreign, os.urandom(32))
    damaged = tmp_path / "cut.backup"
    write_backup(db, damaged, (state / "pin.key").read_bytes())
    whole = damaged.read_bytes()
    damaged.write_bytes(whole[:-10])

    wrong_key = _restore(config, foreign)
    cut = _restore(config, damaged)
    not_a_backup = _restore(config, config)

    assert wrong_key.returncode == 1 and "does not open with this PIN key" in wrong_key.stderr
    assert cut.returncode == 1 and "damaged" in cut.stderr
    assert not_a_backup.returncode == 1 and "not a lockbridge state backup" in not_a_backup.stderr
    assert db.read_bytes() == kept
    assert not [p.name for p in state.iterdir() if p.name.startswith((".", "lockbridge.db.r"))]
    damaged.write_bytes(whole)
    good = _restore(config, damaged)
    assert good.returncode == 0, good.stderr
    assert (state / "lockbridge.db.replaced-1").read_bytes() == kept


def test_restore_refuses_while_the_daemon_runs(tmp_path: Path) -> None:
    d = start_daemon(tmp_path)
    try:
        sealed = tmp_path / "now.backup"
        write_backup(d.state / "lockbridge.db", sealed, (d.state / "pin.key").read_bytes())
        refused = _restore(d.config, sealed)
    finally:
        d.stop()
    assert refused.returncode == 1 and "stop it first" in refused.stderr
    assert not list(d.state.glob("lockbridge.db.replaced-*"))
