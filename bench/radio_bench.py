"""Radio economy: the frames each Z-Wave lock receives, counted by zwave-js's mock controller
(tests/zwave/, the same stack the tests run), never by lockbridge's own counters.

Three locks on one mock network: one without a User Code checksum, one with, and one without
a checksum that has User Code v2's multi-code read (Extended User Code Get, several codes a
frame). Each is measured twice in the same run: as lockbridge drives it now, and with its
driver's change check hidden, which is how the engine drove every lock before (every managed
slot read again each reconcile). Time is a fake clock: a simulated day of steady state takes
seconds. The first scan is counted twice: of the empty locks, and by a second lockbridge (a
fresh store) meeting the same locks with their codes on them.

Then the radio's floor: one lock whose every frame spends `TX_DELAY_MS` on the mock's air
(realistic per-command latency), `codes` codes converged by lockbridge against the same
commands sent bare, one after the other, straight to zwave-js-server (commands needed x
command time), in the same run.
"""

from __future__ import annotations

import asyncio
import importlib
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import EveryReconcile
from bridge.clock import FakeClock
from bridge.engine import CodeRequest
from bridge.model import AccessCodeStatus

PLAIN, SUMMED, MULTI = 2, 3, 4  # no checksum; a checksum; no checksum, multi-code reads
LOCKS = (PLAIN, SUMMED, MULTI)
HOUR = 3600.0
# Each frame to or from the lock spends this long on the mock's air: a User Code Set then takes
# about 0.45 s and a Get about 0.85 s, within what Z-Wave locks take (1 to 2 s a code).
TX_DELAY_MS = 200
# The latency lock's slots: lockbridge's codes go first, the bare loop's after them.
LATENCY_SLOTS = 64
CODE_READS = ("UserCodeCCGet", "UserCodeCCExtendedUserCodeGet", "UserCodeCCUserCodeChecksumGet")



async def radio(codes: int, slots: int, hours: int) -> dict[str, Any]:
    """Frames per code converged, per lock per day of steady state (with and without a
    checksum, now and as before), and for the first scan of a lock with `slots` slots."""
    # The test suite's stack (imported by name: the benchmark's types stop at its edge).
    zwave_stack = importlib.import_module("tests.zwave_stack")
    missing = zwave_stack.missing_node()
    if missing is not None:
        return {"skipped": missing}
    out: dict[str, Any] = {"codes": codes, "slots": slots, "hours": hours}
    nodes = [
        {"id": PLAIN, "slots": slots, "schedules": False, "checksum": False},
        {"id": SUMMED, "slots": slots, "schedules": False},
        {"id": MULTI, "slots": slots, "schedules": False, "checksum": False,
         "multi_report": True},
    ]
    for variant in ("now", "baseline"):
        with (tempfile.TemporaryDirectory() as tmp,
              zwave_stack.running_stack(Path(tmp) / "zwave", nodes, show_log=False) as stack):
            measured = await _measure(stack, Path(tmp), codes, hours,
                                      hide_check=variant == "baseline")
        prefix = "" if variant == "now" else "baseline_"
        out.update({prefix + key: value for key, value in measured.items()})
    for node in ("plain", "checksum", "multi"):
        now, before = out[f"{node}_frames_per_day"], out[f"baseline_{node}_frames_per_day"]
        out[f"{node}_day_ratio"] = round(now / before, 3) if before else None
    for node in ("plain", "checksum", "multi"):
        out[f"{node}_rescan_ratio"] = round(out[f"{node}_rescan_frames"] / slots, 3)
    out["managed_first"] = await managed_first(codes, slots, zwave_stack)
    out["managed_first_checksum"] = await managed_first(codes, slots, zwave_stack,
                                                        checksum=True)
    out["latency"] = await latency(codes, TX_DELAY_MS, zwave_stack)
    out["supervision"] = await supervision(codes, zwave_stack)
    return out


async def _measure(stack: Any, folder: Path, codes: int, hours: int,
                   hide_check: bool) -> dict[str, Any]:
    start_zwave_engine = importlib.import_module("tests.zwave_stack").start_zwave_engine

    await _counts(stack)  # the mock's own start
    h, _ = await start_zwave_engine(stack.url, folder,
                                    wrap=EveryReconcile if hide_check else None)
    try:
        # A lock of many slots takes zwave-js a while to interview; the engine takes each
        # lock as the driver reports it.
        await h.until(lambda: len(h.engine.devices) == len(LOCKS), timeout=300,
                      what="every lock")
        await _quiet(h, 60, 30)
        # The first scan: what lockbridge read of each lock before it could act on it.
        scan = {node: _user_code_frames(await stack.control("received", node=node))
                for node in LOCKS}
        created = []
        for node in LOCKS:
            device_id = h.device_id(f"7e570001-{node}", driver="zw")
            for index in range(codes):
                made = await h.engine.create_code(device_id, CodeRequest(
                    name=f"Guest {index}", code=f"{4000 + 7 * index + node:04d}"))
                created.append(made.access_code_id)
        await h.until(lambda: all(h.code(c).status is AccessCodeStatus.SET
                                  for c in created), advance=0.5, timeout=600,
                      what="converged")
        await _quiet(h, 120, 30)
        converge = {node: sum((await stack.control("received", node=node)).values())
                    for node in LOCKS}
        await _quiet(h, hours * HOUR, HOUR)
        day = {node: sum((await stack.control("received", node=node)).values())
               * 24 / hours for node in LOCKS}
    finally:
        await h.stop()
    out = {"plain_first_scan_frames": scan[PLAIN], "checksum_first_scan_frames": scan[SUMMED],
           "multi_first_scan_frames": scan[MULTI],
           "frames_per_code_converged": round(sum(converge.values()) / (len(LOCKS) * codes),
                                              2),
           "plain_frames_per_day": round(day[PLAIN], 1),
           "checksum_frames_per_day": round(day[SUMMED], 1),
           "multi_frames_per_day": round(day[MULTI], 1)}
    if not hide_check:
        rescan = await _rescan(stack, folder / "second", h.clock)
        out.update({"plain_rescan_frames": rescan[PLAIN],
                    "checksum_rescan_frames": rescan[SUMMED],
                    "multi_rescan_frames": rescan[MULTI]})
    return out


async def _rescan(stack: Any, folder: Path, clock: FakeClock) -> dict[int, int]:
    """A second lockbridge (its own store, nothing known) meets the locks, each holding the
    codes the first one converged: the code reads of its first scan, per lock."""
    start_zwave_engine = importlib.import_module("tests.zwave_stack").start_zwave_engine

    folder.mkdir()
    await _counts(stack)
    h, _ = await start_zwave_engine(stack.url, folder, clock=clock)
    try:
        await h.until(lambda: len(h.engine.devices) == len(LOCKS), timeout=300,
                      what="every lock")
        await _quiet(h, 60, 30)
        return {node: _user_code_frames(await stack.control("received", node=node))
                for node in LOCKS}
    finally:
        await h.stop()


class _WalkWatch:
    """Between the engine and the driver: when the engine starts its walk of every slot, the
    frames the lock received until then (the mock's own count), and whether every managed
    code had been read in this run and found verified by then."""

    def __init__(self, inner: Any, stack: Any, managed: Any) -> None:
        self._inner = inner
        self._stack = stack
        # {slot: verified} of the managed codes, as the engine has them now.
        self._managed = managed
        self.read: set[int] = set()
        self.before_walk: dict[str, int] | None = None
        self.verified_before_walk = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def read_slots(self, external_id: str, slots: Any) -> Any:
        reads = await self._inner.read_slots(external_id, slots)
        self.read.update(slots)
        return reads

    async def list_codes(self, external_id: str) -> Any:
        if self.before_walk is None:
            self.before_walk = await self._stack.control("received", node=PLAIN)
            managed: dict[int, bool] = self._managed()
            self.verified_before_walk = all(managed.values()) and set(managed) <= self.read
        return await self._inner.list_codes(external_id)


async def managed_first(codes: int, slots: int, zwave_stack: Any,
                        checksum: bool = False) -> dict[str, Any]:
    """A lockbridge restarted with its store holding `codes` managed codes on a lock of
    `slots` slots without multi-code reads (and without a User Code checksum unless
    `checksum`): the frames the lock received until every managed code was verified, against
    the slot-by-slot walk of every slot, and the whole first scan's frames, both counted by
    the mock in the same run. With a checksum that agrees, nothing is read slot by slot."""
    start_zwave_engine = zwave_stack.start_zwave_engine
    node = {"id": PLAIN, "slots": slots, "schedules": False, "checksum": checksum}
    with (tempfile.TemporaryDirectory() as tmp,
          zwave_stack.running_stack(Path(tmp) / "zwave", [node], show_log=False) as stack):
        folder = Path(tmp) / "bridge"  # the store and the driver's state, over the restart
        folder.mkdir()
        h, _ = await start_zwave_engine(stack.url, folder)
        try:
            await h.until(lambda: len(h.engine.devices) == 1, timeout=300, what="the lock")
            await _quiet(h, 60, 30)
            device_id = h.device_id(f"7e570001-{PLAIN}", driver="zw")
            created = [(await h.engine.create_code(device_id, CodeRequest(
                name=f"Guest {index}", code=f"{5000 + 7 * index:04d}"))).access_code_id
                for index in range(codes)]
            await h.until(lambda: all(h.code(c).status is AccessCodeStatus.SET
                                      and h.code(c).verified for c in created),
                          advance=0.5, timeout=600, what="converged")
            clock = h.clock
        finally:
            await h.stop()
        await stack.control("received", node=PLAIN)
        watches: list[_WalkWatch] = []

        def watched(driver: Any) -> _WalkWatch:
            watches.append(_WalkWatch(driver, stack, lambda: {
                again.code(c).slot: again.code(c).verified for c in created}))
            return watches[0]

        again, _ = await start_zwave_engine(stack.url, folder, clock=clock, wrap=watched)
        try:
            await again.until(lambda: len(again.engine.devices) == 1, timeout=300,
                              what="the lock")
            await _quiet(again, 60, 30)
            after_walk = _user_code_frames(await stack.control("received", node=PLAIN))
        finally:
            await again.stop()
    watch = watches[0]
    before_walk = _user_code_frames(watch.before_walk or {})
    first_scan = before_walk + after_walk
    return {"codes": codes, "slots": slots, "checksum": checksum,
            "frames_until_verified": before_walk if watch.before_walk is not None else None,
            "verified_before_walk": watch.verified_before_walk,
            "first_scan_frames": first_scan, "walk_frames": slots,
            "ratio": round(before_walk / slots, 3),
            "first_scan_ratio": round(first_scan / slots, 3)}


async def latency(codes: int, tx_delay_ms: int, zwave_stack: Any) -> dict[str, Any]:
    """Wall time for lockbridge to converge `codes` codes on one lock whose frames each spend
    `tx_delay_ms` on the air, against the radio's floor: the same commands (a User Code Set
    and the Get that verifies it, per code) sent bare, one after the other, to zwave-js-server
    in the same run."""
    node = {"id": PLAIN, "slots": LATENCY_SLOTS, "schedules": False, "checksum": False,
            "multi_report": True, "tx_delay_ms": tx_delay_ms}
    with (tempfile.TemporaryDirectory() as tmp,
          zwave_stack.running_stack(Path(tmp) / "zwave", [node], show_log=False) as stack):
        converged = await _converge_timed(stack, Path(tmp), codes)
        floor = await _bare_commands(stack, codes, first_slot=codes + 1)
    floor_s = floor["set_s"] + floor["get_s"]
    return {"codes": codes, "tx_delay_ms": tx_delay_ms,
            "converge_s": round(converged["seconds"], 2),
            "converge_frames": converged["frames"],
            "floor_s": round(floor_s, 2), "floor_frames": 2 * codes,
            "set_command_s": round(floor["set_s"] / codes, 3),
            "get_command_s": round(floor["get_s"] / codes, 3),
            "ratio": round(converged["seconds"] / floor_s, 3) if floor_s else None}


async def _converge_timed(stack: Any, folder: Path, codes: int) -> dict[str, Any]:
    """Real seconds from the first create to every code set and verified, and the frames the
    lock received meanwhile."""
    start_zwave_engine = importlib.import_module("tests.zwave_stack").start_zwave_engine

    h, _ = await start_zwave_engine(stack.url, folder)
    try:
        await h.until(lambda: len(h.engine.devices) == 1, timeout=300, what="the lock")
        await _quiet(h, 60, 30)
        await stack.control("received", node=PLAIN)
        device_id = h.device_id(f"7e570001-{PLAIN}", driver="zw")
        started = time.perf_counter()
        created = []
        for index in range(codes):
            made = await h.engine.create_code(device_id, CodeRequest(
                name=f"Guest {index}", code=f"{6000 + 7 * index:04d}"))
            created.append(made.access_code_id)
        await h.until(lambda: all(h.code(c).status is AccessCodeStatus.SET
                                  and h.code(c).verified for c in created),
                      advance=0.5, timeout=600, what="converged")
        seconds = time.perf_counter() - started
        frames = sum((await stack.control("received", node=PLAIN)).values())
    finally:
        await h.stop()
    return {"seconds": seconds, "frames": frames}


async def _bare_commands(stack: Any, codes: int, first_slot: int) -> dict[str, float]:
    """The radio's floor: per code, one User Code Set and one Get, sent straight to
    zwave-js-server one after the other (no engine, no driver); their seconds summed."""
    import aiohttp
    from zwave_js_server.client import Client
    from zwave_js_server.const import CommandClass

    async with aiohttp.ClientSession() as http:
        client = Client(stack.url, http)
        await client.connect()
        ready = asyncio.Event()
        listen = asyncio.create_task(client.listen(ready))
        try:
            await asyncio.wait_for(ready.wait(), 30)
            assert client.driver is not None
            node = client.driver.controller.nodes[PLAIN]
            set_s = get_s = 0.0
            for index in range(codes):
                slot = first_slot + index
                started = time.perf_counter()
                await node.async_invoke_cc_api(CommandClass.USER_CODE, "set", slot, 1,
                                               f"{8000 + 7 * index:04d}", wait_for_result=True)
                set_s += time.perf_counter() - started
                started = time.perf_counter()
                await node.async_invoke_cc_api(CommandClass.USER_CODE, "get", slot,
                                               wait_for_result=True)
                get_s += time.perf_counter() - started
        finally:
            await client.disconnect()
            listen.cancel()
            await asyncio.gather(listen, return_exceptions=True)
    return {"set_s": set_s, "get_s": get_s}


def _user_code_frames(received: dict[str, int]) -> int:
    """The User Code reads among what a node received (zwave-js's own interview aside, which
    asks the checksum once on its own)."""
    return sum(count for name, count in received.items() if name in CODE_READS)


async def _counts(stack: Any) -> None:
    for node in LOCKS:
        await stack.control("received", node=node)


async def _quiet(h: Any, seconds: float, step: float) -> None:
    """Move the fake clock in steps, letting every lock finish what came due (a lock of many
    slots may take minutes)."""
    quiet_for = importlib.import_module("tests.zwave_stack").quiet_for
    await quiet_for(h, seconds, step, timeout=600)


# A lock that confirms each Set itself (Supervision CC), beside the same lock without it.
SUPERVISED = 5


async def supervision(codes: int, zwave_stack: Any) -> dict[str, Any]:
    """Frames per code converged and per code deleted on a lock that answers Supervision (the
    driver takes its Success as confirmation), against the same lock unsupervised (a Set and
    the Get that verifies it) on the same mock network, in the same run."""
    nodes = [{"id": node, "slots": codes + 2, "schedules": False, "checksum": False,
              "supervision": node == SUPERVISED} for node in (SUPERVISED, PLAIN)]
    start_zwave_engine = zwave_stack.start_zwave_engine
    with (tempfile.TemporaryDirectory() as tmp,
          zwave_stack.running_stack(Path(tmp) / "zwave", nodes, show_log=False) as stack):
        h, _ = await start_zwave_engine(stack.url, Path(tmp))
        try:
            await h.until(lambda: len(h.engine.devices) == 2, timeout=300, what="both locks")
            await _quiet(h, 60, 30)
            created: list[str] = []
            for node in (SUPERVISED, PLAIN):
                await stack.control("received", node=node)
                device_id = h.device_id(f"7e570001-{node}", driver="zw")
                for index in range(codes):
                    made = await h.engine.create_code(device_id, CodeRequest(
                        name=f"Guest {index}", code=f"{3000 + 7 * index:04d}"))
                    created.append(made.access_code_id)
            await h.until(lambda: all(h.code(c).status is AccessCodeStatus.SET
                                      and h.code(c).verified for c in created),
                          advance=0.5, timeout=600, what="converged")
            await _quiet(h, 120, 30)
            converge = {node: sum((await stack.control("received", node=node)).values())
                        for node in (SUPERVISED, PLAIN)}
            for code_id in created:
                await h.engine.delete_code(code_id)
            await h.until(lambda: not any(c in h.engine.codes for c in created),
                          advance=0.5, timeout=600, what="deleted")
            await _quiet(h, 120, 30)
            clear = {node: sum((await stack.control("received", node=node)).values())
                     for node in (SUPERVISED, PLAIN)}
        finally:
            await h.stop()
    now, before = converge[SUPERVISED] / codes, converge[PLAIN] / codes
    return {"codes": codes,
            "frames_per_code_converged": round(now, 2),
            "baseline_frames_per_code_converged": round(before, 2),
            "ratio": round(now / before, 3) if before else None,
            "frames_per_clear": round(clear[SUPERVISED] / codes, 2),
            "baseline_frames_per_clear": round(clear[PLAIN] / codes, 2)}
