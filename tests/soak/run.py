"""One soak: start the world, carry out the seeded plan, heal, settle, check, report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from drivers.simulator.lock import SEEN_PINS
from tests.soak import checks, faults
from tests.soak.chaos import Refused, Soak, Unsure
from tests.soak.schedule import FAULTS, fingerprint, plan
from tests.soak.world import (
    BRIDGE,
    MQTT_LOCKS,
    RECONCILE_S,
    ROOT,
    SIM_LOCKS,
    TOKEN,
    Daemon,
    Gateways,
    Upstream,
    config_text,
    lockbridge,
)

_LOG = logging.getLogger("soak")
# No short window is opened this close to the end: every one has ended before the checks.
SHORT_WINDOWS_STOP_S = 25.0


@dataclass
class Report:
    """What a soak did and what it found."""

    seed: int
    seconds: float
    plan: str
    counts: dict[str, int] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every invariant held."""
        return not self.violations

    def text(self) -> str:
        """The report as people read it."""
        lines = [f"soak seed {self.seed}, {self.seconds:.0f} s, plan {self.plan}",
                 "operations and faults:"]
        lines += [f"  {k}: {v}" for k, v in sorted(self.counts.items())]
        lines.append("figures: " + json.dumps(self.figures, sort_keys=True))
        if self.violations:
            lines.append(f"INVARIANTS BROKEN ({len(self.violations)}):")
            lines += [f"  - {v}" for v in self.violations]
        else:
            lines.append("every invariant held")
        return "\n".join(lines)


async def soak(seconds: float, seed: int, workdir: Path, *, settle_s: float = 60.0,
               quiet_s: float = RECONCILE_S + 2, skip: frozenset[str] = frozenset()) -> Report:
    """Run the soak in `workdir` (which keeps the logs and databases afterwards)."""
    steps = plan(seed, seconds, skip)
    report = Report(seed, seconds, fingerprint(steps))
    print(f"soak: seed {seed}, {seconds:.0f} s, {len(steps)} steps, plan {report.plan}",
          flush=True)
    state = workdir / "state"
    state.mkdir(parents=True, exist_ok=True)
    token_file = workdir / "upstream.token"
    token_file.write_text(TOKEN + "\n")
    gateways = await Gateways.start(workdir)
    upstream = Upstream(workdir / "upstream.db", token_file, workdir / "upstream.log")
    config = workdir / "config.yaml"
    config.write_text(config_text(state, upstream.port, gateways.broker.port, token_file))
    daemon = Daemon(config, state, workdir / "daemon.log")
    try:
        await upstream.start()
        daemon.key = await _api_key(config)
        await daemon.start()
        async with aiohttp.ClientSession() as session:
            run = Soak(seed, state, daemon, upstream, gateways, session)
            await _wait_for(run.load_devices_all, 30, "every lock discovered")
            await _carry_out(run, steps, seconds)
            await faults.heal(run)
            await _settle_and_check(run, report, settle_s, quiet_s)
    finally:
        with contextlib.suppress(Exception):
            await daemon.stop()
        await upstream.stop()
        await gateways.stop()
    return report


async def _api_key(config: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        *lockbridge("api-key", "create", "-c", str(config), "--name", "soak"), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0:
        raise RuntimeError(f"api-key create failed: {err.decode()[-500:]}")
    return out.decode().strip()


async def _wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Refused, Unsure):
            if await check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.3)


async def _carry_out(run: Soak, steps: list[Any], seconds: float) -> None:
    started = time.monotonic()
    run.short_windows_until = started + seconds - SHORT_WINDOWS_STOP_S
    run.chaos_ends = started + seconds
    monitor = asyncio.create_task(_monitor(run), name="soak-monitor")
    try:
        for step in steps:
            delay = started + step.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            run.launch(step)
        await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))
    finally:
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor


async def _monitor(run: Soak) -> None:
    """Every two seconds: the daemon's RSS and descriptors, whether it exited on its own, and
    the upstream results that came in."""
    ticks = 0
    while True:
        await asyncio.sleep(2.0)
        ticks += 1
        run.daemon.sample()
        if run.daemon.proc is not None and run.daemon.proc.returncode is not None \
                and not run.daemon.expected_exit:
            run.daemon.check_alive()
            await run.daemon.start()  # carry on, the exit is already a violation
        with contextlib.suppress(sqlite3.Error):
            run.resolve_commands(run.upstream.db)
        if ticks % 5 == 0:
            with contextlib.suppress(Refused, Unsure):
                await run.observe()


async def _settle_and_check(run: Soak, report: Report, settle_s: float,
                            quiet_s: float) -> None:
    deadline = time.monotonic() + settle_s
    problems: list[str] = []
    judged: Counter[str] = Counter()
    settled_in = None
    started = time.monotonic()
    while True:
        problems = []
        try:
            with contextlib.suppress(sqlite3.Error):
                run.resolve_commands(run.upstream.db)
            if time.monotonic() > deadline - settle_s / 2:
                # Commands the upstream never stored will never come.
                run.forget_unsent(run.upstream.db)
            await run.resolve_unknown()
            await run.observe()
            shown = (await run.api("/access_codes/list", {}))["access_codes"]
            problems, judged = checks.check_codes(
                run.model, shown, run.devices, checks.lock_contents(run.state, run.gateways),
                datetime.now(UTC))
            if run.pending:
                problems.append(f"{len(run.pending)} upstream command(s) still without a result")
            in_hand = await run.codes_in_hand()
            if in_hand:
                problems.append(f"{in_hand} code(s), backups included, still being set or "
                                "removed")
            if not _upstream_caught_up(run):
                problems.append("the upstream has not acknowledged every event")
        except (Refused, Unsure) as exc:
            problems = [f"the daemon's API did not answer: {exc}"]
        if not problems:
            settled_in = time.monotonic() - started
            break
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    report.violations += problems
    report.figures["settled_in_s"] = None if settled_in is None else round(settled_in, 1)
    report.figures.update(judged)

    # Quiet: nothing changes now, so nothing may be written (a reconciliation included).
    before = checks.write_counts(run.state, run.gateways)
    slots_before = checks.slot_write_counts(run.state)
    await asyncio.sleep(quiet_s)
    after = checks.write_counts(run.state, run.gateways)
    rewritten = {lock: after[lock] - before[lock] for lock in after if after[lock] != before[lock]}
    if rewritten:
        shown = []
        with contextlib.suppress(Refused, Unsure):
            shown = (await run.api("/access_codes/list", {}))["access_codes"]
        where = checks.rewritten_slots(slots_before, checks.slot_write_counts(run.state),
                                       checks.lock_contents(run.state, run.gateways), shown,
                                       run.devices)
        report.violations.append(f"codes written again with no change in between: {rewritten}"
                                 f" ({where})")
    report.violations += checks.check_writes(after, run.changes, run.write_allowance)
    report.figures["lock_writes"] = sum(after.values())

    # The upstream's snapshot, the outbox and the results, against the store.
    snapshot_ok = False
    with contextlib.suppress(Refused, Unsure):
        result = await run.command("snapshot", "snapshot", None, {"action": "snapshot"})
        snapshot_ok = bool(result and result.get("ok"))
    if not snapshot_ok:
        report.violations.append("the snapshot command got no result")
    with contextlib.suppress(RuntimeError):
        await _wait_for(_async(lambda: _upstream_caught_up(run)), 20, "upstream caught up")
    newest_before_stop = _newest_seq(run)
    exit_status = await run.daemon.stop()
    if exit_status != 0:
        report.violations.append(f"the daemon did not stop cleanly ({exit_status})")
    outbox, codes = await checks.read_store(run.state)
    rows = checks.upstream_rows(run.upstream.db)
    # Events committed while stopping (a driver saying its locks are gone) leave at the next
    # start: they are the only ones the upstream may not have yet.
    held_back = [e for e in outbox if e[0] > newest_before_stop]
    report.violations += checks.check_upstream(rows, outbox[:len(outbox) - len(held_back)],
                                               codes, run.sent_commands)
    markers = checks.applied_markers(run.state)
    report.violations += checks.check_applied_answers(markers, rows)
    report.figures["commands_applied_with_result_unstored"] = len(markers)
    report.figures["events_committed_while_stopping"] = len(held_back)
    report.figures["events"] = len(outbox)
    report.figures["upstream_commands"] = len(rows["commands"])
    report.figures["results_repeated"] = len(rows["received"]) - len(rows["commands"])

    # No PIN in any log line of any of the daemon's runs.
    pins = set(run.model.pins) | SEEN_PINS
    for held in checks.lock_contents(run.state, run.gateways).values():
        pins |= set(held.values())
    leaked = checks.pins_in_log(run.daemon.log.read_text(errors="replace"), pins)
    if leaked:
        report.violations.append(f"{len(leaked)} PIN(s) appear in the daemon's log")
    report.figures["pins_checked_in_log"] = len(pins)

    resource_problems, figures = checks.check_resources(run.daemon.samples)
    report.violations += resource_problems
    report.figures.update(figures)
    report.violations += run.daemon.unexpected_exits
    report.violations += run.violations
    report.counts = dict(sorted(Counter(run.counts).items()))
    report.figures["clock_jumps"] = dict(sorted(run.clock_jumps.items()))
    report.figures["daemon_kills"] = run.daemon.kills
    report.figures["daemon_runs"] = run.daemon.incarnation
    report.figures["codes_known"] = len(run.model.codes)
    report.figures["faults"] = sum(v for k, v in run.counts.items() if k.startswith("fault:"))
    report.figures["operations"] = sum(v for k, v in run.counts.items()
                                       if not k.startswith("fault:"))


def _async(check: Any) -> Any:
    async def wrapped() -> Any:
        return check()
    return wrapped


def _newest_seq(run: Soak) -> int:
    """The newest sequence number the bridge assigned (read beside the running daemon)."""
    with contextlib.closing(sqlite3.connect(
            f"file:{run.state / 'lockbridge.db'}?mode=ro", uri=True, timeout=2)) as db:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row else 0


def _upstream_caught_up(run: Soak) -> bool:
    """The upstream acknowledged the newest event the bridge committed."""
    try:
        newest = _newest_seq(run)
        with contextlib.closing(sqlite3.connect(
                f"file:{run.upstream.db}?mode=ro", uri=True, timeout=2)) as up:
            acked = up.execute("SELECT acked_seq FROM bridges WHERE bridge_id = ?",
                               (BRIDGE,)).fetchone()
    except sqlite3.Error:
        return False
    return acked is not None and int(acked[0]) == newest


def all_locks() -> list[str]:
    """Every lock the soak configures."""
    return [*SIM_LOCKS, *MQTT_LOCKS]


def fault_kinds() -> list[str]:
    """Every fault the soak injects."""
    return list(FAULTS)
