"""Settings shared by the MQTT drivers: the broker (the password never sits in the file), the
waits of their common base, and a lock's PIN length overrides."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TlsConfig(BaseModel):
    """TLS to the broker: a CA to trust, optionally a client certificate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # Skips the host name check only (the chain is still verified); for brokers reached by IP.
    insecure_skip_hostname: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    def context(self) -> ssl.SSLContext:
        """An SSL context for the connection (reads the certificate files)."""
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None)
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        if self.insecure_skip_hostname:
            context.check_hostname = False
        return context


class BrokerConfig(BaseModel):
    """Where the broker is and how to log in; `password` only as ${ENV} or `password_file`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    # The config loader refuses a literal here: it must be written as ${ENV_VAR}.
    password: str | None = None
    password_file: Path | None = None
    client_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    tls: TlsConfig | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    publish_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    reconnect_min_s: Annotated[float, Field(gt=0)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0)] = 300.0
    # Refused credentials are retried this rarely, never in a storm.
    refused_retry_s: Annotated[float, Field(gt=0)] = 900.0

    @model_validator(mode="after")
    def _secrets(self) -> BrokerConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if (self.password is not None or self.password_file is not None) \
                and self.username is None:
            raise ValueError("a password needs a username")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s is larger than reconnect_max_s")
        return self

    def read_password(self) -> str | None:
        """The password now: read from `password_file` on every connect, so a rotated secret
        is picked up without a restart."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text().strip()
            except OSError as exc:
                raise PasswordUnavailable(
                    f"cannot read password_file {self.password_file}: {exc.strerror}") from exc
        return self.password

    def describe(self) -> str:
        """`host:port` for log lines (never the credentials)."""
        return f"{self.host}:{self.port}"


class PasswordUnavailable(Exception):
    """The password file cannot be read; retrying soon will not help."""


class PinLengthSettings(BaseModel):
    """A lock's PIN lengths where the configuration overrides what the lock reports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_length: Annotated[int, Field(ge=1, le=12)] | None = None
    max_length: Annotated[int, Field(ge=1, le=12)] | None = None

    @model_validator(mode="after")
    def _lengths(self) -> Self:
        if self.min_length and self.max_length and self.min_length > self.max_length:
            raise ValueError("min_length is larger than max_length")
        return self


class MqttDriverSettings(BaseModel):
    """What every MQTT lock driver's settings have: the broker and the waits of their common
    base (drivers/mqtt/lockdriver.py). Each driver gives its own answer timeout and
    confirmation window, which differ with what stands between the broker and the lock."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    broker: BrokerConfig = BrokerConfig()
    answer_timeout_s: float
    startup_wait_s: Annotated[float, Field(ge=0, le=300)] = 10.0
    confirmation_window_s: float
    command_spacing_s: Annotated[float, Field(ge=0)] = 2.0
    # Keep what the gateway said of each lock in state_dir, so the locks stay known (as
    # disconnected) when the daemon starts while the broker is down.
    remember_locks: bool = True

    def base_options(self, state_dir: Path, kind: str) -> dict[str, Any]:
        """The options of the common base (`MqttOptions`), the remembered lock list under
        `state_dir` named after the driver's kind and name."""
        return {"answer_timeout_s": self.answer_timeout_s,
                "startup_wait_s": self.startup_wait_s,
                "confirmation_window_s": self.confirmation_window_s,
                "command_spacing_s": self.command_spacing_s,
                "memory_file": (state_dir / f"{kind}-{self.name}.json"
                                if self.remember_locks else None)}
