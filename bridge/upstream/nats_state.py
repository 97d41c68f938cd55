"""The bridge's present in the fleet's key-value bucket: one key per device and per code.

The backend reads the present from the bucket instead of replaying events. Each pass renders
what the engine holds now and writes only what differs from what this process last wrote; the
keys it has ever written are remembered in the store, so a code forgotten while the process was
down is deleted at the next connect. Reading the bucket back is never needed (and a bridge's
NATS user is not allowed to: it would see other bridges' codes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from bridge.serialize import access_code_json, device_json, unmanaged_code_json
from bridge.stateview import StateView
from bridge.store import Store
from bridge.upstream.nats_subjects import FleetNames

_LOG = logging.getLogger(__name__)
# kv key (in the bridge's store) holding the bucket keys this bridge has written.
STATE_KEYS = "upstream.nats.state_keys"

Put = Callable[[str, bytes], Awaitable[None]]
Delete = Callable[[str], Awaitable[None]]


def render_state(state: StateView, names: FleetNames, bridge_id: str) -> dict[str, bytes]:
    """Pure over the engine's state: every key the bridge's present has, with its value."""
    out: dict[str, bytes] = {}
    for device in state.devices.values():
        out[names.device_key(bridge_id, device.device_id)] = _json(device_json(device,
                                                                               bridge_id))
    for code in state.codes.values():
        if not code.is_managed:
            out[names.unmanaged_key(bridge_id, code.access_code_id)] = _json(
                unmanaged_code_json(code, bridge_id))
        elif not (code.deleted and not code.on_lock):
            out[names.code_key(bridge_id, code.access_code_id)] = _json(
                access_code_json(code, state, bridge_id))
    return out


class StateMirror:
    """Keeps the bucket's keys of one bridge equal to its engine's state."""

    def __init__(self, state: StateView, store: Store, names: FleetNames,
                 bridge_id: str) -> None:
        self._state = state
        self._store = store
        self._names = names
        self._bridge_id = bridge_id
        self._written: dict[str, bytes] = {}
        self._known: set[str] | None = None
        self.passes = 0

    def forget_written(self) -> None:
        """A new connection (or a `snapshot` command): write every key again."""
        self._written.clear()

    async def sync(self, put: Put, delete: Delete) -> int:
        """One pass: write what changed, delete what is gone; returns how many keys moved."""
        if self._known is None:
            text = await self._store.read(lambda r: r.kv(STATE_KEYS))
            self._known = set(json.loads(text)) if text else set()
        current = render_state(self._state, self._names, self._bridge_id)
        moved = 0
        for key, value in current.items():
            if self._written.get(key) != value:
                await put(key, value)
                self._written[key] = value
                moved += 1
        gone = (self._known | set(self._written)) - set(current)
        for key in sorted(gone):
            await delete(key)
            self._written.pop(key, None)
            moved += 1
        keys = set(current)
        if keys != self._known:
            text = json.dumps(sorted(keys))
            await self._store.write(lambda tx: tx.put_kv(STATE_KEYS, text))
            self._known = keys
        self.passes += 1
        return moved


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
