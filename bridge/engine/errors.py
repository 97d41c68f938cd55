"""What the engine refuses, as callers see it: a kind (Seam's error type) and its HTTP status."""

from __future__ import annotations

import enum


class ErrorKind(enum.StrEnum):
    """The error types of requests the engine refuses; each carries its HTTP status.

    A StrEnum, so a kind compares equal to its Seam error type string."""

    status: int

    def __new__(cls, value: str, status: int) -> ErrorKind:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        return member

    INVALID_INPUT = ("invalid_input", 400)
    DEVICE_NOT_FOUND = ("device_not_found", 404)
    ACCESS_CODE_NOT_FOUND = ("access_code_not_found", 404)
    DUPLICATE_ACCESS_CODE = ("duplicate_access_code", 409)
    BACKUP_ACCESS_CODE_POOL_NOT_ENABLED = ("backup_access_code_pool_not_enabled", 400)
    NO_BACKUP_ACCESS_CODE_AVAILABLE = ("no_backup_access_code_available", 409)
    CANNOT_CONVERT = ("cannot_convert", 400)
    NOT_SUPPORTED = ("not_supported", 400)
    DEVICE_DISCONNECTED = ("device_disconnected", 409)
    # Refused while the lock still has codes lockbridge manages: a conflict with its state.
    DEVICE_HAS_ACCESS_CODES = ("device_has_access_codes", 409)
    # The lock itself did not answer: the SDK retries DELETE on 5xx, which is what we want.
    DEVICE_ERROR = ("device_error", 502)


_BY_VALUE = {kind.value: kind for kind in ErrorKind}


class EngineError(Exception):
    """A request the engine refuses; `kind` is the API error type, `status` its HTTP status."""

    def __init__(self, kind: ErrorKind | str, message: str,
                 field_name: str | None = None) -> None:
        super().__init__(message)
        # A string names a kind by its value; one that names none is a bug (KeyError).
        self.kind = kind if isinstance(kind, ErrorKind) else _BY_VALUE[kind]
        self.field_name = field_name

    @property
    def status(self) -> int:
        """The HTTP status of this refusal."""
        return self.kind.status
