"""The invariants property operators depend on, checked against the locks themselves, the
daemon's API and store, the reference upstream's database and the daemon's log."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.secrets import PinCipher
from bridge.store import UPSTREAM_APPLIED, Store
from drivers.simulator.driver import load_write_counts
from tests.soak import model as m
from tests.soak.world import BRIDGE, MQTT_LOCKS, SIM_LOCKS, Gateways, Sample

if TYPE_CHECKING:
    from tests.soak.chaos import Soak

# A window's edge this close to the check is not judged (the daemon acts on it within a step).
EDGE = timedelta(seconds=8)


def lock_contents(state: Path, gateways: Gateways) -> dict[str, dict[int, str]]:
    """What every lock physically holds: slot -> PIN."""
    contents: dict[str, dict[int, str]] = {lock: {} for lock in [*SIM_LOCKS, *MQTT_LOCKS]}
    sim = state / "sim.json"
    if sim.exists():
        doc = json.loads(sim.read_text())
        for lock, saved in doc.items():
            contents[lock] = {int(n): s["pin"] for n, s in saved["slots"].items()}
    for lock in MQTT_LOCKS:
        contents[lock] = gateways.mqtt_slots(lock)
    return contents


def write_counts(state: Path, gateways: Gateways) -> dict[str, int]:
    """How many sets every lock has applied since the soak began."""
    counts = {lock: 0 for lock in [*SIM_LOCKS, *MQTT_LOCKS]}
    sim = state / "sim.json"
    if sim.exists():
        for lock, slots in load_write_counts(sim).items():
            counts[lock] = sum(slots.values())
    for lock in MQTT_LOCKS:
        counts[lock] = gateways.mqtt_writes(lock)
    return counts


def slot_write_counts(state: Path) -> dict[str, dict[int, int]]:
    """How many sets every slot of every simulated lock has applied since the soak began."""
    sim = state / "sim.json"
    return load_write_counts(sim) if sim.exists() else {}


def rewritten_slots(before: dict[str, dict[int, int]], after: dict[str, dict[int, int]],
                    contents: dict[str, dict[int, str]], shown: list[dict[str, Any]],
                    devices: dict[str, str]) -> str:
    """Which simulated slots were written between two counts, and what the daemon's API shows
    for the PIN each now holds (for the report of a write nobody asked for; no PIN in it)."""
    lock_of = {device: lock for lock, device in devices.items()}
    notes = []
    for lock, slots in after.items():
        for slot, count in sorted(slots.items()):
            if count == before.get(lock, {}).get(slot, 0):
                continue
            pin = contents.get(lock, {}).get(slot)
            there = [f"{'backup' if c.get('is_backup') else 'code'} {c.get('status')}"
                     f" {c.get('type')} ends {c.get('ends_at')}"
                     f" pulled={bool(c.get('pulled_backup_access_code_id'))}"
                     for c in shown if lock_of.get(c.get("device_id", "")) == lock
                     and pin is not None and c.get("code") == pin]
            notes.append(f"{lock} slot {slot} {'empty' if pin is None else 'holds a PIN'}: "
                         f"{', '.join(there) or 'no code shown with it'}")
    return "; ".join(notes) or "no simulated slot"


def check_codes(model: m.Model, shown: list[dict[str, Any]], devices: dict[str, str],
                contents: dict[str, dict[int, str]], now: datetime,
                ) -> tuple[list[str], Counter[str]]:
    """Every code as asked, on its lock when it should be, off every lock when it ended or was
    deleted; no PIN twice on a lock. Returns the problems and what was judged."""
    problems: list[str] = []
    lock_of = {device: lock for lock, device in devices.items()}
    by_id = {c["access_code_id"]: c for c in shown if not c.get("is_backup")}
    live_pins: set[str] = set()
    judged: Counter[str] = Counter()
    for code in model.codes.values():
        body = by_id.get(code.code_id)
        seen = None if body is None else m.observed(body)
        if code.maybe or code.busy:
            problems.append(f"{code.name}: still has an unknown outcome after settling")
            continue
        if not m.matches(code.want, seen):
            problems.append(f"{code.name}: the daemon shows {_describe(seen)}, the soak asked "
                            f"for {_describe(code.want)}")
            continue
        if seen is None:
            continue
        kind = "ongoing" if code.want.starts_at is None else "time_bound"
        if body is not None and body.get("type") != kind:
            problems.append(f"{code.name}: the daemon shows a {body.get('type')} code, the "
                            f"soak asked for {kind}")
        # A PIN that belongs on a lock now (or may, at a window's edge) is nobody's leftover.
        if seen.pin and (seen.on_lock(now, m.native(code.lock)) or seen.near_edge(now, EDGE)):
            live_pins.add(seen.pin)
    for code in model.codes.values():
        body = by_id.get(code.code_id)
        pins = set(code.pins)
        if body is not None and body.get("code"):
            pins.add(body["code"])
        held = contents.get(code.lock, {})
        want = code.want if body is None else m.observed(body)
        if body is not None and want.near_edge(now, EDGE):
            judged["codes_at_a_window_edge_not_judged"] += 1
            continue
        if body is not None and want.on_lock(now, m.native(code.lock)):
            judged["codes_on_their_lock"] += 1
            slots = [s for s, p in held.items() if p == want.pin]
            if len(slots) != 1:
                problems.append(f"{code.name}: its PIN is in {len(slots)} slots of "
                                f"{code.lock}, not 1 (status {body.get('status')})")
            continue
        if body is None:
            judged["codes_deleted_off_every_lock"] += 1
        elif want.ends_at is not None and want.ends_at <= now:
            judged["codes_ended_off_every_lock"] += 1
        else:
            judged["codes_not_yet_started_off_every_lock"] += 1
        # Deleted or not (or no longer) within its window: off every lock.
        for lock, lock_slots in contents.items():
            for pin in pins - live_pins:
                if pin in lock_slots.values():
                    what = "deleted" if body is None else "outside its window"
                    problems.append(f"{code.name} ({what}): its PIN is still on {lock}")
    for lock, held in contents.items():
        twice = [pin for pin, n in Counter(held.values()).items() if n > 1]
        if twice:
            problems.append(f"{lock}: {len(twice)} PIN(s) in two slots")
    soak_names = {c.name for c in model.codes.values()}
    for body in shown:
        name = str(body.get("name") or "")
        if name.startswith(("api-", "up-")) and name not in soak_names:
            problems.append(f"{name}: a code the soak does not know of "
                            f"(on {lock_of.get(body['device_id'])})")
    return problems, judged


def _describe(want: m.Want | None) -> str:
    if want is None or want.deleted:
        return "no code"
    kind = ("ongoing" if want.starts_at is None
            else f"{m.iso(want.starts_at)}..{m.iso(want.ends_at)}")
    return f"a code ({kind})"


@dataclass(frozen=True)
class ClockView:
    """The locks and the soak's codes at one true moment, around a clock fault."""

    at: datetime
    contents: dict[str, dict[int, str]]
    # Settled codes: name, lock, state, PINs.
    codes: dict[str, tuple[str, str, m.Want, frozenset[str]]]
    touched: dict[str, int]
    # Monotonic time of the view, and until when each lock's writes were unsure (chaos.py).
    mono: float = 0.0
    unsure_until: dict[str, float] = field(default_factory=dict)

    @classmethod
    def take(cls, soak: Soak) -> ClockView:
        """What the locks hold and what the soak asked for, now (true time)."""
        return cls(datetime.now(UTC), lock_contents(soak.state, soak.gateways),
                   {c.code_id: (c.name, c.lock, c.want, frozenset(c.pins))
                    for c in soak.model.codes.values() if c.settled and not c.pool},
                   dict(soak.touched), time.monotonic(), dict(soak.unsure_until))

    def unsure(self, before: ClockView) -> set[str]:
        """Locks a lock fault left unsure at some moment between `before` and this view."""
        return {lock for lock, until in self.unsure_until.items() if until > before.mono}

    def judge(self, before: ClockView, while_: str, *, held: bool,
              early_ends: bool = False) -> list[str]:
        """Time-bound codes nobody changed since `before`, judged by true time: none whose stay
        had ended went back on its lock; none whose stay went on throughout came off it (unless
        `early_ends`: a clock ahead ends stays early, as any clock would); with `held` (a clock
        far off), none came or went at all."""
        problems = []
        unsure = self.unsure(before)
        for code_id, (name, lock, want, pins) in before.codes.items():
            after = self.codes.get(code_id)
            if want.starts_at is None or want.ends_at is None or after is None \
                    or after[2] != want:
                continue
            if self.touched.get(lock, 0) != before.touched.get(lock, 0):
                continue  # a keypad edit or a reset moved codes on this lock
            if lock in unsure:
                continue  # a late or repeated write under a lock fault, not the clock
            pins = pins | after[3]
            was = bool(pins & set(before.contents.get(lock, {}).values()))
            now = bool(pins & set(self.contents.get(lock, {}).values()))
            during_stay = want.starts_at <= before.at - EDGE and want.ends_at > self.at + EDGE
            if now and not was and want.ends_at <= before.at:
                problems.append(f"{name}: put back on {lock} after its stay ended, while "
                                f"{while_}")
            elif was and not now and during_stay and not early_ends:
                problems.append(f"{name}: taken off {lock} during its stay, while {while_}")
            elif held and was != now:
                problems.append(f"{name}: {'put on' if now else 'taken off'} {lock} while "
                                f"{while_} (time-bound codes must wait for a trusted clock)")
        return problems


def check_writes(writes: dict[str, int], model_changes: Counter[str],
                 allowance: Counter[str]) -> list[str]:
    """No lock was written more often than the codes on it changed (plus what faults excuse)."""
    problems = []
    for lock, count in writes.items():
        budget = model_changes[lock] + allowance[lock]
        if count > budget:
            problems.append(f"{lock}: {count} writes for {model_changes[lock]} changes "
                            f"(+{allowance[lock]} excused by faults)")
    return problems


def upstream_rows(db: Path) -> dict[str, Any]:
    """The reference upstream's events, commands, results and latest snapshot."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        events = conn.execute("SELECT seq, event_id FROM events WHERE bridge_id = ? "
                              "ORDER BY seq", (BRIDGE,)).fetchall()
        commands = conn.execute("SELECT command_id, result FROM commands WHERE bridge_id = ?",
                                (BRIDGE,)).fetchall()
        received = conn.execute("SELECT command_id, result FROM results_received WHERE "
                                "bridge_id = ?", (BRIDGE,)).fetchall()
        snap = conn.execute("SELECT body FROM snapshots WHERE bridge_id = ? ORDER BY rowid "
                            "DESC LIMIT 1", (BRIDGE,)).fetchone()
    return {"events": events, "commands": commands, "received": received,
            "snapshot": json.loads(snap[0]) if snap else None}


async def read_store(state: Path) -> tuple[list[tuple[int, str]], list[Any]]:
    """The bridge's outbox and codes, from its store (the daemon is stopped)."""
    store = Store(state / "lockbridge.db", PinCipher((state / "pin.key").read_bytes()))
    async with store:
        events = await store.read(lambda r: r.events(0, 10_000_000))
        codes = await store.read(lambda r: r.codes())
    return [(e.sequence or 0, e.event_id) for e in events], codes


def check_upstream(rows: dict[str, Any], outbox: list[tuple[int, str]],
                   codes: list[Any], sent: set[str]) -> list[str]:
    """The upstream's events are the outbox, every command has one result, the last snapshot
    is the store."""
    problems = []
    seqs = [seq for seq, _ in rows["events"]]
    if len(set(seqs)) != len(seqs):
        problems.append("the upstream holds a sequence number twice")
    if seqs and seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        problems.append("the upstream's events have gaps")
    if rows["events"] != outbox:
        missing = len({e for _, e in outbox} - {e for _, e in rows["events"]})
        extra = len({e for _, e in rows["events"]} - {e for _, e in outbox})
        problems.append(f"the upstream's events differ from the outbox ({len(rows['events'])} "
                        f"vs {len(outbox)}; {missing} missing upstream, {extra} unknown)")
    results = dict(rows["commands"])
    unanswered = [c for c, r in results.items() if r is None]
    if unanswered:
        problems.append(f"{len(unanswered)} command(s) without a result")
    lost = sent - set(results)
    if lost:
        problems.append(f"{len(lost)} command(s) the soak had accepted are not stored upstream")
    distinct: dict[str, set[str]] = defaultdict(set)
    for command_id, result in rows["received"]:
        body = json.loads(result)
        distinct[command_id].add(json.dumps([body.get("ok"), body.get("result"),
                                             (body.get("error") or {}).get("type")],
                                            sort_keys=True))
    several = [c for c, answers in distinct.items() if len(answers) > 1]
    if several:
        problems.append(f"{len(several)} command(s) got different results")
    snapshot = rows["snapshot"]
    if snapshot is None:
        problems.append("the upstream has no snapshot")
        return problems
    in_store = {c.access_code_id: (c.device_id, c.code, _t(c.starts_at), _t(c.ends_at))
                for c in codes if c.is_managed and not c.deleted}
    in_snap = {c["access_code_id"]: (c["device_id"], c["code"], _t(m.parse_time(c["starts_at"])),
                                     _t(m.parse_time(c["ends_at"])))
               for c in snapshot["access_codes"]}
    if in_store != in_snap:
        differ = len(set(in_store.items()) ^ set(in_snap.items()))
        problems.append(f"the upstream's last snapshot differs from the store in {differ} "
                        "code(s)")
    unmanaged_store = {c.access_code_id for c in codes if not c.is_managed and not c.deleted}
    unmanaged_snap = {c["access_code_id"] for c in snapshot["unmanaged_access_codes"]}
    if unmanaged_store != unmanaged_snap:
        problems.append("the upstream's last snapshot differs from the store in unmanaged codes")
    return problems


def applied_markers(state: Path) -> dict[str, str]:
    """Upstream commands the stopped daemon applied without storing their result: command id
    to what was applied (the marker committed with the change; no PIN in it)."""
    with contextlib.closing(sqlite3.connect(f"file:{state / 'lockbridge.db'}?mode=ro",
                                            uri=True, timeout=5)) as conn:
        rows = conn.execute("SELECT key, value FROM kv WHERE key LIKE ?",
                            (UPSTREAM_APPLIED + "%",)).fetchall()
    return {str(key).removeprefix(UPSTREAM_APPLIED): str(value) for key, value in rows}


def check_applied_answers(markers: dict[str, str], rows: dict[str, Any]) -> list[str]:
    """No command the daemon applied was answered as a failure: the upstream would believe
    nothing changed (only "applied, but the code is gone since" may say ok: false)."""
    results = dict(rows["commands"])
    problems = []
    for command_id, applied in sorted(markers.items()):
        text = results.get(command_id)
        if text is None:
            continue  # unanswered: reported by check_upstream
        body = json.loads(text)
        error = body.get("error") or {}
        if not body.get("ok") and "was applied" not in str(error.get("message")):
            problems.append(f"command {command_id} was applied "
                            f"({json.loads(applied).get('action')}) but answered "
                            f"{error.get('type')}")
    return problems


def _t(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def pins_in_log(log: str, pins: set[str]) -> list[str]:
    """PINs (4 digits or more) that appear in the log as a number of their own."""
    # Ids hold digit runs by chance ("...-4916-..." in a uuid is not the PIN 4916).
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", log)
    text = re.sub(r"soak-\d+-\d+", "<command>", text)
    text = re.sub(r"[0-9a-f]{12,}", "<id>", text)
    # Sequence numbers in the upstream link's lines ("sending events after 1402 (3 held)").
    text = re.sub(r"events after \d+ \(\d+ held\)", "<resume>", text)
    numbers = set(re.findall(r"(?<!\d)\d{4,12}(?!\d)", text))
    return sorted(p for p in pins if len(p) >= 4 and p in numbers)


def check_resources(samples: list[Sample], min_span_s: float = 60.0) -> tuple[list[str],
                                                                               dict[str, Any]]:
    """RSS and open descriptors flat within every daemon run long enough to judge."""
    problems = []
    figures: dict[str, Any] = {"judged_runs": 0}
    runs: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        runs[sample.incarnation].append(sample)
    if samples:
        figures["rss_mb"] = [round(min(s.rss_kb for s in samples) / 1024, 1),
                             round(max(s.rss_kb for s in samples) / 1024, 1)]
        figures["fds"] = [min(s.fds for s in samples), max(s.fds for s in samples)]
    for incarnation, run in runs.items():
        # Leave the first 20 s (imports, connections, caches) out of the judgement.
        run = [s for s in run if s.at - run[0].at >= 20]
        if len(run) < 8 or run[-1].at - run[0].at < min_span_s:
            continue
        figures["judged_runs"] += 1
        quarter = max(2, len(run) // 4)
        rss_early = statistics.median(s.rss_kb for s in run[:quarter])
        rss_late = statistics.median(s.rss_kb for s in run[-quarter:])
        fds_early = statistics.median(s.fds for s in run[:quarter])
        fds_late = statistics.median(s.fds for s in run[-quarter:])
        if rss_late > rss_early * 1.15 + 8 * 1024:
            problems.append(f"run {incarnation}: RSS grew from {rss_early / 1024:.1f} to "
                            f"{rss_late / 1024:.1f} MB")
        if fds_late > fds_early + 12:
            problems.append(f"run {incarnation}: open descriptors grew from {fds_early} to "
                            f"{fds_late}")
    # Over the whole run (the daemon restarts after each kill): the last quarter's peak no
    # higher than the first quarter's, beyond noise.
    steady = [s for s in samples if s.at - _run_start(samples, s.incarnation) >= 20]
    if len(steady) >= 16:
        span = steady[-1].at - steady[0].at
        early = [s for s in steady if s.at <= steady[0].at + span / 4]
        late = [s for s in steady if s.at >= steady[-1].at - span / 4]
        rss_early, rss_late = max(s.rss_kb for s in early), max(s.rss_kb for s in late)
        fds_early, fds_late = max(s.fds for s in early), max(s.fds for s in late)
        figures["rss_peak_mb_first_last_quarter"] = [round(rss_early / 1024, 1),
                                                     round(rss_late / 1024, 1)]
        figures["fds_peak_first_last_quarter"] = [fds_early, fds_late]
        if rss_late > rss_early * 1.15 + 8 * 1024:
            problems.append(f"RSS peak grew over the run from {rss_early / 1024:.1f} to "
                            f"{rss_late / 1024:.1f} MB")
        if fds_late > fds_early + 12:
            problems.append(f"open descriptors' peak grew over the run from {fds_early} to "
                            f"{fds_late}")
    return problems, figures


def _run_start(samples: list[Sample], incarnation: int) -> float:
    return min(s.at for s in samples if s.incarnation == incarnation)
