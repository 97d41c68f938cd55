"""A driver names a refused write as the maker's integration does (`CommandRejected.error_code`):
the code's error carries that name instead of the generic one, the event says it too, and a later
successful write clears it."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.driver import CodeWrite, CommandRejected, RejectReason, WriteResult
from bridge.engine import CodeRequest
from bridge.model import AccessCodeErrorCode, EventType
from drivers.simulator import SimLockSpec
from tests.harness import Harness


async def test_a_vendor_error_code_replaces_the_generic_one_until_a_write_succeeds(
        harness_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    h: Harness = await harness_factory([SimLockSpec("front", "Front")])
    device_id = h.device_id("front")
    await h.settle()
    real_write = h.driver.write_code
    refusals = [CommandRejected(
        RejectReason.NO_SPACE, "every position up to maxCodes holds a code",
        error_code=AccessCodeErrorCode.HUBITAT_NO_FREE_POSITIONS_AVAILABLE.value)]

    async def write_code(external_id: str, code: CodeWrite) -> WriteResult:
        if refusals:
            raise refusals.pop()
        return await real_write(external_id, code)

    monkeypatch.setattr(h.driver, "write_code", write_code)
    code = await h.engine.create_code(device_id, CodeRequest(name="Guest", code="4711"))
    await h.settle()

    refused = h.engine.codes[code.access_code_id]
    assert [e.code for e in refused.errors] == ["hubitat_no_free_positions_available"]
    events = await h.store.read(lambda r: r.events(access_code_id=code.access_code_id))
    [no_space] = [e for e in events if e.event_type is EventType.ACCESS_CODE_NO_SPACE_ON_DEVICE]
    assert no_space.data["error_code"] == "hubitat_no_free_positions_available"
    assert h.slots("front") == {}

    # Changing the code sends it again; the lock takes it and the maker's error goes.
    await h.engine.update_code(code.access_code_id, CodeRequest(code="4712"))
    await h.settle()
    assert h.slots("front") == {1: "4712"}
    assert h.engine.codes[code.access_code_id].errors == ()
