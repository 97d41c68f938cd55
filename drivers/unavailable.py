"""The stand-in for a configured driver whose optional dependency is not installed."""

from __future__ import annotations

import logging
from collections.abc import Sequence

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
    """No locks, every call fails with FixConfig naming the extra to install; says so once.

    The other drivers keep running: one missing package must not take a whole property down.
    """

    def __init__(self, name: str, kind: str, package: str, extra: str) -> None:
        self.name = name
        self._kind = kind
        self._package = package
        self._extra = extra

    async def start(self, sink: DriverEventSink) -> None:
        """Say once what is missing."""
        _LOG.error("driver %s (%s) disabled: %s is not installed; install lockbridge[%s]",
                   self.name, self._kind, self._package, self._extra)

    async def stop(self) -> None:
        """Nothing to stop."""

    def devices(self) -> Sequence[DeviceInfo]:
        """No locks."""
        return []

    def availability(self, external_id: str) -> Availability:
        """The bridge's link to these locks is down (the locks themselves may be fine)."""
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
        return FixConfig(f"{self._package} is not installed: install lockbridge[{self._extra}]")
