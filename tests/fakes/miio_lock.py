"""A fake Xiaomi/MiOT smart lock that speaks the miIO UDP protocol, for python-miio clients.

`FakeMiioLock` is a real UDP server (an asyncio DatagramProtocol) bound to ``(address, 54321)``.
python-miio always talks to port 54321 (``MiIOProtocol.__init__`` hard-codes ``self.port =
54321`` and ``discover`` sends its hello there), so every fake device needs its own address:
use distinct loopback addresses, 127.0.0.2, 127.0.0.3, ... (Linux routes all of 127.0.0.0/8 to
``lo`` without any set-up). Packets are parsed and built with python-miio's own
``miio.protocol.Message`` (token-derived AES-128-CBC key ``md5(token)`` and iv
``md5(key + token)``, MD5 checksum over header + token + payload), so what the fake accepts and
sends is exactly what python-miio 0.5.12 builds and parses.

    async with FakeMiioLock("127.0.0.2", token_hex, "loock.lock.v5") as lock:
        dev = miio.MiotDevice("127.0.0.2", token_hex, timeout=1, model="loock.lock.v5",
                              mapping={})
        rows = await asyncio.to_thread(dev.get_property_by, 3, 1)   # door status
        lock.unlock(method="fingerprint", user_id=7)

Sources are cited next to each behaviour. "python-miio" means python-miio 0.5.12 as installed
(``miio/protocol.py``, ``miio/miioprotocol.py``, ``miio/device.py``, ``miio/miot_device.py``,
``miio/push_server/serverprotocol.py``); "#N" after a repository is an issue/PR number there.

What the device answers
-----------------------
* Hello (32 bytes, ``21310020`` + ``ff`` * 28, python-miio ``MiIOProtocol.discover``): a 32-byte
  reply ``2131 0020 00000000 <device id, 4 bytes> <stamp, 4 bytes> ff*16``. A provisioned device
  puts ``ff`` * 16 where the checksum would be (it does not leak its token; wireshark capture in
  rytilahti/python-miio#798, debug log in #730, explained by the maintainer in #973). The stamp is
  the device's uptime in seconds (#798: ``000007c5``; #730 decodes to 1970-01-11), which
  python-miio adds one second to and sends back in every request header. The fake does not check
  the request stamp (devices' stamp checking is not published; we accept any).
* ``miIO.info``: a dict shaped like the example in python-miio ``miio/deviceinfo.py``
  (``model``, ``fw_ver``, ``hw_ver``, ``mac``, ``token``, ``life``, ``ap``, ``netif``...). The
  values for locks are not published; ``fw_ver``/``hw_ver``/``mac`` are made up, ``token`` is
  the device's token in hex as in that example (a driver must keep it out of its logs).
* ``get_properties`` (MiOT, python-miio ``MiotDevice.get_property_by`` /
  ``get_properties_for_mapping``): one answer per requested ``{"did","siid","piid"}`` in the same
  order, ``{"did","siid","piid","code":0,"value":v}`` on success, and for a failure the same
  without ``value``: ``{"did","siid","piid","code":-4004}`` (shape as answered by a real local
  device in al-one/hass-xiaomi-miot#521 and #1367). The ``did`` is echoed back (python-miio uses
  it as the key; some devices do not echo it, python-miio#1620; the fake always does).
  Codes (meanings from hass-xiaomi-miot ``core/miot_spec.py`` SPEC_ERRORS, which cites
  iot.mi.com's MIOT status codes):
    - unknown siid/piid: -4004 "Other internal errors" (what devices answer in #521/#1367; the
      table's -4003 "does not exist" is not what was observed locally);
    - a property the published instance lists with empty access (the lock event's arguments):
      -4001 "Property is not readable" (not observed on a lock; chosen from the table).
* ``set_properties``: every property of the lock models is read-only (``read``/``notify``) or
  has no access at all in the published instances, so every known property answers -4002
  "Property is not writable" and unknown ones -4004; nothing changes. No published lock
  instance here has a lock/unlock action (merdok/homebridge-miot#491: "there is no lock
  control"), so ``action`` answers -4004 too.
* Any other method: ``{"error": {"code": -32601, "message": "Method not found."}}``
  (home-assistant/core#18994); python-miio raises ``DeviceError`` for it.

Models (siid/piid map)
----------------------
Only models whose MiOT instance was published in the sources below are served; any other
``model`` raises ValueError rather than inventing a map.

``loock.lock.v5`` -- ``urn:miot-spec-v2:device:lock:0000A038:loock-v5:1`` (the instance as
reproduced, with access lists and value lists, in the test of a public "homelib" MiOT door-lock
adapter found through code search; the miot-spec.org page itself was not reachable here):
    2.1 operation-method   access []            (event argument)
    2.2 operation-id       access [] uint32     (event argument)
    2.3 abnormal-condition access []            (event argument)
    2.4 current-time       access [] "string"   (event argument; that adapter notes firmware
                                                 sends a numeric Unix time: the fake sends int)
    2.5 status (lock)      read, notify  values 0 (Open) / 255 (Others)  -> unlocked 0, locked 255
    3.1 status (door)      read, notify  values 0, 1, 3, 255  -> open 0, closed 1 (3/255 unused)
    4.1 battery-level      read, notify  0..100
    event 2.1 lock-opened (args 1, 2, 4); event 2.4 exception-occurred (args 3, 4)
    operation-method codes as that adapter decodes them: 0 bluetooth (app), 1 password,
    2 fingerprint, 4 key, 6 nfc, 7 one-time password, 8 two-step, 10 manual. NOTE: this differs
    by one from the BLE lock object's method list (3 key, 5 nfc) that hass-xiaomi-miot
    ``core/templates.py`` 'ble_lock_events' decodes; the value descriptions of loock-v5 are not
    in any source read here, so treat the numbers as unverified.

``xiaomi.lock.b03`` -- ``urn:miot-spec-v2:device:lock:0000A038:xiaomi-b03:1`` (same adapter
test; the same siid/piid and value meanings in AlexxIT/XiaomiGateway3#1562's converter):
    2.1 abnormal-condition, 2.2 operation-method, 2.3 operation-id (uint16), 2.4 current-time
    (uint32), 2.5 operation-position (1 indoor, 2 outdoor), 2.6 lock-action (1 lock, 2 unlock,
    ...): all access [] (event arguments)
    3.1021 door-state   read, notify: ONE value for both lock and door: 1 locked, 2 unlocked,
                        3 closed, 5 open (4/6 ajar; +16/+32/+48 variants exist, meaning not
                        published, never sent by the fake). It reports whichever changed last.
    4.1003 battery-level read, notify 0..100
    event 2.1020 lock-event (args 2, 3, 4, 5, 6); event 2.1007 exception-occurred (args 1, 4)
    operation-method: 1 mobile (app), 2 fingerprint, 3 password, 4 nfc, 5 key, 6 one-time,
    7 periodic, 8 duress, 9 inside button, 10 finger vein.
  The real xiaomi.lock.b03 is a Bluetooth lock (XiaomiGateway3 lists it among BLE devices):
  it has no IP and python-miio cannot reach it; its properties are read through a gateway.
  The fake serves its published instance over miIO so a driver's MiOT mapping can be tested.

Not served, and why: ``lumi.lock.mcn01`` is a Bluetooth lock reached through a Mijia gateway
(merdok/homebridge-miot#606); it and the other Mijia BLE locks publish lock events as MiBeacon
objects (eid 6/7/8/11, hass-xiaomi-miot 'ble_lock_events'; XiaomiGateway3 #935, #1156), and no
MiOT instance for it was found here; ``loock.lock.v1`` and ``xiaomi.lock.b01``: no instance found.
Aqara Zigbee locks (``lumi.lock.aq1``/``acn02``/``acn03``/``v1``) are gateway sub-devices:
python-miio ``gateway/devices/subdevices.yaml`` knows only a ``status`` ('locked'/'unlocked')
property for them, read through the gateway's own miIO endpoint, not the lock's.

How a local client learns of a keypad/fingerprint/NFC unlock (and the gap)
--------------------------------------------------------------------------
In both published instances the lock event's arguments (method, operation id, time, action,
position) have EMPTY access: they exist only inside the event the device emits, and cannot be
read with ``get_properties`` (the fake answers -4001). The events themselves are pushed by the
device upstream, never to a miIO client: BLE locks send them to their BLE gateway
(``_async.ble_event`` in XiaomiGateway3#935/#1156), Wi-Fi MiOT devices to the cloud or the
Xiaomi central hub (XiaoMi/ha_xiaomi_home#1050 shows ``siid 2, eiid 1`` with method, operation id
and time arriving that way), and hass-xiaomi-miot reads lock history from the cloud
(``miio_cloud_props: event.6,event.7,event.8,event.11`` in ``core/device_customizes.py``).
python-miio has no event subscription for a plain client (its ``PushServer`` relies on a
device's scene mechanism, documented only for gateways/plugs).
So what IS readable locally is state, by polling: the lock status (loock-v5 2.5 goes 255 -> 0),
the door status (3.1) or the multiplexed door-state (b03 3.1021 goes to 2 "unlocked"), and the
battery. A driver can report "unlocked (method unknown)" after a poll shows the change, and
cannot tell fingerprint from NFC, nor who. The fake keeps the full event (``events``) so tests
can check what the lock would have emitted; ``event_props_readable=True`` switches on an
unpublished behaviour where the event-argument properties answer the last event's values
(code 0), for drivers that want to try reading them; it is off by default.

Switches (attributes, change them at any time while running)
------------------------------------------------------------
``online``             True. False: the device answers nothing (hello included); python-miio's
                       handshake waits its fixed 5 s (``discover(addr, timeout=5)``, not the
                       Device ``timeout``), then ``DeviceException("Unable to discover the device
                       <ip>")``. A request after a successful handshake waits ``timeout`` per
                       try, then re-handshakes (5 s) and raises that same exception.
``wrong_token``        False. True: the device now holds a different token (as after re-pairing,
                       python-miio#261 "each individual device will also reset its token every
                       time it is bound to the cloud"), so the client's packets fail the device's
                       checksum. The hello is still answered (#798). What happens next depends on
``wrong_token_reply``  "silent" (default): the device drops the packet, as in #798 ("timed out",
                       "No response from the device"); python-miio tries retry_count + 1 times
                       (4 by default, ``timeout`` seconds each, re-handshaking between) and raises
                       ``DeviceException("No response from the device")``.
                       "checksum": the device answers with a 48-byte packet whose checksum field
                       is ``ff`` * 16 (the "read b'ffff...'" in python-miio#175); python-miio
                       raises ``DeviceException("Got checksum error which indicates use of an
                       invalid token. Please check your token!")`` at once, without retrying.
                       The payload of such replies is not published; the fake sends 16 ``ff``.
``latency``            0.0 s added before every answer (hello included). More than the client's
                       ``timeout`` makes python-miio retry; late answers go to a closed socket.
``battery``            0..100, served at the battery-level property.
``locked``             True/False, served at the lock status / door-state property.
``door_open``          True/False, served at the door status / door-state property.
``event_props_readable`` False, see above.

Helpers and counters
--------------------
``unlock(method="fingerprint"|"password"|"nfc"|"key"|"app", user_id=N, position="outdoor")``
sets ``locked = False`` and appends a ``LockEvent`` shaped as the model's MiOT event
(``siid``, ``eiid``, ``arguments`` = ``[{"piid": p, "value": v}, ...]``) to ``events``, a deque
bounded by ``event_log_size`` (default 32, oldest dropped). ``lock_event(...)`` does the same for
``"lock"`` on models with a lock-action argument. ``hello_count`` (hellos seen),
``request_count`` (encrypted requests that passed the checksum), ``bad_token_count`` (requests
that failed it), ``dropped_count`` (packets ignored while offline), ``requests`` (the decoded
request dicts, in order), ``sets_refused`` (set_properties rows refused).

The miIO plumbing (endpoint, hello, token check, encryption, the connection switches and the
counters) is ``MiioEndpoint``; ``tests/fakes/miio_gateway.py`` (an Aqara gateway with lock
sub-devices) builds on it too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self, cast

import construct
from miio.protocol import Message

log = logging.getLogger(__name__)

MIIO_PORT = 54321  # python-miio MiIOProtocol: self.port = 54321; discover() sends to 54321
HELLO = bytes.fromhex("21310020" + "ff" * 28)  # python-miio MiIOProtocol.discover "helobytes"

# MiOT property status codes (hass-xiaomi-miot core/miot_spec.py SPEC_ERRORS, from iot.mi.com)
NOT_READABLE = -4001
NOT_WRITABLE = -4002
OTHER_ERROR = -4004  # what local devices answer for an unknown siid/piid (hass-xiaomi-miot#521)
METHOD_NOT_FOUND = {"code": -32601, "message": "Method not found."}  # home-assistant/core#18994

Method = Literal["fingerprint", "password", "nfc", "key", "app"]


@dataclass(frozen=True)
class Prop:
    siid: int
    piid: int
    name: str
    readable: bool  # access contains "read" in the published instance


@dataclass(frozen=True)
class LockModel:
    """One published MiOT lock instance: where state lives and how the lock event is shaped."""

    model: str
    urn: str
    props: tuple[Prop, ...]
    battery: tuple[int, int]
    lock_state: tuple[int, int] | None  # separate lock status property, if any
    door_state: tuple[int, int]
    multiplexed: bool  # one door-state property carries both lock and door state
    event: tuple[int, int]  # (siid, eiid) of the lock event
    exception_event: tuple[int, int]
    method_codes: dict[str, int]
    arg_piids: dict[str, int]  # event argument name -> piid (siid = event siid)
    has_lock_action: bool

    def prop(self, siid: int, piid: int) -> Prop | None:
        for p in self.props:
            if (p.siid, p.piid) == (siid, piid):
                return p
        return None


LOOCK_V5 = LockModel(
    model="loock.lock.v5",
    urn="urn:miot-spec-v2:device:lock:0000A038:loock-v5:1",
    props=(
        Prop(2, 1, "operation-method", False),
        Prop(2, 2, "operation-id", False),
        Prop(2, 3, "abnormal-condition", False),
        Prop(2, 4, "current-time", False),
        Prop(2, 5, "lock-status", True),
        Prop(3, 1, "door-status", True),
        Prop(4, 1, "battery-level", True),
    ),
    battery=(4, 1),
    lock_state=(2, 5),
    door_state=(3, 1),
    multiplexed=False,
    event=(2, 1),  # lock-opened, arguments 1, 2, 4
    exception_event=(2, 4),
    method_codes={"app": 0, "password": 1, "fingerprint": 2, "key": 4, "nfc": 6},
    arg_piids={"operation-method": 1, "operation-id": 2, "current-time": 4},
    has_lock_action=False,
)

XIAOMI_B03 = LockModel(
    model="xiaomi.lock.b03",
    urn="urn:miot-spec-v2:device:lock:0000A038:xiaomi-b03:1",
    props=(
        Prop(2, 1, "abnormal-condition", False),
        Prop(2, 2, "operation-method", False),
        Prop(2, 3, "operation-id", False),
        Prop(2, 4, "current-time", False),
        Prop(2, 5, "operation-position", False),
        Prop(2, 6, "lock-action", False),
        Prop(3, 1021, "door-state", True),
        Prop(4, 1003, "battery-level", True),
    ),
    battery=(4, 1003),
    lock_state=None,
    door_state=(3, 1021),
    multiplexed=True,
    event=(2, 1020),  # lock-event, arguments 2, 3, 4, 5, 6
    exception_event=(2, 1007),
    method_codes={"app": 1, "fingerprint": 2, "password": 3, "nfc": 4, "key": 5},
    arg_piids={
        "operation-method": 2,
        "operation-id": 3,
        "current-time": 4,
        "operation-position": 5,
        "lock-action": 6,
    },
    has_lock_action=True,
)

MODELS: dict[str, LockModel] = {m.model: m for m in (LOOCK_V5, XIAOMI_B03)}

# loock-v5: 2.5 lock status 0 Open / 255 Others; 3.1 door status 0 open / 1 closed.
# xiaomi-b03 door-state (3.1021): 1 locked, 2 unlocked, 3 closed, 5 open.
B03_LOCKED, B03_UNLOCKED, B03_CLOSED, B03_OPEN = 1, 2, 3, 5
B03_ACTION = {"lock": 1, "unlock": 2}
B03_POSITION = {"indoor": 1, "outdoor": 2}


@dataclass
class LockEvent:
    """A lock event as the model's MiOT spec shapes it (what the device would emit upstream)."""

    action: Literal["lock", "unlock"]
    method: str
    method_code: int
    operation_id: int
    timestamp: int
    siid: int
    eiid: int
    arguments: list[dict[str, int]] = field(default_factory=list)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, device: MiioEndpoint) -> None:
        self.device = device
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.device._handle(data)
        if reply is None or self.transport is None:
            return
        transport = self.transport
        if self.device.latency > 0:
            asyncio.get_running_loop().call_later(
                self.device.latency, _send_if_open, transport, reply, addr)
        else:
            transport.sendto(reply, addr)


def _send_if_open(transport: asyncio.DatagramTransport, data: bytes,
                  addr: tuple[str, int]) -> None:
    if not transport.is_closing():
        transport.sendto(data, addr)


class MiioEndpoint:
    """The miIO plumbing every fake device shares: the UDP endpoint, hello, token checks,
    encryption, the connection switches (``online``, ``wrong_token``, ``wrong_token_reply``,
    ``latency``) and the counters described in the module doc. A device subclass answers the
    decoded requests in ``_dispatch``."""

    def __init__(self, address: str, token: str, model: str, *, device_id: int,
                 port: int = MIIO_PORT, latency: float = 0.0, online: bool = True,
                 wrong_token: bool = False,
                 wrong_token_reply: Literal["silent", "checksum"] = "silent",
                 fw_ver: str = "1.0.0_0001", hw_ver: str = "esp32") -> None:
        token_bytes = bytes.fromhex(token)
        if len(token_bytes) != 16:
            raise ValueError("a miIO token is 16 bytes (32 hex digits)")
        self.address = address
        self.port = port
        self.token = token.lower()
        self.model = model
        self.device_id = device_id
        self.fw_ver = fw_ver
        self.hw_ver = hw_ver
        # switches
        self.online = online
        self.wrong_token = wrong_token
        self.wrong_token_reply: Literal["silent", "checksum"] = wrong_token_reply
        self.latency = latency
        # observations
        self.requests: list[dict[str, Any]] = []
        self.hello_count = 0
        self.request_count = 0
        self.bad_token_count = 0
        self.dropped_count = 0
        self._token_bytes = token_bytes
        self._started = time.monotonic()
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def device_token(self) -> bytes:
        """The token the device checks packets with now (differs when ``wrong_token``)."""
        if self.wrong_token:
            return bytes(b ^ 0xFF for b in self._token_bytes)
        return self._token_bytes

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.address, self.port))
        self._transport = transport
        self._started = time.monotonic()

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            await asyncio.sleep(0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # ---- protocol -------------------------------------------------------------------------

    def _stamp(self) -> int:
        # Device stamps are uptime seconds (python-miio#798, #730); start at 1000 so a
        # just-started fake does not send 0.
        return 1000 + int(time.monotonic() - self._started)

    def _wrong_token(self, data: bytes) -> bool:
        """A miIO packet (magic 0x2131) whose checksum is not MD5(header, this token, payload)."""
        if len(data) < 32 or data[:2] != b"\x21\x31":
            return False
        expected = hashlib.md5(data[:16] + self.device_token + data[32:]).digest()
        return data[16:32] != expected

    def _hello_reply(self) -> bytes:
        # Built like python-miio's own fake device (push_server/serverprotocol.py _build_ack),
        # with ff*16 in the checksum field as provisioned devices send (python-miio#798, #730).
        return struct.pack(">HHIII16s", 0x2131, 32, 0, self.device_id, self._stamp(),
                           b"\xff" * 16)

    def _handle(self, data: bytes) -> bytes | None:
        if not self.online:
            self.dropped_count += 1
            return None
        if len(data) == 32:  # miio.protocol.Utils.is_hello: hellos are 32 bytes long
            self.hello_count += 1
            return self._hello_reply()
        try:
            msg = Message.parse(data, token=self.device_token)
        except Exception as exc:
            # A miIO packet whose checksum this token does not give is a wrong token, whether
            # python-miio's parser says so by the checksum or, when the wrong key happens to
            # leave valid padding (about 1 packet in 256), first by failing to decode the JSON
            # it decrypted (miio/protocol.py: EncryptionAdapter._decode runs before the
            # checksum and raises PayloadDecodeException).
            if not isinstance(exc, construct.ChecksumError) and not self._wrong_token(data):
                # Not a miIO packet at all: devices ignore it.
                log.debug("fake miio device %s: unparsable packet", self.address)
                return None
            self.bad_token_count += 1
            if self.wrong_token_reply == "checksum":
                return self._bad_checksum_reply()
            return None
        request = msg.data.value
        if not isinstance(request, dict):
            return None
        self.request_count += 1
        self.requests.append(request)
        body: dict[str, Any] = {"id": request.get("id", 0)}
        body.update(self._dispatch(str(request.get("method", "")), request.get("params")))
        return self._build(body)

    def _bad_checksum_reply(self) -> bytes:
        # python-miio#175: ChecksumError "read b'ffff...'": a non-hello reply (length != 32)
        # with ff*16 in the checksum field. Its payload is not published: 16 bytes of ff here.
        return struct.pack(">HHIII16s16s", 0x2131, 48, 0, self.device_id, self._stamp(),
                           b"\xff" * 16, b"\xff" * 16)

    def _build(self, body: dict[str, Any]) -> bytes:
        header = {
            "length": 0,
            "unknown": 0,
            "device_id": self.device_id.to_bytes(4, "big"),
            "ts": datetime(1970, 1, 1) + timedelta(seconds=self._stamp()),
        }
        msg = {"data": {"value": body}, "header": {"value": header}, "checksum": 0}
        return bytes(Message.build(msg, token=self.device_token))

    def _dispatch(self, method: str, params: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _info(self) -> dict[str, Any]:
        mac = ":".join(f"{b:02X}" for b in b"\x04\xcf\x8c" + self.device_id.to_bytes(4, "big")[1:])
        return {
            "life": int(time.monotonic() - self._started),
            "cfg_time": 0,
            "token": self.device_token.hex(),
            "mac": mac,
            "fw_ver": self.fw_ver,
            "hw_ver": self.hw_ver,
            "model": self.model,
            "ap": {"ssid": "lockbridge-test", "bssid": "00:00:00:00:00:00", "rssi": -50},
            "netif": {"localIp": self.address, "mask": "255.0.0.0", "gw": "127.0.0.1"},
            "mmfree": 50000,
            "ot": "otu",
            "otu_stat": [0, 0, 0, 0, 0, 0],
            "ott_stat": [0, 0, 0, 0],
        }


class FakeMiioLock(MiioEndpoint):
    """A MiOT smart lock on ``(address, 54321)`` answering python-miio. See the module doc."""

    def __init__(self, address: str, token: str, model: str = "loock.lock.v5", *,
                 device_id: int = 0x1A2B3C4D, port: int = MIIO_PORT,
                 battery: int = 87, locked: bool = True, door_open: bool = False,
                 latency: float = 0.0, online: bool = True, wrong_token: bool = False,
                 wrong_token_reply: Literal["silent", "checksum"] = "silent",
                 event_props_readable: bool = False, event_log_size: int = 32,
                 fw_ver: str = "1.0.0_0001") -> None:
        if model not in MODELS:
            raise ValueError(f"no published MiOT lock instance for {model!r}; "
                             f"served models: {sorted(MODELS)}")
        super().__init__(address, token, model, device_id=device_id, port=port,
                         latency=latency, online=online, wrong_token=wrong_token,
                         wrong_token_reply=wrong_token_reply, fw_ver=fw_ver)
        self.spec = MODELS[model]
        self.battery = battery
        self._locked = locked
        self._door_open = door_open
        self.event_props_readable = event_props_readable
        # the multiplexed door-state reports whichever of lock/door changed last
        self._last_change: Literal["lock", "door"] = "lock"
        self.events: deque[LockEvent] = deque(maxlen=event_log_size)
        self.sets_refused = 0

    # ---- switches with side effects -------------------------------------------------------

    @property
    def locked(self) -> bool:
        return self._locked

    @locked.setter
    def locked(self, value: bool) -> None:
        self._locked = value
        self._last_change = "lock"

    @property
    def door_open(self) -> bool:
        return self._door_open

    @door_open.setter
    def door_open(self, value: bool) -> None:
        self._door_open = value
        self._last_change = "door"

    # ---- helpers for tests ------------------------------------------------------------------

    def unlock(self, method: Method = "fingerprint", user_id: int = 1, *,
               position: Literal["indoor", "outdoor"] = "outdoor",
               timestamp: int | None = None) -> LockEvent:
        """Unlock as a person at the door would, recording the event the spec describes."""
        self.locked = False
        return self._record("unlock", method, user_id, position, timestamp)

    def lock_event(self, method: Method = "key", user_id: int = 0, *,
                   position: Literal["indoor", "outdoor"] = "outdoor",
                   timestamp: int | None = None) -> LockEvent:
        """Lock, recording a lock-action 1 event (only models whose event has lock-action)."""
        if not self.spec.has_lock_action:
            raise ValueError(f"{self.model}'s lock event (lock-opened) only reports unlocks")
        self.locked = True
        return self._record("lock", method, user_id, position, timestamp)

    @property
    def last_event(self) -> LockEvent | None:
        return self.events[-1] if self.events else None

    def _record(self, action: Literal["lock", "unlock"], method: str, user_id: int,
                position: str, timestamp: int | None) -> LockEvent:
        if method not in self.spec.method_codes:
            raise ValueError(f"method must be one of {sorted(self.spec.method_codes)}")
        ts = int(time.time()) if timestamp is None else timestamp
        code = self.spec.method_codes[method]
        values: dict[str, int] = {
            "operation-method": code,
            "operation-id": user_id,
            "current-time": ts,
        }
        if self.spec.has_lock_action:
            values["operation-position"] = B03_POSITION[position]
            values["lock-action"] = B03_ACTION[action]
        args = [{"piid": self.spec.arg_piids[name], "value": v} for name, v in values.items()]
        args.sort(key=lambda a: a["piid"])
        siid, eiid = self.spec.event
        event = LockEvent(action=action, method=method, method_code=code, operation_id=user_id,
                          timestamp=ts, siid=siid, eiid=eiid, arguments=args)
        self.events.append(event)
        return event

    def _dispatch(self, method: str, params: Any) -> dict[str, Any]:
        if method == "miIO.info":
            return {"result": self._info()}
        if method == "get_properties" and isinstance(params, list):
            return {"result": [self._get(p) for p in params if isinstance(p, dict)]}
        if method == "set_properties" and isinstance(params, list):
            return {"result": [self._set(p) for p in params if isinstance(p, dict)]}
        if method == "action" and isinstance(params, dict):
            return {"result": {**_ids(params, "aiid"), "code": OTHER_ERROR}}
        return {"error": dict(METHOD_NOT_FOUND)}

    def _get(self, p: dict[str, Any]) -> dict[str, Any]:
        row = _ids(p, "piid")
        prop = self._prop(p)
        if prop is None:
            return {**row, "code": OTHER_ERROR}
        value = self._value(prop)
        if value is None:
            return {**row, "code": NOT_READABLE if not self.event_props_readable
                    else OTHER_ERROR}
        return {**row, "code": 0, "value": value}

    def _set(self, p: dict[str, Any]) -> dict[str, Any]:
        self.sets_refused += 1
        row = _ids(p, "piid")
        return {**row, "code": NOT_WRITABLE if self._prop(p) is not None else OTHER_ERROR}

    def _prop(self, p: dict[str, Any]) -> Prop | None:
        siid, piid = p.get("siid"), p.get("piid")
        if not isinstance(siid, int) or not isinstance(piid, int):
            return None
        return self.spec.prop(siid, piid)

    def _value(self, prop: Prop) -> int | None:
        spec = self.spec
        where = (prop.siid, prop.piid)
        if where == spec.battery:
            return self.battery
        if where == spec.lock_state:
            return 255 if self._locked else 0
        if where == spec.door_state:
            if spec.multiplexed:
                if self._last_change == "lock":
                    return B03_LOCKED if self._locked else B03_UNLOCKED
                return B03_OPEN if self._door_open else B03_CLOSED
            return 0 if self._door_open else 1
        if prop.readable:
            return None
        # An event argument: unreadable (None) unless the unpublished switch is on.
        if not self.event_props_readable or not self.events:
            return None
        for arg in self.events[-1].arguments:
            if prop.siid == spec.event[0] and arg["piid"] == prop.piid:
                return arg["value"]
        return None


def _ids(p: dict[str, Any], iid: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if "did" in p:
        row["did"] = p["did"]
    row["siid"] = p.get("siid")
    row[iid] = p.get(iid)
    return row
