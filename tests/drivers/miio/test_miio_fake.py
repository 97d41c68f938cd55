"""The fake miIO/MiOT lock, checked through python-miio's public client API only.

python-miio is blocking, so every call runs in a thread (asyncio.to_thread) while the fake
answers on the event loop.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest

miio = pytest.importorskip("miio")
from miio.exceptions import DeviceError, DeviceException  # noqa: E402

from tests.fakes.miio_lock import FakeMiioLock  # noqa: E402
from tests.harness import until  # noqa: E402
from tests.loopback import LOOPBACK  # noqa: E402

LOOCK = "loock.lock.v5"
B03 = "xiaomi.lock.b03"
LOOCK_MAPPING = {
    "lock": {"siid": 2, "piid": 5},
    "door": {"siid": 3, "piid": 1},
    "battery": {"siid": 4, "piid": 1},
}


def token() -> str:
    return secrets.token_hex(16)


def miot(ip: str, tok: str, model: str = LOOCK, timeout: float = 1.0,
         mapping: dict[str, Any] | None = None) -> Any:
    return miio.MiotDevice(ip, tok, timeout=timeout, model=model,
                           mapping=mapping if mapping is not None else LOOCK_MAPPING)


async def get(dev: Any, siid: int, piid: int) -> dict[str, Any]:
    rows = await asyncio.to_thread(dev.get_property_by, siid, piid)
    assert len(rows) == 1
    row: dict[str, Any] = rows[0]
    return row


async def test_info_after_hello() -> None:
    tok = token()
    async with FakeMiioLock(f"{LOOPBACK}2", tok, LOOCK, device_id=0x0102ABCD) as lock:
        dev = miio.Device(f"{LOOPBACK}2", tok, timeout=1)
        info = await asyncio.to_thread(dev.info)
        assert info.model == LOOCK
        assert info.firmware_version == lock.fw_ver
        assert info.ip_address == f"{LOOPBACK}2"
        assert dev.device_id == 0x0102ABCD  # from the hello reply
        assert dev.raw_id == 1  # python-miio takes the id the device echoes
        assert lock.hello_count >= 1
        assert lock.request_count == 1
        assert lock.requests[0]["method"] == "miIO.info"


async def test_properties_for_mapping_loock_v5() -> None:
    tok = token()
    async with FakeMiioLock(f"{LOOPBACK}2", tok, LOOCK, battery=64) as lock:
        dev = miot(f"{LOOPBACK}2", tok)
        rows = await asyncio.to_thread(dev.get_properties_for_mapping)
        by_did = {r["did"]: r for r in rows}
        assert by_did["lock"] == {"did": "lock", "siid": 2, "piid": 5, "code": 0, "value": 255}
        assert by_did["door"]["value"] == 1  # closed
        assert by_did["battery"]["value"] == 64
        lock.door_open = True
        lock.locked = False
        lock.battery = 12
        rows = await asyncio.to_thread(dev.get_properties_for_mapping)
        assert [r["value"] for r in rows] == [0, 0, 12]


async def test_unsupported_unreadable_and_refused_set() -> None:
    tok = token()
    async with FakeMiioLock(f"{LOOPBACK}3", tok, LOOCK) as lock:
        dev = miot(f"{LOOPBACK}3", tok)
        assert await get(dev, 9, 9) == {"did": "9-9", "siid": 9, "piid": 9, "code": -4004}
        assert await get(dev, 2, 1) == {"did": "2-1", "siid": 2, "piid": 1, "code": -4001}
        rows = await asyncio.to_thread(dev.set_property_by, 2, 5, 0)
        assert rows == [{"did": "set-2-5", "siid": 2, "piid": 5, "code": -4002}]
        rows = await asyncio.to_thread(dev.set_property_by, 7, 1, 0)
        assert rows[0]["code"] == -4004
        assert lock.locked
        assert lock.sets_refused == 2
        assert (await get(dev, 2, 5))["value"] == 255
        with pytest.raises(DeviceError) as err:
            await asyncio.to_thread(dev.send, "set_lock", [0])
        assert err.value.code == -32601


async def test_b03_door_state_carries_lock_and_door() -> None:
    tok = token()
    async with FakeMiioLock(f"{LOOPBACK}4", tok, B03, battery=46) as lock:
        dev = miot(f"{LOOPBACK}4", tok, model=B03, mapping={})
        assert (await get(dev, 3, 1021))["value"] == 1  # locked
        assert (await get(dev, 4, 1003))["value"] == 46
        lock.door_open = True
        assert (await get(dev, 3, 1021))["value"] == 5  # open: the last change wins
        lock.unlock(method="nfc", user_id=3)
        assert (await get(dev, 3, 1021))["value"] == 2  # unlocked
        assert (await get(dev, 2, 2))["code"] == -4001  # operation-method is not readable


async def test_events_after_unlock() -> None:
    tok = token()
    async with FakeMiioLock(f"{LOOPBACK}5", tok, LOOCK, event_log_size=2) as lock:
        dev = miot(f"{LOOPBACK}5", tok)
        event = lock.unlock(method="fingerprint", user_id=7, timestamp=1_777_000_000)
        assert (event.siid, event.eiid) == (2, 1)
        assert event.arguments == [
            {"piid": 1, "value": 2}, {"piid": 2, "value": 7}, {"piid": 4, "value": 1_777_000_000},
        ]
        # Locally only the state change is readable: status 255 (Others) -> 0 (Open).
        assert (await get(dev, 2, 5))["value"] == 0
        assert (await get(dev, 2, 2))["code"] == -4001
        lock.event_props_readable = True  # unpublished: serve the last event's arguments
        assert (await get(dev, 2, 1))["value"] == 2
        assert (await get(dev, 2, 2))["value"] == 7
        lock.unlock(method="password", user_id=8)
        lock.unlock(method="app", user_id=9)
        assert [e.operation_id for e in lock.events] == [8, 9]  # bounded: oldest dropped
        assert [e.method_code for e in lock.events] == [1, 0]
        with pytest.raises(ValueError):
            lock.lock_event()  # loock-v5's event is lock-opened: unlocks only

    async with FakeMiioLock(f"{LOOPBACK}6", tok, B03) as b03:
        event = b03.unlock(method="key", user_id=42, position="outdoor", timestamp=5)
        assert event.arguments == [
            {"piid": 2, "value": 5}, {"piid": 3, "value": 42}, {"piid": 4, "value": 5},
            {"piid": 5, "value": 2}, {"piid": 6, "value": 2},
        ]
        assert b03.lock_event(method="key").arguments[-1] == {"piid": 6, "value": 1}


async def test_wrong_token_silent_times_out() -> None:
    tok = token()
    async with FakeMiioLock(f"{LOOPBACK}7", tok, LOOCK, wrong_token=True) as lock:
        dev = miot(f"{LOOPBACK}7", tok, timeout=0.3)
        with pytest.raises(DeviceException, match="No response from the device"):
            await asyncio.to_thread(dev.get_property_by, 4, 1)
        # The first try and python-miio's 3 retries; on a busy machine the last packet may
        # still wait in the fake's socket when the client gives up.
        await until(lambda: lock.bad_token_count >= 4, timeout=5, what="4 refused tries")
        assert lock.bad_token_count == 4
        assert lock.request_count == 0
        assert lock.hello_count >= 4  # the hello is answered whatever the token
        lock.wrong_token = False
        assert (await get(dev, 4, 1))["code"] == 0


def _packet(tok: bytes, request_id: int) -> bytes:
    """A request as python-miio sends it, encrypted with `tok`."""
    from datetime import datetime

    from miio.protocol import Message

    header = {"length": 0, "unknown": 0, "device_id": b"\x0a\x1b\x2c\x3d",
              "ts": datetime(1970, 1, 1, 0, 16, 40)}
    body = {"id": request_id, "method": "get_properties", "params": []}
    msg = {"data": {"value": body}, "header": {"value": header}, "checksum": 0}
    return bytes(Message.build(msg, token=tok))


async def test_a_wrong_token_is_refused_even_when_its_padding_decrypts() -> None:
    # With the wrong key, about one packet in 256 decrypts to valid padding: python-miio's
    # parser then fails on the JSON before it looks at the checksum. The device refuses that
    # packet as a wrong token like any other (the suite saw "4 refused tries" counted as 3).
    import construct
    from miio.protocol import Message

    tok, other = token(), bytes.fromhex(token())
    async with FakeMiioLock(f"{LOOPBACK}11", tok, LOOCK) as lock:
        for request_id in range(1, 20_000):
            packet = _packet(other, request_id)
            try:
                Message.parse(packet, token=bytes.fromhex(tok))
            except construct.ChecksumError:
                continue
            except Exception:  # PayloadDecodeException, or UnboundLocalError from its quirks
                break
        else:
            pytest.fail("no packet decrypted to valid padding in 20,000 tries")
        assert lock._handle(packet) is None
        assert (lock.bad_token_count, lock.request_count) == (1, 0)


async def test_wrong_token_checksum_reply() -> None:
    tok = token()
    async with FakeMiioLock(f"{LOOPBACK}8", tok, LOOCK, wrong_token_reply="checksum") as lock:
        dev = miot(f"{LOOPBACK}8", token(), timeout=1)  # a client with another token
        with pytest.raises(DeviceException, match="checksum error"):
            await asyncio.to_thread(dev.get_property_by, 4, 1)
        assert lock.bad_token_count == 1  # python-miio does not retry a checksum error


async def test_two_devices_on_loopback_addresses() -> None:
    t1, t2 = token(), token()
    async with FakeMiioLock(f"{LOOPBACK}9", t1, LOOCK, battery=10), \
            FakeMiioLock(f"{LOOPBACK}10", t2, B03, battery=20):
        assert (await get(miot(f"{LOOPBACK}9", t1), 4, 1))["value"] == 10
        assert (await get(miot(f"{LOOPBACK}10", t2, model=B03, mapping={}), 4, 1003))["value"] == 20


async def test_latency_is_felt() -> None:
    tok = token()
    async with FakeMiioLock(f"{LOOPBACK}11", tok, LOOCK, latency=0.3):
        dev = miot(f"{LOOPBACK}11", tok, timeout=2)
        started = time.monotonic()
        assert (await get(dev, 4, 1))["code"] == 0
        assert time.monotonic() - started >= 0.6  # hello and request each wait 0.3 s


async def test_offline_times_out() -> None:
    tok = token()
    async with FakeMiioLock(f"{LOOPBACK}12", tok, LOOCK) as lock:
        dev = miot(f"{LOOPBACK}12", tok, timeout=0.3)
        assert (await get(dev, 4, 1))["code"] == 0
        lock.online = False
        started = time.monotonic()
        # The request times out (0.3 s), python-miio re-handshakes, and its handshake waits a
        # fixed 5 s whatever the Device timeout, then gives up without further retries.
        with pytest.raises(DeviceException, match="Unable to discover the device"):
            await asyncio.to_thread(dev.get_property_by, 4, 1)
        assert 5.0 <= time.monotonic() - started < 9.0
        assert lock.dropped_count >= 4  # one request + three hellos


def test_unpublished_model_is_refused() -> None:
    with pytest.raises(ValueError, match="no published MiOT lock instance"):
        FakeMiioLock(f"{LOOPBACK}2", token(), "lumi.lock.mcn01")
