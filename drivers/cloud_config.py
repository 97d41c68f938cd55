"""Settings shared by the cloud drivers (Nuki Web, TTLock, SmartThings, Igloohome, Hubitat):
a secret given either as ${ENV_VAR} or as a file, never both, and an API URL that carries it
over https (plain http only to a server on loopback, as in tests).

The secret fields are declared once here, with repr=False so that no repr of a config (a log
line, a traceback) shows one; the config loader refuses a literal secret (bridge.config)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.hosts import is_loopback


def require_one(value: object, file: Path | None, name: str) -> None:
    """A secret `name` is given exactly once: as the value or as `name`_file."""
    if (value is None) == (file is None):
        raise ValueError(f"give exactly one of {name} (as ${{ENV_VAR}}) or {name}_file")


def require_https(url: str, *, malformed: str, carried: str) -> None:
    """`url` is http(s) with a host, and https unless it is on loopback (`carried` names what
    would otherwise cross the network in clear; `malformed` is the message for a bad URL)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(malformed)
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"{carried} would cross the network in clear: use https (plain http "
                         "only to a server on loopback)")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenSettings(_Settings):
    """An API token: `token` (as ${ENV_VAR}) or `token_file`."""

    token: str | None = Field(default=None, repr=False)
    token_file: Path | None = None

    @model_validator(mode="after")
    def _one_token(self) -> Self:
        require_one(self.token, self.token_file, "token")
        return self


class ClientSecretSettings(_Settings):
    """An OAuth client: its id, and its secret as `client_secret` (${ENV_VAR}) or
    `client_secret_file`."""

    client_id: Annotated[str, Field(min_length=1)]
    # The config loader refuses a literal client_secret: ${ENV_VAR} or a file.
    client_secret: str | None = Field(default=None, repr=False)
    client_secret_file: Path | None = None

    @model_validator(mode="after")
    def _one_client_secret(self) -> Self:
        require_one(self.client_secret, self.client_secret_file, "client_secret")
        return self
