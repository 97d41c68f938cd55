"""The faults, each bounded in time, and healing them all before the checks."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from tests.soak import model as m
from tests.soak.world import MQTT_LOCKS, SIM_LOCKS, Z2M_LOCK, ZUI_LOCK, ZUI_NODE

if TYPE_CHECKING:
    from tests.soak.chaos import Soak


async def lock_offline(soak: Soak, lock: str, duration: float, rng: random.Random,
                       incarnation: int) -> None:
    """The lock drops off (simulator, Zigbee availability, a Dead Z-Wave node) and comes back."""
    soak.write_allowance[lock] += 1
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
    if lock == Z2M_LOCK:
        soak.gateways.z2m.lock(Z2M_LOCK).refuse.extend(
            ["Command 0x1 closuresDoorLock.setPinCode failed (Delivery failed: MAC_NO_ACK)"]
            * count)
    elif lock == ZUI_LOCK:
        soak.gateways.zui.node(ZUI_NODE).refuse.extend(
            ["Unable to write value: Timeout (no ack)"] * count)
    else:
        soak.sim(lock, "refuse", count=count)


async def lock_slow(soak: Soak, lock: str, duration: float, rng: random.Random,
                    incarnation: int) -> None:
    """Every command takes 0.5-2 s (an MQTT gateway: stops answering for up to 2 s)."""
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
    if lock == Z2M_LOCK:
        soak.gateways.z2m.lock(Z2M_LOCK).table.clear()
    elif lock == ZUI_LOCK:
        soak.gateways.zui.node(ZUI_NODE).codes.clear()
    else:
        soak.sim(lock, "wipe")


async def broker_restart(soak: Soak, lock: str, duration: float, rng: random.Random,
                         incarnation: int) -> None:
    """Mosquitto SIGKILLed (retained messages lost) and started again."""
    for mqtt_lock in MQTT_LOCKS:
        soak.write_allowance[mqtt_lock] += 1
    soak.gateways.broker.kill()
    await asyncio.sleep(duration)
    await asyncio.to_thread(soak.gateways.broker.start)


async def upstream_kill(soak: Soak, lock: str, duration: float, rng: random.Random,
                        incarnation: int) -> None:
    """The reference upstream SIGKILLed and started again on its database."""
    if not soak.upstream.running:
        return
    await soak.upstream.kill()
    await asyncio.sleep(duration)
    await soak.upstream.start()


async def upstream_half_open(soak: Soak, lock: str, duration: float, rng: random.Random,
                             incarnation: int) -> None:
    """The upstream frozen: its connections stay open and carry nothing."""
    if not soak.upstream.running or soak.upstream.frozen:
        return
    soak.upstream.freeze(True)
    await asyncio.sleep(duration)
    soak.upstream.freeze(False)


async def daemon_kill(soak: Soak, lock: str, duration: float, rng: random.Random,
                      incarnation: int) -> None:
    """The daemon SIGKILLed, as a power cut would, and started again."""
    if not soak.daemon.running:
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
