"""Problems are known early (docs/seam-model.md): a code due within 3 days that will not fit,
or whose lock cannot be reached, carries `will_not_fit_on_device` until the cause is gone."""

from __future__ import annotations

from datetime import timedelta

from bridge.driver import Availability
from bridge.engine import CodeRequest
from bridge.model import AccessCodeType
from drivers.simulator import SimLockSpec
from tests.conftest import START

D = timedelta(days=1)


def stay(start: timedelta, end: timedelta) -> CodeRequest:
    return CodeRequest(name="Guest", type=AccessCodeType.TIME_BOUND, starts_at=START + start,
                       ends_at=START + end)


def warning_text(h, access_code_id: str) -> str | None:  # type: ignore[no-untyped-def]
    for w in h.engine.codes[access_code_id].warnings:
        if w.code == "will_not_fit_on_device":
            return str(w.message)
    return None


async def test_an_unreachable_lock_is_a_problem_known_days_ahead(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    dev = h.device_id("front")
    soon = await h.engine.create_code(dev, stay(2 * D, 4 * D))
    later = await h.engine.create_code(dev, stay(6 * D, 8 * D))
    await h.settle()
    assert warning_text(h, soon.access_code_id) is None

    await h.driver.set_availability("front", Availability.OFFLINE)
    await h.advance(60)
    text = warning_text(h, soon.access_code_id)
    assert text is not None and "offline" in text
    assert warning_text(h, later.access_code_id) is None  # beyond the 3-day horizon

    await h.driver.set_availability("front", Availability.ONLINE)
    await h.advance(60)
    assert warning_text(h, soon.access_code_id) is None


async def test_a_full_lock_is_a_problem_known_days_ahead(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front", slot_count=2)])
    dev = h.device_id("front")
    staff = [await h.engine.create_code(dev, CodeRequest(name=f"Staff {n}")) for n in (1, 2)]
    guest = await h.engine.create_code(dev, stay(2 * D, 4 * D))
    await h.settle()
    text = warning_text(h, guest.access_code_id)
    assert text is not None and "no slot" in text
    await h.engine.delete_code(staff[0].access_code_id)
    await h.advance(60)
    assert warning_text(h, guest.access_code_id) is None
    await h.advance(2 * 24 * 3600, step=3600)
    assert guest.code in h.slots("front").values()


async def test_ended_codes_are_forgotten_a_month_later(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    dev = h.device_id("front")
    ended = await h.engine.create_code(dev, stay(timedelta(hours=2), D))
    ongoing = await h.engine.create_code(dev, CodeRequest(name="Staff"))
    await h.advance(2 * 24 * 3600, step=3600)
    assert ended.code not in h.slots("front").values()  # off the lock at its end
    assert ended.access_code_id in h.engine.codes  # still listed, as `unset`, for a while
    await h.advance(29 * 24 * 3600, step=6 * 3600)
    assert ended.access_code_id not in h.engine.codes
    assert ongoing.access_code_id in h.engine.codes
    events = await h.store.read(lambda r: r.events(access_code_id=ended.access_code_id))
    assert events[-1].event_type.value == "access_code.deleted"
    assert events[-1].data == {"reason": "ended"}
    assert await h.store.read(lambda r: [c.access_code_id for c in r.codes()
                                         if c.access_code_id == ended.access_code_id]) == []
