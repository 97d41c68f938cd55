"""What the engine refuses, as callers see it."""

from __future__ import annotations


class EngineError(Exception):
    """A request the engine refuses; `kind` is the API error type."""

    def __init__(self, kind: str, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.field_name = field_name
