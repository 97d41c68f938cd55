"""The same requests through both front doors give the same results.

Each case is a short script of requests. It runs twice in one daemon (its composition root,
in-process): through the HTTP API on one simulated lock, and as upstream commands sent by the
reference upstream on another. Every step must be accepted or refused alike (same error type,
same field for invalid input), and the codes and the lock must end alike: type, window, name,
managed or not, deleted or not, backup pool, and how many of each change event were recorded.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bridge.model import AccessCodeStatus, EventType
from bridge.serialize import iso
from bridge.stateview import StateView
from bridge.upstream.devserver import DevUpstream
from tests.harness import until
from tests.inprocess import RunningDaemon, running_daemon
from tests.upstream_helpers import TOKEN, start_server

pytestmark = pytest.mark.timeout(120)
BRIDGE_ID = "two-fronts"
CONFIG = """\
bridge: {{id: two-fronts}}
state_dir: {state}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
upstream: {{url: "ws://127.0.0.1:{port}/ws", token_file: {token}, backoff_base_s: 0.05,
           backoff_cap_s: 0.2}}
drivers:
  - kind: simulator
    name: sim
    locks:
      - {{id: api, name: Via the API, faults: {faults}}}
      - {{id: upstream, name: Via the upstream, faults: {faults}}}
"""
# A code someone typed on each lock's keypad: lockbridge finds it as an unmanaged code.
KEYPAD_CODE = '{keypad_codes: {20: "86420"}}'
# Fixed times, the same for both fronts (the daemon runs on the system clock).
START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
END = START + timedelta(days=3)
LATER = END + timedelta(days=1)
EARLY = START - timedelta(hours=1)
# The change events whose counts must match (those of the lock's own progress vary in timing).
COUNTED = frozenset({EventType.ACCESS_CODE_CREATED, EventType.ACCESS_CODE_CHANGED,
                     EventType.ACCESS_CODE_DELETED,
                     EventType.ACCESS_CODE_UNMANAGED_CONVERTED_TO_MANAGED,
                     EventType.DEVICE_CONVERTED_TO_UNMANAGED,
                     EventType.DEVICE_UNMANAGED_CONVERTED_TO_MANAGED})


@dataclass(frozen=True)
class Send:
    """One request: an upstream action and its parameters (the API route of the same name).

    In parameters, "$device" is the lock of the front under test, "$unmanaged" the code found
    on its keypad, "$<name>" the code made by the step that had `names` <name>."""

    action: str
    params: dict[str, Any] = field(default_factory=dict)
    names: str | None = None


@dataclass(frozen=True)
class OnLock:
    """Wait until a named code is on its lock (its status `set`)."""

    name: str


Step = Send | OnLock


@dataclass(frozen=True)
class Case:
    """A script run through each front, with the answers its requests get: "ok", an error
    type, or "invalid_input:<field>"; `faults` are the simulated locks' injected faults."""

    title: str
    steps: tuple[Step, ...]
    expect: tuple[str, ...]
    faults: str = KEYPAD_CODE


def create(name: str, **params: Any) -> Send:
    return Send("access_codes.create", {"device_id": "$device", "name": name, **params}, name)


CASES = [
    Case("an ongoing code given times becomes time-bound", (
        create("stay"),
        Send("access_codes.update", {"access_code_id": "$stay", "starts_at": iso(START),
                                     "ends_at": iso(END)}),
    ), ("ok", "ok")),
    Case("a time-bound code's end moves on its own", (
        create("stay", starts_at=iso(START), ends_at=iso(END)),
        Send("access_codes.update", {"access_code_id": "$stay", "ends_at": iso(LATER)}),
    ), ("ok", "ok")),
    Case("an ongoing code given only an end is refused", (
        create("stay"),
        Send("access_codes.update", {"access_code_id": "$stay", "ends_at": iso(LATER)}),
    ), ("ok", "invalid_input:starts_at")),
    Case("type ongoing drops a code's times", (
        create("stay", starts_at=iso(START), ends_at=iso(END)),
        Send("access_codes.update", {"access_code_id": "$stay", "type": "ongoing"}),
    ), ("ok", "ok")),
    Case("a window that ends before it starts is refused", (
        create("stay", starts_at=iso(START), ends_at=iso(EARLY)),
    ), ("invalid_input:ends_at",)),
    Case("a PIN already on the lock is refused", (
        create("first", code="5307"),
        create("second", code="5307"),
    ), ("ok", "duplicate_access_code")),
    Case("an unknown code is not found", (
        Send("access_codes.update", {"access_code_id": str(uuid.uuid4()), "name": "x"}),
        Send("access_codes.delete", {"access_code_id": str(uuid.uuid4())}),
    ), ("access_code_not_found", "access_code_not_found")),
    Case("deleting a code again while it comes off changes nothing", (
        create("stay", code="5307"),
        OnLock("stay"),
        Send("access_codes.delete", {"access_code_id": "$stay"}),
        Send("access_codes.delete", {"access_code_id": "$stay"}),
    ), ("ok", "ok", "ok"),
        faults='{keypad_codes: {20: "86420"}, fail_next_clears: 1000}'),
    Case("a backup is pulled only for a time-bound code on a lock with a pool", (
        create("stay"),
        Send("access_codes.pull_backup_access_code", {"access_code_id": "$stay"}),
        create("booked", starts_at=iso(START), ends_at=iso(END)),
        Send("access_codes.pull_backup_access_code", {"access_code_id": "$booked"}),
    ), ("ok", "invalid_input:access_code_id", "ok", "backup_access_code_pool_not_enabled")),
    Case("a code found on the keypad becomes managed", (
        Send("access_codes.unmanaged.convert_to_managed", {"access_code_id": "$unmanaged"}),
    ), ("ok",)),
    Case("a backup pool is switched on and stays on", (
        Send("devices.update", {"device_id": "$device", "backup_access_code_pool_enabled": True}),
        Send("devices.update", {"device_id": "$device",
                                "backup_access_code_pool_enabled": False}),
    ), ("ok", "invalid_input:backup_access_code_pool_enabled")),
    Case("a lock asked to stay managed stays as it is", (
        Send("devices.update", {"device_id": "$device", "is_managed": True}),
    ), ("ok",)),
    Case("a lock is taken out of lockbridge and brought back", (
        Send("devices.update", {"device_id": "$device", "is_managed": False}),
        Send("devices.update", {"device_id": "$device", "is_managed": True}),
    ), ("ok", "ok")),
    Case("a lock holding a guest's code stays in lockbridge", (
        create("stay"),
        Send("devices.update", {"device_id": "$device", "is_managed": False}),
    ), ("ok", "device_has_access_codes")),
]


@dataclass(frozen=True)
class Answer:
    """What a front answered, in terms both share: refused or not, why, and the new code."""

    ok: bool
    error: tuple[str, str | None] | None = None
    access_code_id: str | None = None


class Front:
    """One way in: `send` makes a request and returns the answer."""

    lock_id: str

    def __init__(self, daemon: RunningDaemon) -> None:
        self.daemon = daemon
        self.state = StateView(daemon.bridge.engine)

    @property
    def device_id(self) -> str:
        return next(d.device_id for d in self.state.devices.values()
                    if d.external_id == self.lock_id)

    async def send(self, action: str, params: dict[str, Any]) -> Answer:
        raise NotImplementedError


class ApiFront(Front):
    """The HTTP API, as Seam's SDK calls it (a lock out of lockbridge is an unmanaged device)."""

    lock_id = "api"

    async def send(self, action: str, params: dict[str, Any]) -> Answer:
        path = "/" + action.replace(".", "/")
        if action == "devices.update" and not self.state.devices[params["device_id"]].is_managed:
            path = "/devices/unmanaged/update"
        status, body = await self.daemon.post(path, params)
        if status == 200:
            code = body.get("access_code") or {}
            return Answer(True, access_code_id=code.get("access_code_id"))
        error = body["error"]
        fields = [k for k in (error.get("validation_errors") or {}) if k != "_errors"]
        field_name = fields[0] if error["type"] == "invalid_input" and fields else None
        return Answer(False, (error["type"], field_name))


class UpstreamFront(Front):
    """Commands as the reference upstream sends them."""

    lock_id = "upstream"

    def __init__(self, daemon: RunningDaemon, server: DevUpstream) -> None:
        super().__init__(daemon)
        self.server = server

    async def send(self, action: str, params: dict[str, Any]) -> Answer:
        result = await self.server.send_command(BRIDGE_ID, {"action": action, **params})
        if result["ok"]:
            code = (result["result"] or {}).get("access_code") or {}
            return Answer(True, access_code_id=code.get("access_code_id"))
        error = result["error"]
        field_name = error["field"] if error["type"] == "invalid_input" else None
        return Answer(False, (error["type"], field_name))


@dataclass
class Bridge:
    """The daemon and the reference upstream it is linked to."""

    daemon: RunningDaemon
    server: DevUpstream

    def fronts(self) -> list[Front]:
        return [ApiFront(self.daemon), UpstreamFront(self.daemon, self.server)]


@contextlib.asynccontextmanager
async def _bridge(tmp_path: Path, faults: str) -> AsyncIterator[Bridge]:
    server = await start_server(tmp_path)
    token = tmp_path / "upstream.token"
    token.write_text(TOKEN + "\n")
    config = tmp_path / "lockbridge.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state", port=server.port, token=token,
                                    faults=faults))
    try:
        async with running_daemon(config) as daemon:
            await server.wait_connected(BRIDGE_ID)
            bridge = Bridge(daemon, server)
            await until(lambda: all(_unmanaged(f) for f in bridge.fronts()),
                        what="the keypad codes found", timeout=20)
            yield bridge
    finally:
        await server.stop()


def _on_lock(front: Front, access_code_id: str) -> bool:
    return front.state.codes[access_code_id].status is AccessCodeStatus.SET


def _unmanaged(front: Front) -> str | None:
    """The code found on the front's lock that lockbridge did not put there."""
    return next((c.access_code_id for c in front.state.codes_of(front.device_id)
                 if not c.is_managed), None)


async def _run(front: Front, case: Case) -> dict[str, Any]:
    """Run a case through one front: every answer and what the lock and its codes became."""
    names: dict[str, str] = {"device": front.device_id, "unmanaged": _unmanaged(front) or ""}
    answers: list[Answer] = []
    for step in case.steps:
        if isinstance(step, OnLock):
            await until(partial(_on_lock, front, names[step.name]),
                        what=f"{step.name} on the lock", timeout=20)
            continue
        params = {k: _resolve(v, names) for k, v in step.params.items()}
        answer = await front.send(step.action, params)
        if step.names and answer.access_code_id:
            names[step.names] = answer.access_code_id
        answers.append(Answer(answer.ok, answer.error))
    return {"answers": answers, **await _outcome(front, names)}


async def _outcome(front: Front, names: dict[str, str]) -> dict[str, Any]:
    device = front.state.devices[names["device"]]
    codes: dict[str, Any] = {}
    events = await front.daemon.bridge.store.read(lambda r: r.events(0, 1_000_000))
    for name, code_id in names.items():
        code = front.state.codes.get(code_id)
        if name == "device" or code is None:
            codes[name] = None if name != "device" else "-"
            continue
        codes[name] = {"type": code.type.value, "starts_at": code.starts_at,
                       "ends_at": code.ends_at, "name": code.name if name != "unmanaged" else
                       None, "is_managed": code.is_managed, "deleted": code.deleted}
    counted = Counter((_alias(e.access_code_id, names), e.event_type.value) for e in events
                      if e.event_type in COUNTED and e.device_id == names["device"])
    return {"device": {"is_managed": device.is_managed,
                       "backup_pool_enabled": device.backup_pool_enabled},
            "codes": codes, "events": dict(counted)}


def _said(answer: Answer) -> str:
    if answer.ok:
        return "ok"
    assert answer.error is not None
    kind, field_name = answer.error
    return f"{kind}:{field_name}" if field_name else kind


def _alias(access_code_id: str | None, names: dict[str, str]) -> str | None:
    return next((name for name, value in names.items() if value == access_code_id),
                access_code_id and "other")


def _resolve(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return names[value[1:]]
    return value


@pytest.mark.parametrize("case", CASES, ids=[c.title for c in CASES])
async def test_the_same_request_through_either_front_gives_the_same_result(
        tmp_path: Path, case: Case) -> None:
    async with _bridge(tmp_path, case.faults) as bridge:
        api, upstream = bridge.fronts()
        through_api = await _run(api, case)
        through_upstream = await _run(upstream, case)
    assert [_said(a) for a in through_api["answers"]] == list(case.expect)
    assert through_upstream == through_api

