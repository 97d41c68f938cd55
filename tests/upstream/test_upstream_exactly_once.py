"""Upstream commands are applied exactly once across a crash between the engine's commit and the
stored result: the redelivered command id is answered from the current state, not applied again.

Each test sends a command from the reference upstream over a loopback websocket; the bridge dies
right after the engine committed the change (its result-storing step never returns, then the
link, the engine and the store are stopped without storing or sending anything), restarts on the
same database and simulated lock, and answers the command the upstream redelivers at hello.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.engine import CodeRequest
from bridge.model import EventType
from bridge.store import StoreUnavailable
from bridge.upstream.commands import created_code_id
from bridge.upstream.devserver import DevUpstream
from bridge.upstream.protocol import CommandResult
from drivers.simulator import SimLockSpec
from tests.conftest import stop_harness
from tests.harness import Harness
from tests.upstream_helpers import (
    BRIDGE_ID,
    RunningLink,
    start_link,
    start_server,
    upstream_config,
)

pytestmark = pytest.mark.timeout(60)
LOCKS = [SimLockSpec(lock_id="front", name="Front")]
# Fields of an access code that the command decides (status and pending work move on with the
# lock, so a result rebuilt later shows them as they are then).
DECIDED = ("access_code_id", "device_id", "name", "code", "type", "starts_at", "ends_at",
           "is_backup", "pulled_backup_access_code_id")

Factory = Callable[..., Awaitable[Harness]]


@dataclass
class Bridge:
    """The bridge under test (engine, store, link) and the reference upstream."""

    tmp_path: Path
    factory: Factory
    server: DevUpstream
    h: Harness
    running: RunningLink
    links: list[RunningLink] = field(default_factory=list)

    @property
    def device(self) -> str:
        return self.h.device_id("front")

    async def send(self, command: dict[str, Any], command_id: str,
                   resend: bool = False) -> dict[str, Any]:
        return await self.server.send_command(BRIDGE_ID, command, command_id, resend=resend)

    async def crash_after_commit(
        self, command: dict[str, Any], command_id: str,
        while_down: Callable[[Harness], Awaitable[None]] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Send a command and kill the bridge between the engine's commit and the stored
        result; restart it (running `while_down` on the new engine before the link is up) and
        return (the result the first run computed but never stored, the answer to the
        redelivery)."""
        computed: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()

        async def dies_here(result: CommandResult) -> None:
            computed.set_result(result)
            await asyncio.get_running_loop().create_future()  # the process is gone

        self.running.link.commands._store_result = dies_here  # type: ignore[method-assign]
        answer = asyncio.create_task(self.send(command, command_id))
        async with asyncio.timeout(10):
            first = await computed
        await self.running.stop()  # SIGKILL: nothing stored, nothing sent
        stored, marker = await self.h.store.read(
            lambda r: (r.command_result(command_id), r.command_marker(command_id)))
        assert stored is None and marker is not None, "the change committed with its marker"
        assert not answer.done()
        await stop_harness(self.h)
        self.h = await self.factory(LOCKS, clock=self.h.clock,
                                    state_file=self.tmp_path / "sim.json")
        if while_down is not None:
            await while_down(self.h)
        self.running = await start_link(self.h.engine,
                                        upstream_config(self.server.port, self.tmp_path))
        self.links.append(self.running)
        async with asyncio.timeout(15):
            redelivered = await answer  # the upstream resends unanswered commands at hello
        return first.model_dump(mode="json"), redelivered

    async def assert_answered_once(self, command: dict[str, Any], command_id: str,
                                   answer: dict[str, Any]) -> None:
        """Not applied again; stored, sealed and repeated as it is; the marker is gone."""
        commands = self.running.link.commands
        assert (commands.executed, commands.rebuilt) == (0, 1)
        stored, marker = await self.h.store.read(
            lambda r: (r.command_result(command_id), r.command_marker(command_id)))
        assert marker is None
        assert stored is not None and CommandResult.model_validate_json(stored).model_dump(
            mode="json") == answer
        again = await self.send(command, command_id, resend=True)
        assert again == answer
        assert (commands.executed, commands.rebuilt) == (0, 1)

    async def events(self, kind: EventType, access_code_id: str) -> int:
        found = await self.h.store.read(lambda r: r.events(
            0, 1_000_000, access_code_id=access_code_id, event_types=[kind]))
        return len(found)


@pytest.fixture
async def bridge(harness_factory: Factory, tmp_path: Path) -> AsyncIterator[Bridge]:
    h = await harness_factory(LOCKS, state_file=tmp_path / "sim.json")
    server = await start_server(tmp_path)
    running = await start_link(h.engine, upstream_config(server.port, tmp_path))
    await server.wait_connected(BRIDGE_ID)
    b = Bridge(tmp_path, harness_factory, server, h, running, [running])
    yield b
    for link in b.links:
        await link.stop()
    await server.stop()


def decided(code: dict[str, Any]) -> dict[str, Any]:
    return {k: code[k] for k in DECIDED}


async def create(b: Bridge, command_id: str, **params: Any) -> str:
    result = await b.send({"action": "access_codes.create", "device_id": b.device,
                           "name": "Guest", **params}, command_id)
    assert result["ok"], result
    await b.h.settle()
    return str(result["result"]["access_code"]["access_code_id"])


@pytest.mark.parametrize("later_local_update", [False, True])
async def test_update_is_applied_once(bridge: Bridge, later_local_update: bool) -> None:
    b = bridge
    code_id = await create(b, "create-1", code="1234")
    assert sorted(b.h.slots("front").values()) == ["1234"]
    command = {"action": "access_codes.update", "access_code_id": code_id,
               "name": "Guest Ana", "code": "5678"}

    async def rename_locally(h: Harness) -> None:
        # A later change (the local API, say) made before the upstream redelivers.
        await h.engine.update_code(code_id, CodeRequest(name="Guest Bea"))

    first, answer = await b.crash_after_commit(
        command, "update-1", rename_locally if later_local_update else None)
    assert first["ok"] and answer["ok"], answer
    assert first["result"]["access_code"]["name"] == "Guest Ana"
    got = answer["result"]["access_code"]
    expected_name = "Guest Bea" if later_local_update else "Guest Ana"
    assert got["name"] == expected_name, "the update was not re-applied over the later one"
    assert decided(got) == decided(first["result"]["access_code"]) | {"name": expected_name}
    await b.assert_answered_once(command, "update-1", answer)
    await b.h.settle()
    code = b.h.engine.codes[code_id]
    assert (code.name, code.code) == (expected_name, "5678")
    assert sorted(b.h.slots("front").values()) == ["5678"]
    changes = 2 if later_local_update else 1
    assert await b.events(EventType.ACCESS_CODE_CHANGED, code_id) == changes
    for path in b.tmp_path.glob("lockbridge.db*"):
        assert b"5678" not in path.read_bytes(), f"a PIN in clear in {path.name}"


async def test_delete_is_applied_once_and_answers_ok(bridge: Bridge) -> None:
    b = bridge
    code_id = await create(b, "create-1", code="4321")
    assert sorted(b.h.slots("front").values()) == ["4321"]
    command = {"action": "access_codes.delete", "access_code_id": code_id}
    first, answer = await b.crash_after_commit(command, "delete-1")
    assert first == answer == {"type": "command_result", "command_id": "delete-1", "ok": True,
                               "result": {}, "error": None}
    await b.assert_answered_once(command, "delete-1", answer)
    await b.h.settle()
    assert b.h.slots("front") == {}
    # Gone; a clear interrupted by the crash can leave a deleted record behind (engine recovery).
    gone = b.h.engine.codes.get(code_id)
    assert gone is None or gone.deleted
    assert await b.events(EventType.ACCESS_CODE_DELETED, code_id) == 1


@pytest.mark.parametrize("backup_deleted_meanwhile", [False, True])
async def test_pull_backup_pulls_one_backup(bridge: Bridge,
                                            backup_deleted_meanwhile: bool) -> None:
    b = bridge
    start = b.h.clock.now() + timedelta(hours=1)
    code_id = await create(b, "create-1", starts_at=start.isoformat(),
                           ends_at=(start + timedelta(days=1)).isoformat(),
                           use_backup_access_code_pool=True)
    pool = {c.access_code_id for c in b.h.engine.codes.values() if c.is_backup}
    assert len(pool) == 5
    command = {"action": "access_codes.pull_backup_access_code", "access_code_id": code_id}

    async def delete_backup(h: Harness) -> None:
        # The pulled backup is deleted locally before the upstream redelivers: applying the
        # pull again would hand out a second backup.
        backup_id = h.engine.codes[code_id].pulled_backup_access_code_id
        assert backup_id is not None
        await h.engine.delete_code(backup_id)
        await h.settle()

    first, answer = await b.crash_after_commit(
        command, "pull-1", delete_backup if backup_deleted_meanwhile else None)
    assert first["ok"], first
    backup = first["result"]["backup_access_code"]
    assert backup["access_code_id"] in pool and backup["is_backup"] is True
    if backup_deleted_meanwhile:
        assert answer["ok"] is False
        assert answer["error"]["type"] == "access_code_not_found"
        assert "was applied" in answer["error"]["message"]
    else:
        assert answer["ok"], answer
        assert decided(answer["result"]["access_code"]) == decided(
            first["result"]["access_code"])
        assert decided(answer["result"]["backup_access_code"]) == decided(backup)
    await b.assert_answered_once(command, "pull-1", answer)
    await b.h.settle()
    pulled = [c for c in b.h.engine.codes.values() if c.backup_pulled_for == code_id]
    assert [c.access_code_id for c in pulled] == ([] if backup_deleted_meanwhile
                                                  else [backup["access_code_id"]])
    assert await b.events(EventType.ACCESS_CODE_BACKUP_PULLED, code_id) == 1
    if not backup_deleted_meanwhile:
        assert backup["code"] in b.h.slots("front").values()


async def test_create_deleted_before_redelivery_is_not_created_again(bridge: Bridge) -> None:
    b = bridge
    command = {"action": "access_codes.create", "device_id": b.device, "name": "Guest",
               "code": "2468"}
    code_id = created_code_id(BRIDGE_ID, "create-1")

    async def delete_locally(h: Harness) -> None:
        await h.settle()
        await h.engine.delete_code(code_id)
        await h.settle()

    first, answer = await b.crash_after_commit(command, "create-1", delete_locally)
    assert first["ok"] and first["result"]["access_code"]["access_code_id"] == code_id
    assert answer["ok"] is False and answer["error"]["type"] == "access_code_not_found"
    await b.assert_answered_once(command, "create-1", answer)
    await b.h.settle()
    assert code_id not in b.h.engine.codes and b.h.slots("front") == {}
    assert await b.events(EventType.ACCESS_CODE_CREATED, code_id) == 1


async def test_convert_and_delete_unmanaged_are_applied_once(bridge: Bridge) -> None:
    b = bridge
    await b.h.driver.keypad_set("front", 3, "5555")
    await b.h.driver.keypad_set("front", 4, "6666")
    b.h.engine.reconcile(b.device, full=True)
    await b.h.settle()
    by_slot = {c.slot: c.access_code_id for c in b.h.engine.codes.values() if not c.is_managed}
    convert = {"action": "access_codes.unmanaged.convert_to_managed",
               "access_code_id": by_slot[3], "name": "Owner"}
    first, answer = await b.crash_after_commit(convert, "convert-1")
    assert first["ok"] and answer["ok"], answer
    assert decided(answer["result"]["access_code"]) == decided(first["result"]["access_code"])
    assert answer["result"]["access_code"]["name"] == "Owner"
    await b.assert_answered_once(convert, "convert-1", answer)
    assert await b.events(EventType.ACCESS_CODE_UNMANAGED_CONVERTED_TO_MANAGED,
                          by_slot[3]) == 1

    delete = {"action": "access_codes.unmanaged.delete", "access_code_id": by_slot[4]}
    first, answer = await b.crash_after_commit(delete, "delete-unmanaged-1")
    assert first == answer and answer["ok"] and answer["result"] == {}
    await b.assert_answered_once(delete, "delete-unmanaged-1", answer)
    await b.h.settle()
    assert b.h.slots("front") == {3: "5555"}
    assert b.h.engine.codes[by_slot[3]].is_managed
    assert await b.events(EventType.ACCESS_CODE_UNMANAGED_REMOVED, by_slot[4]) == 1


# -- a full disk between the change's commit and its stored result -----------------------------

DISK_FULL = "the store cannot write: database or disk is full"


async def fills_the_disk(result: CommandResult) -> None:
    """The result's transaction on a disk that filled after the change committed."""
    raise StoreUnavailable(DISK_FULL)


@pytest.mark.parametrize("action", ["create", "update", "delete"])
async def test_disk_full_after_the_commit_still_answers_what_was_applied(
        bridge: Bridge, action: str) -> None:
    """The soak's disk-full fault (seed 5): changes applied but answered `store_unavailable`,
    so the upstream believed codes were not created or not deleted."""
    b = bridge
    code_id = created_code_id(BRIDGE_ID, "create-1")
    if action == "create":
        command = {"action": "access_codes.create", "device_id": b.device, "name": "Guest",
                   "code": "2468"}
        command_id = "create-1"
    else:
        await create(b, "create-0", code="1357")
        code_id = created_code_id(BRIDGE_ID, "create-0")
        command_id = f"{action}-1"
        command = ({"action": "access_codes.update", "access_code_id": code_id, "code": "8642"}
                   if action == "update" else
                   {"action": "access_codes.delete", "access_code_id": code_id})
    commands = b.running.link.commands
    executed = commands.executed
    commands._store_result = fills_the_disk  # type: ignore[method-assign]
    answer = await b.send(command, command_id)
    assert answer["ok"], f"an applied {action} was answered {answer['error']}"
    if action == "delete":
        assert answer["result"] == {}
    else:
        assert answer["result"]["access_code"]["access_code_id"] == code_id
        assert answer["result"]["access_code"]["code"] == ("2468" if action == "create"
                                                           else "8642")
    stored, marker = await b.h.store.read(
        lambda r: (r.command_result(command_id), r.command_marker(command_id)))
    assert stored is None and marker is not None

    # Room again: a redelivery is answered from the marker, not applied a second time.
    del commands._store_result
    again = await b.send(command, command_id, resend=True)
    assert again["ok"], again
    assert (commands.executed, commands.rebuilt) == (executed + 1, 1)
    stored, marker = await b.h.store.read(
        lambda r: (r.command_result(command_id), r.command_marker(command_id)))
    assert stored is not None and marker is None
    await b.h.settle()
    expected = {"create": ["2468"], "update": ["8642"], "delete": []}[action]
    assert sorted(b.h.slots("front").values()) == expected
    assert await b.events(EventType.ACCESS_CODE_CREATED, code_id) == 1
    assert await b.events(EventType.ACCESS_CODE_DELETED, code_id) == (action == "delete")


async def test_disk_full_in_a_write_after_the_commit_still_answers_the_delete(
        bridge: Bridge) -> None:
    """A write that follows the change's commit (an API action attempt judged final, say)
    fails on the full disk: the delete was applied, so it is answered ok."""
    b = bridge
    code_id = await create(b, "create-0", code="1357")
    failed: list[str] = []

    def attempts_cannot_write(events: list[Any]) -> None:
        if any(e.access_code_id == code_id for e in events) and not failed:
            failed.append(code_id)
            raise StoreUnavailable(DISK_FULL)

    b.h.engine.subscribe(attempts_cannot_write)
    answer = await b.send({"action": "access_codes.delete", "access_code_id": code_id},
                          "delete-1")
    assert failed, "the write after the commit did not fail"
    assert answer["ok"] and answer["result"] == {}, answer
    assert await b.events(EventType.ACCESS_CODE_DELETED, code_id) == 1
    b.h.engine.reconcile(b.device)  # the failed write cut the engine's wake-up short
    await b.h.settle()
    assert b.h.slots("front") == {}


async def test_backup_pool_switched_on_is_applied_once(bridge: Bridge) -> None:
    """The pool's switch-on commits with the command's applied marker, like every change."""
    b = bridge
    command = {"action": "devices.update", "device_id": b.device,
               "backup_access_code_pool_enabled": True}
    first, answer = await b.crash_after_commit(command, "pool-1")
    assert first["ok"] and answer["ok"], answer
    for result in (first, answer):
        assert (result["result"]["device"]["device_id"],
                result["result"]["device"]["is_managed"]) == (b.device, True)
    await b.assert_answered_once(command, "pool-1", answer)
    assert b.h.engine.devices[b.device].backup_pool_enabled
