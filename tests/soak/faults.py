"""The faults, each bounded in time, and healing them all before the checks."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bridge.timesync import RELEASE_FLOOR
from tests.soak import checks
from tests.soak import model as m
from tests.soak.world import (
    FAKETIME,
    FAKETIME_REREAD_S,
    MQTT_LOCKS,
    SIM_LOCKS,
    Z2M_LOCK,
    ZUI_LOCK,
    ZUI_NODE,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.soak.chaos import Soak


@contextlib.asynccontextmanager
async def _alone(soak: Soak, process: str, kind: str) -> AsyncIterator[bool]:
    """Whether this fault has `process` to itself; counted when another fault holds it."""
    if process in soak.faulting:
        soak.counts[f"{kind}_not_injected_while_another_restarts_{process}"] += 1
        yield False
        return
    soak.faulting.add(process)
    try:
        yield True
    finally:
        soak.faulting.discard(process)


# How long after a lock fault a retried write may still land (the engine's retries back off).
UNSURE_AFTER_S = 120.0


def _unsure(soak: Soak, lock: str, duration: float) -> None:
    """Writes to `lock` may land late or twice until a while after this fault (chaos.py)."""
    until = time.monotonic() + duration + UNSURE_AFTER_S
    soak.unsure_until[lock] = max(soak.unsure_until.get(lock, 0.0), until)


async def lock_offline(soak: Soak, lock: str, duration: float, rng: random.Random,
                       incarnation: int) -> None:
    """The lock drops off (simulator, Zigbee availability, a Dead Z-Wave node) and comes back."""
    soak.write_allowance[lock] += 1
    _unsure(soak, lock, duration)
    if lock == Z2M_LOCK:
        await soak.gateways.z2m.set_online(Z2M_LOCK, False)
        await asyncio.sleep(duration)
        await soak.gateways.z2m.set_online(Z2M_LOCK, True)
    elif lock == ZUI_LOCK:
        await soak.gateways.zui.set_status(ZUI_NODE, "Dead")
        await asyncio.sleep(duration)
        await soak.gateways.zui.set_status(ZUI_NODE, "Alive")
    else:
        soak.sim(lock, "offline")
        await asyncio.sleep(duration)
        if soak.daemon.incarnation == incarnation:
            soak.sim(lock, "online")


async def lock_refusing(soak: Soak, lock: str, duration: float, rng: random.Random,
                        incarnation: int) -> None:
    """The lock refuses its next few commands as not answering."""
    count = rng.randint(1, 4)
    _unsure(soak, lock, duration)
    if lock == Z2M_LOCK:
        soak.gateways.z2m.lock(Z2M_LOCK).refuse.extend(
            ["Command 0x1 closuresDoorLock.setPinCode failed (Delivery failed: MAC_NO_ACK)"]
            * count)
    elif lock == ZUI_LOCK:
        # Not acknowledged (zwave-js marks the node Dead), as the other locks' transient
        # failures: any other entry is a Supervision Fail, a refusal for good that lockbridge
        # rightly gives the code up for (the soak then saw it "in 0 slots").
        soak.gateways.zui.node(ZUI_NODE).refuse.extend(["noack"] * count)
    else:
        soak.sim(lock, "refuse", count=count)


async def lock_slow(soak: Soak, lock: str, duration: float, rng: random.Random,
                    incarnation: int) -> None:
    """Every command takes 0.5-2 s (an MQTT gateway: stops answering for up to 2 s)."""
    _unsure(soak, lock, duration)
    if lock in MQTT_LOCKS:  # an MQTT gateway is slow by not answering for a while
        await lock_hanging(soak, lock, min(duration, 2.0), rng, incarnation)
        return
    soak.sim(lock, "latency", seconds=rng.uniform(0.5, 2.0))
    await asyncio.sleep(duration)
    if soak.daemon.incarnation == incarnation:
        soak.sim(lock, "latency", seconds=0.0)


async def lock_hanging(soak: Soak, lock: str, duration: float, rng: random.Random,
                       incarnation: int) -> None:
    """Commands get no answer at all for a while."""
    # Every command that times out has an unknown outcome; a lock whose reads cannot show
    # the PIN may see it written again.
    soak.write_allowance[lock] += int(duration / 1.0) + 2
    _unsure(soak, lock, duration)
    if lock in MQTT_LOCKS:
        target = (soak.gateways.z2m.lock(Z2M_LOCK) if lock == Z2M_LOCK
                  else soak.gateways.zui.node(ZUI_NODE))
        target.stall = True
        await asyncio.sleep(duration)
        target.stall = False
        return
    soak.sim(lock, "latency", seconds=60.0)
    await asyncio.sleep(duration)
    if soak.daemon.incarnation == incarnation:
        soak.sim(lock, "latency", seconds=0.0)


async def lock_reset(soak: Soak, lock: str, duration: float, rng: random.Random,
                     incarnation: int) -> None:
    """The lock forgets every code (factory reset); reconciliation must put them back."""
    soak.write_allowance[lock] += m.MAX_PER_LOCK_WITH_BACKUPS
    soak.changes[lock] += 1
    soak.touched[lock] += 1
    if lock == Z2M_LOCK:
        soak.gateways.z2m.lock(Z2M_LOCK).table.clear()
    elif lock == ZUI_LOCK:
        soak.gateways.zui.node(ZUI_NODE).codes.clear()
    else:
        soak.sim(lock, "wipe")


async def broker_restart(soak: Soak, lock: str, duration: float, rng: random.Random,
                         incarnation: int) -> None:
    """Mosquitto SIGKILLed (retained messages lost) and started again."""
    async with _alone(soak, "broker", "broker_restart") as alone:
        if not alone:
            return
        for mqtt_lock in MQTT_LOCKS:
            soak.write_allowance[mqtt_lock] += 1
        soak.gateways.broker.kill()
        await asyncio.sleep(duration)
        await asyncio.to_thread(soak.gateways.broker.start)


async def upstream_kill(soak: Soak, lock: str, duration: float, rng: random.Random,
                        incarnation: int) -> None:
    """The reference upstream SIGKILLed and started again on its database."""
    async with _alone(soak, "upstream", "upstream_kill") as alone:
        if not alone or not soak.upstream.running:
            return
        await soak.upstream.kill()
        await asyncio.sleep(duration)
        await soak.upstream.start()


async def upstream_half_open(soak: Soak, lock: str, duration: float, rng: random.Random,
                             incarnation: int) -> None:
    """The upstream frozen: its connections stay open and carry nothing."""
    async with _alone(soak, "upstream", "upstream_half_open") as alone:
        if not alone or not soak.upstream.running or soak.upstream.frozen:
            return
        soak.upstream.freeze(True)
        await asyncio.sleep(duration)
        soak.upstream.freeze(False)


async def daemon_kill(soak: Soak, lock: str, duration: float, rng: random.Random,
                      incarnation: int) -> None:
    """The daemon SIGKILLed, as a power cut would, and started again."""
    async with _alone(soak, "daemon", "daemon_kill") as alone:
        if not alone or not soak.daemon.running:
            return
        for each in [*SIM_LOCKS, *MQTT_LOCKS]:
            soak.write_allowance[each] += 1  # an interrupted write is verified or replayed
        await soak.daemon.kill()
        await asyncio.sleep(duration)
        await soak.daemon.start()


async def disk_full(soak: Soak, lock: str, duration: float, rng: random.Random,
                    incarnation: int) -> None:
    """No file of the daemon may grow for a while."""
    if soak.daemon.starting:
        # A daemon started on a full disk cannot open its store and exits 1 (systemd restarts
        # it): that is not the fault this step is about. Counted, not injected.
        soak.counts["disk_full_not_injected_while_starting"] += 1
        return
    for each in [*SIM_LOCKS, *MQTT_LOCKS]:
        soak.write_allowance[each] += 1
    if not soak.daemon.limit_file_size(0):
        return
    await asyncio.sleep(duration)
    if soak.daemon.incarnation == incarnation:
        soak.daemon.limit_file_size(None)


# NTP steps a clock that is off by more than its slew limit; these are the steps the soak makes
# while the daemon runs (lockbridge tolerates 5 minutes back before it holds schedules).
CLOCK_STEP_S = (20.0, 90.0)
# An RTC-less box boots at the time it last saved (fake-hwclock) or before the release (no save).
STALE_BEHIND_S = (3600.0, 5 * 86400.0)


async def clock_jump(soak: Soak, lock: str, duration: float, rng: random.Random,
                     incarnation: int) -> None:
    """The daemon's wall clock wrong for a while, then stepped right as NTP does: a power cut
    and a boot at a stale time (hours to days behind, or before the release), or a step of
    20-90 s back or forward while it runs. Monotonic time is never faked."""
    if FAKETIME is None:
        soak.counts["clock_jump_not_injected_without_libfaketime"] += 1
        return
    if soak.clock_wrong or not soak.daemon.running:
        soak.counts["clock_jump_not_injected_while_another_runs"] += 1
        return
    kind = rng.choice(["stale_boot", "step_back", "step_back", "step_forward"])
    soak.clock_wrong = True
    try:
        if kind == "stale_boot":
            async with _alone(soak, "daemon", "clock_jump") as alone:
                if alone:
                    await _stale_boot(soak, duration, rng)
        else:
            await _step(soak, kind, duration, rng)
    finally:
        soak.daemon.set_clock(0)
        soak.clock_wrong = False


async def _stale_boot(soak: Soak, duration: float, rng: random.Random) -> None:
    """Power cut, boot at a stale time, NTP steps it right `duration` s later. The clock is
    then far from any time the daemon saw: it must hold every time-bound code as it is."""
    for each in [*SIM_LOCKS, *MQTT_LOCKS]:
        soak.write_allowance[each] += 1  # an interrupted write is verified or replayed
    await soak.daemon.kill()
    if rng.random() < 0.3:
        stale = RELEASE_FLOOR - timedelta(days=rng.uniform(1, 400))
        soak.clock_jumps["stale_boot_before_release"] += 1
        offset = (stale - datetime.now(UTC)).total_seconds()
    else:
        soak.clock_jumps["stale_boot_behind"] += 1
        offset = -rng.uniform(*STALE_BEHIND_S)
    soak.daemon.set_clock(offset)
    before = checks.ClockView.take(soak)
    await soak.daemon.start()
    await asyncio.sleep(duration)
    soak.violations += checks.ClockView.take(soak).judge(before, "its clock was stale",
                                                         held=True)


async def _step(soak: Soak, kind: str, duration: float, rng: random.Random) -> None:
    """NTP steps the running daemon's clock back or forward, and right again `duration` s
    later. A step forward is caught up with before the chaos ends (the checks judge the end
    by true time)."""
    size = rng.uniform(*CLOCK_STEP_S)
    if kind == "step_forward":
        room = soak.chaos_ends - time.monotonic() - duration - 2 * FAKETIME_REREAD_S - 5
        size = min(size, room)
        if size < 5:
            soak.counts["clock_step_forward_not_injected_near_the_end"] += 1
            return
    soak.clock_jumps[kind] += 1
    before = checks.ClockView.take(soak)
    soak.daemon.set_clock(size if kind == "step_forward" else -size)
    await asyncio.sleep(duration + FAKETIME_REREAD_S)
    soak.violations += checks.ClockView.take(soak).judge(before, f"its clock stepped "
                                                         f"{kind.removeprefix('step_')} "
                                                         f"{size:.0f} s", held=False,
                                                         early_ends=kind == "step_forward")


async def heal(soak: Soak) -> None:
    """End every fault: locks answer, the broker, upstream and daemon run, the disk has room."""
    if soak.tasks:
        await asyncio.wait(list(soak.tasks), timeout=30)
    for task in list(soak.tasks):
        task.cancel()
    await asyncio.gather(*soak.tasks, return_exceptions=True)
    if not soak.gateways.broker.running:
        await asyncio.to_thread(soak.gateways.broker.start)
    if not soak.upstream.running:
        await soak.upstream.start()
    soak.upstream.freeze(False)
    if not soak.daemon.running:
        soak.daemon.check_alive()
        await soak.daemon.start()
    soak.daemon.limit_file_size(None)
    if soak.daemon.clock_offset:
        soak.daemon.set_clock(0)
    # The daemon's clock is right from here on (libfaketime reads the offset again by then).
    await asyncio.sleep(FAKETIME_REREAD_S + 0.2)
    for lock in SIM_LOCKS:
        soak.sim(lock, "online")
        soak.sim(lock, "latency", seconds=0.0)
        soak.sim(lock, "refuse", count=0)
    await soak.gateways.z2m.set_online(Z2M_LOCK, True)
    await soak.gateways.zui.set_status(ZUI_NODE, "Alive")
    soak.gateways.z2m.lock(Z2M_LOCK).stall = False
    soak.gateways.z2m.lock(Z2M_LOCK).refuse.clear()
    soak.gateways.zui.node(ZUI_NODE).stall = False
    soak.gateways.zui.node(ZUI_NODE).refuse.clear()
