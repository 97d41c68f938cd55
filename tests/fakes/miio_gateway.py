"""A fake Aqara/Xiaomi Zigbee gateway holding Aqara lock sub-devices, answering python-miio.

`FakeAqaraGateway` reuses the miIO plumbing of ``tests/fakes/miio_lock.py`` (``MiioEndpoint``:
UDP on ``(address, 54321)``, hello, token checksum, encryption, the ``online``/``wrong_token``/
``wrong_token_reply``/``latency`` switches and the counters); only the gateway's methods are
new here. One loopback address per gateway, as for the lock fake.

    async with FakeAqaraGateway("127.0.0.20", token_hex, "lumi.gateway.v3") as gw:
        lock = gw.add_lock("lumi.lock.acn02")
        client = miio.Gateway("127.0.0.20", token_hex, timeout=1, model="lumi.gateway.v3")
        devices = await asyncio.to_thread(client.discover_devices)   # {sid: SubDevice}
        await asyncio.to_thread(devices[lock.sid].get_property, "status")  # ["locked"]
        lock.unlock("fingerprint", user_id=65536)

Sources: "python-miio" is python-miio 0.5.12 as installed (``miio/gateway/gateway.py``,
``miio/gateway/devices/subdevice.py``, ``miio/gateway/devices/subdevices.yaml``,
``miio/tests/test_airconditioningcompanion.py``); "XG3" is AlexxIT/XiaomiGateway3
(``custom_components/xiaomi_gateway3/core/devices.py``, ``tests/test_conv_lumi.py``, issues
#143 and #551); "HA xiaomi_aqara" is home-assistant/core ``components/xiaomi_aqara/lock.py``.
docs/drivers/miio-gateway-facts.md has the same facts for the driver's author.

Gateway models
--------------
``lumi.gateway.v3`` and ``lumi.gateway.mgl03``: the two python-miio gateway models whose
sub-device discovery works over miIO (``Gateway.discover_devices``). ``lumi.gateway.mieu01`` is
refused: python-miio does not discover its sub-devices at all (it logs a warning and returns
``{}``; HA core#22078 shows its ``get_device_prop device_list`` failing with a DeviceError).

What the gateway answers
------------------------
* ``miIO.info``: as the lock fake (``MiioEndpoint._info``); values made up.
* Discovery, v3: ``get_device_prop ["lumi.0", "device_list"]`` -> one flat list, five entries
  per device ``[sid, type_id, unknown, unknown2, fw_ver]`` (python-miio ``SubDeviceInfo`` and
  ``discover_devices``; aholstenson/miio#26 "a flat array ... each device seems to have 5
  entries"). The gateway itself is listed first as ``"lumi.0"`` type 0 (subdevices.yaml's
  "Gateway" entry has type_id 0 and python-miio's ``setup_device`` skips it; miio#26's mapping
  starts "0 - Gateway"). The two unknown entries are not published: the fake sends 0, 0.
  ``fw_ver`` is an int (python-miio ``SubDeviceInfo.fw_ver: int``).
* Discovery, mgl03: ``get_device_list`` -> ``[{"did", "model", "num", "total"}, ...]`` (shape
  from rytilahti/python-miio#699, a capture of an mgl03; the gateway itself is not listed there).
* Sub-device sids look like ``lumi.158d0003cc2e1d`` (python-miio#728, XG3#143).
* ``get_device_prop [sid, name, ...]`` -> a list with one value per name (python-miio
  ``SubDevice.get_property``; a one-element list in python-miio's own gateway-style dummy,
  ``test_airconditioningcompanion.py``: ``{"lumi.0": {"plug_state": ["on"]}}``).
  ``get_device_prop_exp [[sid, name, ...]]`` -> ``[[value, ...]]`` (python-miio
  ``get_property_exp`` pops the one row and checks it has one value per name).
* ``get_battery [sid]`` -> ``[percent]`` on v3 only (python-miio ``SubDevice.get_battery``
  sends it, pops the one value, and does not send it to mieu01/mgl03: "does not (yet) support
  get_battery"). On mgl03 the fake answers Method not found (not published).
* Unknown sid or property: NOT PUBLISHED. python-miio guards ``get_device_prop`` with "Empty
  response while fetching property" and ``get_device_prop_exp`` with a length check; the fake
  answers an empty list (``[]``, resp. ``[[]]``) so python-miio raises GatewayException either
  way, and never invents a value.
* Any other method: ``{"error": {"code": -32601, "message": "Method not found."}}``, as the lock
  fake. ``set_device_prop`` is not served: no writable lock property is published.

Lock sub-device models (python-miio subdevices.yaml: zigbee_id, type_id, name)
------------------------------------------------------------------------------
``lumi.lock.aq1`` 59 "Door lock S1", ``lumi.lock.acn02`` 70 "Door lock S2",
``lumi.lock.v1`` 81 "Vima cylinder lock", ``lumi.lock.acn03`` 163 "Door lock S2 pro"; all are
class ``SubDevice`` with one property ``status`` commented ``'locked' / 'unlocked'`` and no
``get:`` key, so ``SubDevice.update()`` reads nothing for them: a client must ask by name.

Properties served by name (``get_device_prop``/``get_device_prop_exp``):
* every lock model: ``status`` "locked"/"unlocked" (subdevices.yaml); ``voltage`` in mV
  (python-miio ``get_voltage`` reads ``get_device_prop [sid, "voltage"]`` and divides by 1000;
  XG3#143/#551 show ``'voltage': 3376``); ``fw_ver`` (python-miio ``get_firmware_version``
  reads it; XG3#143 shows ``'1.0.0_0020'``).
* ``lumi.lock.acn02`` and ``acn03`` also: ``bat_percent``, ``alive`` (1/0),
  ``verified_wrong`` (the last reported count of failed tries) -- keys of the gateway's own property
  store for these locks, dumped in XG3#143 (acn03) and XG3#551 (acn02). That
  ``get_device_prop`` reads that same store is an INFERENCE (it reads ``voltage`` and
  ``fw_ver`` from it); not confirmed by a capture.
* ``lumi.lock.acn03`` also: ``door_state`` "open"/"close" (XG3#143 retain ``'door_state':
  'close'``; XG3 devices.py 13.26.85 map 0 open, 1 close, 2 ajar), ``lock_state`` (XG3 map
  13.28.85: 0 door_cannot_locked, 1 door_opened, 2 door_without_lift, 3 door_locked,
  4 reverse_locked; the fake sends 3 when locked, 1 when the door is open, else 0 -- #143 shows
  0 while unlocked with the door closed), ``lock_control`` (XG3 map 13.25.85 as strings,
  #143 ``'out_unlocked'``). acn02's door_state is an int in #551 with no published meaning, so
  it is not served for acn02.

Lock events (who unlocked, by which method) -- and the gap
-----------------------------------------------------------
Published event shapes for these locks are NOT miIO answers:
* the gateway's LAN developer protocol (UDP multicast, its own key), as HA xiaomi_aqara reads
  it for ``lock.aq1``: a report carrying one of ``fing_verified`` / ``psw_verified`` /
  ``card_verified`` = the user id (HA: ``int(value)`` -> ``changed_by``), or
  ``verified_wrong`` = the number of failed tries; HA then shows "unlocked" for 5 s only
  (UNLOCK_MAINTAIN_TIME), the report carries no lock state;
* the Zigbee attributes inside an mgl03 (XG3 test_conv_lumi / #143): ``13.1.85`` key id
  (examples 65536, 65537) with ``13.15.85`` method 1 fingerprint, 2 password.
python-miio has no push_properties for any lock in subdevices.yaml, and its PushServer needs a
per-event "extra" string that is published for no lock. None of the ``*_verified`` keys appears
in the gateway's property store (XG3#143/#551 dumps), so a polling miIO client sees the state
change (``status``) but not who or how. The fake keeps every event in ``lock.events`` (both
shapes) for tests to check; ``gateway.event_props_readable = True`` switches on an
UNPUBLISHED behaviour where ``fing_verified``/``psw_verified``/``card_verified`` read the last
such event's user id through ``get_device_prop``, for a driver that wants to try. Off by
default.

Switches
--------
Gateway (``MiioEndpoint``): ``online``, ``wrong_token``, ``wrong_token_reply``, ``latency``,
exactly as the lock fake (a wrong token times out: python-miio "No response from the device").
``event_props_readable`` as above.
Each lock (``gw.locks[sid]`` or the value ``add_lock`` returns): ``locked``, ``door_open``
(acn03 only shows it), ``battery`` (percent: get_battery, bat_percent), ``voltage`` (mV; set
independently: no published percent/voltage curve), ``online`` (False: the sub-device is out of
reach. What the gateway then answers is NOT PUBLISHED; the least surprising choice made here:
the gateway keeps answering its last known values, ``alive`` reads 0, and the lock stays in the
device list. Changes made to an offline lock are not seen until it is back, as the gateway
cannot hear it), ``verified_wrong``.
Helpers: ``lock.unlock(method, user_id)``, ``lock.lock()``, ``lock.wrong_attempt(method)``,
``gw.remove_lock(sid)`` (unpaired: gone from the device list, its sid then unknown).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.fakes.miio_lock import METHOD_NOT_FOUND, MIIO_PORT, MiioEndpoint

GATEWAY_V3 = "lumi.gateway.v3"
GATEWAY_MGL03 = "lumi.gateway.mgl03"
GATEWAY_MODELS = (GATEWAY_V3, GATEWAY_MGL03)
GATEWAY_SID = "lumi.0"  # python-miio Gateway.get_prop: ["lumi.0", property]

# python-miio gateway/devices/subdevices.yaml: zigbee_id -> (type_id, name)
LOCK_MODELS: dict[str, tuple[int, str]] = {
    "lumi.lock.aq1": (59, "Door lock S1"),
    "lumi.lock.acn02": (70, "Door lock S2"),
    "lumi.lock.v1": (81, "Vima cylinder lock"),
    "lumi.lock.acn03": (163, "Door lock S2 pro"),
}
# Models whose gateway property store was dumped (XG3#551 acn02, XG3#143 acn03).
STORE_DUMPED = ("lumi.lock.acn02", "lumi.lock.acn03")

UnlockMethod = Literal["fingerprint", "password", "card"]
# LAN protocol report keys (HA xiaomi_aqara lock.py FINGER_KEY, PASSWORD_KEY, CARD_KEY)
LAN_KEYS: dict[str, str] = {
    "fingerprint": "fing_verified",
    "password": "psw_verified",
    "card": "card_verified",
}
# Zigbee attribute 13.15.85 (XG3 devices.py: {1: "fingerprint", 2: "password"}); card: none
ZIGBEE_METHOD: dict[str, int] = {"fingerprint": 1, "password": 2}
# acn03 lock_state (XG3 13.28.85)
LOCK_STATE_DOOR_CANNOT_LOCKED, LOCK_STATE_DOOR_OPENED, LOCK_STATE_DOOR_LOCKED = 0, 1, 3


@dataclass
class AqaraLockEvent:
    """One lock event in both published shapes (neither is a miIO answer; see module doc)."""

    sid: str
    action: Literal["unlock", "wrong"]
    method: str
    user_id: int | None
    timestamp: int
    lan_report: dict[str, int]  # e.g. {"fing_verified": 65536} or {"verified_wrong": 2}
    zigbee: dict[str, int] = field(default_factory=dict)  # {"13.1.85": id, "13.15.85": m}


class FakeAqaraLock:
    """One Aqara lock sub-device as the gateway knows it. See the module doc for switches."""

    def __init__(self, sid: str, model: str, *, locked: bool = True, door_open: bool = False,
                 battery: int = 95, voltage: int = 3376, fw_ver: str = "1.0.0_0020",
                 fw_code: int = 20, event_log_size: int = 32) -> None:
        if model not in LOCK_MODELS:
            raise ValueError(f"not an Aqara lock model python-miio knows: {model!r}; "
                             f"known: {sorted(LOCK_MODELS)}")
        self.sid = sid
        self.model = model
        self.type_id, self.name = LOCK_MODELS[model]
        self.fw_ver = fw_ver
        self.fw_code = fw_code
        self._online = True
        self.events: deque[AqaraLockEvent] = deque(maxlen=event_log_size)
        # What the lock really is, and what the gateway last heard (frozen while offline).
        self._now: dict[str, Any] = {"locked": locked, "door_open": door_open,
                                     "battery": battery, "voltage": voltage,
                                     "verified_wrong": 0,
                                     "lock_control": "in_locked" if locked else "in_unlocked"}
        self._heard: dict[str, Any] = dict(self._now)
        self._last_user: dict[str, int] = {}
        self._wrong_run = 0  # failed tries since the last unlock

    # ---- switches: each sets the lock; the gateway hears it only while the lock is online --

    def _set(self, key: str, value: Any) -> None:
        self._now[key] = value
        self._sync()

    def _sync(self) -> None:
        if self.online:
            self._heard = dict(self._now)

    @property
    def online(self) -> bool:
        """False: the lock is out of the gateway's reach (see the module doc)."""
        return self._online

    @online.setter
    def online(self, value: bool) -> None:
        self._online = value
        self._sync()

    @property
    def locked(self) -> bool:
        return bool(self._now["locked"])

    @locked.setter
    def locked(self, value: bool) -> None:
        self._set("locked", value)

    @property
    def door_open(self) -> bool:
        return bool(self._now["door_open"])

    @door_open.setter
    def door_open(self, value: bool) -> None:
        self._set("door_open", value)

    @property
    def battery(self) -> int:
        return int(self._now["battery"])

    @battery.setter
    def battery(self, value: int) -> None:
        self._set("battery", value)

    @property
    def voltage(self) -> int:
        return int(self._now["voltage"])

    @voltage.setter
    def voltage(self, value: int) -> None:
        self._set("voltage", value)

    @property
    def verified_wrong(self) -> int:
        return int(self._now["verified_wrong"])

    @verified_wrong.setter
    def verified_wrong(self, value: int) -> None:
        self._set("verified_wrong", value)

    # ---- helpers for tests ------------------------------------------------------------------

    def unlock(self, method: UnlockMethod = "fingerprint", user_id: int = 65536, *,
               timestamp: int | None = None) -> AqaraLockEvent:
        """Unlock from outside with a fingerprint, password or card of user ``user_id``."""
        if method not in LAN_KEYS:
            raise ValueError(f"method must be one of {sorted(LAN_KEYS)}")
        zigbee = {"13.1.85": user_id}
        if method in ZIGBEE_METHOD:
            zigbee["13.15.85"] = ZIGBEE_METHOD[method]
        event = AqaraLockEvent(sid=self.sid, action="unlock", method=method, user_id=user_id,
                               timestamp=_ts(timestamp),
                               lan_report={LAN_KEYS[method]: user_id}, zigbee=zigbee)
        # HA xiaomi_aqara resets its count on an unlock, so the lock counts tries since the
        # last unlock; the stored verified_wrong keeps the last reported count (XG3#143 shows
        # 4 while unlocked) until the next failed try reports 1.
        self._wrong_run = 0
        self._now.update(locked=False, lock_control="out_unlocked")
        self._sync()
        if self.online:  # an event from a lock out of reach never reaches the gateway
            self.events.append(event)
            self._last_user[LAN_KEYS[method]] = user_id
        return event

    def lock(self, side: Literal["in", "out"] = "in") -> None:
        """Lock (no lock event is published for these models: state only)."""
        self._now.update(locked=True, lock_control=f"{side}_locked")
        self._sync()

    def wrong_attempt(self, method: UnlockMethod = "password", *,
                      timestamp: int | None = None) -> AqaraLockEvent:
        """A failed verification, reported as the count of failed tries since the last unlock."""
        self._wrong_run += 1
        count = self._wrong_run
        event = AqaraLockEvent(sid=self.sid, action="wrong", method=method, user_id=None,
                               timestamp=_ts(timestamp), lan_report={"verified_wrong": count})
        self._set("verified_wrong", count)
        if self.online:
            self.events.append(event)
        return event

    @property
    def last_event(self) -> AqaraLockEvent | None:
        return self.events[-1] if self.events else None

    # ---- what the gateway answers about this lock -------------------------------------------

    def read(self, name: str, event_props_readable: bool) -> Any | None:
        """The value the gateway has for property ``name``, None when it has none."""
        heard = self._heard
        if name == "status":
            return "locked" if heard["locked"] else "unlocked"
        if name == "voltage":
            return heard["voltage"]
        if name == "fw_ver":
            return self.fw_ver
        if self.model in STORE_DUMPED:
            if name == "bat_percent":
                return heard["battery"]
            if name == "alive":
                return 1 if self.online else 0
            if name == "verified_wrong":
                return heard["verified_wrong"]
        if self.model == "lumi.lock.acn03":
            if name == "door_state":
                return "open" if heard["door_open"] else "close"
            if name == "lock_state":
                if heard["locked"]:
                    return LOCK_STATE_DOOR_LOCKED
                return LOCK_STATE_DOOR_OPENED if heard["door_open"] \
                    else LOCK_STATE_DOOR_CANNOT_LOCKED
            if name == "lock_control":
                return heard["lock_control"]
        if event_props_readable and name in self._last_user:
            return self._last_user[name]
        return None


class FakeAqaraGateway(MiioEndpoint):
    """An Aqara Zigbee gateway on ``(address, 54321)`` with lock sub-devices. See module doc."""

    def __init__(self, address: str, token: str, model: str = GATEWAY_V3, *,
                 device_id: int = 0x0A1B2C3D, port: int = MIIO_PORT, latency: float = 0.0,
                 online: bool = True, wrong_token: bool = False,
                 wrong_token_reply: Literal["silent", "checksum"] = "silent",
                 event_props_readable: bool = False, fw_ver: str = "1.4.1_164") -> None:
        if model not in GATEWAY_MODELS:
            raise ValueError(f"python-miio discovers sub-devices only on {GATEWAY_MODELS}; "
                             f"got {model!r}")
        super().__init__(address, token, model, device_id=device_id, port=port,
                         latency=latency, online=online, wrong_token=wrong_token,
                         wrong_token_reply=wrong_token_reply, fw_ver=fw_ver)
        self.event_props_readable = event_props_readable
        self.locks: dict[str, FakeAqaraLock] = {}
        self._next_sid = 0x158D0003000001

    def add_lock(self, model: str = "lumi.lock.acn02", sid: str | None = None,
                 **kwargs: Any) -> FakeAqaraLock:
        """Pair a lock; ``kwargs`` are FakeAqaraLock's (locked, door_open, battery, ...)."""
        if sid is None:
            sid = f"lumi.{self._next_sid:x}"
            self._next_sid += 1
        if sid in self.locks or sid == GATEWAY_SID:
            raise ValueError(f"sid {sid!r} is taken")
        lock = FakeAqaraLock(sid, model, **kwargs)
        self.locks[sid] = lock
        return lock

    def remove_lock(self, sid: str) -> None:
        """Unpair: the lock leaves the device list and its sid becomes unknown."""
        del self.locks[sid]

    # ---- protocol -------------------------------------------------------------------------

    def _dispatch(self, method: str, params: Any) -> dict[str, Any]:
        if method == "miIO.info":
            return {"result": self._info()}
        if method == "get_device_prop" and _names(params):
            return {"result": self._props(params[0], params[1:])}
        if method == "get_device_prop_exp" and isinstance(params, list) and params \
                and _names(params[0]):
            return {"result": [self._props(params[0][0], params[0][1:])]}
        if method == "get_device_list" and self.model == GATEWAY_MGL03:
            total = len(self.locks)
            return {"result": [{"did": lock.sid, "model": lock.model, "num": n, "total": total}
                               for n, lock in enumerate(self.locks.values(), start=1)]}
        if method == "get_battery" and self.model == GATEWAY_V3 and _names(params):
            lock = self.locks.get(params[0])
            return {"result": [] if lock is None else [lock._heard["battery"]]}
        return {"error": dict(METHOD_NOT_FOUND)}

    def _props(self, sid: str, names: list[str]) -> list[Any]:
        if sid == GATEWAY_SID:
            if names == ["device_list"] and self.model == GATEWAY_V3:
                return self._device_list()
            return []
        lock = self.locks.get(sid)
        if lock is None:
            return []
        values = [lock.read(name, self.event_props_readable) for name in names]
        if any(v is None for v in values):
            return []
        return values

    def _device_list(self) -> list[Any]:
        flat: list[Any] = [GATEWAY_SID, 0, 0, 0, 0]
        for lock in self.locks.values():
            flat += [lock.sid, lock.type_id, 0, 0, lock.fw_code]
        return flat


def _names(params: Any) -> bool:
    return isinstance(params, list) and bool(params) and all(isinstance(p, str) for p in params)


def _ts(timestamp: int | None) -> int:
    return int(time.time()) if timestamp is None else timestamp
