"""`status: unknown` (Seam: an indeterminate state): a write went out, no answer came back,
and the lock cannot be asked. It ends as soon as the lock can be read or written again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.driver import Availability
from bridge.engine import CodeRequest
from bridge.model import AccessCodeStatus
from bridge.serialize import access_code_json
from bridge.stateview import StateView
from drivers.simulator import SimLockSpec
from tests.conftest import make_harness, stop_harness
from tests.harness import Harness, until


def status(h: Harness, access_code_id: str) -> str:
    """The status as the API and the upstream link show it."""
    code = h.engine.codes[access_code_id]
    return str(access_code_json(code, StateView(h.engine), "b")["status"])


async def test_a_write_that_gets_no_answer_from_a_lock_that_went_away(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    await h.settle()
    # The lock drops off the network just as the code is sent; nothing has told the bridge yet.
    h.driver.lock("front").go_offline()
    c = await h.engine.create_code(h.device_id("front"), CodeRequest(code="13579"))
    # The lock is seen offline a moment before the write's unknown outcome is committed.
    await until(lambda: status(h, c.access_code_id) == "unknown", clock=h.clock,
                what="the unanswered write's outcome unknown")
    assert h.engine.devices[h.device_id("front")].availability is Availability.OFFLINE
    # A code that never went out is only waiting: it is `setting`, not `unknown`.
    waiting = await h.engine.create_code(h.device_id("front"), CodeRequest(code="24680"))
    assert status(h, waiting.access_code_id) == "setting"

    await h.driver.set_availability("front", Availability.ONLINE)
    await h.settle()
    assert status(h, c.access_code_id) == "set"
    assert sorted(h.slots("front").values()) == ["13579", "24680"]
    assert not h.engine.codes[c.access_code_id].sync.outcome_unknown


async def test_a_restart_mid_write_with_the_lock_unreachable(tmp_path: Path) -> None:
    locks = tmp_path / "locks.json"
    spec = SimLockSpec("front", "Front", latency_s=5)
    h = await make_harness(tmp_path, [spec], state_file=locks)
    sent = asyncio.Event()
    write = h.driver.write_code

    async def write_and_tell(external_id, code):  # type: ignore[no-untyped-def]
        sent.set()
        return await write(external_id, code)

    h.driver.write_code = write_and_tell  # type: ignore[method-assign]
    c = await h.engine.create_code(h.device_id("front"), CodeRequest(code="13579"))
    async with asyncio.timeout(5):
        while not sent.is_set():
            await h.clock.advance(1)
            await asyncio.sleep(0.005)
    await stop_harness(h)  # the process stops while the lock is working on the write

    again = await make_harness(tmp_path, [spec], clock=h.clock, state_file=locks,
                               offline=("front",))
    try:
        assert again.engine.codes[c.access_code_id].status is AccessCodeStatus.UNKNOWN
        assert status(again, c.access_code_id) == "unknown"
        await again.driver.set_availability("front", Availability.ONLINE)
        # The lock answers each command after 5 s: move the clock a second at a time.
        await until(lambda: status(again, c.access_code_id) == "set", clock=again.clock,
                    advance=1, what="the code set")
        assert list(again.slots("front").values()) == ["13579"]
    finally:
        await stop_harness(again)
