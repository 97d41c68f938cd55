"""`upstream.kind: nats` against a real nats-server (websocket listener, per-bridge user):
events arrive once across a bridge restart, a lost outbox ack and a nats-server restart; a
command is applied once and its one result published; the state bucket equals the store; a
bridge cannot publish on another bridge's subjects."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js import JetStreamContext

from bridge.clock import SystemClock
from bridge.config import NatsUpstreamConfig
from bridge.engine import CodeRequest
from bridge.fleet.streams import ensure_streams
from bridge.stateview import StateView
from bridge.store import UPSTREAM_ACKED_SEQ
from bridge.upstream.commands import created_code_id
from bridge.upstream.nats_link import NatsLink
from bridge.upstream.nats_state import render_state
from bridge.upstream.nats_subjects import MSG_ID, FleetNames, close_client
from drivers.simulator import SimLockSpec
from tests.harness import Harness
from tests.nats_cluster import NatsCluster, bridge_password, password_file
from tests.upstream_helpers import bridge_event_ids, eventually, unlock_events

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]
BRIDGE = "b1"
OTHER = "b2"
NAMES = FleetNames()
LOCKS = [SimLockSpec(lock_id="front", name="Front"), SimLockSpec(lock_id="back", name="Back")]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    cluster = NatsCluster.build(tmp_path / "nats", [BRIDGE, OTHER], size=1)
    await cluster.start()
    nc = await cluster.backend()
    await ensure_streams(nc.jetstream(), NAMES, replicas=1)
    await close_client(nc)
    try:
        yield cluster
    finally:
        cluster.stop()


def nats_config(cluster: NatsCluster, tmp_path: Path, bridge: str = BRIDGE,
                **overrides: Any) -> NatsUpstreamConfig:
    values: dict[str, Any] = {
        "kind": "nats", "servers": [n.ws_url for n in cluster.nodes], "user": bridge,
        "password_file": password_file(tmp_path, bridge), "backoff_base_s": 0.05,
        "backoff_cap_s": 0.3, "connect_timeout_s": 3, "publish_timeout_s": 3,
        "heartbeat_s": 0.5, "batch_events": 7}
    values.update(overrides)
    return NatsUpstreamConfig.model_validate(values)


@contextlib.asynccontextmanager
async def running(h: Harness, config: NatsUpstreamConfig,
                  bridge: str = BRIDGE) -> AsyncIterator[NatsLink]:
    link = NatsLink(config, h.store, h.engine, SystemClock(), bridge)
    await link.prepare()
    task = asyncio.create_task(link.run(), name="nats-link")
    try:
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stream_messages(js: JetStreamContext, stream: str,
                          subject: str) -> list[tuple[str, dict[str, Any]]]:
    """Every message of a subject in a stream: (message id, body)."""
    info = await js.stream_info(stream)
    out: list[tuple[str, dict[str, Any]]] = []
    if info.state.last_seq == 0:
        return out
    for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            msg = await js.get_msg(stream, seq)
            if msg.subject == subject:
                headers = msg.headers or {}
                out.append((headers.get(MSG_ID, ""), json.loads(msg.data or b"{}")))
    return out


async def published_event_ids(cluster: NatsCluster) -> list[str]:
    nc = await cluster.backend()
    try:
        got = await stream_messages(nc.jetstream(), NAMES.events_stream, NAMES.events(BRIDGE))
    finally:
        await close_client(nc)
    assert all(mid == body["event_id"] for mid, body in got)
    return [body["event_id"] for _, body in got]


async def test_events_once_across_bridge_and_server_restarts(
        harness_factory, node: NatsCluster, tmp_path: Path) -> None:
    h: Harness = await harness_factory(LOCKS)
    await h.engine.create_code(h.device_id("front"), CodeRequest(name="Staff", code="4821"))
    await h.settle()
    config = nats_config(node, tmp_path)

    async def all_there() -> bool:
        return sorted(await published_event_ids(node)) == sorted(
            await bridge_event_ids(h.engine))

    async with running(h, config) as link:
        assert await link.wait_connected(15)
        await unlock_events(h.engine, h.device_id("back"), 10)
        await eventually(all_there, timeout=20, what="first events published")
    # The bridge "crashed" after JetStream acknowledged but before the outbox did: it
    # publishes everything again, and the stream's duplicate window drops every copy.
    await h.store.write(lambda tx: tx.put_kv(UPSTREAM_ACKED_SEQ, "0"))
    await unlock_events(h.engine, h.device_id("front"), 5)
    node.nodes[0].kill()
    node.nodes[0].start()
    await node.wait_ready()
    async with running(h, config) as link:
        assert await link.wait_connected(20)
        await eventually(all_there, timeout=30, what="events after the restarts")
        await unlock_events(h.engine, h.device_id("back"), 3)
        await eventually(all_there, timeout=20, what="events after reconnecting")
        assert link.outbox.acked_seq == (await h.store.read(lambda r: r.event_bounds()))[1]
        # Everything went out again after the lost outbox ack; JetStream kept one of each.
        assert link.published >= len(await bridge_event_ids(h.engine))
    ids = await published_event_ids(node)
    assert len(ids) == len(set(ids)) == len(await bridge_event_ids(h.engine))


async def test_command_applied_once_with_one_result(harness_factory, node: NatsCluster,
                                                    tmp_path: Path) -> None:
    h: Harness = await harness_factory(LOCKS)
    device = h.device_id("front")
    body = {"type": "command", "command_id": "cmd-1",
            "command": {"action": "access_codes.create", "device_id": device,
                        "name": "Guest", "code": "7391"}}
    nc = await node.backend()
    js = nc.jetstream()
    try:
        async with running(h, nats_config(node, tmp_path)) as link:
            assert await link.wait_connected(15)
            await js.publish(NAMES.commands(BRIDGE), json.dumps(body).encode(),
                             headers={MSG_ID: "cmd-1"})
            results = NAMES.results(BRIDGE)

            async def answered() -> list[dict[str, Any]]:
                return [b for _, b in await stream_messages(js, NAMES.events_stream, results)]

            await eventually(answered, timeout=20, what="the command's result")
            # The same command again (an operator's retry, a redelivery past the window):
            # answered from the stored result, applied no second time.
            await js.publish(NAMES.commands(BRIDGE), json.dumps(body).encode(),
                             headers={MSG_ID: "cmd-1-again"})
            await eventually(lambda: link.results_published >= 2, timeout=20,
                             what="the repeat answered")
            await h.settle()
            got = await answered()
            assert link.commands.executed == 1
    finally:
        await close_client(nc)
    # JetStream dropped the repeat's result by its message id: one result in the stream.
    assert len(got) == 1 and got[0]["ok"] is True
    code_id = created_code_id(BRIDGE, "cmd-1")
    assert got[0]["result"]["access_code"]["access_code_id"] == code_id
    assert [c.access_code_id for c in h.engine.codes.values() if c.name == "Guest"] == [code_id]
    assert "7391" in [c.pin for c in h.driver.lock("front").slots.values()]


async def test_state_bucket_equals_the_store(harness_factory, node: NatsCluster,
                                            tmp_path: Path) -> None:
    h: Harness = await harness_factory(LOCKS)
    first = await h.engine.create_code(h.device_id("front"), CodeRequest(name="A", code="1234"))
    await h.engine.create_code(h.device_id("back"), CodeRequest(name="B", code="5678"))
    await h.settle()
    nc = await node.backend()
    kv = await nc.jetstream().key_value(NAMES.state_bucket)

    async def bucket() -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        with contextlib.suppress(nats.js.errors.NoKeysError):
            for key in await kv.keys():
                try:
                    entry = await kv.get(key)
                except nats.js.errors.KeyNotFoundError:
                    continue  # deleted between the listing and the read: not in the bucket
                if entry.value:
                    out[key] = entry.value
        return out

    def expected() -> dict[str, bytes]:
        return render_state(StateView(h.engine), NAMES, BRIDGE)

    try:
        async with running(h, nats_config(node, tmp_path)) as link:
            assert await link.wait_connected(15)
            await eventually(lambda: _same(bucket(), expected()), timeout=20, what="bucket")
            await h.engine.delete_code(first.access_code_id)
            await h.settle()
            await h.clock.advance(3600)
            await h.settle()
            await eventually(lambda: _same(bucket(), expected()), timeout=20,
                             what="bucket after a delete")
        assert len([k for k in await bucket() if ".device." in k]) == 2
    finally:
        await close_client(nc)


async def _same(got: Any, want: dict[str, bytes]) -> bool:
    return dict(await got) == want


async def test_bridge_cannot_publish_on_another_bridges_subjects(
        node: NatsCluster, tmp_path: Path) -> None:
    errors: list[Exception] = []

    async def on_error(error: Exception) -> None:
        errors.append(error)

    nc = await nats.connect(servers=[node.nodes[0].ws_url], user=BRIDGE,
                            password=bridge_password(BRIDGE), error_cb=on_error,
                            inbox_prefix=NAMES.inbox_prefix(BRIDGE), allow_reconnect=False)
    js = nc.jetstream(timeout=1.5)
    try:
        await js.publish(NAMES.events(BRIDGE), b'{"event_id": "mine"}',
                         headers={MSG_ID: "mine"})
        for subject in (NAMES.events(OTHER), NAMES.results(OTHER),
                        NAMES.state_subject(f"{OTHER}.device.x")):
            with pytest.raises(nats.errors.TimeoutError):
                await js.publish(subject, b'{"event_id": "forged"}')
        # Reading another bridge's commands is refused too (reported asynchronously).
        await nc.subscribe(NAMES.commands(OTHER))
        await eventually(lambda: any("subscription" in str(e).lower() for e in errors),
                         timeout=10, what="the subscription refused")
    finally:
        with contextlib.suppress(Exception):
            await close_client(nc)
    assert any("permissions violation" in str(e).lower() for e in errors)
    backend = await node.backend()
    try:
        forged = await stream_messages(backend.jetstream(), NAMES.events_stream,
                                       NAMES.events(OTHER))
    finally:
        await close_client(backend)
    assert forged == []


def test_config_takes_nats_and_keeps_plain_text_on_loopback(tmp_path: Path) -> None:
    from bridge.config import load_config

    base = ("bridge: {{id: b1}}\nstate_dir: {state}\nupstream:\n  kind: nats\n"
            "  servers: [{url}]\n  user: b1\n  password_file: pw\n")
    good = tmp_path / "good.yaml"
    good.write_text(base.format(state=tmp_path, url="ws://127.0.0.1:4223"))
    loaded = load_config(good)
    assert isinstance(loaded.config.upstream, NatsUpstreamConfig)
    assert loaded.config.upstream.password_file == tmp_path / "pw"
    bad = tmp_path / "bad.yaml"
    bad.write_text(base.format(state=tmp_path, url="nats://nats.example.com:4222"))
    with pytest.raises(Exception, match="only to loopback"):
        load_config(bad)
    plain = tmp_path / "ws.yaml"
    plain.write_text("bridge: {id: b1}\nupstream: {url: 'ws://127.0.0.1:1/ws', "
                     "token_file: t}\n")
    assert load_config(plain).config.upstream.kind == "websocket"  # type: ignore[union-attr]
