"""Seam-shaped API errors: `{"error": {"type", "message", ...}, "ok": false}` with a status."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from bridge.engine import EngineError

# The HTTP status of each error type the engine raises; unknown kinds are a client conflict
# rather than a server fault, because the engine only raises for requests it refuses.
_ENGINE_STATUS: dict[str, int] = {
    "invalid_input": 400,
    "device_not_found": 404,
    "access_code_not_found": 404,
    "duplicate_access_code": 409,
    "backup_access_code_pool_not_enabled": 400,
    "no_backup_access_code_available": 409,
    "cannot_convert": 400,
    "not_supported": 400,
    "device_disconnected": 409,
    # The lock itself did not answer: the SDK retries DELETE on 5xx, which is what we want.
    "device_error": 502,
}


class ApiError(Exception):
    """An error answer: Seam's error `type`, a message and an HTTP status."""

    def __init__(self, status: int, error_type: str, message: str,
                 validation_errors: dict[str, Any] | None = None,
                 data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.validation_errors = validation_errors
        self.data = data

    def body(self, request_id: str) -> dict[str, Any]:
        """The JSON body Seam's clients expect."""
        error: dict[str, Any] = {"type": self.error_type, "message": self.message,
                                 "request_id": request_id}
        if self.validation_errors is not None:
            error["validation_errors"] = self.validation_errors
        if self.data is not None:
            error["data"] = self.data
        return {"error": error, "ok": False}


def store_unavailable(reason: str) -> ApiError:
    """A 503 while the store cannot write: nothing was done, the client retries later."""
    return ApiError(503, "service_unavailable",
                    f"Temporarily unable to save changes ({reason}); try again later")


def not_found(error_type: str, message: str) -> ApiError:
    """A 404 with Seam's `<thing>_not_found` type."""
    return ApiError(404, error_type, message)


def from_engine(exc: EngineError) -> ApiError:
    """The API error for a request the engine refused."""
    status = _ENGINE_STATUS.get(exc.kind, 409)
    validation = None
    if exc.kind == "invalid_input" and exc.field_name:
        validation = {"_errors": [], exc.field_name: {"_errors": [str(exc)]}}
    return ApiError(status, exc.kind, str(exc), validation)


def from_validation(exc: ValidationError) -> ApiError:
    """A 400 invalid_input with per-field messages, shaped like Seam's (zod's) `format()`."""
    fields: dict[str, Any] = {"_errors": []}
    parts: list[str] = []
    for problem in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(p) for p in problem["loc"]) or "_errors"
        message = problem["msg"]
        parts.append(f"{location}: {message}")
        if location == "_errors":
            fields["_errors"].append(message)
        else:
            fields.setdefault(location, {"_errors": []})["_errors"].append(message)
    return ApiError(400, "invalid_input", "Invalid input: " + "; ".join(parts), fields)
