"""The fake Aqara gateway with lock sub-devices, driven through python-miio's own Gateway and
SubDevice classes, as a python-miio user would. python-miio is blocking: every call runs in a
thread (asyncio.to_thread) while the fake answers on the event loop.

Addresses 127.0.0.20-127.0.0.39 are this file's (the lock fake's tests use 127.0.0.2-12).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import pytest

miio = pytest.importorskip("miio")
from miio.exceptions import DeviceError, DeviceException  # noqa: E402
from miio.gateway.gateway import GatewayException  # noqa: E402

from tests.fakes.miio_gateway import FakeAqaraGateway  # noqa: E402
from tests.harness import until  # noqa: E402
from tests.loopback import LOOPBACK  # noqa: E402

V3 = "lumi.gateway.v3"
MGL03 = "lumi.gateway.mgl03"


def token() -> str:
    return secrets.token_hex(16)


def client(ip: str, tok: str, model: str = V3, timeout: float = 1.0) -> Any:
    # miio.Gateway takes no timeout argument; its per-try timeout is Device's class attribute
    # ``timeout`` (5 s), which a user shortens by subclassing.
    gateway_cls = type("QuickGateway", (miio.Gateway,), {"timeout": timeout})
    return gateway_cls(ip, tok, model=model)


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_discovery_v3_lists_locks_by_type_id() -> None:
    tok = token()
    async with FakeAqaraGateway(f"{LOOPBACK}20", tok, V3) as gw:
        s2 = gw.add_lock("lumi.lock.acn02", fw_code=9)
        s2pro = gw.add_lock("lumi.lock.acn03", sid="lumi.158d000392f406")
        gateway = client(f"{LOOPBACK}20", tok)
        devices = await call(gateway.discover_devices)
        assert set(devices) == {s2.sid, s2pro.sid}  # the gateway's own "lumi.0" is skipped
        assert devices[s2.sid].model == "ZNMS12LM"
        assert devices[s2.sid].device_type == "Lock"
        assert devices[s2.sid].firmware_version == 9
        assert devices[s2pro.sid].model == "ZNMS13LM"
        assert devices[s2pro.sid].name == "Door lock S2 pro (lumi.158d000392f406)"
        assert gw.requests[-1]["method"] == "get_device_prop"
        assert gw.requests[-1]["params"] == ["lumi.0", "device_list"]


async def test_discovery_mgl03_uses_get_device_list() -> None:
    tok = token()
    async with FakeAqaraGateway(f"{LOOPBACK}21", tok, MGL03) as gw:
        aq1 = gw.add_lock("lumi.lock.aq1")
        devices = await call(client(f"{LOOPBACK}21", tok, MGL03).discover_devices)
        assert list(devices) == [aq1.sid]
        assert devices[aq1.sid].model == "ZNMS11LM"
        assert gw.requests[-1]["method"] == "get_device_list"


async def test_status_battery_and_properties_v3() -> None:
    tok = token()
    async with FakeAqaraGateway(f"{LOOPBACK}22", tok, V3) as gw:
        lock = gw.add_lock("lumi.lock.acn02", battery=80)
        devices = await call(client(f"{LOOPBACK}22", tok).discover_devices)
        sub = devices[lock.sid]
        assert await call(sub.get_property, "status") == ["locked"]
        assert await call(sub.get_battery) == 80
        lock.battery = 15
        assert await call(sub.get_battery) == 15
        assert await call(sub.get_property_exp, ["status", "bat_percent", "alive",
                                                 "verified_wrong"]) == ["locked", 15, 1, 0]
        assert await call(sub.get_firmware_version) == "1.0.0_0020"
        lock.locked = False
        assert await call(sub.get_property, "status") == ["unlocked"]


async def test_voltage_on_mgl03() -> None:
    tok = token()
    async with FakeAqaraGateway(f"{LOOPBACK}23", tok, MGL03) as gw:
        lock = gw.add_lock("lumi.lock.acn03", voltage=3376)
        sub = (await call(client(f"{LOOPBACK}23", tok, MGL03).discover_devices))[lock.sid]
        assert await call(sub.get_voltage) == pytest.approx(3.376)
        lock.voltage = 2900
        assert await call(sub.get_voltage) == pytest.approx(2.9)
        assert await call(sub.get_battery) is None  # python-miio does not ask an mgl03


async def test_acn03_door_and_lock_state() -> None:
    tok = token()
    async with FakeAqaraGateway(f"{LOOPBACK}24", tok, V3) as gw:
        lock = gw.add_lock("lumi.lock.acn03")
        sub = (await call(client(f"{LOOPBACK}24", tok).discover_devices))[lock.sid]
        names = ["status", "door_state", "lock_state", "lock_control"]
        assert await call(sub.get_property_exp, names) == ["locked", "close", 3, "in_locked"]
        lock.unlock("password", user_id=131073)
        assert await call(sub.get_property_exp, names) == [
            "unlocked", "close", 0, "out_unlocked"]
        lock.door_open = True
        assert await call(sub.get_property_exp, names) == [
            "unlocked", "open", 1, "out_unlocked"]
        lock.door_open = False
        lock.lock("out")
        assert await call(sub.get_property_exp, names) == ["locked", "close", 3, "out_locked"]


async def test_door_state_is_not_served_where_unpublished() -> None:
    tok = token()
    async with FakeAqaraGateway(f"{LOOPBACK}25", tok, V3) as gw:
        acn02 = gw.add_lock("lumi.lock.acn02")
        aq1 = gw.add_lock("lumi.lock.aq1")
        devices = await call(client(f"{LOOPBACK}25", tok).discover_devices)
        with pytest.raises(GatewayException, match="Empty response"):
            await call(devices[acn02.sid].get_property, "door_state")
        with pytest.raises(GatewayException, match="Empty response"):
            await call(devices[aq1.sid].get_property, "bat_percent")
        with pytest.raises(GatewayException, match="unexpected result"):
            await call(devices[aq1.sid].get_property_exp, ["status", "alive"])
        assert await call(devices[aq1.sid].get_property, "status") == ["locked"]


async def test_unlock_event_is_kept_but_not_readable_by_default() -> None:
    tok = token()
    async with FakeAqaraGateway(f"{LOOPBACK}26", tok, V3) as gw:
        lock = gw.add_lock("lumi.lock.acn02")
        sub = (await call(client(f"{LOOPBACK}26", tok).discover_devices))[lock.sid]
        event = lock.unlock("fingerprint", user_id=65536, timestamp=1_700_000_000)
        assert event.lan_report == {"fing_verified": 65536}
        assert event.zigbee == {"13.1.85": 65536, "13.15.85": 1}
        assert lock.last_event is event
        assert await call(sub.get_property, "status") == ["unlocked"]
        with pytest.raises(GatewayException, match="Empty response"):
            await call(sub.get_property, "fing_verified")
        gw.event_props_readable = True
        assert await call(sub.get_property, "fing_verified") == [65536]
        card = lock.unlock("card", user_id=196610)
        assert card.lan_report == {"card_verified": 196610}
        assert card.zigbee == {"13.1.85": 196610}  # no published method code for a card
        assert await call(sub.get_property, "card_verified") == [196610]
        with pytest.raises(GatewayException):
            await call(sub.get_property, "psw_verified")  # no password unlock yet


async def test_wrong_attempts_count_up_from_the_last_unlock() -> None:
    tok = token()
    async with FakeAqaraGateway(f"{LOOPBACK}27", tok, V3) as gw:
        lock = gw.add_lock("lumi.lock.acn03")
        sub = (await call(client(f"{LOOPBACK}27", tok).discover_devices))[lock.sid]
        lock.wrong_attempt("password")
        assert lock.wrong_attempt("fingerprint").lan_report == {"verified_wrong": 2}
        assert await call(sub.get_property, "verified_wrong") == [2]
        assert await call(sub.get_property, "status") == ["locked"]
        lock.unlock("password", user_id=131072)
        assert await call(sub.get_property, "verified_wrong") == [2]  # the last report stays
        assert lock.wrong_attempt("card").lan_report == {"verified_wrong": 1}
        assert await call(sub.get_property, "verified_wrong") == [1]


async def test_offline_lock_keeps_last_values_and_alive_drops() -> None:
    tok = token()
    async with FakeAqaraGateway(f"{LOOPBACK}28", tok, V3) as gw:
        lock = gw.add_lock("lumi.lock.acn02", battery=70)
        gateway = client(f"{LOOPBACK}28", tok)
        sub = (await call(gateway.discover_devices))[lock.sid]
        lock.online = False
        assert await call(sub.get_property, "alive") == [0]
        lock.battery = 5
        lock.unlock("fingerprint", user_id=65537)  # the gateway cannot hear it
        assert not lock.events
        assert await call(sub.get_property_exp, ["status", "bat_percent"]) == ["locked", 70]
        assert await call(sub.get_battery) == 70
        assert lock.sid in await call(gateway.discover_devices)  # still paired
        lock.online = True
        assert await call(sub.get_property_exp, ["status", "bat_percent", "alive"]) == [
            "unlocked", 5, 1]


async def test_removed_lock_is_gone() -> None:
    tok = token()
    async with FakeAqaraGateway(f"{LOOPBACK}29", tok, V3) as gw:
        keep = gw.add_lock("lumi.lock.acn02")
        gone = gw.add_lock("lumi.lock.v1")
        gateway = client(f"{LOOPBACK}29", tok)
        sub = (await call(gateway.discover_devices))[gone.sid]
        gw.remove_lock(gone.sid)
        assert list(await call(gateway.discover_devices)) == [keep.sid]
        with pytest.raises(GatewayException, match="Empty response"):
            await call(sub.get_property, "status")


async def test_wrong_token_times_out() -> None:
    tok = token()
    async with FakeAqaraGateway(f"{LOOPBACK}30", tok, V3, wrong_token=True) as gw:
        gw.add_lock("lumi.lock.acn02")
        gateway = client(f"{LOOPBACK}30", tok, timeout=0.3)
        with pytest.raises(DeviceException, match="No response from the device"):
            await call(gateway.discover_devices)
        # The first try and python-miio's 3 retries; on a busy machine the last packet may
        # still wait in the fake's socket when the client gives up.
        await until(lambda: gw.bad_token_count >= 4, timeout=5, what="4 refused tries")
        assert gw.bad_token_count == 4
        gw.wrong_token = False
        # A fresh client with room to answer on a busy machine: the short timeout above only
        # keeps the refused tries quick.
        assert len(await call(client(f"{LOOPBACK}30", tok, timeout=3).discover_devices)) == 1


async def test_gateway_offline_is_unreachable() -> None:
    tok = token()
    async with FakeAqaraGateway(f"{LOOPBACK}31", tok, V3, online=False) as gw:
        gateway = client(f"{LOOPBACK}31", tok, timeout=0.3)
        with pytest.raises(DeviceException, match="Unable to discover the device"):
            await call(gateway.discover_devices)
        assert gw.dropped_count >= 1


async def test_unknown_methods_and_get_battery_on_mgl03() -> None:
    tok = token()
    async with FakeAqaraGateway(f"{LOOPBACK}32", tok, MGL03) as gw:
        lock = gw.add_lock("lumi.lock.acn02")
        gateway = client(f"{LOOPBACK}32", tok, MGL03)
        with pytest.raises(DeviceError):
            await call(gateway.send, "get_battery", [lock.sid])
        with pytest.raises(DeviceError):
            await call(gateway.send, "set_device_prop", {"sid": lock.sid, "status": "unlocked"})
        assert lock.locked


def test_unsupported_models_are_refused() -> None:
    with pytest.raises(ValueError, match="discovers sub-devices only"):
        FakeAqaraGateway(f"{LOOPBACK}20", token(), "lumi.gateway.mieu01")
    gw = FakeAqaraGateway(f"{LOOPBACK}20", token(), V3)
    with pytest.raises(ValueError, match="not an Aqara lock model"):
        gw.add_lock("lumi.lock.mcn01")
    with pytest.raises(ValueError, match="is taken"):
        gw.add_lock("lumi.lock.acn02", sid="lumi.0")
