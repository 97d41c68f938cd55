"""Which driver kinds exist and where their code lives; each is imported only when used."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Protocol

from pydantic import BaseModel

# kind -> module with `Config` (a pydantic model with `kind: Literal[...]`) and `build(...)`.
_KINDS: dict[str, str] = {
    "simulator": "drivers.simulator.config",
    "zwave": "drivers.zwave.config",
    "matter": "drivers.matter.config",
    "zigbee2mqtt": "drivers.zigbee2mqtt.config",
    "zwavejs_mqtt": "drivers.zwavejs_mqtt.config",
    "nuki_web": "drivers.nuki_web.config",
    "zigbee": "drivers.zigbee.config",
    "miio": "drivers.miio.config",
    "hubitat": "drivers.hubitat.config",
    "ttlock": "drivers.ttlock.config",
    "igloohome": "drivers.igloohome.config",
    "smartthings": "drivers.smartthings.config",
}


class DriverModule(Protocol):
    """What a driver's config module provides."""

    Config: type[BaseModel]

    def build(self, config: Any, context: Any) -> Any:
        """Make the driver from its validated settings."""


def kinds() -> list[str]:
    """Every driver kind this build knows."""
    return sorted(_KINDS)


def module(kind: str) -> ModuleType:
    """The config module of one driver kind; raises ImportError when its extra is missing."""
    return importlib.import_module(_KINDS[kind])


def config_model(kind: str) -> type[BaseModel] | None:
    """The pydantic model of a kind's settings, or None for an unknown kind."""
    if kind not in _KINDS:
        return None
    model: type[BaseModel] = module(kind).Config
    return model
