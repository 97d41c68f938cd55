"""Upstream commands: one result per command id, stored; validation errors name the field."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.upstream.commands import created_code_id
from drivers.simulator import SimLockSpec
from tests.harness import Harness
from tests.upstream_helpers import (
    BRIDGE_ID,
    eventually,
    start_link,
    start_server,
    upstream_config,
)

pytestmark = pytest.mark.timeout(60)
LOCKS = [SimLockSpec(lock_id="front", name="Front")]


@pytest.fixture
async def env(harness_factory, tmp_path: Path):  # type: ignore[no-untyped-def]
    h: Harness = await harness_factory(LOCKS)
    server = await start_server(tmp_path)
    running = await start_link(h.engine, upstream_config(server.port, tmp_path))
    await server.wait_connected(BRIDGE_ID)
    yield h, server, running
    await running.stop()
    await server.stop()


async def test_a_repeated_command_id_returns_the_first_result_and_changes_nothing(env) -> None:  # type: ignore[no-untyped-def]
    h, server, running = env
    command = {"action": "access_codes.create", "device_id": h.device_id("front"),
               "name": "Guest", "code": "5307"}
    first = await server.send_command(BRIDGE_ID, command, "cmd-1")
    assert first["ok"] is True
    code = first["result"]["access_code"]
    assert code["access_code_id"] == created_code_id(BRIDGE_ID, "cmd-1")
    assert code["code"] == "5307" and code["name"] == "Guest"
    await h.settle()
    codes_before = dict(h.engine.codes)
    events_before = await h.engine.store.read(lambda r: r.event_bounds())
    again = await server.send_command(BRIDGE_ID, command, "cmd-1", resend=True)
    assert again == first
    # Two copies at once: the second waits for the first and both get the same answer.
    server.results_received.clear()
    frame = json.dumps({"type": "command", "command_id": "cmd-2", "command": command | {
        "code": "6418"}})
    await server.send_raw(BRIDGE_ID, frame)
    await server.send_raw(BRIDGE_ID, frame)
    await eventually(lambda: len(server.results_received) == 2)
    assert server.results_received[0] == server.results_received[1]
    assert running.link.commands.executed == 2
    assert set(h.engine.codes) == set(codes_before) | {created_code_id(BRIDGE_ID, "cmd-2")}
    assert (await h.engine.store.read(lambda r: r.event_bounds()))[1] > events_before[1]


async def test_validation_errors_name_the_field_and_keep_the_connection(env) -> None:  # type: ignore[no-untyped-def]
    h, server, running = env
    device = h.device_id("front")
    cases = [
        ({"action": "access_codes.create", "device_id": device, "code": "12"}, "invalid_input",
         "code"),
        ({"action": "access_codes.create", "device_id": device,
          "starts_at": "2026-03-02T00:00:00Z"}, "invalid_input", "ends_at"),
        ({"action": "access_codes.create"}, "invalid_input", "device_id"),
        ({"action": "access_codes.explode"}, "invalid_input", "action"),
        ({"action": "access_codes.delete", "access_code_id": "nope"}, "access_code_not_found",
         "access_code_id"),
        ({"action": "access_codes.create", "device_id": "nope"}, "device_not_found",
         "device_id"),
    ]
    for index, (command, kind, field) in enumerate(cases):
        result = await server.send_command(BRIDGE_ID, command, f"bad-{index}")
        assert result["ok"] is False, command
        assert (result["error"]["type"], result["error"]["field"]) == (kind, field), result
    assert h.engine.codes == {}
    assert running.link.sessions == 1
    ok = await server.send_command(BRIDGE_ID, {"action": "access_codes.create",
                                               "device_id": device})
    assert ok["ok"] is True


async def test_update_pull_delete_and_snapshot(env) -> None:  # type: ignore[no-untyped-def]
    h, server, _ = env
    device = h.device_id("front")
    start = h.clock.now() + timedelta(hours=1)
    created = await server.send_command(BRIDGE_ID, {
        "action": "access_codes.create", "device_id": device, "name": "Guest",
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(days=1)).isoformat(),
        "use_backup_access_code_pool": True})
    assert created["ok"], created
    code_id = created["result"]["access_code"]["access_code_id"]
    updated = await server.send_command(BRIDGE_ID, {"action": "access_codes.update",
                                                    "access_code_id": code_id,
                                                    "name": "Guest Ana"})
    assert updated["result"]["access_code"]["name"] == "Guest Ana"
    await h.settle()
    pulled = await server.send_command(BRIDGE_ID, {
        "action": "access_codes.pull_backup_access_code", "access_code_id": code_id})
    assert pulled["ok"], pulled
    assert pulled["result"]["backup_access_code"]["is_backup"] is True
    deleted = await server.send_command(BRIDGE_ID, {"action": "access_codes.delete",
                                                    "access_code_id": code_id})
    assert deleted == {"type": "command_result", "command_id": deleted["command_id"],
                       "ok": True, "result": {}, "error": None}
    snapshots = len(await server.snapshots(BRIDGE_ID))
    assert (await server.send_command(BRIDGE_ID, {"action": "snapshot"}))["ok"]
    assert len(await server.snapshots(BRIDGE_ID)) == snapshots + 1


async def test_results_survive_a_new_link(harness_factory, tmp_path: Path) -> None:
    h: Harness = await harness_factory(LOCKS)
    server = await start_server(tmp_path)
    command = {"action": "access_codes.create", "device_id": h.device_id("front")}
    running = await start_link(h.engine, upstream_config(server.port, tmp_path))
    try:
        first = await server.send_command(BRIDGE_ID, command, "cmd-a")
    finally:
        await running.stop()
    running = await start_link(h.engine, upstream_config(server.port, tmp_path))
    try:
        await eventually(lambda: server.hellos == 2)
        await server.wait_connected(BRIDGE_ID)
        again = await server.send_command(BRIDGE_ID, command, "cmd-a", resend=True)
        assert again == first and running.link.commands.executed == 0
        assert len(h.engine.codes) == 1
    finally:
        await running.stop()
        await server.stop()


async def test_unanswered_commands_are_resent_after_a_reconnect(harness_factory,
                                                               tmp_path: Path) -> None:
    h: Harness = await harness_factory(LOCKS)
    server = await start_server(tmp_path)
    running = await start_link(h.engine, upstream_config(server.port, tmp_path))
    try:
        await server.wait_connected(BRIDGE_ID)
        await running.stop()
        pending = asyncio.create_task(server.send_command(
            BRIDGE_ID, {"action": "access_codes.create", "device_id": h.device_id("front")},
            "while-away"))
        await asyncio.sleep(0.1)
        assert not pending.done()
        running = await start_link(h.engine, upstream_config(server.port, tmp_path))
        result = await pending
        assert result["ok"] is True and len(h.engine.codes) == 1
    finally:
        await running.stop()
        await server.stop()


async def test_a_lock_removed_and_brought_back_by_command(env) -> None:  # type: ignore[no-untyped-def]
    h, server, _ = env
    dev = h.device_id("front")
    made = await server.send_command(BRIDGE_ID, {
        "action": "access_codes.create", "device_id": dev, "name": "Guest", "code": "5307",
        "use_backup_access_code_pool": True}, "dev-1")
    await h.settle()
    assert len(h.slots("front")) == 6  # the guest's code and a pool of five
    refused = await server.send_command(BRIDGE_ID, {
        "action": "devices.update", "device_id": dev, "is_managed": False}, "dev-2")
    assert refused["ok"] is False and refused["error"]["type"] == "device_has_access_codes"
    await server.send_command(BRIDGE_ID, {
        "action": "access_codes.delete",
        "access_code_id": made["result"]["access_code"]["access_code_id"]}, "dev-3")
    await h.settle()
    removed = await server.send_command(BRIDGE_ID, {
        "action": "devices.update", "device_id": dev, "is_managed": False}, "dev-4")
    assert removed["ok"] is True and removed["result"]["device"]["is_managed"] is False
    await h.settle()
    assert h.slots("front") == {}
    again = await server.send_command(BRIDGE_ID, {
        "action": "devices.update", "device_id": dev, "is_managed": False}, "dev-4",
        resend=True)
    assert again == removed
    back = await server.send_command(BRIDGE_ID, {
        "action": "devices.update", "device_id": dev, "is_managed": True}, "dev-5")
    assert back["ok"] is True and back["result"]["device"]["is_managed"] is True
    missing = await server.send_command(BRIDGE_ID, {
        "action": "devices.update", "device_id": dev}, "dev-6")
    assert missing["ok"] is False and missing["error"]["field"] == "is_managed"
