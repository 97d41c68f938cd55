"""Carrying out the plan: the workload through the local API, the upstream and the locks'
keypads, and every fault, each bounded in time; and healing everything before the checks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from tests.soak import faults
from tests.soak import model as m
from tests.soak.schedule import Step
from tests.soak.world import (
    BRIDGE,
    MQTT_LOCKS,
    SIM_LOCKS,
    Z2M_LOCK,
    ZUI_LOCK,
    ZUI_NODE,
    Daemon,
    Gateways,
    Upstream,
    append_control,
)

_LOG = logging.getLogger("soak")
MAX_CODES_PER_LOCK = {lock: 6 for lock in m.code_locks()} | {ZUI_LOCK: 4}
POOL_LOCK = "kwikset"
API_TIMEOUT_S = 8.0


class Unsure(Exception):
    """A request whose outcome is unknown (the daemon or the upstream went away mid-way)."""


class Refused(Exception):
    """A request that certainly changed nothing."""


@dataclass
class Soak:
    """The running soak: its world, what it asked for, and what happened."""

    seed: int
    state: Path
    daemon: Daemon
    upstream: Upstream
    gateways: Gateways
    session: aiohttp.ClientSession
    model: m.Model = field(default_factory=m.Model)
    devices: dict[str, str] = field(default_factory=dict)  # lock name -> device_id
    counts: Counter[str] = field(default_factory=Counter)
    # Upstream commands without a result yet: command id -> what it meant.
    pending: dict[str, tuple[str, str, m.Want | None]] = field(default_factory=dict)
    sent_commands: set[str] = field(default_factory=set)
    command_ids: int = 0
    violations: list[str] = field(default_factory=list)
    # Extra writes each lock may see for a reason other than a code change (faults).
    write_allowance: Counter[str] = field(default_factory=Counter)
    # Changes of codes on each lock (creates, updates, keypad edits, resets).
    changes: Counter[str] = field(default_factory=Counter)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    short_windows_until: float = float("inf")
    # When the chaos ends (monotonic): a clock fast by X must be caught up with before then.
    chaos_ends: float = float("inf")
    # Edits at a lock itself (keypad, reset), which move its codes whatever the clock says.
    touched: Counter[str] = field(default_factory=Counter)
    # Until when (monotonic) a write to each lock may land late or with an unknown outcome and
    # be sent again: a lock offline, refusing, slow or hanging, and a while after (retries back
    # off). Such a write moves a code whatever the clock says (a late one lands after its stay;
    # sent again to a lock that makes its own PINs, it gets a new PIN), so the clock checks
    # leave that lock out.
    unsure_until: dict[str, float] = field(default_factory=dict)
    # Clock jumps by kind, and whether one is under way (they do not overlap).
    clock_jumps: Counter[str] = field(default_factory=Counter)
    clock_wrong: bool = False
    # The processes a fault is killing, restarting or freezing now ("daemon", "broker",
    # "upstream"): a second fault on the same one is not injected (two restarts at once would
    # kill each other's new process, a failure of the soak and not of lockbridge).
    faulting: set[str] = field(default_factory=set)
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(6))

    # -- running steps ----------------------------------------------------------------------

    def launch(self, step: Step) -> None:
        """Start one step as a task (bounded: at most six operations at once)."""
        task = asyncio.create_task(self._run(step), name=f"soak:{step.index}:{step.kind}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, step: Step) -> None:
        rng = step.rng(self.seed)
        _LOG.info("step %d at %.1f s: %s%s", step.index, step.at, step.kind,
                  f" for {step.duration:.1f} s" if step.fault else "")
        try:
            if step.fault:
                await self._fault(step, rng)
            else:
                async with self._slots:
                    await getattr(self, f"_op_{step.kind}")(rng)
        except Refused as exc:
            self.counts[f"refused:{step.kind}"] += 1
            _LOG.info("step %d %s refused: %s", step.index, step.kind, exc)
        except Unsure:
            self.counts[f"unsure:{step.kind}"] += 1
            _LOG.info("step %d %s: outcome unknown", step.index, step.kind)
        except Exception as exc:  # a soak bug must not pass for a lockbridge bug, nor hide one
            self.violations.append(f"step {step.index} {step.kind} failed in the soak: {exc!r}")
            _LOG.exception("step %d %s", step.index, step.kind)

    # -- the local API --------------------------------------------------------------------

    async def api(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """Call the daemon's API: the answer, Refused (nothing changed) or Unsure."""
        if not self.daemon.running:
            raise Refused("daemon down")
        url = f"http://127.0.0.1:{self.daemon.port}{route}"
        try:
            async with self.session.post(
                    url, json=body, headers={"Authorization": f"Bearer {self.daemon.key}"},
                    timeout=aiohttp.ClientTimeout(total=API_TIMEOUT_S)) as resp:
                answer: dict[str, Any] = await resp.json(content_type=None)
                if resp.status >= 500:  # e.g. the store could not commit: look again later
                    raise Unsure(f"{route}: {resp.status}")
                if resp.status >= 400:
                    raise Refused(f"{route}: {resp.status} {answer.get('error', {}).get('type')}")
                return answer
        except aiohttp.ClientConnectorError as exc:
            raise Refused(f"{route}: not connected") from exc
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise Unsure(f"{route}: {exc!r}") from exc

    async def codes_in_hand(self) -> int:
        """Managed codes, backups included, the daemon is still setting or removing (its
        /metrics gauge): the API does not list a pool's unpulled backups, yet their writes
        (a refill, a repair after a wipe) count in the quiet check."""
        if not self.daemon.running:
            raise Refused("daemon down")
        url = f"http://127.0.0.1:{self.daemon.port}/metrics"
        try:
            async with self.session.get(
                    url, timeout=aiohttp.ClientTimeout(total=API_TIMEOUT_S)) as resp:
                text = await resp.text()
        except aiohttp.ClientConnectorError as exc:
            raise Refused("/metrics: not connected") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unsure(f"/metrics: {exc!r}") from exc
        pending = 0.0
        for line in text.splitlines():
            if line.startswith("lockbridge_access_codes{") and (
                    'status="setting"' in line or 'status="removing"' in line):
                pending += float(line.rsplit(" ", 1)[1])
        return int(pending)

    # -- operations -------------------------------------------------------------------------

    def _choose_lock(self, rng: random.Random) -> str | None:
        now = datetime.now(UTC)
        locks = [lock for lock in m.code_locks()
                 if self.model.occupying(lock, now) < MAX_CODES_PER_LOCK[lock]]
        return rng.choice(locks) if locks else None

    def _new_want(self, rng: random.Random, lock: str, code: m.Code | None = None) -> m.Want:
        """A new state: a fresh PIN, and a window (short, long or future) or none."""
        length = m.pin_length(lock)
        if code is not None and rng.random() < 0.4:
            pin = code.want.pin  # only the window changes
        else:
            pin = self.model.new_pin(rng, length) if length else None
        kind = rng.choice(["ongoing", "short", "short", "short", "long", "future"])
        if kind == "short" and time.monotonic() > self.short_windows_until:
            kind = "long"
        _LOG.info("a %s code on %s", kind, lock)
        if kind == "ongoing":
            return m.Want(pin, None, None)
        starts, ends = m.window(rng, datetime.now(UTC), kind)
        return m.Want(pin, starts, ends)

    def _body(self, want: m.Want) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if want.pin is not None:
            body["code"] = want.pin
        if want.starts_at is not None:
            body["starts_at"] = m.iso(want.starts_at)
            body["ends_at"] = m.iso(want.ends_at)
        return body

    def _created(self, lock: str, name: str, want: m.Want, answer: dict[str, Any],
                 pool: bool) -> None:
        code = answer["access_code"]
        if code.get("code"):
            self.model.pins.add(str(code["code"]))
        self.model.codes[code["access_code_id"]] = m.Code(code["access_code_id"], lock, name,
                                                           want, pool=pool)
        self.changes[lock] += 1

    async def _op_api_create(self, rng: random.Random) -> None:
        lock = self._choose_lock(rng)
        if lock is None:  # every lock is full: a guest checks out instead
            await self._op_api_delete(rng)
            return
        want = self._new_want(rng, lock)
        name = self.model.new_name("api")
        pool = lock == POOL_LOCK and rng.random() < 0.5
        body = {"device_id": self.devices[lock], "name": name, **self._body(want)}
        if pool:
            body["use_backup_access_code_pool"] = True
            self.write_allowance[lock] += 1
        try:
            answer = await self.api("/access_codes/create", body)
        except Unsure:
            self.model.unknown_creates[name] = (lock, want)
            self.changes[lock] += 1
            raise
        self._created(lock, name, want, answer, pool)
        self.counts["api_create"] += 1

    async def _op_api_update(self, rng: random.Random) -> None:
        code = self.model.pick(rng)
        if code is None:
            raise Refused("no code to update")
        want = self._new_want(rng, code.lock, code)
        body = {"access_code_id": code.code_id, **self._body(want)}
        if want.starts_at is None:
            body["type"] = "ongoing"
        code.busy = True
        try:
            await self.api("/access_codes/update", body)
        except Unsure:
            code.maybe.append(want)
            code.note(want)
            self.changes[code.lock] += 1
            raise
        finally:
            code.busy = False
        code.want = want
        code.note(want)
        self.changes[code.lock] += 1
        self.counts["api_update"] += 1

    async def _op_api_delete(self, rng: random.Random) -> None:
        code = self.model.pick(rng)
        if code is None:
            raise Refused("no code to delete")
        code.busy = True
        gone = m.Want(None, None, None, deleted=True)
        try:
            await self.api("/access_codes/delete", {"access_code_id": code.code_id})
        except Unsure:
            code.maybe.append(gone)
            raise
        finally:
            code.busy = False
        code.want = gone
        self.counts["api_delete"] += 1

    # -- the upstream -----------------------------------------------------------------------

    async def command(self, kind: str, target: str, want: m.Want | None,
                      command: dict[str, Any]) -> dict[str, Any] | None:
        """Send an upstream command; None while its result is still to come."""
        self.command_ids += 1
        command_id = f"soak-{self.seed}-{self.command_ids}"
        if not self.upstream.running or self.upstream.frozen:
            raise Refused("upstream down")
        self.sent_commands.add(command_id)
        self.pending[command_id] = (kind, target, want)
        _LOG.info("command %s: %s %s", command_id, kind, target)
        try:
            result = await self.upstream.post(self.session, command_id, command)
        except aiohttp.ClientConnectorError as exc:
            del self.pending[command_id]
            self.sent_commands.discard(command_id)
            raise Refused("upstream not listening") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            # It may have been stored, and then it will reach the bridge: wait for its result.
            self.counts[f"upstream_queued:{kind}"] += 1
            raise Unsure(repr(exc)) from exc
        if result is None:
            self.counts[f"upstream_queued:{kind}"] += 1
            return None
        _LOG.info("command %s (%s %s) answered: %s", command_id, kind, target, _outcome(result))
        if self.pending.pop(command_id, None) is None:
            # The monitor applied it from the upstream's database while the answer was on its
            # way; applying it again could undo a later change to the same code.
            return result
        self.apply_result(kind, target, want, result)
        return result

    def apply_result(self, kind: str, target: str, want: m.Want | None,
                     result: dict[str, Any]) -> None:
        """What a command's result means for the model."""
        code = self.model.codes.get(target)
        if kind == "upstream_create":
            lock, want_ = self.model.unknown_creates.pop(target, (None, None))
            if result["ok"] and lock is not None and want_ is not None:
                self._created(lock, target, want_, result["result"], False)
                self.counts[kind] += 1
            return
        if kind == "device_cycle":
            return
        if code is None or want is None:
            return
        code.busy = False
        if result["ok"]:
            code.want = want
            code.maybe = [w for w in code.maybe if w != want]
            self.counts[kind] += 1
        elif (result.get("error") or {}).get("type") == "access_code_not_found" \
                and "was applied" in str((result.get("error") or {}).get("message")):
            code.want = want
        else:
            code.maybe = [w for w in code.maybe if w != want]

    async def _op_upstream_create(self, rng: random.Random) -> None:
        lock = self._choose_lock(rng)
        if lock is None:  # every lock is full: a guest checks out instead
            await self._op_upstream_delete(rng)
            return
        want = self._new_want(rng, lock)
        name = self.model.new_name("up")
        self.model.unknown_creates[name] = (lock, want)
        command = {"action": "access_codes.create", "device_id": self.devices[lock],
                   "name": name, **self._body(want)}
        try:
            await self.command("upstream_create", name, want, command)
        except Refused:
            self.model.unknown_creates.pop(name, None)
            raise

    async def _op_upstream_update(self, rng: random.Random) -> None:
        code = self.model.pick(rng)
        if code is None:
            raise Refused("no code to update")
        want = self._new_want(rng, code.lock, code)
        command = {"action": "access_codes.update", "access_code_id": code.code_id,
                   **self._body(want)}
        if want.starts_at is None:
            command["type"] = "ongoing"
        await self._upstream_change(code, "upstream_update", want, command)

    async def _op_upstream_delete(self, rng: random.Random) -> None:
        code = self.model.pick(rng)
        if code is None:
            raise Refused("no code to delete")
        await self._upstream_change(code, "upstream_delete", m.Want(None, None, None, True),
                                    {"action": "access_codes.delete",
                                     "access_code_id": code.code_id})

    async def _upstream_change(self, code: m.Code, kind: str, want: m.Want,
                               command: dict[str, Any]) -> None:
        code.busy = True
        code.maybe.append(want)
        code.note(want)
        self.changes[code.lock] += 1
        try:
            result = await self.command(kind, code.code_id, want, command)
        except Refused:
            code.busy = False
            code.maybe.remove(want)
            self.changes[code.lock] -= 1
            raise
        except Unsure:
            raise
        if result is None:
            return

    # -- the rest of the workload -------------------------------------------------------------

    async def _op_backup_pull(self, rng: random.Random) -> None:
        codes = sorted((c for c in self.model.live(POOL_LOCK) if c.pool and c.settled
                        and c.want.starts_at is not None), key=lambda c: c.name)
        if not codes:
            raise Refused("no code on the pool lock to pull a backup for")
        code = rng.choice(codes)
        answer = await self.api("/access_codes/pull_backup_access_code",
                                {"access_code_id": code.code_id})
        backup = answer.get("backup_access_code") or {}
        if backup.get("code"):
            self.model.pins.add(str(backup["code"]))
        self.write_allowance[POOL_LOCK] += 1  # the pool is refilled
        self.counts["backup_pull"] += 1

    async def _op_keypad(self, rng: random.Random) -> None:
        lock = rng.choice(m.reconcilable_locks())
        slot = rng.randint(1, 8)
        pin = self.model.new_pin(rng, m.pin_length(lock) or 6)
        clear = rng.random() < 0.4
        self.changes[lock] += 1
        self.touched[lock] += 1
        if lock == Z2M_LOCK:
            await (self.gateways.z2m.keypad_clear(Z2M_LOCK, slot) if clear
                   else self.gateways.z2m.keypad_set(Z2M_LOCK, slot, pin))
        elif lock == ZUI_LOCK:
            await self.gateways.zui.keypad_set(ZUI_NODE, slot, pin)
        else:
            if not self.daemon.running:
                self.changes[lock] -= 1
                raise Refused("daemon down: the simulated keypad is inside it")
            append_control(self.state, {"lock": lock, "op": "keypad_clear" if clear
                                        else "keypad_set", "slot": slot, "pin": pin})
        self.counts["keypad"] += 1

    async def _op_device_cycle(self, rng: random.Random) -> None:
        """The spare lock: backup pool on, removed from lockbridge, brought back."""
        device = self.devices["spare"]
        listed = await self.api("/devices/unmanaged/list", {})
        unmanaged = any(d["device_id"] == device for d in listed["devices"])
        via_upstream = rng.random() < 0.5
        if unmanaged:
            step, body = "restore", {"device_id": device, "is_managed": True}
            route = "/devices/unmanaged/update"
        elif rng.random() < 0.5:
            step, body = "pool", {"device_id": device, "backup_access_code_pool_enabled": True}
            via_upstream = False  # the upstream's devices.update only (un)manages
            route = "/devices/update"
            self.write_allowance["spare"] += 2
        else:
            step, body = "remove", {"device_id": device, "is_managed": False}
            route = "/devices/update"
        if via_upstream:
            await self.command("device_cycle", step, None, {"action": "devices.update", **body})
        else:
            await self.api(route, body)
        self.counts[f"device_{step}"] += 1

    async def _op_unmanaged_cleanup(self, rng: random.Random) -> None:
        lock = rng.choice(m.reconcilable_locks())
        listed = await self.api("/access_codes/unmanaged/list",
                                {"device_id": self.devices[lock]})
        codes = sorted(c["access_code_id"] for c in listed["access_codes"])
        if not codes:
            raise Refused("no unmanaged code")
        await self.api("/access_codes/unmanaged/delete", {"access_code_id": rng.choice(codes)})
        self.counts["unmanaged_cleanup"] += 1

    # -- faults -----------------------------------------------------------------------------

    async def _fault(self, step: Step, rng: random.Random) -> None:
        kind, duration = step.kind, step.duration
        lock = rng.choice(m.reconcilable_locks() if kind == "lock_reset"
                          else [*SIM_LOCKS, *MQTT_LOCKS])
        if (kind.startswith("lock_") and lock in SIM_LOCKS) or kind == "clock_jump":
            # The simulated locks live inside the daemon, and a clock jump is the daemon's: such
            # a fault waits (bounded) for a daemon another fault killed, so every kind strikes.
            deadline = time.monotonic() + 20.0
            while not self.daemon.running or self.daemon.starting:
                if time.monotonic() > deadline:
                    raise Refused("daemon down")
                await asyncio.sleep(0.2)
        incarnation = self.daemon.incarnation
        self.counts[f"fault:{kind}"] += 1
        await getattr(faults, kind)(self, lock, duration, rng, incarnation)

    def sim(self, lock: str, op: str, **args: Any) -> None:
        """A command for a simulated lock (inside the daemon, so only while it runs)."""
        if self.daemon.running:
            append_control(self.state, {"lock": lock, "op": op, **args})

    # -- the results still to come ------------------------------------------------------------

    def resolve_commands(self, db: Path) -> int:
        """Apply the results the upstream stored since the last look; returns how many wait."""
        if not self.pending:
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True,
                                                timeout=2)) as conn:
            rows = dict(conn.execute("SELECT command_id, result FROM commands WHERE "
                                     "bridge_id = ? AND result IS NOT NULL", (BRIDGE,)))
        for command_id in list(self.pending):
            text = rows.get(command_id)
            if text is None:
                continue
            kind, target, want = self.pending.pop(command_id)
            result = json.loads(text)
            _LOG.info("command %s (%s %s) stored result: %s", command_id, kind, target,
                      _outcome(result))
            self.apply_result(kind, target, want, result)
        return len(self.pending)

    def forget_unsent(self, db: Path) -> None:
        """After the run: commands the upstream never stored never happened."""
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True,
                                                timeout=2)) as conn:
            stored = {r[0] for r in conn.execute("SELECT command_id FROM commands WHERE "
                                                 "bridge_id = ?", (BRIDGE,))}
        for command_id in list(self.pending):
            if command_id in stored:
                continue
            kind, target, want = self.pending.pop(command_id)
            _LOG.info("command %s (%s %s) never stored upstream: forgotten", command_id, kind,
                      target)
            self.sent_commands.discard(command_id)
            if kind == "upstream_create":
                self.model.unknown_creates.pop(target, None)
            elif (code := self.model.codes.get(target)) is not None:
                code.busy = False
                code.maybe = [w for w in code.maybe if w != want]

    async def resolve_unknown(self) -> None:
        """Settle every code whose last request had no known outcome, from what the daemon shows."""
        answer = await self.api("/access_codes/list", {})
        shown = {c["access_code_id"]: c for c in answer["access_codes"]}
        by_name = {c["name"]: c for c in answer["access_codes"]}
        for name, (lock, want) in list(self.model.unknown_creates.items()):
            if any(kind == "upstream_create" and target == name
                   for kind, target, _ in self.pending.values()):
                continue
            del self.model.unknown_creates[name]
            body = by_name.get(name)
            if body is not None:
                self._created(lock, name, want, {"access_code": body}, False)
        for code in self.model.codes.values():
            if not code.maybe or code.busy:
                continue
            body = shown.get(code.code_id)
            seen = None if body is None else m.observed(body)
            for candidate in [*code.maybe, code.want]:
                if m.matches(candidate, seen):
                    code.want = candidate
                    break
            else:
                self.violations.append(f"code {code.name} shows a state nobody asked for")
            code.maybe = []

    async def observe(self) -> None:
        """Note every PIN the daemon shows (PINs a lock chose, pulled backups)."""
        answer = await self.api("/access_codes/list", {})
        for body in answer["access_codes"]:
            pin = body.get("code")
            if not pin:
                continue
            self.model.pins.add(str(pin))
            code = self.model.codes.get(body["access_code_id"])
            if code is not None:
                code.pins.add(str(pin))

    async def load_devices_all(self) -> bool:
        """Device ids by lock name; True once every lock is there."""
        for route in ("/devices/list", "/devices/unmanaged/list"):
            answer = await self.api(route, {})
            for device in answer["devices"]:
                self.devices[device["display_name"]] = device["device_id"]
        return set(self.devices) >= {*SIM_LOCKS, *MQTT_LOCKS}


def _outcome(result: dict[str, Any]) -> str:
    """A command result in a log line (no PIN)."""
    if result.get("ok"):
        return "ok"
    error = result.get("error") or {}
    return f"{error.get('type')}: {error.get('message')}"
