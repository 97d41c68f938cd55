"""EngineError kinds: typed, equal to Seam's error type strings, each with its HTTP status."""

from __future__ import annotations

import pytest

from bridge.api.errors import from_engine
from bridge.engine import EngineError, ErrorKind


@pytest.mark.parametrize(("kind", "status"), [
    ("invalid_input", 400),
    ("device_not_found", 404),
    ("access_code_not_found", 404),
    ("duplicate_access_code", 409),
    ("backup_access_code_pool_not_enabled", 400),
    ("no_backup_access_code_available", 409),
    ("cannot_convert", 400),
    ("not_supported", 400),
    ("device_disconnected", 409),
    ("device_has_access_codes", 409),
    ("device_error", 502),
])
def test_a_kind_named_by_its_string_carries_its_status(kind: str, status: int) -> None:
    error = EngineError(kind, "refused", "field")
    assert error.kind == kind and error.kind is ErrorKind(kind)
    assert error.status == status
    # The API answers with the same type and status.
    answer = from_engine(error)
    assert (answer.error_type, answer.status) == (kind, status)


def test_every_kind_is_in_the_table() -> None:
    assert len(ErrorKind) == 11


def test_a_string_that_names_no_kind_is_refused() -> None:
    with pytest.raises(KeyError):
        EngineError("no_such_kind", "refused")
