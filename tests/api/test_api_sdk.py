"""The official `seam` SDK, unchanged, drives every route of the real daemon's local API, once
with `Seam` (in a worker thread) and once with `AsyncSeam`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from seam import AsyncSeam, Seam
from seam.exceptions import SeamHttpApiError, SeamHttpInvalidInputError

from tests.api_helpers import Daemon, start_daemon

pytestmark = pytest.mark.slow

Call = Callable[..., Awaitable[Any]]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(tmp_path)
    try:
        yield d
    finally:
        log = d.stop()
        for pin in d.pins:
            assert pin not in log, "a PIN reached the daemon's log"


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """Poll an async check (real time: the daemon runs on the system clock)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def sync_caller(seam: Seam) -> Call:
    async def call(route: str, **kwargs: Any) -> Any:
        target: Any = seam
        for part in route.split("."):
            target = getattr(target, part)
        return await asyncio.to_thread(target, **kwargs)

    return call


def async_caller(seam: AsyncSeam) -> Call:
    async def call(route: str, **kwargs: Any) -> Any:
        target: Any = seam
        for part in route.split("."):
            target = getattr(target, part)
        return await target(**kwargs)

    return call


async def test_every_route_with_the_sync_sdk(daemon: Daemon) -> None:
    with Seam(api_key=daemon.key, endpoint=daemon.url,
              wait_for_action_attempt={"timeout": 20, "polling_interval": 0.1}) as seam:
        await scenario(daemon, sync_caller(seam), "13579", "24680")


async def test_every_route_with_the_async_sdk(daemon: Daemon) -> None:
    async with AsyncSeam(api_key=daemon.key, endpoint=daemon.url,
                         wait_for_action_attempt={"timeout": 20,
                                                  "polling_interval": 0.1}) as seam:
        await scenario(daemon, async_caller(seam), "35791", "46802")


async def scenario(daemon: Daemon, call: Call, pin: str, new_pin: str) -> None:
    daemon.pins.update({pin, new_pin, "86420", "97531"})
    # -- devices
    devices = await call("devices.list")
    by_name = {d.display_name: d for d in devices}
    assert set(by_name) == {"Front door", "Back door", "Side door"}
    front, back, side = (by_name[n].device_id for n in ("Front door", "Back door", "Side door"))
    assert (await call("devices.get", device_id=front)).display_name == "Front door"
    assert (await call("devices.get", name="Back door")).device_id == back
    assert by_name["Back door"].properties.supported_code_lengths == [4]

    # -- an ongoing code, set on the lock; its action attempt polled to success
    code = await call("access_codes.create", device_id=front, name="Staff", code=pin)
    assert code.status == "setting" and code.code == pin and code.type == "ongoing"
    await until(lambda: _async(pin in daemon.slots("front").values()))
    got = await until(lambda: _set(call, code.access_code_id))
    assert got.code == pin
    attempts = await call("action_attempts.list")
    create_attempt = next(a for a in attempts if a.action_type == "CREATE_ACCESS_CODE")
    done = await call("action_attempts.get", action_attempt_id=create_attempt.action_attempt_id)
    assert done.status == "success"
    assert done.result.access_code["access_code_id"] == code.access_code_id  # type: ignore[union-attr]
    listed = await call("action_attempts.list",
                        action_attempt_ids=[create_attempt.action_attempt_id])
    assert [a.action_attempt_id for a in listed] == [create_attempt.action_attempt_id]

    # -- a time-bound code with the backup pool, on the side door
    now = datetime.now(UTC)
    timed = await call("access_codes.create", device_id=side, name="Guest",
                       starts_at=(now - timedelta(minutes=1)).isoformat(),
                       ends_at=(now + timedelta(days=2)).isoformat(),
                       use_backup_access_code_pool=True)
    assert timed.type == "time_bound" and timed.ends_at is not None
    daemon.pins.add(timed.code)
    await until(lambda: _set(call, timed.access_code_id))
    assert timed.code in daemon.slots("side").values()

    # -- list, get by id and by device + PIN
    codes = await call("access_codes.list", device_id=front)
    assert [c.access_code_id for c in codes] == [code.access_code_id]
    by_pin = await call("access_codes.get", device_id=front, code=pin)
    assert by_pin.access_code_id == code.access_code_id

    # -- update: new name and PIN reach the lock
    assert await call("access_codes.update", access_code_id=code.access_code_id,
                      name="Cleaning", code=new_pin) is None
    await until(lambda: _async(new_pin in daemon.slots("front").values()
                               and pin not in daemon.slots("front").values()))
    updated = await until(lambda: _set(call, code.access_code_id))
    assert updated.name == "Cleaning" and updated.code == new_pin

    # -- generate a code that fits the Schlage's fixed length
    generated = await call("access_codes.generate_code", device_id=back)
    assert generated.code is not None and len(generated.code) == 4 and generated.code.isdigit()
    daemon.pins.add(generated.code)

    # -- pull a backup, twice: the same backup both times
    await until(lambda: _backup_ready(call, timed.access_code_id))
    original = await call("access_codes.pull_backup_access_code",
                          access_code_id=timed.access_code_id)
    assert original.access_code_id == timed.access_code_id
    backup_id = original.pulled_backup_access_code_id
    assert backup_id is not None
    again = await call("access_codes.pull_backup_access_code",
                       access_code_id=timed.access_code_id)
    assert again.pulled_backup_access_code_id == backup_id
    backup = await call("access_codes.get", access_code_id=backup_id)
    assert backup.is_backup and backup.ends_at == timed.ends_at
    daemon.pins.add(backup.code)
    with pytest.raises(SeamHttpInvalidInputError):
        await call("access_codes.pull_backup_access_code", access_code_id=code.access_code_id)

    # -- unmanaged codes found on the front door: convert one, delete the other
    unmanaged = await call("access_codes.unmanaged.list", device_id=front)
    by_slot_pin = {u.code: u for u in unmanaged}
    assert set(by_slot_pin) == {"86420", "97531"}
    keep, drop = by_slot_pin["86420"], by_slot_pin["97531"]
    assert (await call("access_codes.unmanaged.get",
                       access_code_id=keep.access_code_id)).code == "86420"
    assert await call("access_codes.unmanaged.convert_to_managed",
                      access_code_id=keep.access_code_id) is None
    converted = await call("access_codes.get", access_code_id=keep.access_code_id)
    assert converted.is_managed and converted.status == "set"
    assert await call("access_codes.unmanaged.delete", access_code_id=drop.access_code_id) is None
    assert 21 not in daemon.slots("front")
    assert [u.access_code_id for u in await call("access_codes.unmanaged.list",
                                                 device_id=front)] == []

    # -- delete the first code: off the lock, then gone
    assert await call("access_codes.delete", access_code_id=code.access_code_id) is None
    await until(lambda: _async(new_pin not in daemon.slots("front").values()))
    await until(lambda: _gone(call, code.access_code_id))
    deletes = [a for a in await call("action_attempts.list")
               if a.action_type == "DELETE_ACCESS_CODE"]
    assert deletes
    for attempt in deletes:
        polled = await call("action_attempts.get", action_attempt_id=attempt.action_attempt_id)
        assert polled.status == "success"

    # -- events
    events = await call("events.list", device_id=front)
    kinds = [e.event_type for e in events]
    for kind in ("access_code.created", "access_code.set_on_device", "access_code.changed",
                 "access_code.deleted", "access_code.unmanaged.converted_to_managed",
                 "access_code.unmanaged.removed"):
        assert kind in kinds, kind
    one = await call("events.get", event_id=events[0].event_id)
    assert one.event_id == events[0].event_id
    pulled = await call("events.list", access_code_id=timed.access_code_id,
                        event_types=["access_code.backup_access_code_pulled"])
    assert len(pulled) == 1

    # -- errors the SDK turns into its exceptions
    with pytest.raises(SeamHttpApiError) as missing:
        await call("devices.get", device_id="00000000-0000-4000-8000-000000000000")
    assert missing.value.status_code == 404 and missing.value.code == "device_not_found"
    with pytest.raises(SeamHttpInvalidInputError):
        await call("access_codes.create", device_id=front, code="12")


async def _async(value: Any) -> Any:
    return value


async def _set(call: Call, access_code_id: str) -> Any:
    code = await call("access_codes.get", access_code_id=access_code_id)
    return code if code.status == "set" else None


async def _backup_ready(call: Call, access_code_id: str) -> bool:
    code = await call("access_codes.get", access_code_id=access_code_id)
    return bool(code.is_backup_access_code_available)


async def _gone(call: Call, access_code_id: str) -> bool:
    try:
        await call("access_codes.get", access_code_id=access_code_id)
    except SeamHttpApiError as exc:
        return exc.status_code == 404 and exc.code == "access_code_not_found"
    return False


def test_wrong_or_missing_key_is_refused_before_anything_else(daemon: Daemon) -> None:
    with Seam(api_key="seam_bridge_000000000000_nope", endpoint=daemon.url) as seam, \
            pytest.raises(SeamHttpApiError) as refused:
        seam.devices.list()
    assert refused.value.status_code == 401
    answer = httpx.get(daemon.url + "/devices/list")
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "unauthorized"
    assert answer.headers["seam-request-id"]
