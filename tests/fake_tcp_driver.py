"""A driver kind that only has settings: a broker-like peer for `lockbridge doctor` tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Broker(BaseModel):
    """Where the peer listens and how the bridge signs in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: int = 1883
    username: str | None = None
    password_file: Path | None = None


class Config(BaseModel):
    """Settings of the fake driver: a nested broker, or a url like zwave-js-server's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["tcpfake"]
    name: str = "tcpfake"
    broker: Broker | None = None
    url: str | None = None


def build(config: Config, context: Any) -> Any:
    """Never started by these tests."""
    raise NotImplementedError
