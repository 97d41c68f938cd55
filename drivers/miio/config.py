"""Settings of the miIO driver, and building it; imports nothing heavy.

python-miio (the `miio` extra) is imported only in `build`, so a gateway without it can still
check a configuration that mentions these locks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.drivercontext import DriverContext
from bridge.zones import TimeZoneName
from drivers.unavailable import UnavailableDriver


class LockConfig(BaseModel):
    """One lock on the LAN: its address, its token (from a file) and its MiOT model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    name: str | None = None
    host: str
    # The 32-hex-digit miIO token, first line of the file; never in the YAML.
    token_file: Path
    model: str
    time_zone: TimeZoneName | None = None

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from drivers.miio.models import MODELS

        if value not in MODELS:
            raise ValueError(f"no published MiOT lock spec is known for {value!r}; supported: "
                             f"{', '.join(sorted(MODELS))}")
        return value

    @field_validator("host")
    @classmethod
    def _no_port(cls, value: str) -> str:
        if ":" in value or "/" in value:
            raise ValueError("host is an IP address or name without a port (miIO always uses "
                             "UDP port 54321)")
        return value


class Config(BaseModel):
    """The miIO driver's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["miio"]
    name: str = "miio"
    property: str | None = None
    locks: list[LockConfig]
    # How often each lock's state and last event are read (python-miio has no push locally).
    poll_interval_s: Annotated[float, Field(ge=1)] = 30.0
    timeout_s: Annotated[float, Field(gt=0)] = 5.0

    @field_validator("locks")
    @classmethod
    def _unique(cls, value: list[LockConfig]) -> list[LockConfig]:
        ids = [lock.id for lock in value]
        if len(ids) != len(set(ids)):
            raise ValueError("lock ids must be unique")
        return value


def build(config: Config, context: DriverContext) -> object:
    """Make the miIO driver; without the `miio` extra, a driver that reports the problem."""
    try:
        from drivers.miio.driver import MiioDriver
    except ImportError:
        return UnavailableDriver(config.name, "miio", "python-miio", "miio")
    return MiioDriver(config, context.clock)
