"""Aqara Zigbee locks behind a Xiaomi/Aqara gateway: what lockbridge reads of each (pure data).

Sources (docs/drivers/miio-gateway-facts.md has them in full): python-miio 0.5.12's
`gateway/devices/subdevices.yaml` (the models, `status` 'locked'/'unlocked'); the gateway's
property store for acn02 and acn03 as dumped in XiaomiGateway3 issues #551 and #143
(`bat_percent`, `alive`, and on acn03 `door_state` 'open'/'close', 'ajar' in XG3's map).
Reading these by name through `get_device_prop_exp` is what python-miio's `SubDevice` does;
that the gateway serves the store's keys that way is inferred, not captured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.driver import LockState


@dataclass(frozen=True, slots=True)
class AqaraLockModel:
    """One Aqara lock model: the properties polled and how its battery is learned."""

    zigbee_id: str
    name: str
    # Names read in one get_device_prop_exp; the gateway answers nothing when one is unknown
    # to it, so only names published for the model are asked.
    props: tuple[str, ...]
    # No `bat_percent` published: the battery comes from `get_battery`, which only the v3
    # gateway answers (python-miio sends it to no other model).
    battery_by_get_battery: bool = False

    def state(self, values: Mapping[str, Any], battery: int | None) -> LockState:
        """The lock's state from one poll; None where the gateway gave nothing usable."""
        status = values.get("status")
        locked = {"locked": True, "unlocked": False}.get(status) if isinstance(status, str) \
            else None
        door = values.get("door_state")
        door_open = {"open": True, "ajar": True, "close": False}.get(door) \
            if isinstance(door, str) else None
        percent = values.get("bat_percent", battery)
        if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
            percent = None
        return LockState(locked=locked, door_open=door_open, battery_percent=percent)

    @staticmethod
    def reachable(values: Mapping[str, Any]) -> bool:
        """False when the gateway says it has lost the lock (`alive` 0); models without
        `alive` are taken as reachable while the gateway answers for them."""
        return bool(values.get("alive", 1) != 0)


AQARA_LOCKS: dict[str, AqaraLockModel] = {
    "lumi.lock.aq1": AqaraLockModel("lumi.lock.aq1", "Door lock S1", ("status",),
                                    battery_by_get_battery=True),
    "lumi.lock.acn02": AqaraLockModel("lumi.lock.acn02", "Door lock S2",
                                      ("status", "bat_percent", "alive")),
    "lumi.lock.v1": AqaraLockModel("lumi.lock.v1", "Vima cylinder lock", ("status",),
                                   battery_by_get_battery=True),
    "lumi.lock.acn03": AqaraLockModel("lumi.lock.acn03", "Door lock S2 pro",
                                      ("status", "bat_percent", "alive", "door_state")),
}
