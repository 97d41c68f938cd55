"""Seam-shaped API errors: `{"error": {"type", "message", ...}, "ok": false}` with a status."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bridge.engine import EngineError
from bridge.store import StoreUnavailable

_LOG = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The HTTP status of each error type the engine raises; unknown kinds are a client conflict
# rather than a server fault, because the engine only raises for requests it refuses.
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
    """The API error for a request the engine refused, with the status its kind carries."""
    validation = None
    if exc.kind == "invalid_input" and exc.field_name:
        validation = {"_errors": [], exc.field_name: {"_errors": [str(exc)]}}
    return ApiError(exc.status, exc.kind, str(exc), validation)


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


def errors_middleware(max_body_bytes: int) -> Any:
    """The one place a failed request becomes Seam's error answer: ApiError as it is, a request
    the engine refused (EngineError) by its kind, aiohttp's own refusals, the store unable to
    write (503), anything else a logged 500. Every answer carries a `seam-request-id`."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = f"req_{uuid.uuid4().hex}"
        try:
            if (request.content_length or 0) > max_body_bytes:
                raise ApiError(413, "payload_too_large",
                               f"The body is larger than {max_body_bytes} bytes")
            response = await handler(request)
        except ApiError as exc:
            response = web.json_response(exc.body(request_id), status=exc.status)
        except EngineError as exc:
            error = from_engine(exc)
            response = web.json_response(error.body(request_id), status=error.status)
        except web.HTTPException as exc:
            response = _http_error(exc, request_id)
        except StoreUnavailable as exc:
            # The store logged the outage once; a request it refuses is no fault of the API.
            error = store_unavailable(str(exc).removeprefix("the store cannot write: "))
            response = web.json_response(error.body(request_id), status=503)
        except Exception:
            _LOG.exception("API %s %s failed", request.method, request.path)
            error = ApiError(500, "internal_server_error", "Internal server error")
            response = web.json_response(error.body(request_id), status=500)
        response.headers["seam-request-id"] = request_id
        return response

    return errors


def _http_error(exc: web.HTTPException, request_id: str) -> web.Response:
    kinds = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    error = ApiError(exc.status, kinds.get(exc.status, "invalid_input"), exc.reason)
    response = web.json_response(error.body(request_id), status=exc.status)
    if exc.status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response
