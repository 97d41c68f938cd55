"""Whatever frame the upstream sends, the bridge's parser answers with a message or the
protocol's error (ProtocolProblem), never another exception that would end the session:
hypothesis over arbitrary JSON and over frames shaped like the real messages."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.upstream.protocol import Command, ProtocolProblem, parse_command, parse_upstream

LIMIT = 256 * 1024
ACTIONS = ["access_codes.create", "access_codes.update", "access_codes.delete",
           "access_codes.pull_backup_access_code", "access_codes.unmanaged.convert_to_managed",
           "access_codes.unmanaged.delete", "devices.update", "snapshot", "nonsense"]
FIELDS = ["device_id", "access_code_id", "name", "code", "starts_at", "ends_at", "type",
          "is_managed", "backup_access_code_pool_enabled", "use_backup_access_code_pool",
          "allow_external_modification", "preferred_code_length", "common_code_key"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=40),
                    st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+05:00",
                                     "2026-03-01T12:00:00-23:59", "not a time", "1234",
                                     "00000000-0000-0000-0000-000000000000"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20)


@st.composite
def command_frames(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"action": draw(st.sampled_from(ACTIONS))}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True)):
        body[name] = draw(json_values)
    return {"type": "command", "command_id": draw(st.text(max_size=80)), "command": body}


frames = st.one_of(
    json_values.map(json.dumps),
    command_frames().map(json.dumps),
    st.fixed_dictionaries({"type": st.sampled_from(["ack", "welcome", "command"])},
                          optional={"seq": json_values, "acked_seq": json_values,
                                    "protocol_version": json_values,
                                    "snapshot_wanted": json_values}).map(json.dumps),
    st.text(max_size=200),
)


@settings(max_examples=600, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(frame=frames)
def test_any_frame_parses_or_is_a_protocol_problem(frame: str) -> None:
    try:
        message = parse_upstream(frame, LIMIT)
    except ProtocolProblem as problem:
        assert problem.kind and problem.message
        return
    if isinstance(message, Command):
        try:
            parse_command(message)
        except ProtocolProblem as problem:
            assert problem.kind == "invalid_input"


@pytest.mark.parametrize("frame", [
    "[" * 100_000 + "]" * 100_000,
    '{"type": "command", "command_id": "c", "command": ' + '{"a":' * 20_000 + "1"
    + "}" * 20_001,
    '{"type": "ack", "seq": 1e999}',
    '{"type": "ack", "seq": "\\ud800"}',
])
def test_pathological_frames_are_protocol_problems(frame: str) -> None:
    with pytest.raises(ProtocolProblem):
        parse_upstream(frame, 10 * 1024 * 1024)
