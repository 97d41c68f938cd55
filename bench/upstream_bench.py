"""Upstream link benchmarks: replaying a backlog after an outage, and command round trips.

Each measurement runs next to a bare aiohttp websocket loop doing the same traffic shape in the
same process and run, so the numbers say what the protocol costs over the transport itself:

- replay: the bridge's outbox holds `events` events when the link comes up; measured from the
  link's start until the bridge has the upstream's ack of the last one. The baseline does only
  the unavoidable work in a plain loop: it reads the same rows from the outbox table, sends them
  as JSON in batches of the same size with the same window, and persists each ack durably. Both
  talk to the same minimal server, which parses each frame and acks it. The same replay into
  the reference upstream (which validates and stores every event) is reported beside it.
- command round trip: `access_codes.update` (a name change: one store transaction on each side)
  through the reference upstream's `send_command`, against a bare request/reply frame.

    .venv/bin/python -m bench.upstream_bench [--events N] [--commands N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import make_engine
from bridge.clock import SystemClock
from bridge.config import UpstreamConfig
from bridge.engine import CodeRequest
from bridge.model import Event, EventType
from bridge.store import Tx
from bridge.upstream.devserver import DevUpstream
from bridge.upstream.link import UpstreamLink

BRIDGE_ID = "bench"
TOKEN = "bench-token"
BATCH = 500


async def upstream_replay(events: int) -> dict[str, float]:
    """Replay of `events` queued events: the link against the bare loop, both to the same
    minimal acking server; and end to end into the reference upstream, which stores each one."""
    with tempfile.TemporaryDirectory(prefix="lockbridge-upstream-bench-") as folder:
        root = Path(folder)
        engine, store, driver = await make_engine(root, 10)
        try:
            await _queue_events(store.write, engine.devices, events)
            async with _bare_server(_acking_upstream) as url:
                replay_s = await _replay(root, store, engine, url, events)
            baseline_s = await _bare_replay(root / "lockbridge.db", url_factory=_bare_server,
                                            events=events)
            # End to end, as a real upstream would see it (reported, not the ratio's basis).
            await _reset_acks(store)
            server = DevUpstream(root / "upstream.db", TOKEN)
            port = await server.start()
            try:
                stored_s = await _replay(root, store, engine, f"ws://127.0.0.1:{port}/ws",
                                         events, server=server)
            finally:
                await server.stop()
        finally:
            await driver.stop()
            await store.close()
    return {"events": float(events), "replay_s": replay_s,
            "replay_events_per_s": events / replay_s,
            "bare_ws_s": baseline_s, "bare_ws_events_per_s": events / baseline_s,
            "ratio_to_bare_ws": replay_s / baseline_s,
            "reference_upstream_events_per_s": events / stored_s}


async def _replay(root: Path, store: Any, engine: Any, url: str, events: int,
                  server: DevUpstream | None = None) -> float:
    """Seconds from the link's start until the last event is acknowledged (and, with the
    reference server, stored)."""
    link = UpstreamLink(_config(root, url), store, engine, SystemClock(), BRIDGE_ID)
    await link.prepare()
    started = time.perf_counter()
    task = asyncio.create_task(link.run(), name="upstream")
    try:
        while link.outbox.acked_seq < events or (
                server is not None and await server.acked_seq(BRIDGE_ID) < events):
            await asyncio.sleep(0.005)
        return time.perf_counter() - started
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _reset_acks(store: Any) -> None:
    from bridge.store import UPSTREAM_ACKED_SEQ

    await store.write(lambda tx: tx.put_kv(UPSTREAM_ACKED_SEQ, "0"))


async def upstream_command_rtt(commands: int) -> dict[str, float]:
    """Command round-trip latency (ms) through the link, with the bare-loop baseline."""
    with tempfile.TemporaryDirectory(prefix="lockbridge-upstream-bench-") as folder:
        root = Path(folder)
        engine, store, driver = await make_engine(root, 1)
        server = DevUpstream(root / "upstream.db", TOKEN)
        port = await server.start()
        link = UpstreamLink(_config(root, f"ws://127.0.0.1:{port}/ws"), store, engine,
                            SystemClock(), BRIDGE_ID)
        await link.prepare()
        task = asyncio.create_task(link.run(), name="upstream")
        try:
            await server.wait_connected(BRIDGE_ID)
            device_id = next(iter(engine.devices))
            code = await engine.create_code(device_id, CodeRequest(name="Bench"))
            samples = []
            for n in range(commands):
                t0 = time.perf_counter()
                result = await server.send_command(BRIDGE_ID, {
                    "action": "access_codes.update", "access_code_id": code.access_code_id,
                    "name": f"Bench {n}"})
                samples.append(time.perf_counter() - t0)
                if not result["ok"]:
                    raise RuntimeError(f"command failed: {result['error']}")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await server.stop()
            await driver.stop()
            await store.close()
    baseline = await _bare_round_trips(commands)
    out = {"commands": float(commands)}
    out.update(_percentiles("rtt", samples))
    out.update(_percentiles("bare_ws_rtt", baseline))
    out["ratio_p50_to_bare_ws"] = out["rtt_p50_ms"] / out["bare_ws_rtt_p50_ms"]
    return out


# -- the bare aiohttp loops ------------------------------------------------------------------


async def _acking_upstream(request: web.Request) -> web.StreamResponse:
    """The least an upstream can do: welcome the bridge, parse each frame, ack its last event."""
    ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024)
    await ws.prepare(request)
    async for msg in ws:
        body = json.loads(msg.data)
        if body.get("type") == "hello":
            await ws.send_str(json.dumps({"type": "welcome", "protocol_version": 1,
                                          "acked_seq": 0, "snapshot_wanted": False}))
        elif body.get("type") == "events":
            await ws.send_str(json.dumps({"type": "ack",
                                          "seq": body["events"][-1]["sequence_number"]}))
    return ws


async def _bare_replay(db_path: Path, url_factory: Any, events: int) -> float:
    """The unavoidable work of a replay in a plain loop: read the rows from the outbox table,
    send them as JSON in batches (up to 10 in flight), persist each ack durably."""
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS bench_acked (seq INTEGER)")
    try:
        async with url_factory(_acking_upstream) as url, aiohttp.ClientSession() as http, \
                http.ws_connect(url) as ws:
            started = time.perf_counter()
            await ws.send_str(json.dumps({"type": "hello"}))
            await ws.receive()
            sent_seq = acked = in_flight = 0
            while acked < events:
                while in_flight < 10 and sent_seq < events:
                    rows = db.execute(
                        "SELECT seq, event_id, event_type, occurred_at, device_id, data "
                        "FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                        (sent_seq, BATCH)).fetchall()
                    batch = [{"sequence_number": seq, "event_id": event_id,
                              "event_type": kind, "occurred_at": at, "device_id": device,
                              **json.loads(data)}
                             for seq, event_id, kind, at, device, data in rows]
                    await ws.send_str(json.dumps({"type": "events", "events": batch}))
                    sent_seq = batch[-1]["sequence_number"]
                    in_flight += 1
                acked = json.loads((await ws.receive()).data)["seq"]
                db.execute("INSERT INTO bench_acked VALUES (?)", (acked,))
                in_flight -= 1
            return time.perf_counter() - started
    finally:
        db.close()


async def _bare_round_trips(count: int) -> list[float]:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            body = json.loads(msg.data)
            await ws.send_str(json.dumps({"type": "command_result",
                                          "command_id": body["command_id"], "ok": True}))
        return ws

    samples = []
    async with _bare_server(handler) as url, aiohttp.ClientSession() as http, \
            http.ws_connect(url) as ws:
        for n in range(count):
            t0 = time.perf_counter()
            await ws.send_str(json.dumps({"type": "command", "command_id": str(n), "command": {
                "action": "access_codes.update", "access_code_id": "x", "name": f"B {n}"}}))
            json.loads((await ws.receive()).data)
            samples.append(time.perf_counter() - t0)
    return samples


@contextlib.asynccontextmanager
async def _bare_server(handler: Any) -> Any:
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        await runner.cleanup()


# -- helpers -----------------------------------------------------------------------------------


def _config(root: Path, url: str) -> UpstreamConfig:
    token = root / "token"
    token.write_text(TOKEN)
    return UpstreamConfig(url=url, token_file=token,
                          batch_events=BATCH, window_events=BATCH * 10,
                          max_unacked_events=10_000_000, keep_acked_events=10_000_000)


async def _queue_events(write: Any, devices: dict[str, Any], count: int) -> None:
    """Fill the outbox as an outage would: keypad unlocks spread over the locks."""
    device_ids = list(devices)
    now = datetime.now(UTC)

    def add(tx: Tx, start: int, n: int) -> None:
        for i in range(start, start + n):
            tx.add_event(Event(str(uuid.uuid4()), EventType.LOCK_UNLOCKED, now,
                               device_ids[i % len(device_ids)], None,
                               {"method": "keycode", "slot": 1 + i % 30}))

    for start in range(0, count, 5000):
        await write(lambda tx, s=start: add(tx, s, min(5000, count - s)))


def _percentiles(name: str, samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {f"{name}_p50_ms": statistics.median(ordered) * 1000,
            f"{name}_p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
            f"{name}_mean_ms": statistics.fmean(ordered) * 1000}


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--commands", type=int, default=200)
    args = parser.parse_args(argv)
    results = {"upstream_replay": asyncio.run(upstream_replay(args.events)),
               "upstream_command_rtt": asyncio.run(upstream_command_rtt(args.commands))}
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
