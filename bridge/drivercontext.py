"""What the composition root hands every driver it builds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge.clock import Clock


@dataclass(frozen=True, slots=True)
class DriverContext:
    """Shared services a driver may use."""

    clock: Clock
    state_dir: Path
