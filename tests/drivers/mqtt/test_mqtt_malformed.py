"""Malformed and unexpected payloads are logged once and ignored; the bridge keeps working."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bridge.clock import FakeClock
from bridge.engine import CodeRequest
from bridge.model import AccessCodeStatus
from tests.conftest import START
from tests.fakes.zigbee2mqtt import FakeZigbeeLock
from tests.fakes.zwavejs_ui import FakeNode
from tests.harness import start_engine
from tests.mqtt_env import make_z2m, make_zui, running_z2m, running_zui, unique

if TYPE_CHECKING:
    from tests.mosquitto import Mosquitto

pytest_plugins = ["tests.mosquitto"]

GARBAGE: list[bytes | str] = [b"\xff\xfe not utf-8", "{not json", "[1, 2, 3]", "42", '"text"',
                             "null", '{"users": "everyone"}', '{"users": {"1": 5}}']


async def test_garbage_is_logged_once_per_kind_and_ignored(
        mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base, prefix = unique("z2m-bad"), unique("zw-bad")
    async with running_z2m(mosquitto, base, [FakeZigbeeLock("front", "0x0001")]) as z2m, \
            running_zui(mosquitto, prefix, "home", [FakeNode(5)]) as zui:
        clock = FakeClock(START)
        h = await start_engine(tmp_path, {
            "z2m": make_z2m(mosquitto, clock, tmp_path, base),
            "zwave": make_zui(mosquitto, clock, tmp_path, prefix, "home",
                              [{"node_id": 5, "id": "node5"}])}, clock=clock)
        try:
            await h.until(lambda: h.engine.settled(), what="first reads")
            caplog.clear()
            topics = [
                f"{base}/front", f"{base}/front/availability", f"{base}/bridge/devices",
                f"{base}/bridge/info", f"{base}/bridge/state", f"{base}/bridge/logging",
                f"{prefix}/_CLIENTS/ZWAVE_GATEWAY-home/api/sendCommand",
                f"{prefix}/_CLIENTS/ZWAVE_GATEWAY-home/status", f"{prefix}/nodeID_5/status",
                f"{prefix}/nodeID_5/99/0/userCode/3", f"{prefix}/nodeID_5/113/0/Access_Control/"
                "Keypad_unlock_operation",
            ]
            for _ in range(3):
                for topic in topics:
                    for payload in GARBAGE:
                        await (z2m if topic.startswith(base) else zui).publish_raw(topic, payload)
            # Unexpected but well-formed: unknown devices, actions, APIs, foreign answers.
            await z2m.publish_raw(f"{base}/stranger", '{"action": "unlock", "action_user": 1}')
            await z2m.publish_raw(f"{base}/front", '{"action": "dance", "action_user": 3}')
            await zui.publish_raw(f"{prefix}/_CLIENTS/ZWAVE_GATEWAY-home/api/writeValue",
                                  '{"success": true, "result": true, '
                                  '"origin": {"lockbridge_request": "not-ours"}}')
            # Still working, for both drivers.
            a = await h.engine.create_code(h.device_id("front", driver="z2m"),
                                           CodeRequest(name="a", code="1234"))
            b = await h.engine.create_code(h.device_id("node5", driver="zwave"),
                                           CodeRequest(name="b", code="5678"))
            await h.until(lambda: all(h.code(c.access_code_id).status is AccessCodeStatus.SET
                                      for c in (a, b)), what="codes set after the garbage")
            assert z2m.lock("front").table == {0: "1234"} and zui.node(5).codes == {1: "5678"}
        finally:
            await h.stop()
    ignored = [r.getMessage() for r in caplog.records
               if r.levelno >= logging.WARNING and "ignored" in r.getMessage()]
    per_topic = Counter(next(t for t in topics if f"on {t} (" in m) for m in ignored)
    # Each kind of bad message is reported once (later repeats go to debug), none forgotten.
    assert ignored and all(n == 1 for n in per_topic.values()), per_topic
    assert set(per_topic) == set(topics)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
