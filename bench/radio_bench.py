"""Radio economy: the frames each Z-Wave lock receives, counted by zwave-js's mock controller
(tests/zwave/, the same stack the tests run), never by lockbridge's own counters.

Two locks on one mock network: one without a User Code checksum, one with. Each is measured
twice in the same run: as lockbridge drives it now, and with its driver's change check hidden,
which is how the engine drove every lock before (every managed slot read again each reconcile).
Time is a fake clock: a simulated day of steady state takes seconds.
"""

from __future__ import annotations

import asyncio
import importlib
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.clock import FakeClock
from bridge.engine import CodeRequest
from bridge.model import AccessCodeStatus

PLAIN, SUMMED = 2, 3  # node 2 keeps no checksum, node 3 does
HOUR = 3600.0


class _EveryReconcile:
    """A driver as the engine saw every driver before: no change check to ask."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "codes_unchanged":
            raise AttributeError(name)
        return getattr(self._inner, name)


async def radio(codes: int, slots: int, hours: int) -> dict[str, Any]:
    """Frames per code converged, per lock per day of steady state (with and without a
    checksum, now and as before), and for the first scan of a lock with `slots` slots."""
    # The test suite's stack (imported by name: the benchmark's types stop at its edge).
    zwave_stack = importlib.import_module("tests.zwave_stack")
    missing = zwave_stack.missing_node()
    if missing is not None:
        return {"skipped": missing}
    zwave_stack.ensure_peers()
    out: dict[str, Any] = {"codes": codes, "slots": slots, "hours": hours}
    for variant in ("now", "baseline"):
        with tempfile.TemporaryDirectory() as tmp:
            stack = zwave_stack.ZWaveStack(Path(tmp) / "zwave", [
                {"id": PLAIN, "slots": slots, "schedules": False, "checksum": False},
                {"id": SUMMED, "slots": slots, "schedules": False},
            ])
            try:
                stack.start()
                stack.wait_listening()
                measured = await _measure(stack, Path(tmp), codes, hours,
                                          hide_check=variant == "baseline")
            finally:
                stack.close()
        prefix = "" if variant == "now" else "baseline_"
        out.update({prefix + key: value for key, value in measured.items()})
    for node in ("plain", "checksum"):
        now, before = out[f"{node}_frames_per_day"], out[f"baseline_{node}_frames_per_day"]
        out[f"{node}_day_ratio"] = round(now / before, 3) if before else None
    return out


async def _measure(stack: Any, folder: Path, codes: int, hours: int,
                   hide_check: bool) -> dict[str, Any]:
    from drivers.zwave.config import Config
    from drivers.zwave.driver import ZWaveDriver
    start_engine = importlib.import_module("tests.harness").start_engine

    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    config = Config.model_validate({"kind": "zwave", "name": "zw", "url": stack.url,
                                    "command_spacing_s": 0, "reconnect_min_s": 0.2,
                                    "reconnect_max_s": 1})
    inner = ZWaveDriver(config, clock, folder / "state")
    driver: Any = _EveryReconcile(inner) if hide_check else inner
    await _counts(stack)  # the mock's own start
    h = await start_engine(folder, {"zw": driver}, clock=clock)
    try:
        # A lock of many slots takes zwave-js a while to interview; the engine takes each
        # lock as the driver reports it.
        await h.until(lambda: len(h.engine.devices) == 2, timeout=300, what="both locks")
        await _quiet(h, 60, 30)
        # The first scan: what lockbridge read of each lock before it could act on it.
        scan = {node: _user_code_frames(await stack.control("received", node=node))
                for node in (PLAIN, SUMMED)}
        created = []
        for node in (PLAIN, SUMMED):
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
                    for node in (PLAIN, SUMMED)}
        await _quiet(h, hours * HOUR, HOUR)
        day = {node: sum((await stack.control("received", node=node)).values())
               * 24 / hours for node in (PLAIN, SUMMED)}
    finally:
        await h.stop()
    return {"plain_first_scan_frames": scan[PLAIN], "checksum_first_scan_frames": scan[SUMMED],
            "frames_per_code_converged": round((converge[PLAIN] + converge[SUMMED])
                                               / (2 * codes), 2),
            "plain_frames_per_day": round(day[PLAIN], 1),
            "checksum_frames_per_day": round(day[SUMMED], 1)}


def _user_code_frames(received: dict[str, int]) -> int:
    """The User Code reads among what a node received (zwave-js's own interview aside, which
    asks the checksum once on its own)."""
    return sum(count for name, count in received.items()
               if name in ("UserCodeCCGet", "UserCodeCCExtendedUserCodeGet",
                           "UserCodeCCUserCodeChecksumGet"))


async def _counts(stack: Any) -> None:
    for node in (PLAIN, SUMMED):
        await stack.control("received", node=node)


async def _quiet(h: Any, seconds: float, step: float) -> None:
    """Move the fake clock in steps, letting every lock finish what came due."""
    moved = 0.0
    while moved < seconds:
        hop = min(step, seconds - moved)
        await h.clock.advance(hop)
        moved += hop
        await h.until(h.engine.settled, timeout=600, what="settled")
        await asyncio.sleep(0.05)
        await h.until(h.engine.settled, timeout=600, what="settled")
