"""The Matter driver's pure parts: what the Door Lock cluster's values and the server's answers
mean (no peers needed; the real lock and server are in test_matter_contract.py)."""

from __future__ import annotations

from datetime import datetime

import pytest

from bridge.driver import CommandRejected, RejectReason, RetryLater
from drivers.matter import mapping
from drivers.matter.config import Config

# Attributes as the Matter server reports a real Aqara U200 (FeatureMap 0x183: no schedules).
U200 = {"1/257/65532": 0x183, "1/257/17": 10, "1/257/18": 15, "1/257/28": 2, "1/257/23": 8,
        "1/257/24": 6, "1/257/0": 1, "0/40/1": "Aqara", "0/40/3": "Smart Lock U200",
        "0/62/5": 2}


def test_a_lock_without_schedules_is_switched_by_the_bridge() -> None:
    info = mapping.describe(4, 1, U200, name=None, time_zone="Europe/Lisbon",
                            native_schedules=True)
    assert info.external_id == "matter-4-1"
    caps = info.capabilities
    assert (caps.first_slot, caps.slot_count) == (1, 15)
    assert not caps.native_schedules and caps.masks_pins_on_read and caps.programs_codes
    assert not caps.can_delete_unmanaged and caps.min_command_spacing_s == 1.0
    assert (info.constraints.min_length, info.constraints.max_length) == (6, 8)
    assert (info.manufacturer, info.model) == ("Aqara", "Smart Lock U200")
    assert info.state is not None and info.state.locked is True


def test_year_day_schedules_only_where_the_feature_map_has_them() -> None:
    with_ydsch = {**U200, "1/257/65532": 0x183 | mapping.FEATURE_YDSCH, "1/257/21": 2}
    assert mapping.describe(4, 1, with_ydsch, name=None, time_zone=None,
                            native_schedules=True).capabilities.native_schedules
    assert not mapping.describe(4, 1, with_ydsch, name=None, time_zone=None,
                                native_schedules=False).capabilities.native_schedules


def test_a_lock_without_users_takes_no_codes() -> None:
    bare = {"1/257/65532": 0, "1/257/0": 1}
    assert mapping.door_lock_endpoints(bare) == [1]
    assert not mapping.describe(3, 1, bare, name="Gate", time_zone=None,
                                native_schedules=True).capabilities.programs_codes


@pytest.mark.parametrize("pin", [
    "12a456", "\uff11\uff12\uff13\uff14\uff15\uff16", "12345", "123456789", None])
def test_pins_outside_the_locks_rules_are_refused(pin: str | None) -> None:
    info = mapping.describe(4, 1, U200, name=None, time_zone=None, native_schedules=True)
    with pytest.raises(CommandRejected) as raised:
        mapping.check_pin(pin, info.constraints)
    assert raised.value.reason is RejectReason.INVALID_PIN


def test_year_day_times_are_local_seconds_from_2000() -> None:
    assert mapping.local_epoch(datetime(2000, 1, 1, 0, 1)) == 60
    moment = datetime(2031, 3, 30, 1, 30)  # a DST night in Lisbon: wall-clock, no zone applied
    assert mapping.from_local_epoch(mapping.local_epoch(moment)) == moment


@pytest.mark.parametrize(("details", "status", "cluster"), [
    ("InteractionModelError: Failure (0x1, clusterStatus: 3)", 1, 3),
    ("InteractionModelError: Busy (0x9c)", 0x9C, None),
    ("Command failed: InteractionModelError: ConstraintError (0x87)", 0x87, None),
])
def test_interaction_model_texts_are_parsed(details: str, status: int,
                                            cluster: int | None) -> None:
    assert mapping.parse_im_error(details) == mapping.ImError(status, cluster)


@pytest.mark.parametrize(("error_code", "details", "expected"), [
    (0, "InteractionModelError: Failure (0x1, clusterStatus: 2)", RejectReason.DUPLICATE_PIN),
    (0, "InteractionModelError: ResourceExhausted (0x89)", RejectReason.NO_SPACE),
    (0, "InteractionModelError: InvalidCommand (0x85)", RejectReason.INVALID_PIN),
    (0, "InteractionModelError: Failure (0x1)", RejectReason.OTHER),
    (0, "InteractionModelError: Busy (0x9c)", RetryLater),
    (3, "Node 1 is not (yet) available.", RetryLater),
    (0, "something else went wrong", RetryLater),
])
def test_server_errors_become_the_bridges(error_code: int, details: str,
                                          expected: RejectReason | type) -> None:
    error = mapping.server_error(error_code, details, "x")
    if isinstance(expected, RejectReason):
        assert isinstance(error, CommandRejected) and error.reason is expected
    else:
        assert isinstance(error, expected)


def test_only_busy_and_timeout_are_sent_again() -> None:
    assert mapping.retried(0, "InteractionModelError: Timeout (0x94)")
    assert not mapping.retried(0, "InteractionModelError: Failure (0x1, clusterStatus: 2)")
    assert not mapping.retried(3, "Node 1 is not (yet) available.")


def test_events_tell_keypad_use_and_changes() -> None:
    keypad = mapping.door_event(mapping.EVENT_LOCK_OPERATION, {
        "lockOperationType": 1, "operationSource": 3,
        "credentials": [{"credentialType": 1, "credentialIndex": 4}]})
    assert keypad == mapping.DoorEvent(keypad_slot=4)
    manual = mapping.door_event(mapping.EVENT_LOCK_OPERATION,
                                {"lockOperationType": 1, "operationSource": 1,
                                 "credentials": None})
    assert manual == mapping.DoorEvent(unlock_method="manual")
    assert mapping.door_event(mapping.EVENT_LOCK_OPERATION, {"lockOperationType": 0}) is None
    changed = mapping.door_event(mapping.EVENT_LOCK_USER_CHANGE, {
        "lockDataType": 6, "dataOperationType": 2, "operationSource": 3, "dataIndex": 5})
    assert changed == mapping.DoorEvent(slot_changed=5, external=True)
    ours = mapping.door_event(mapping.EVENT_LOCK_USER_CHANGE, {
        "lockDataType": 6, "dataOperationType": 0, "operationSource": 7, "dataIndex": 2})
    assert ours == mapping.DoorEvent(slot_changed=2, external=False)


def test_the_server_must_be_on_loopback_unless_allowed() -> None:
    with pytest.raises(ValueError, match="no authentication"):
        Config.model_validate({"kind": "matter", "url": "ws://10.0.0.5:5580/ws"})
    Config.model_validate({"kind": "matter", "url": "ws://10.0.0.5:5580/ws",
                           "allow_remote": True})
    with pytest.raises(ValueError, match="ws://"):
        Config.model_validate({"kind": "matter", "url": "http://127.0.0.1:5580/ws"})
