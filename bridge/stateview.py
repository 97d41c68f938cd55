"""A read-only view of what the engine holds: the one way the fronts read state.

The HTTP API, the upstream link, the serializer and the status page read devices and codes
through a `StateView`, never through the engine's own dictionaries: the view hands out
`Mapping`s that cannot be written, so no front can change state except by asking the engine
(through `bridge.application`), and a change to how the engine keeps its state touches this
module only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from bridge.engine import EngineError, ErrorKind

if TYPE_CHECKING:
    from bridge.engine import Engine
    from bridge.records import CodeRecord, DeviceRecord


class StateView:
    """Devices and codes as the engine holds them now, read-only."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def devices(self) -> Mapping[str, DeviceRecord]:
        """Every device by id, managed or not (live: it follows the engine's changes)."""
        return MappingProxyType(self._engine.devices)

    @property
    def codes(self) -> Mapping[str, CodeRecord]:
        """Every code by id, managed and unmanaged, deleted ones still on their lock too."""
        return MappingProxyType(self._engine.codes)

    def codes_of(self, device_id: str) -> Sequence[CodeRecord]:
        """Every code of one device, managed and unmanaged, oldest first."""
        return tuple(self._engine.codes_of(device_id))

    def device(self, device_id: str, managed: bool = True) -> DeviceRecord:
        """A managed (or, if asked, unmanaged) device, or EngineError device_not_found."""
        return self._engine.device(device_id, managed)

    def any_device(self, device_id: str) -> DeviceRecord:
        """A device, managed or not, or EngineError device_not_found."""
        device = self._engine.devices.get(device_id)
        if device is None:
            raise EngineError(ErrorKind.DEVICE_NOT_FOUND, f"Device {device_id} not found",
                              "device_id")
        return device

    def code(self, access_code_id: str, managed: bool = True) -> CodeRecord:
        """A managed (or, if asked, unmanaged) code, or EngineError access_code_not_found."""
        return self._engine.code(access_code_id, managed)

    def backup_available(self, code: CodeRecord) -> bool | None:
        """`is_backup_access_code_available` for a code; None where it does not apply."""
        return self._engine.backup_available(code)

    def clock_synchronized(self) -> bool:
        """False while schedules are held because the system clock is not synchronised."""
        return self._engine.clock_synchronized()

    def outstanding(self) -> int:
        """How many managed codes are not yet where they should be."""
        return self._engine.outstanding()
