"""A restarted lockbridge meets a 250-slot lock that reads one slot a frame (no User Code
checksum, no multi-code reads), on the real zwave-js mock, frames counted by the mock.

Before, the engine walked all 250 slots (one User Code Get each, about 0.9 s a frame on the
air) before it looked at any code it manages: minutes before a code changed while it was down
was put back. Now the managed slots are read first, the wrong ones put back, then the rest of
the lock is walked, and no slot is read twice.

The restart is lockbridge's, on the same mock network: a zwave-js meeting the lock for the
first time clears every user code in its initial interview ("Initial interview, clearing all
user codes"), and a lock without a checksum is walked whatever zwave-js's cache holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.engine import CodeRequest
from bridge.model import AccessCodeStatus
from drivers.simulator.lock import SEEN_PINS
from tests.zwave_stack import (
    ZWaveStack,
    missing_node,
    quiet_for,
    running_stack,
    start_zwave_engine,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_node() is not None, reason=missing_node() or ""),
]

PLAIN = 2
SLOTS = 250
MANAGED = 30
NODES = [{"id": PLAIN, "slots": SLOTS, "schedules": False, "checksum": False}]
EXTERNAL_ID = f"7e570001-{PLAIN}"
WRONG_PIN = "97531"


class WalkWatch:
    """Between the engine and the driver: when the engine starts the walk of every slot, it
    takes the count of what the lock received until then (the mock resets it)."""

    def __init__(self, inner: Any, stack: ZWaveStack) -> None:
        self._inner = inner
        self._stack = stack
        self.before_walk: dict[str, int] | None = None
        self.lock_before_walk: dict[int, str] = {}
        self.reads: list[list[int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def read_slots(self, external_id: str, slots: Any) -> Any:
        self.reads.append(list(slots))
        return await self._inner.read_slots(external_id, slots)

    async def list_codes(self, external_id: str) -> Any:
        if self.before_walk is None:
            self.before_walk = await self._stack.control("received", node=PLAIN)
            self.lock_before_walk = await self._stack.slots(PLAIN)
        return await self._inner.list_codes(external_id)


async def test_a_restart_confirms_the_managed_codes_before_walking_the_lock(
        tmp_path: Path) -> None:
    pins = [f"{4100 + 7 * index:04d}" for index in range(MANAGED)]
    SEEN_PINS.update([*pins, WRONG_PIN])
    folder = tmp_path / "bridge"  # the store and the driver's state, kept over the restart
    folder.mkdir()
    with running_stack(tmp_path / "zwave", NODES) as stack:
        h, _ = await start_zwave_engine(stack.url, folder)
        try:
            await h.until(lambda: len(h.engine.devices) == 1, timeout=60, what="the lock")
            device_id = h.device_id(EXTERNAL_ID, driver="zw")
            made = [await h.engine.create_code(device_id, CodeRequest(name="Guest", code=pin))
                    for pin in pins]
            await h.until(lambda: all(h.code(c.access_code_id).status is AccessCodeStatus.SET
                                      and h.code(c.access_code_id).verified for c in made),
                          advance=0.5, timeout=120, what="converged")
            wanted = {slot: pin for c, pin in zip(made, pins, strict=True)
                      if (slot := h.code(c.access_code_id).slot) is not None}
        finally:
            await h.stop()
        # While lockbridge is down, one of its codes is changed at the keypad (a lock that
        # does not announce it: only a read finds it).
        assert len(wanted) == MANAGED
        wrong = min(wanted)
        await stack.control("keypad_silent_set", node=PLAIN, slot=wrong, code=WRONG_PIN)
        await stack.control("received", node=PLAIN)

        watch: list[WalkWatch] = []

        def watched(driver: Any) -> WalkWatch:
            watch.append(WalkWatch(driver, stack))
            return watch[0]

        again, _ = await start_zwave_engine(stack.url, folder, clock=h.clock, wrap=watched)
        try:
            await again.until(lambda: len(again.engine.devices) == 1, timeout=60,
                              what="the lock")
            await quiet_for(again, 60, step=30, timeout=120)
            after_walk = await stack.control("received", node=PLAIN)
            before_walk = watch[0].before_walk
            assert before_walk is not None, "the lock was never walked"
            # Before the walk: each managed slot read once (one driver call), the code found
            # changed put back (its Set, and the Get that verifies it).
            assert before_walk == {"UserCodeCCGet": MANAGED + 1,
                                   "UserCodeCCExtendedUserCodeSet": 1}
            assert watch[0].reads[0] == sorted(wanted)
            assert {slot: watch[0].lock_before_walk.get(slot) for slot in wanted} == wanted
            # The walk reads only the slots not read yet: the whole first scan is the
            # slot-by-slot walk (250 frames), plus the one that verifies the repair.
            assert after_walk == {"UserCodeCCGet": SLOTS - MANAGED}
            codes = [again.code(c.access_code_id) for c in made]
            assert all(c.status is AccessCodeStatus.SET and c.verified for c in codes)
        finally:
            await again.stop()
