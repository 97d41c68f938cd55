"""Radio economy on Zigbee: the frames a Door Lock receives, counted by the zigpy fake
(tests/fakes/zigpy_radio.py: a real zigpy ControllerApplication over a fake radio, whose locks
count every frame they actually receive), never by lockbridge's own counters.

One lock of `slots` PIN users on a fake network, driven by lockbridge on a fake clock (a
simulated day takes seconds), measured twice in the same run: as lockbridge drives it now, and
with its driver's change check hidden, which is how the engine drove it before (every managed
slot read again each hourly reconcile). The Door Lock cluster keeps no checksum of its PINs, so
"now" is a sweep of the managed slots a day, keypad changes in between arriving as the lock's
programming events. The first scan is counted on the empty lock, and by a second lockbridge (a
fresh store) meeting the same lock holding the codes the first one converged, and after a
five-minute outage (which makes the engine re-read the lock), each against the slot-by-slot
walk of every user id the lock has.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import EveryReconcile
from bridge.clock import FakeClock
from bridge.engine import CodeRequest
from bridge.model import AccessCodeStatus

HOUR = 3600.0
IEEE = "00:0d:6f:00:0b:e4:c4:01"
# Door Lock frames that read a user's PIN: what a scan or a sweep costs.
PIN_READS = ("zcl:get_pin_code",)
_NETWORKS = itertools.count(1)



async def zigbee_radio(codes: int, slots: int, hours: int) -> dict[str, Any]:
    """Frames per code converged, per lock per day of steady state (now and with the change
    check hidden), and for the first scan of a lock of `slots` users, empty and holding
    `codes` codes."""
    try:
        fakes = importlib.import_module("tests.fakes.zigpy_radio")
    except ImportError as exc:  # zigpy is the `zigbee` extra
        return {"skipped": f"zigpy is not installed ({exc})"}
    out: dict[str, Any] = {"codes": codes, "slots": slots, "hours": hours}
    # The engine warns of the lock going offline in the outage and at each stop, as it should;
    # that is not the table's news.
    engine_log = logging.getLogger("bridge.engine")
    level = engine_log.level
    engine_log.setLevel(logging.ERROR)
    try:
        for variant in ("now", "baseline"):
            with tempfile.TemporaryDirectory() as tmp:
                measured = await _measure(fakes, Path(tmp), codes, slots, hours,
                                          hide_check=variant == "baseline")
            prefix = "" if variant == "now" else "baseline_"
            out.update({prefix + key: value for key, value in measured.items()})
    finally:
        engine_log.setLevel(level)
    now, before = out["frames_per_day"], out["baseline_frames_per_day"]
    out["day_ratio"] = round(now / before, 3) if before else None
    out["walk_frames"] = slots
    out["first_scan_ratio"] = round(out["first_scan_frames"] / slots, 3)
    out["rescan_ratio"] = round(out["rescan_frames"] / slots, 3)
    out["outage_ratio"] = round(out["outage_frames"] / slots, 3)
    return out


async def _measure(fakes: Any, folder: Path, codes: int, slots: int, hours: int,
                   hide_check: bool) -> dict[str, Any]:
    name = f"bench-zigbee-{next(_NETWORKS)}"
    network = fakes.FakeNetwork(name)
    # A router, not a sleepy end device: zigpy waits 28 s per try on an end device whatever
    # the timeout asked; the frames are the same.
    lock = fakes.FakeDoorLock(ieee=IEEE, nwk=0x2A01, profile="yale", num_pin_users=slots,
                              first_user_id=0, end_device=False)
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    try:
        h, driver = await _start(name, folder / "first", clock, hide_check)
        try:
            await driver.permit_join(60)
            await network.join(lock)
            await h.until(lambda: len(h.engine.devices) == 1, timeout=60, what="the lock")
            await _quiet(h, 60, 30)
            scan = _pin_reads(lock)
            lock.reset_counters()
            device_id = h.device_id(IEEE)
            created = []
            for index in range(codes):
                made = await h.engine.create_code(device_id, CodeRequest(
                    name=f"Guest {index}", code=f"{4000 + 7 * index:04d}"))
                created.append(made.access_code_id)
            await h.until(lambda: all(h.code(c).status is AccessCodeStatus.SET
                                      for c in created), advance=0.5, timeout=600,
                          what="converged")
            await _quiet(h, 120, 30)
            converge = lock.frames_received
            lock.reset_counters()
            await _quiet(h, hours * HOUR, HOUR)
            day = lock.frames_received * 24 / hours
            lock.reset_counters()
            # A code cleared at the keypad: frames until it is read and put back.
            slot = h.code(created[0]).slot
            lock.keypad_clear(slot)
            await h.until(lambda: slot in lock.slots, advance=0.5, timeout=60,
                          what="the keypad clear put right")
            await _quiet(h, 60, 30)
            keypad = lock.frames_received
            outage = await _short_outage(h, lock, device_id) if not hide_check else None
        finally:
            await h.stop()
        out = {"first_scan_frames": scan,
               "frames_per_code_converged": round(converge / codes, 2),
               "frames_per_day": round(day, 1),
               "keypad_clear_frames": keypad}
        if outage is not None:
            out["outage_frames"] = outage
        if not hide_check:
            lock.reset_counters()
            again, _ = await _start(name, folder / "second", clock, hide_check)
            try:
                await again.until(lambda: len(again.engine.devices) == 1, timeout=60,
                                  what="the lock")
                await _quiet(again, 60, 30)
                out["rescan_frames"] = _pin_reads(lock)
                out["rescan_all_frames"] = lock.frames_received
            finally:
                await again.stop()
        return out
    finally:
        fakes.FakeNetwork.remove(name)


async def _short_outage(h: Any, lock: Any, device_id: str) -> int:
    """The lock stops acknowledging frames for five minutes (a write to it fails with a
    delivery error, so it is marked offline), then answers again: the frames it receives
    from then on, the engine's re-read of a lock that comes back included."""
    lock.reset_counters()
    lock.online, lock.unreachable = False, "delivery_error"
    await h.engine.create_code(device_id, CodeRequest(name="Late", code="9876"))
    await h.until(lambda: not h.engine.devices[device_id].online, advance=0.5, timeout=60,
                  what="the lock marked offline")
    await _quiet(h, 300, 60)
    lock.online = True
    await h.until(lambda: any(slot.pin == "9876" for slot in lock.slots.values()),
                  advance=5, timeout=120, what="the lock back and the late code on it")
    await _quiet(h, 120, 30)
    return int(lock.frames_received)


async def _start(network: str, folder: Path, clock: FakeClock,
                 hide_check: bool) -> tuple[Any, Any]:
    """A lockbridge (store, engine, Zigbee driver) in `folder` on the fake network; zigpy's
    own database is shared by every lockbridge of the run, as the radio's network is."""
    from drivers.zigbee.config import Config
    from drivers.zigbee.driver import ZigbeeDriver
    start_engine = importlib.import_module("tests.harness").start_engine

    folder.mkdir(parents=True)
    config = Config.model_validate({
        "kind": "zigbee", "name": "zb",
        "radio": {"type": "tests.fakes.zigpy_radio:FakeControllerApplication",
                  "path": f"fake://{network}"},
        "database": str(folder.parent / "zigpy.db"),
        "command_spacing_s": 0, "command_timeout_s": 5, "probe_timeout_s": 2})
    driver = ZigbeeDriver(config, clock, folder / "state")
    h = await start_engine(folder, {"zb": EveryReconcile(driver) if hide_check else driver},
                           clock=clock)
    return h, driver


def _pin_reads(lock: Any) -> int:
    """The Get PIN Code frames among what the lock received (zigpy's interview aside)."""
    return sum(count for kind, count in lock.frame_kinds.items() if kind in PIN_READS)


async def _quiet(h: Any, seconds: float, step: float) -> None:
    """Move the fake clock in steps, letting the lock finish what came due."""
    quiet_for = importlib.import_module("tests.zwave_stack").quiet_for
    await quiet_for(h, seconds, step, timeout=600)
