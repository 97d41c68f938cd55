"""The published MiOT specs of Xiaomi Wi-Fi locks lockbridge reads (pure data).

Only properties the spec marks readable are listed: the lock's event fields (method, operation
id, time) have no read access, so they are not here. Source: the MiOT spec of
`urn:miot-spec-v2:device:lock:0000A038:loock-v5:1` (service 2 lock, 3 door, 4 battery).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LockModel:
    """Where a model keeps its lock state, door state and battery."""

    model: str
    manufacturer: str
    lock_state: tuple[int, int]
    # The lock-state value that means "open" (unlocked); any other value means locked.
    unlocked_value: int
    door_state: tuple[int, int]
    door_open_value: int
    battery: tuple[int, int]

    @property
    def readable(self) -> dict[str, tuple[int, int]]:
        """Name -> (siid, piid) of every property polled."""
        return {"lock": self.lock_state, "door": self.door_state, "battery": self.battery}

    def state(self, values: dict[tuple[int, int], Any]) -> tuple[bool | None, bool | None,
                                                                 int | None]:
        """(locked, door open, battery %) from a poll; None where the lock did not answer."""
        lock, door, battery = (values.get(self.lock_state), values.get(self.door_state),
                               values.get(self.battery))
        locked = None if lock is None else int(lock) != self.unlocked_value
        door_open = None if door is None else int(door) == self.door_open_value
        return locked, door_open, None if battery is None else int(battery)


MODELS: dict[str, LockModel] = {
    # loock-v5: 2.5 lock status (0 Open, 255 Others), 3.1 door status (0 open, 1 closed),
    # 4.1 battery level.
    "loock.lock.v5": LockModel("loock.lock.v5", "Loock", lock_state=(2, 5), unlocked_value=0,
                               door_state=(3, 1), door_open_value=0, battery=(4, 1)),
}
