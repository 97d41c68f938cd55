"""`GET /health`: liveness (it answers at all) and readiness, with what is not ready and why."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from bridge.driver import Availability
from bridge.stateview import StateView

if TYPE_CHECKING:
    from bridge.daemon import Bridge

# Availability that means the bridge's own link (broker, Z-Wave server, cloud account) is down,
# not the lock: that is the bridge not being ready. An offline lock is the lock's problem.
_LINK_DOWN = frozenset({Availability.DISCONNECTED, Availability.HUB_DISCONNECTED,
                        Availability.ACCOUNT_DISCONNECTED})


def health(bridge: Bridge) -> tuple[int, dict[str, Any]]:
    """HTTP status (200 ready, 503 not ready) and the body of `/health`."""
    state = StateView(bridge.engine)
    devices = [d for d in state.devices.values() if d.is_managed and not d.removed]
    not_ready: list[str] = []
    notes: list[str] = []
    down = Counter(d.driver for d in devices if d.availability in _LINK_DOWN)
    for driver, count in sorted(down.items()):
        not_ready.append(f"driver {driver}: link down, {count} lock{'s' * (count != 1)} "
                         "unreachable")
    if not bridge.store.health.writable:
        not_ready.append(f"store cannot write: {bridge.store.health.problem}; changes are "
                         "refused until it can")
    if not state.clock_synchronized():
        not_ready.append("system clock not synchronised: time-bound codes are held")
    offline = [d.display_name or d.device_id for d in devices
               if d.availability is Availability.OFFLINE]
    if offline:
        notes.append(f"{len(offline)} lock{'s' * (len(offline) != 1)} offline: "
                     + ", ".join(sorted(offline)[:10]))
    backup = bridge.extras.get("state_backup")
    if backup is not None and getattr(backup, "problem", None):
        notes.append(f"state backup failing: {backup.problem}")
    upstream = bridge.extras.get("upstream")
    if upstream is not None and not getattr(upstream, "connected", False):
        notes.append("upstream not connected (locks keep working from local state)")
    online = sum(1 for d in devices if d.availability is Availability.ONLINE)
    body: dict[str, Any] = {
        "ok": True,
        "status": "ready" if not not_ready else "not_ready",
        "ready": not not_ready,
        "not_ready": not_ready,
        "notes": notes,
        "locks": {"total": len(devices), "online": online},
        "codes_pending": state.outstanding(),
        "upstream": None if upstream is None else
        ("connected" if getattr(upstream, "connected", False) else "disconnected"),
    }
    return (200 if not not_ready else 503), body
