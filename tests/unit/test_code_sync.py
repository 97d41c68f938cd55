"""A code's sync marks are typed, survive the store's row format, and are read from rows
written before they were typed (a dict `extra`)."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.records import CodeRecord, CodeSync, code_from_row, code_to_row

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_the_marks_round_trip_through_a_row() -> None:
    sync = CodeSync(outcome_unknown=True, not_applied=True, external_hold=True,
                    refused_for_good="invalid_pin", first_sent_at=NOW, awaiting_adoption=True)
    code = CodeRecord(access_code_id="a", device_id="d", created_at=NOW, code="1234", sync=sync)
    public, secrets = code_to_row(code)
    assert code_from_row(public, secrets) == code


def test_a_row_from_before_reads_its_extra_as_marks() -> None:
    code = CodeRecord(access_code_id="a", device_id="d", created_at=NOW, code="1234")
    public, secrets = code_to_row(code)
    public.pop("sync", None)
    public["extra"] = {"outcome_unknown": True, "first_sent_at": NOW.isoformat(),
                       "refused_for_good": "unsupported"}
    loaded = code_from_row(public, secrets)
    assert loaded.sync == CodeSync(outcome_unknown=True, first_sent_at=NOW,
                                   refused_for_good="unsupported")


def test_a_row_from_before_without_marks_has_none() -> None:
    code = CodeRecord(access_code_id="a", device_id="d", created_at=NOW)
    public, secrets = code_to_row(code)
    public.pop("sync", None)
    public["extra"] = {}
    assert code_from_row(public, secrets).sync == CodeSync()
