"""A stored code's row leaves out the fields at their default and reads back equal; rows
written before (every field present) still read; the fast assembly equals the constructor."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from bridge.driver import LocalWindow
from bridge.model import AccessCodeStatus, AccessCodeType, Issue
from bridge.records import (
    NO_SYNC,
    CodeRecord,
    CodeSync,
    Held,
    code_from_row,
    code_to_row,
    replace_code,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _old_row(code: CodeRecord) -> dict[str, object]:
    """The public JSON as versions before this one stored it: every field, defaults too."""
    public, _ = code_to_row(code)
    for f in dataclasses.fields(CodeRecord):
        if f.name not in public and f.name not in ("code", "requested_code", "on_lock_pin"):
            value = f.default
            public[f.name] = (value.value if isinstance(value, AccessCodeType | AccessCodeStatus)
                              else [] if value == () else
                              dataclasses.asdict(value) if value is NO_SYNC else value)
    return public


def test_a_converged_code_stores_only_what_differs_from_the_defaults() -> None:
    code = CodeRecord("a", "d", NOW, code="123456", on_lock_pin="123456", slot=3,
                      verified=True, ever_set=True, status=AccessCodeStatus.SET)
    public, secrets = code_to_row(code)
    assert set(public) == {"access_code_id", "device_id", "created_at", "status", "slot",
                           "verified", "ever_set"}
    assert code_from_row(public, secrets) == code


def test_every_field_set_round_trips() -> None:
    window = LocalWindow(NOW, NOW + timedelta(hours=2), "Europe/Paris")
    code = CodeRecord(
        "a", "d", NOW, type=AccessCodeType.TIME_BOUND, is_managed=False, name="Guest",
        code="1234", requested_code="9999", preferred_code_length=4, starts_at=NOW,
        ends_at=NOW + timedelta(days=1), status=AccessCodeStatus.REMOVING, slot=7,
        on_lock_pin="5555", on_lock_held=Held(window, "Guest"), verified=True,
        last_write_at=NOW, pending_since=NOW, is_scheduled_on_device=True,
        errors=(Issue("e", "an error", NOW),), warnings=(Issue("w", "a warning", NOW),),
        allow_external_modification=True, common_code_key="k",
        use_backup_access_code_pool=True, is_backup=True, pulled_backup_access_code_id="b",
        backup_pulled_for="c", backup_pulled_at=NOW, appearance_name="G", attempts=2,
        next_attempt_at=NOW, deleted=True, revision=5, gave_up=True, ever_set=True,
        sync=CodeSync(outcome_unknown=True, first_sent_at=NOW))
    public, secrets = code_to_row(code)
    assert code_from_row(public, secrets) == code


def test_falsy_values_that_are_not_the_default_are_kept() -> None:
    # is_managed defaults to True: False must be stored, and 0 is not "no slot".
    code = CodeRecord("a", "d", NOW, is_managed=False, slot=0)
    public, secrets = code_to_row(code)
    assert public["is_managed"] is False and public["slot"] == 0
    assert code_from_row(public, secrets) == code


def test_a_row_with_every_field_from_before_reads_the_same() -> None:
    code = CodeRecord("a", "d", NOW, code="1234", on_lock_pin="1234", slot=1,
                      status=AccessCodeStatus.SET)
    _, secrets = code_to_row(code)
    assert code_from_row(_old_row(code), dict(secrets)) == code


def test_default_marks_are_one_shared_object() -> None:
    code = CodeRecord("a", "d", NOW)
    public, secrets = code_to_row(dataclasses.replace(code, sync=CodeSync()))
    assert "sync" not in public
    assert code_from_row(public, secrets).sync is NO_SYNC
    assert code_from_row(_old_row(code), dict(secrets)).sync is NO_SYNC


def test_a_row_without_its_id_is_refused() -> None:
    public, secrets = code_to_row(CodeRecord("a", "d", NOW))
    del public["access_code_id"]
    with pytest.raises(TypeError):
        code_from_row(public, secrets)


def test_the_fast_copy_of_a_code_equals_dataclasses_replace() -> None:
    # The engine copies codes through replace_code; every field must come across, changed or
    # not, and a name that is no field is refused as dataclasses.replace refuses it.
    window = LocalWindow(NOW, NOW + timedelta(hours=2), "Europe/Paris")
    code = CodeRecord(
        "a", "d", NOW, type=AccessCodeType.TIME_BOUND, name="Guest", code="1234",
        starts_at=NOW, ends_at=NOW + timedelta(days=1), slot=7, on_lock_pin="1234",
        on_lock_held=Held(window, "Guest"), errors=(Issue("e", "an error", NOW),),
        attempts=2, revision=5, sync=CodeSync(outcome_unknown=True))
    changes = {"slot": 9, "verified": True, "on_lock_pin": None, "warnings": ()}
    copied = replace_code(code, **changes)
    assert copied == dataclasses.replace(code, **changes)
    assert all(getattr(copied, f.name) is getattr(code, f.name)
               for f in dataclasses.fields(CodeRecord) if f.name not in changes)
    assert replace_code(code) == code and replace_code(code) is not code
    with pytest.raises(dataclasses.FrozenInstanceError):
        copied.slot = 3  # type: ignore[misc]
    with pytest.raises(TypeError, match="no field pin"):
        replace_code(code, pin="9999")
