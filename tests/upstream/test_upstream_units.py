"""Pure parts of the upstream link: message parsing, resume planning, the outbox bound, config."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config
from bridge.model import Event, EventType
from bridge.secrets import PinCipher
from bridge.store import Store
from bridge.upstream.link import start_upstream
from bridge.upstream.outbox import OutboxState, plan_resume
from bridge.upstream.protocol import (
    Events,
    Hello,
    ProtocolProblem,
    parse_bridge,
    parse_upstream,
)


@pytest.mark.parametrize(("frame", "kind", "field"), [
    ("{", "invalid_json", None),
    ('"ack"', "invalid_json", None),
    ('{"seq": 1}', "unknown_message_type", "type"),
    ('{"type": "ack", "seq": "x"}', "invalid_message", "seq"),
    ('{"type": "ack", "seq": 1, "extra": true}', "invalid_message", "extra"),
    ('{"type": "welcome", "protocol_version": 1, "acked_seq": 0}', "invalid_message",
     "snapshot_wanted"),
    ('{"type": "command", "command_id": "", "command": {}}', "invalid_message", "command_id"),
    ('{"type": "ack", "seq": 1, "pad": "' + "x" * 2000 + '"}', "message_too_large", None),
])
def test_bad_upstream_frames(frame: str, kind: str, field: str | None) -> None:
    with pytest.raises(ProtocolProblem) as caught:
        parse_upstream(frame, 1024)
    assert (caught.value.kind, caught.value.field) == (kind, field)


def test_the_upstream_side_validates_event_order() -> None:
    batch = ('{"type": "events", "events": [{"event_id": "a", "event_type": "lock.unlocked", '
             '"sequence_number": 2}, {"event_id": "b", "event_type": "lock.unlocked", '
             '"sequence_number": 1}]}')
    with pytest.raises(ProtocolProblem, match="increasing"):
        parse_bridge(batch, 10_000)
    ok = parse_bridge(batch.replace('"sequence_number": 1}', '"sequence_number": 3}'), 10_000)
    assert isinstance(ok, Events) and ok.events[1].model_extra == {}
    hello = Hello(protocol_version=1, bridge_id="b", software_version="1", last_command_id=None,
                  last_seq=0, first_seq=1)
    assert parse_bridge(hello.model_dump_json(), 10_000) == hello


@pytest.mark.parametrize(("state", "acked", "wanted", "after", "snapshot"), [
    (OutboxState(1, 0, 0, None), 0, False, 0, True),          # nothing anywhere yet
    (OutboxState(1, 50, 20, None), 20, False, 20, False),     # plain resume
    (OutboxState(1, 50, 20, None), 30, False, 30, False),     # upstream stored more than acked
    (OutboxState(1, 50, 20, None), 20, True, 20, True),       # upstream asked
    (OutboxState(1, 50, 20, None), 10, False, 10, True),      # upstream lost acknowledged ones
    (OutboxState(30, 50, 40, None), 10, False, 29, True),     # ... and we trimmed them
    (OutboxState(1, 50, 20, None), 90, False, 0, True),       # our store was restored
    (OutboxState(51, 50, 50, None), 50, False, 50, False),    # all trimmed, all acked
])
def test_plan_resume(state: OutboxState, acked: int, wanted: bool, after: int,
                     snapshot: bool) -> None:
    plan = plan_resume(state, acked, wanted)
    assert (plan.after_seq, plan.snapshot) == (after, snapshot), plan.reason


async def test_acks_trim_only_acknowledged_events(tmp_path: Path) -> None:
    async with Store(tmp_path / "db", PinCipher(os.urandom(32))) as store:
        def add(tx, n: int) -> None:  # type: ignore[no-untyped-def]
            for _ in range(n):
                tx.add_event(Event(str(uuid.uuid4()), EventType.LOCK_UNLOCKED,
                                   datetime.now(UTC), data={"backup_code": "9911"}))

        await store.write(lambda tx: add(tx, 10))
        assert await store.read(lambda r: r.event_bounds()) == (1, 10)
        trimmed, _ = await store.write(lambda tx: tx.ack_upstream(8, 3))
        assert trimmed == 7  # 1..7: acked and older than the newest three
        assert await store.read(lambda r: r.event_bounds()) == (8, 10)
        trimmed, _ = await store.write(lambda tx: tx.ack_upstream(5, 0))
        assert trimmed == 1  # the watermark never goes back: 8 is acked, 9 and 10 are kept
        assert await store.read(lambda r: r.event_bounds()) == (9, 10)
        await store.write(lambda tx: tx.ack_upstream(10, 0))
        assert await store.read(lambda r: r.event_bounds()) == (11, 10)
        await store.write(lambda tx: add(tx, 1))
        assert await store.read(lambda r: r.event_bounds()) == (11, 11), "seq never reused"
        await store.write(lambda tx: tx.put_command_result("c1", '{"code": "9911"}', keep=1))
        await store.write(lambda tx: tx.put_command_result("c2", "{}", keep=1))
        assert await store.read(lambda r: r.command_result("c1")) is None
        assert await store.read(lambda r: (r.command_result("c2"), r.kv(
            "upstream.last_command_id"))) == ("{}", "c2")
    assert b"9911" not in (tmp_path / "db").read_bytes(), "PINs are sealed at rest"


def test_config_keeps_the_token_out_of_the_file(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_TOKEN", "s3cret-value")
    path = tmp_path / "c.yaml"
    good = load_config(path, "upstream: {url: 'wss://cloud.example/b', token: '${UPSTREAM_TOKEN}'}")
    assert good.config.upstream is not None
    assert "s3cret-value" not in repr(good.config.upstream)
    for text, reason in [
        ("upstream: {url: 'wss://cloud.example/b', token: inline}", "secrets may not"),
        ("upstream: {url: 'ws://cloud.example/b', token_file: /t}", "only to loopback"),
        ("upstream: {url: 'wss://cloud.example/b'}", "exactly one of"),
        ("upstream: {url: 'https://cloud.example/b', token_file: /t}", "should match"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_config(path, text)
        assert reason in str(caught.value), str(caught.value)
    assert load_config(path, "upstream: {url: 'ws://[::1]:9/b', token_file: /t}")


async def test_no_upstream_configured_starts_nothing() -> None:
    class Loaded:
        class config:
            upstream = None

    class FakeBridge:
        loaded = Loaded()

    async with asyncio.TaskGroup() as group:
        assert await start_upstream(FakeBridge(), group) == []  # type: ignore[arg-type]


async def test_the_benchmarks_run_at_a_tiny_size() -> None:
    from bench.upstream_bench import upstream_command_rtt, upstream_replay

    replay = await upstream_replay(300)
    assert replay["events"] == 300 and replay["bare_ws_s"] > 0
    rtt = await upstream_command_rtt(3)
    assert rtt["rtt_p50_ms"] > 0 and rtt["bare_ws_rtt_p50_ms"] > 0
