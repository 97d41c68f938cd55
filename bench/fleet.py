"""The fleet scale run (a benchmark, not a test; docs/fleet.md, docs/performance.md).

N simulated bridges (real engines over simulated locks, each with its own SQLite store and a
real `NatsLink`) in a few worker processes (bench/fleet_worker.py) -> a three-node NATS cluster
(cluster routes, JetStream replication 3; tests/nats_cluster.py) -> two `lockbridge fleet`
replica processes -> PostgreSQL (a database of its own). Per size:

1. throughput: every bridge commits `--events` keypad events at once; the end-to-end rate is
   those events / seconds until every one is in PostgreSQL. In the same run, on the same
   cluster, a bare JetStream loop publishes and consumes as many messages of the same size
   (with message ids, replicated like the fleet's streams, acked) with nothing around it;
2. faults (`--kills`, on by default): a steady flow of events and of creates through the
   backend's API while one NATS node is SIGKILLed (and started again later), one backend
   replica is SIGKILLed, and one worker process (a share of the bridges) is SIGKILLed and
   started again from its bridges' own stores;
3. the check, once the flow is over: every event committed on every bridge is in PostgreSQL
   exactly once, every command the backend recorded has exactly one result and was applied
   once on its bridge, and every bridge's present in the backend equals its own store's.

    python -m bench.fleet --bridges 10 50 200 --locks 30 --events 50

Every wait is bounded (`--timeout` per phase).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from bridge.upstream.nats_subjects import MSG_ID, close_client
from tests.fleet_postgres import fresh_database
from tests.fleet_processes import ReplicaProcess, start_replica_process
from tests.nats_cluster import NatsCluster

API_KEY = "seam_fleet_bench_0123456789"
ROOT = Path(__file__).resolve().parent.parent
# A worker's answer to one request comes within this (a burst of 200 bridges included).
ASK_TIMEOUT_S = 300.0


@dataclass
class WorkerProcess:
    """One bench/fleet_worker.py process and its share of the bridges."""

    index: int
    root: Path
    bridges: list[str]
    servers: list[str]
    locks: int
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    async def start(self, timeout: float) -> float:
        """Start it (again: its bridges reopen their stores); seconds until all are up."""
        log = (self.root / f"worker-{self.index}.log").open("ab")
        started = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.fleet_worker", "--root", str(self.root),
            "--locks", str(self.locks), *[f"--server={s}" for s in self.servers],
            *self.bridges, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=log)
        log.close()
        self.starts += 1
        ready = await self._read(timeout)
        if "ready" not in ready:
            raise RuntimeError(f"worker {self.index} did not start: {ready}")
        return time.monotonic() - started

    async def ask(self, request: dict[str, Any], timeout: float = ASK_TIMEOUT_S
                  ) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._read(timeout)

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            code = await asyncio.wait_for(self.proc.wait(), 10)
            tail = (self.root / f"worker-{self.index}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker {self.index} exited ({code}):\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def kill(self) -> None:
        """SIGKILL: its bridges stop wherever they are."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(self.proc.wait(), 10)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await self.ask({"op": "stop"}, timeout=60)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            await self.kill()


@dataclass
class CommandLog:
    """What the run asked of the backend's API and what it answered."""

    sent: int = 0
    answered: dict[int, int] = field(default_factory=dict)  # status -> count
    failed: int = 0  # no answer: the replica died with the request, or a timeout
    names_ok: list[str] = field(default_factory=list)
    seconds_200: list[float] = field(default_factory=list)  # request to answer, each 200

    def percentile(self, p: float) -> float:
        ordered = sorted(self.seconds_200)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


async def pg_rows(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute(sql.encode(), args)
        return list(await cursor.fetchall())


async def pg_count(dsn: str) -> int:
    return int((await pg_rows(dsn, "SELECT count(*) FROM events"))[0][0])


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str,
                pause: float = 0.25) -> float:
    """Poll until the predicate holds; seconds it took. Raises TimeoutError past `timeout`."""
    started = time.monotonic()
    while not await predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(pause)
    return time.monotonic() - started


async def bare_loop(cluster: NatsCluster, count: int, size: int, replicas: int) -> float:
    """Messages/s of a bare publish (message ids, acked, `replicas` copies) then
    pull-consume-ack loop on the same cluster."""
    nc = await cluster.backend()
    try:
        js = nc.jetstream(timeout=10)
        name = f"BARE{random.randrange(1 << 30)}"
        await js.add_stream(name=name, subjects=[f"bare.{name}"], num_replicas=replicas)
        payload = b"x" * size
        started = time.monotonic()
        for first in range(0, count, 500):
            await asyncio.gather(*(js.publish(f"bare.{name}", payload, headers={MSG_ID: str(i)})
                                   for i in range(first, min(count, first + 500))))
        sub = await js.pull_subscribe(f"bare.{name}", durable="bare", stream=name)
        got = 0
        deadline = time.monotonic() + 120
        while got < count and time.monotonic() < deadline:  # bounded
            with contextlib.suppress(TimeoutError):
                for msg in await sub.fetch(256, timeout=5):
                    await msg.ack()
                    got += 1
        rate = got / (time.monotonic() - started)
        await js.delete_stream(name)
        return rate
    finally:
        await close_client(nc)


class Run:
    """One size of the scale run."""

    def __init__(self, root: Path, args: argparse.Namespace, bridges: int) -> None:
        self.root = root
        self.args = args
        self.ids = [f"b{i:03d}" for i in range(bridges)]
        self.cluster = NatsCluster.build(root / "nats", self.ids, size=args.nats_nodes)
        self.replicas: list[ReplicaProcess] = []
        self.workers: list[WorkerProcess] = []
        self.dsn = ""
        self.row: dict[str, Any] = {"bridges": bridges, "locks": bridges * args.locks,
                                    "nats_nodes": args.nats_nodes,
                                    "replicas": args.replicas}

    async def execute(self) -> dict[str, Any]:
        await self.cluster.start(timeout=90)
        try:
            with fresh_database(self.root / "pg") as dsn:
                self.dsn = dsn
                try:
                    await self._phases()
                finally:
                    await self._stop_all()
        finally:
            self.cluster.stop()
        return self.row

    async def _phases(self) -> None:
        args = self.args
        stream_replicas = min(3, args.nats_nodes)
        self.replicas = [start_replica_process(
            self.cluster, self.dsn, API_KEY, self.root / "replicas", f"replica-{i}",
            replicas=stream_replicas, stale_after_s=60, ack_wait_s=args.ack_wait,
            command_timeout_s=args.command_timeout, pool_size=4, log_level="info")
            for i in range(args.replicas)]
        for replica in self.replicas:
            await replica.wait_ready(90)
        count = min(args.workers, len(self.ids))
        servers = [n.ws_url for n in self.cluster.nodes]
        self.workers = [WorkerProcess(i, self.root / "bridges", self.ids[i::count], servers,
                                      args.locks) for i in range(count)]
        (self.root / "bridges").mkdir()
        started = time.monotonic()
        await asyncio.gather(*(w.start(args.timeout) for w in self.workers))
        self.row["workers"] = count
        self.row["setup_s"] = round(time.monotonic() - started, 1)
        await until(self._all_in_postgres, args.timeout, "the bridges' first events")
        await until(self._devices_present, args.timeout, "every device in the backend")
        await self._throughput()
        if args.kills:
            await self._faults()
        await self._check()

    # -- 1. throughput ------------------------------------------------------------------------

    async def _throughput(self) -> None:
        args = self.args
        burst = len(self.ids) * args.events
        started = time.monotonic()
        answers = await asyncio.gather(*(w.ask({"op": "burst", "events": args.events})
                                         for w in self.workers))
        committed_s = time.monotonic() - started
        await until(self._all_in_postgres, args.timeout, "the burst in PostgreSQL", 0.05)
        elapsed = time.monotonic() - started
        bare = await bare_loop(self.cluster, max(burst, 2000), 600, min(3, args.nats_nodes))
        rate = burst / elapsed
        self.row.update({
            "events": sum(int(a["burst"]) for a in answers), "commit_s": round(committed_s, 2),
            "seconds": round(elapsed, 2), "events_per_s": round(rate),
            "commit_per_s": round(burst / committed_s), "bare_per_s": round(bare),
            "ratio": round(rate / bare, 3)})

    # -- 2. faults ----------------------------------------------------------------------------

    async def _faults(self) -> None:
        args = self.args
        period = max(0.05, len(self.ids) / args.flow_rate)
        devices = await pg_rows(self.dsn, "SELECT device_id FROM devices "
                                "WHERE body IS NOT NULL ORDER BY device_id")
        targets = [str(r[0]) for r in devices]
        log = CommandLog()
        stop = asyncio.Event()
        before = await self._committed()
        for w in self.workers:
            await w.ask({"op": "flow", "period_s": period})
        flow_started = time.monotonic()
        senders = [asyncio.create_task(self._send_commands(log, targets, stop, k))
                   for k in range(args.command_concurrency)]
        kills: list[str] = []
        node = self.cluster.nodes[1] if len(self.cluster.nodes) > 1 else None
        victim = self.workers[0]
        step = args.phase_s

        def note(what: str) -> None:
            kills.append(f"{time.monotonic() - flow_started:.1f}s {what}")
            print(f"  {kills[-1]}", file=sys.stderr, flush=True)

        try:
            await asyncio.sleep(step)  # the scenario's timeline: steady flow before each fault
            if node is not None:
                node.kill()
                note(f"SIGKILL nats {node.name}")
            await asyncio.sleep(step)
            if len(self.replicas) > 1:
                self.replicas[0].kill()
                note(f"SIGKILL {self.replicas[0].name}")
            await asyncio.sleep(step)
            await victim.kill()
            note(f"SIGKILL worker {victim.index} ({len(victim.bridges)} bridges)")
            await asyncio.sleep(step)
            restart_s = await victim.start(args.timeout)
            await victim.ask({"op": "flow", "period_s": period})
            note(f"worker {victim.index} back ({restart_s:.1f}s to reopen its bridges)")
            await asyncio.sleep(step)
            if node is not None:
                node.start()
                await self.cluster.wait_ready(60)
                note(f"nats {node.name} back")
            await asyncio.sleep(step)
        finally:
            for w in self.workers:
                await w.ask({"op": "flow_off"})
            stop.set()
            await asyncio.gather(*senders, return_exceptions=True)
        flow_s = time.monotonic() - flow_started
        after = await self._committed()
        self.row.update({
            "flow_s": round(flow_s, 1), "flow_events": after - before,
            "kills": kills, "commands_sent": log.sent,
            "commands_200": log.answered.get(200, 0),
            "commands_other": {str(k): v for k, v in log.answered.items() if k != 200},
            "commands_no_answer": log.failed,
            "command_p50_s": round(log.percentile(0.5), 3),
            "command_p99_s": round(log.percentile(0.99), 3),
            "command_max_s": round(max(log.seconds_200, default=0.0), 2)})
        self._log = log

    async def _send_commands(self, log: CommandLog, targets: list[str], stop: asyncio.Event,
                             k: int) -> None:
        rng = random.Random(k)
        timeout = aiohttp.ClientTimeout(total=self.args.command_timeout + 10)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            while not stop.is_set():  # until the flow is over
                alive = [r for r in self.replicas if r.alive]
                if not alive:
                    log.failed += 1
                    await asyncio.sleep(1.0)
                    continue
                replica = alive[log.sent % len(alive)]
                name = f"bench {k}-{log.sent}"
                log.sent += 1
                asked = time.monotonic()
                try:
                    async with http.post(replica.url + "/access_codes/create", json={
                            "device_id": rng.choice(targets), "name": name},
                            timeout=timeout) as response:
                        log.answered[response.status] = log.answered.get(response.status,
                                                                         0) + 1
                        if response.status == 200:
                            log.names_ok.append(name)
                            log.seconds_200.append(time.monotonic() - asked)
                except (aiohttp.ClientError, TimeoutError):
                    log.failed += 1
                    await asyncio.sleep(0.2)
                await asyncio.sleep(self.args.command_pause)

    # -- 3. the check -------------------------------------------------------------------------

    async def _check(self) -> None:
        """Until every guarantee holds (bounded); then what it found."""
        started = time.monotonic()
        findings: dict[str, Any] = {}

        async def holds() -> bool:
            findings.clear()
            findings.update(await self._compare())
            return bool(findings["ok"])

        try:
            await until(holds, self.args.timeout, "every guarantee after the faults", 1.0)
        except TimeoutError:
            findings["ok"] = False
        findings["settle_s"] = round(time.monotonic() - started, 1)
        findings["redelivered_to_replicas"] = self._redelivered()
        findings["replicas_alive_at_end"] = sum(1 for r in self.replicas if r.alive)
        self.row.update(findings)
        if not findings["ok"] and self.args.keep_logs is not None:
            self._keep_logs(self.args.keep_logs / f"{len(self.ids)}-bridges")

    def _keep_logs(self, where: Path) -> None:
        """The replicas', workers' and NATS nodes' logs of a run whose check failed."""
        where.mkdir(parents=True, exist_ok=True)
        for log in [*(self.root / "replicas").glob("*.log"),
                    *(self.root / "bridges").glob("*.log"), *(self.root / "nats").glob("*.log")]:
            shutil.copy(log, where / log.name)
        print(f"  logs kept in {where}", file=sys.stderr, flush=True)

    def _redelivered(self) -> int:
        """Messages a replica took that had been delivered before (to the killed one), from
        the replicas' logs (bridge/fleet/consumer.py says so at info)."""
        pattern = re.compile(r"fleet: (\d+) of \d+ messages on \S+ were delivered before")
        return sum(int(m.group(1)) for r in self.replicas
                   for m in pattern.finditer(r.log_tail(size=1 << 30)))

    async def _compare(self) -> dict[str, Any]:
        dumps: dict[str, Any] = {}
        for w in self.workers:
            path = self.root / f"dump-{w.index}.json"
            await w.ask({"op": "dump", "path": str(path)})
            dumps.update(json.loads(path.read_text()))
        in_pg: dict[str, list[str]] = {}
        for bridge_id, event_id in await pg_rows(self.dsn,
                                                 "SELECT bridge_id, event_id FROM events"):
            in_pg.setdefault(bridge_id, []).append(event_id)
        missing = extra = dupes = 0
        for bridge_id, dump in dumps.items():
            stored, got = set(dump["events"]), in_pg.get(bridge_id, [])
            missing += len(stored - set(got))
            extra += len(set(got) - stored)
            dupes += len(got) - len(set(got))
        present = await self._present()
        state_differs = [b for b, d in dumps.items() if present.get(b, {}) != d["state"]]
        commands = await pg_rows(
            self.dsn, "SELECT c.command_id, c.bridge_id, c.body->>'name', count(r.command_id),"
            " bool_and(r.ok) FROM commands c LEFT JOIN command_results r USING (command_id) "
            "GROUP BY 1, 2, 3")
        no_result = sum(1 for r in commands if r[3] == 0)
        many = sum(1 for r in commands if r[3] > 1)
        applied_twice = sum(1 for _, b, name, n, ok in commands
                            if n and ok and dumps[b]["names"].get(name, 0) != 1)
        log = getattr(self, "_log", None)
        lost_200 = 0 if log is None else sum(
            1 for name in log.names_ok
            if sum(d["names"].get(name, 0) for d in dumps.values()) != 1)
        ok = not (missing or extra or dupes or state_differs or no_result or many
                  or applied_twice or lost_200)
        return {"ok": ok, "events_committed": sum(len(d["events"]) for d in dumps.values()),
                "events_in_pg": sum(len(v) for v in in_pg.values()),
                "events_missing": missing, "events_unknown": extra,
                "events_duplicated": dupes, "state_differs": len(state_differs),
                "commands_recorded": len(commands), "commands_without_result": no_result,
                "commands_with_two_results": many, "commands_not_once_on_bridge":
                applied_twice + lost_200,
                "outbox_left": sum(int(d["outbox"]) for d in dumps.values())}

    async def _present(self) -> dict[str, dict[str, str]]:
        """Each bridge's present as PostgreSQL holds it, keyed and encoded as the bridge's
        state bucket keys are (bridge/upstream/nats_state.py)."""
        out: dict[str, dict[str, str]] = {}
        for bridge_id, kind, object_id, body in await pg_rows(
                self.dsn, "SELECT bridge_id, 'device', device_id, body FROM devices "
                "WHERE body IS NOT NULL UNION ALL SELECT bridge_id, CASE WHEN managed THEN "
                "'code' ELSE 'unmanaged' END, access_code_id, body FROM access_codes "
                "WHERE body IS NOT NULL"):
            out.setdefault(bridge_id, {})[f"{bridge_id}.{kind}.{object_id}"] = json.dumps(
                body, separators=(",", ":"), sort_keys=True)
        return out

    # -- helpers ------------------------------------------------------------------------------

    async def _committed(self) -> int:
        answers = await asyncio.gather(*(w.ask({"op": "count"}) for w in self.workers))
        return sum(int(a["count"]) for a in answers)

    async def _all_in_postgres(self) -> bool:
        return await pg_count(self.dsn) >= await self._committed()

    async def _devices_present(self) -> bool:
        rows = await pg_rows(self.dsn, "SELECT count(*) FROM devices WHERE body IS NOT NULL")
        locks: int = self.args.locks
        return int(rows[0][0]) >= len(self.ids) * locks

    async def _stop_all(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
        for replica in self.replicas:
            replica.stop()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet")
    parser.add_argument("--bridges", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--locks", type=int, default=30)
    parser.add_argument("--events", type=int, default=50, help="per bridge, in the burst")
    parser.add_argument("--nats-nodes", type=int, default=3, choices=[1, 3])
    parser.add_argument("--replicas", type=int, default=2, help="backend processes")
    parser.add_argument("--workers", type=int, default=4, help="bridge processes")
    parser.add_argument("--kills", action=argparse.BooleanOptionalAction, default=True,
                        help="the fault phase (a NATS node, a replica, a worker)")
    parser.add_argument("--phase-s", type=float, default=6.0,
                        help="seconds of steady flow before each fault and restart")
    parser.add_argument("--flow-rate", type=float, default=100.0,
                        help="events/s the whole fleet commits during the fault phase")
    parser.add_argument("--command-concurrency", type=int, default=4)
    parser.add_argument("--command-pause", type=float, default=0.05)
    parser.add_argument("--command-timeout", type=float, default=60.0)
    parser.add_argument("--ack-wait", type=float, default=10.0,
                        help="the replicas' --ack-wait: how soon a dead one's batch moves")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound of each wait")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep-logs", type=Path, help="where to copy the processes' logs "
                        "of a size whose check failed")
    return parser.parse_args(argv)


async def main(argv: list[str]) -> int:
    args = parse(argv)
    rows = []
    for size in args.bridges:
        with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
            started = time.monotonic()
            row = await Run(Path(tmp), args, size).execute()
            row["wall_s"] = round(time.monotonic() - started, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out is not None:
            args.out.write_text(json.dumps(rows, indent=1))
    return 0 if all(r.get("ok", True) for r in rows) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(sys.argv[1:])))
