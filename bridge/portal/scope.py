"""Which locks a portal session may see: `PortalScope` and the one function computing it.

A customer's locks are those of its spaces (the reservation automations' spaces whose
customer_key is the customer's: pushed with `/customers/push_data`, or created with one), unless
an optional YAML mapping (`portal.scope_file`) of customer_key to device ids names them; a
customer with neither sees every lock, as a customer with no spaces does in Seam's portal."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from bridge.reservations.service import ReservationService

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PortalScope:
    """The device ids a session may see; None means every device."""

    device_ids: frozenset[str] | None

    def allows(self, device_id: str | None) -> bool:
        """True when the session may see this device (and its codes and events)."""
        if self.device_ids is None:
            return True
        return device_id is not None and device_id in self.device_ids


class ScopeError(Exception):
    """The scope file cannot be read or is not a mapping of keys to lists of device ids."""


def scope_for(customer_key: str, scope_file: Path | None) -> frozenset[str] | None:
    """The device ids `customer_key` may see, or None for every device. The file is read on
    every call, so an edit applies to the next request without a restart."""
    if scope_file is None:
        return None
    try:
        mapping = yaml.safe_load(scope_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ScopeError(f"cannot read portal.scope_file {scope_file}: {exc}") from exc
    if not isinstance(mapping, dict):
        raise ScopeError(f"portal.scope_file {scope_file} is not a mapping of customer keys")
    devices = mapping.get(customer_key)
    if devices is None:
        return None
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise ScopeError(f"portal.scope_file {scope_file}: {customer_key} must list device ids")
    return frozenset(devices)


def space_devices(customer_key: str, reservations: ReservationService | None
                  ) -> frozenset[str] | None:
    """The locks of the customer's spaces in the reservation service (`reservations`, None when
    the daemon runs none), or None when the customer has no space."""
    if reservations is None:
        return None
    found = {device_id for space in reservations.state.spaces.values()
             if space.customer_key == customer_key for device_id in space.device_ids}
    return frozenset(found) if found else None
