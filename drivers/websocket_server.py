"""Settings shared by the drivers that drive a local server over a websocket (zwave-js-server,
the Matter server): where it listens, how long to wait for it, and how to reconnect.

Neither server has any authentication, so its URL must be on loopback unless the file says
`allow_remote: true`; that check and the URL's own are made here once for both."""

from __future__ import annotations

from typing import Annotated, ClassVar, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.hosts import is_loopback


class WebSocketServerConfig(BaseModel):
    """The websocket URL, its timeouts and the reconnect bounds; a driver's Config adds its own
    fields and gives `url` its default (the example a bad URL is shown)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # How the loopback error names the server ("zwave-js-server", "the Matter server").
    SERVER_NAME: ClassVar[str]

    url: str
    allow_remote: bool = False
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    start_timeout_s: Annotated[float, Field(ge=0)] = 30.0
    probe_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    reconnect_min_s: Annotated[float, Field(gt=0)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0)] = 60.0

    @field_validator("url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"url must look like {cls.model_fields['url'].default}")
        try:
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError:
            raise ValueError("url has an invalid port") from None
        return value

    @model_validator(mode="after")
    def _loopback_and_reconnect_bounds(self) -> Self:
        host = urlsplit(self.url).hostname or ""
        if not self.allow_remote and not is_loopback(host):
            raise ValueError(f"{self.SERVER_NAME} has no authentication, so lockbridge only "
                             f"talks to it on loopback; {host!r} is not (set allow_remote: true "
                             "only behind a private, trusted link)")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s is larger than reconnect_max_s")
        return self
