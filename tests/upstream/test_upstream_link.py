"""The upstream link through real sockets on loopback against the reference upstream."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from bridge.clock import FakeClock
from bridge.engine import CodeRequest
from bridge.reconnect import LinkState
from drivers.simulator import SimLockSpec
from tests.harness import Harness
from tests.upstream_helpers import (
    BRIDGE_ID,
    SwallowingProxy,
    bridge_event_ids,
    eventually,
    start_link,
    start_server,
    unlock_events,
    upstream_config,
)

pytestmark = pytest.mark.timeout(60)
LOCKS = [SimLockSpec(lock_id="front", name="Front"), SimLockSpec(lock_id="back", name="Back")]


async def _delivered(server, harness: Harness) -> bool:  # type: ignore[no-untyped-def]
    got = [e["event_id"] for e in await server.events(BRIDGE_ID)]
    newest = await harness.engine.store.read(lambda r: r.event_bounds()[1])
    return got == await bridge_event_ids(harness.engine) and \
        await server.acked_seq(BRIDGE_ID) == newest


async def test_snapshot_then_events_in_order(harness_factory, tmp_path: Path) -> None:
    h: Harness = await harness_factory(LOCKS)
    await h.engine.create_code(h.device_id("front"), CodeRequest(name="Staff", code="4821"))
    await h.settle()
    server = await start_server(tmp_path)
    running = await start_link(h.engine, upstream_config(server.port, tmp_path))
    try:
        await server.wait_connected(BRIDGE_ID)
        await eventually(lambda: _delivered(server, h), what="backlog delivered")
        snapshots = await server.snapshots(BRIDGE_ID)
        assert len(snapshots) == 1
        snap = snapshots[0]
        assert {d["display_name"] for d in snap["devices"]} == {"Front", "Back"}
        assert [c["code"] for c in snap["access_codes"]] == ["4821"]
        assert snap["upto_seq"] == len(await bridge_event_ids(h.engine))
        await unlock_events(h.engine, h.device_id("back"), 5)
        await h.engine.create_code(h.device_id("back"), CodeRequest(name="Guest"))
        await h.settle()
        await eventually(lambda: _delivered(server, h), what="new events delivered")
        seqs = [e["sequence_number"] for e in await server.events(BRIDGE_ID)]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
        assert server.gaps == [] and server.duplicates == 0
        assert running.link.sessions == 1 and len(await server.snapshots(BRIDGE_ID)) == 1
    finally:
        await running.stop()
        await server.stop()


async def test_drop_mid_stream_loses_and_reorders_nothing(harness_factory,
                                                         tmp_path: Path) -> None:
    h: Harness = await harness_factory(LOCKS)
    await unlock_events(h.engine, h.device_id("front"), 150)
    await unlock_events(h.engine, h.device_id("back"), 150)
    server = await start_server(tmp_path)
    server.drop_after_events = 100
    running = await start_link(h.engine, upstream_config(server.port, tmp_path,
                                                         batch_events=20))
    try:
        await eventually(lambda: running.link.sessions >= 2, what="reconnect after the drop")
        await unlock_events(h.engine, h.device_id("back"), 30)
        await eventually(lambda: _delivered(server, h), what="everything delivered")
        events = await server.events(BRIDGE_ID)
        for device in ("front", "back"):
            mine = [e["sequence_number"] for e in events
                    if e.get("device_id") == h.device_id(device)]
            assert mine == sorted(mine)
        assert server.gaps == []
        assert server.duplicates > 0, "the unacknowledged tail was resent"
    finally:
        await running.stop()
        await server.stop()


async def test_upstream_restart_resumes_from_its_stored_ack(harness_factory,
                                                           tmp_path: Path) -> None:
    h: Harness = await harness_factory(LOCKS)
    server = await start_server(tmp_path)
    port = server.port
    running = await start_link(h.engine, upstream_config(port, tmp_path, batch_events=10))
    try:
        await server.wait_connected(BRIDGE_ID)
        await unlock_events(h.engine, h.device_id("front"), 40)
        await eventually(lambda: _delivered(server, h), what="first part delivered")
        server.acks = False
        await unlock_events(h.engine, h.device_id("front"), 40)
        await eventually(lambda: len(server.results_received) == 0 and all(
            c.events_received >= 40 for c in server.connections.values()))
        await asyncio.sleep(0.2)
        await server.stop()
        await unlock_events(h.engine, h.device_id("back"), 40)  # while the upstream is down
        server = await start_server(tmp_path, port)
        await eventually(lambda: _delivered(server, h), what="everything after the restart")
        assert server.gaps == []
        assert len(await server.snapshots(BRIDGE_ID)) == 1, "no snapshot needed on resume"
        assert running.link.sessions == 2
    finally:
        await running.stop()
        await server.stop()


async def test_half_open_connection_is_detected(harness_factory, tmp_path: Path) -> None:
    h: Harness = await harness_factory(LOCKS)
    server = await start_server(tmp_path)
    proxy = SwallowingProxy(server.port)
    await proxy.start()
    running = await start_link(h.engine, upstream_config(proxy.port, tmp_path,
                                                         half_open_timeout_s=1.0))
    try:
        await server.wait_connected(BRIDGE_ID)
        await eventually(lambda: running.link.connected)
        proxy.swallow = True
        loop = asyncio.get_running_loop()
        started = loop.time()
        await eventually(lambda: not running.link.connected, timeout=5,
                         what="half-open detection")
        detected_after = loop.time() - started
        assert detected_after <= 1.5, detected_after
        proxy.swallow = False
        await unlock_events(h.engine, h.device_id("front"), 3)
        await eventually(lambda: _delivered(server, h), what="delivery after the outage")
        assert running.link.sessions >= 2
    finally:
        await running.stop()
        await proxy.stop()
        await server.stop()


async def test_bad_token_is_logged_once_and_not_retried_in_a_storm(
        harness_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    h: Harness = await harness_factory(LOCKS)
    server = await start_server(tmp_path)
    (tmp_path / "upstream.token").write_text("wrong-token\n")
    clock = FakeClock()
    running = await start_link(h.engine, upstream_config(server.port, tmp_path,
                                                         refused_retry_s=600), clock=clock)
    try:
        await eventually(lambda: running.link.state is LinkState.REFUSED)
        await asyncio.sleep(0.5)  # real time: a storm would show up as many attempts here
        assert server.rejected_tokens == 1
        await clock.advance(599)
        await asyncio.sleep(0.1)
        assert server.rejected_tokens == 1
        await clock.advance(2)
        await eventually(lambda: server.rejected_tokens == 2)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR
                  and "upstream link" in r.getMessage()]
        assert len(errors) == 1 and "refused" in errors[0].getMessage()
        assert "wrong-token" not in caplog.text
        (tmp_path / "upstream.token").write_text("test-token-0123456789\n")
        running.link.supervisor.kick()  # an operator fixed the token and asked for a retry
        await server.wait_connected(BRIDGE_ID)
    finally:
        await running.stop()
        await server.stop()


async def test_outbox_bound_keeps_every_event_and_refuses_commands(
        harness_factory, tmp_path: Path) -> None:
    h: Harness = await harness_factory(LOCKS)
    server = await start_server(tmp_path)
    server.acks = False
    running = await start_link(h.engine, upstream_config(server.port, tmp_path,
                                                         max_unacked_events=10,
                                                         keep_acked_events=0))
    try:
        await server.wait_connected(BRIDGE_ID)
        await unlock_events(h.engine, h.device_id("front"), 15)
        assert running.link.outbox.full
        result = await server.send_command(BRIDGE_ID, {
            "action": "access_codes.create", "device_id": h.device_id("front")})
        assert result["ok"] is False and result["error"]["type"] == "outbox_full"
        assert len(await bridge_event_ids(h.engine)) == 15, "nothing unacknowledged trimmed"
        server.acks = True
        await server.drop(BRIDGE_ID)
        await eventually(lambda: not running.link.outbox.full, what="backlog acknowledged")
        assert len(await server.events(BRIDGE_ID)) == 15
        await eventually(lambda: running.link.outbox.acked_seq == 15)
        assert await bridge_event_ids(h.engine) == [], "acknowledged events trimmed to keep=0"
        snapshot = await server.send_command(BRIDGE_ID, {"action": "snapshot"})
        assert snapshot["ok"] is True
    finally:
        await running.stop()
        await server.stop()


async def test_bad_frames_get_errors_and_change_nothing(harness_factory,
                                                        tmp_path: Path) -> None:
    h: Harness = await harness_factory(LOCKS)
    server = await start_server(tmp_path)
    running = await start_link(h.engine, upstream_config(server.port, tmp_path,
                                                         max_message_bytes=2048))
    try:
        await server.wait_connected(BRIDGE_ID)
        await eventually(lambda: _delivered(server, h))
        before = await bridge_event_ids(h.engine)
        frames = ["not json", "[1, 2]", json.dumps({"type": "launch"}),
                  json.dumps({"type": "ack"}), json.dumps({"type": "ack", "seq": 10**6}),
                  json.dumps({"type": "command", "command_id": "x" * 200, "command": {}}),
                  json.dumps({"type": "command", "command_id": "big",
                              "command": {"action": "snapshot", "pad": "x" * 5000}}),
                  json.dumps({"type": "welcome", "protocol_version": 1, "acked_seq": 0,
                              "snapshot_wanted": True})]
        for frame in frames:
            await server.send_raw(BRIDGE_ID, frame)
        await eventually(lambda: len(server.bridge_errors) == len(frames))
        kinds = [e["error"]["type"] for e in server.bridge_errors]
        assert kinds == ["invalid_json", "invalid_json", "unknown_message_type",
                         "invalid_message", "invalid_message", "invalid_message",
                         "message_too_large", "invalid_message"]
        assert [e["error"]["field"] for e in server.bridge_errors][3:6] == \
            ["seq", "seq", "command_id"]
        assert await bridge_event_ids(h.engine) == before
        assert running.link.sessions == 1 and server.hellos == 1
    finally:
        await running.stop()
        await server.stop()
