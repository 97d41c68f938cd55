"""The Door Lock cluster's PIN rules as the zigpy driver reads them (pure, table-tested)."""

from __future__ import annotations

from datetime import datetime

import pytest

from bridge.driver import CommandRejected, RejectReason, RetryLater, SlotState
from drivers.zigbee import doorlock
from drivers.zigbee.doorlock import LockLimits


@pytest.mark.parametrize(("status", "outcome"), [
    (0, None),
    (1, RejectReason.OTHER),
    (2, RejectReason.NO_SPACE),
    (3, RejectReason.DUPLICATE_PIN),
])
def test_set_pin_status_by_the_clusters_own_numbers(status: int,
                                                    outcome: RejectReason | None) -> None:
    if outcome is None:
        doorlock.set_pin_outcome(status, 3)
        return
    with pytest.raises(CommandRejected) as caught:
        doorlock.set_pin_outcome(status, 3)
    assert caught.value.reason is outcome


def test_an_unknown_set_pin_status_is_retried_not_taken_as_a_refusal() -> None:
    with pytest.raises(RetryLater):
        doorlock.set_pin_outcome(0x7F, 3)


def test_clear_fails_on_any_status_but_pass() -> None:
    doorlock.clear_pin_outcome(0, 1)
    with pytest.raises(RetryLater):
        doorlock.clear_pin_outcome(1, 1)


@pytest.mark.parametrize(("user_status", "code", "state", "pin"), [
    (0x00, "", SlotState.EMPTY, None),
    (0x00, "1234", SlotState.EMPTY, None),
    (0x01, "1234", SlotState.KNOWN, "1234"),
    (0x01, b"5678", SlotState.KNOWN, "5678"),
    (0x01, "", SlotState.UNREADABLE, None),       # PIN not sent over the air
    (0x01, "****", SlotState.UNREADABLE, None),   # masked
    (0x01, None, SlotState.UNREADABLE, None),
    (0x03, "1234", SlotState.UNREADABLE, None),   # disabled: not a working code
    (0xFF, "", SlotState.UNREADABLE, None),       # no such user on this lock
])
def test_get_pin_code_response_as_a_tri_state_read(user_status: int, code: str | bytes | None,
                                                   state: SlotState, pin: str | None) -> None:
    read = doorlock.slot_read(4, user_status, code)
    assert (read.slot, read.state, read.pin) == (4, state, pin)


def test_a_disabled_user_says_what_it_is() -> None:
    read = doorlock.slot_read(2, 0x03, "1234")
    assert read.reason == "disabled" and read.disabled


def test_local_time_counts_from_2000_in_the_locks_zone() -> None:
    assert doorlock.local_time(datetime(2000, 1, 1)) == 0
    moment = datetime(2026, 7, 4, 15, 0)
    assert doorlock.from_local_time(doorlock.local_time(moment)) == moment
    assert doorlock.local_time(datetime(1999, 1, 1)) == 0


@pytest.mark.parametrize(("limits", "first", "configured", "expected"), [
    (LockLimits(pin_users=30), 1, None, (1, 29)),
    (LockLimits(pin_users=4), 1, 30, (1, 3)),       # the device wins over a table
    (LockLimits(pin_users=250), 0, None, (0, 250)),
    (LockLimits(), 1, 8, (1, 8)),                    # no answer: the configured count
    # no answer, no setting: 30 users numbered from 0, so user id 30 is never used
    (LockLimits(), 1, None, (1, 29)),
    (LockLimits(), 0, None, (0, 30)),
])
def test_slot_range_from_the_device_first(limits: LockLimits, first: int,
                                          configured: int | None,
                                          expected: tuple[int, int]) -> None:
    assert limits.slot_range(first, configured) == expected


@pytest.mark.parametrize(("user_id", "slots", "user"), [
    (3, range(1, 30), 3),
    (0x0300, range(1, 30), 3),  # user 3 with its two bytes swapped
    (0xFFFF, range(1, 30), None),  # no user named
    (None, range(1, 30), None),
    (0, range(1, 30), None),  # the master code's user, not one of lockbridge's
    (0x0100, range(0, 300), 0x0100),  # a real user 256 is not taken for a swapped 1
    (0x0500, range(1, 5), None),  # swapped or not, not a user of this lock
])
def test_the_user_an_event_names(user_id: int | None, slots: range, user: int | None) -> None:
    assert doorlock.event_user(user_id, slots) == user
