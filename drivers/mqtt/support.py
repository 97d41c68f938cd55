"""Pieces of the MQTT drivers that must import without the `mqtt` extra: a stand-in driver for
when aiomqtt is missing, and the small JSON file in which a driver remembers its locks."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bridge.driver import (
    Availability,
    CodeWrite,
    DeviceInfo,
    DriverEventSink,
    FixConfig,
    SlotRead,
    WriteResult,
)

_LOG = logging.getLogger(__name__)


class UnavailableDriver:
    """Stands in for an MQTT driver when aiomqtt is not installed: no locks, every call fails
    with FixConfig naming the extra to install."""

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self._kind = kind

    async def start(self, sink: DriverEventSink) -> None:
        """Say once what is missing."""
        _LOG.error("driver %s (%s) disabled: aiomqtt is missing; install lockbridge[mqtt]",
                   self.name, self._kind)

    async def stop(self) -> None:
        """Nothing to stop."""

    def devices(self) -> Sequence[DeviceInfo]:
        """No locks."""
        return []

    def availability(self, external_id: str) -> Availability:
        """Never reachable."""
        return Availability.DISCONNECTED

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """Always fails."""
        raise self._missing()

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Always fails."""
        raise self._missing()

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Always fails."""
        raise self._missing()

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Always fails."""
        raise self._missing()

    async def probe(self, external_id: str) -> bool:
        """Never answers."""
        return False

    def _missing(self) -> FixConfig:
        return FixConfig("aiomqtt is not installed: install lockbridge[mqtt]")


def load_memory(path: Path | None) -> dict[str, object]:
    """What a driver remembered in `path` ({} when there is nothing usable)."""
    if path is None:
        return {}
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        _LOG.warning("cannot read %s (%s); starting without it", path, type(exc).__name__)
        return {}
    return doc if isinstance(doc, dict) else {}


def save_memory(path: Path | None, doc: dict[str, object]) -> None:
    """Replace `path` with `doc` atomically; a failure is logged, never raised."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _LOG.warning("cannot save %s (%s)", path, exc.strerror)
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)
