"""The fake Zigbee2MQTT itself, checked with plain MQTT messages on a real Mosquitto against the
behaviours its module docstring cites (Zigbee2MQTT, zigbee-herdsman-converters, zigbee-herdsman
sources and the issues named there). No lockbridge driver is involved."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiomqtt

from drivers.tasks import cancel_and_wait
from tests.fakes.zigbee2mqtt import (
    DUPLICATE_CODE,
    GENERAL_FAILURE,
    MEMORY_FULL,
    FakeZigbee2MQTT,
    FakeZigbeeLock,
)

if TYPE_CHECKING:
    from tests.mosquitto import Mosquitto

pytest_plugins = ["tests.mosquitto"]

# The fake's own checks. Since 2026-12-01 a run of this whole file fails about one time in two
# on the project's machine (on main too): some test's fake never sees a message it sent, then
# its teardown hangs until pytest's timeout. The drivers' tests that use the same fake
# (test_mqtt_zigbee2mqtt.py, the contract in test_contract.py) are not affected. Skipped until
# the cause is found (docs/reliability.md, "Known flaky").

_ids = itertools.count(1)


@dataclass
class Observer:
    """A plain MQTT client: publishes, and records everything under the base topic."""

    client: aiomqtt.Client
    base: str
    seen: list[tuple[str, bytes, bool]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, suffix: str, payload: Any) -> None:
        data = payload if isinstance(payload, str | bytes) else json.dumps(payload)
        await self.client.publish(f"{self.base}/{suffix}", data, qos=1)

    def on(self, suffix: str) -> list[Any]:
        """Decoded payloads seen on `<base>/<suffix>`, in order."""
        out = []
        for topic, payload, _ in self.seen:
            if topic == f"{self.base}/{suffix}":
                try:
                    out.append(json.loads(payload))
                except ValueError:
                    out.append(payload.decode())
        return out

    def raw(self, suffix: str) -> list[bytes]:
        return [p for t, p, _ in self.seen if t == f"{self.base}/{suffix}"]

    async def wait(self, check: Callable[[], Any], timeout: float = 10.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                result = check()
                if result:
                    return result
                self.arrived.clear()
                await self.arrived.wait()

    async def quiet(self, seconds: float = 0.3) -> None:
        await asyncio.sleep(seconds)

    def logs(self) -> list[str]:
        return [m["message"] for m in self.on("bridge/logging")]


@contextlib.asynccontextmanager
async def z2m(broker: Mosquitto, locks: list[FakeZigbeeLock], **kwargs: Any
              ) -> AsyncIterator[tuple[FakeZigbee2MQTT, Observer]]:
    base = f"z2mfake{next(_ids)}"
    client = aiomqtt.Client(broker.host, broker.port, identifier=f"obs-{base}")
    async with client:
        observer = Observer(client, base)
        await client.subscribe(f"{base}/#", qos=1)

        async def pump() -> None:
            async for message in client.messages:
                payload = message.payload
                data = payload if isinstance(payload, bytes) else str(payload).encode()
                observer.seen.append((message.topic.value, data, message.retain))
                observer.arrived.set()

        task = asyncio.create_task(pump())
        fake = FakeZigbee2MQTT(broker.host, broker.port, base, locks,
                               **{"command_timeout_s": 0.1, **kwargs})
        await fake.start()
        try:
            await observer.wait(lambda: observer.on("bridge/devices"))
            yield fake, observer
        finally:
            await fake.stop()
            await cancel_and_wait(task)


def users(observer: Observer, name: str = "front") -> list[dict[str, Any]]:
    return [m.get("users") for m in observer.on(name)]


# -- 1. bridge/devices and exposes -------------------------------------------------------------


async def test_devices_expose_pin_code_without_range(mosquitto: Mosquitto) -> None:
    """ZHC exposes.ts presets.pincode(): `user` has no value_min/value_max; the range Z2M
    enforces is the definition's meta.pinCodeCount (kwikset.ts 30, yale.ts lockExtend 250)."""
    locks = [FakeZigbeeLock("front", "0x000d6f0000000001"),
             FakeZigbeeLock("back", "0x000d6f0000000002", model="YRD256HA20BP")]
    async with z2m(mosquitto, locks) as (_, obs):
        raw = obs.raw("bridge/devices")[-1]
        devices = json.loads(raw)
        assert raw.decode() == json.dumps(devices, sort_keys=True, separators=(",", ":"))
        front = next(d for d in devices if d["friendly_name"] == "front")
        assert front["definition"]["vendor"] == "Kwikset"
        assert front["definition"]["model"] == "99140-002"
        pin = next(e for e in front["definition"]["exposes"] if e.get("name") == "pin_code")
        assert pin["type"] == "composite" and pin["access"] == 7
        features = {f["name"]: f for f in pin["features"]}
        assert set(features) == {"user", "user_type", "user_enabled", "pin_code"}
        assert features["user"]["type"] == "numeric"
        assert "value_min" not in features["user"] and "value_max" not in features["user"]
        assert features["pin_code"]["type"] == "numeric"
        assert features["user_type"]["values"] == ["unrestricted", "year_day_schedule",
                                                   "week_day_schedule", "master", "non_access"]
        assert features["user_enabled"]["value_on"] is True
        assert any(o["name"] == "expose_pin" for o in front["definition"]["options"])
        assert front["definition"]["exposes"][-1]["name"] == "linkquality"
        back = next(d for d in devices if d["friendly_name"] == "back")
        names = [e.get("name") for e in back["definition"]["exposes"]]
        assert "auto_relock_time" in names and "battery_low" in names
        # bridge/state and availability: JSON, retained.
        assert obs.on("bridge/state")[0] == {"state": "online"}
        assert obs.on("front/availability") == [{"state": "online"}]


async def test_kwikset_with_four_slots_keeps_the_definition_range(mosquitto: Mosquitto) -> None:
    """A Kwikset whose hardware holds 4 codes still gets 0..29 from kwikset.ts meta; a write to
    slot 10 goes to the lock, which refuses it, and Z2M says nothing (toZigbee pincode_lock does
    not look at setPinCodeRsp; ZH endpoint.command checkStatus=false)."""
    lock = FakeZigbeeLock("front", "0x0001", slots=4)
    async with z2m(mosquitto, [lock]) as (_, obs):
        await obs.send("front/set", {"pin_code": {"user": 10, "pin_code": "1234"}})
        await obs.send("front/set", {"pin_code": {"user": 30, "pin_code": "1234"}})
        await obs.wait(obs.logs)
        await obs.quiet()
        assert obs.logs() == ["z2m: Publish 'set' 'pin_code' to 'front' failed: "
                              "'Error: user must be in range for device'"]
        assert lock.table == {} and lock.answers == [("setPinCode", 10, GENERAL_FAILURE)]
        # Reading slot 10: the lock does not answer -> timeout line.
        await obs.send("front/get", {"pin_code": {"user": 10}})
        line = await obs.wait(lambda: [m for m in obs.logs() if "'get'" in m])
        assert "Timeout after 10000ms" in line[0]


# -- 2. reading a PIN ----------------------------------------------------------------------------


async def test_get_answers_in_users_with_pin_only_when_exposed(mosquitto: Mosquitto) -> None:
    """fromZigbee lock_pin_code_response: users[N] = {status}, + pin_code with expose_pin."""
    shown = FakeZigbeeLock("front", "0x0001", table={3: "1234"})
    hidden = FakeZigbeeLock("back", "0x0002", table={3: "1234"}, expose_pin=False)
    async with z2m(mosquitto, [shown, hidden]) as (_, obs):
        await obs.send("front/get", {"pin_code": {"user": 3}})
        await obs.send("back/get", {"pin_code": {"user": 3}})
        await obs.send("front/get", {"pin_code": {"user": 4}})
        await obs.wait(lambda: len([u for u in users(obs) if u]) >= 2)
        await obs.wait(lambda: [u for u in users(obs, "back") if u])
        assert next(u for u in users(obs) if u) == {"3": {"status": "enabled", "pin_code": "1234"}}
        # An empty slot: ZH reads an octet string, a Buffer is truthy -> "" (zigbee2mqtt#32289).
        assert [u for u in users(obs) if u][1]["4"] == {"status": "available", "pin_code": ""}
        assert next(u for u in users(obs, "back") if u) == {"3": {"status": "enabled"}}
        assert shown.gets == 2


async def test_older_herdsman_leaves_an_empty_pin_out(mosquitto: Mosquitto) -> None:
    """Before ZH 685a781b pincodevalue was CHAR_STR: "" is falsy (zigbee2mqtt#17242)."""
    lock = FakeZigbeeLock("front", "0x0001")
    async with z2m(mosquitto, [lock], octet_pin_code=False) as (_, obs):
        await obs.send("front/get", {"pin_code": {"user": 4}})
        got = await obs.wait(lambda: [u for u in users(obs) if u])
        assert got[0] == {"4": {"status": "available"}}


async def test_get_range_and_timeout_lines(mosquitto: Mosquitto) -> None:
    """pincode_lock.convertGet: `userId must be in range for device`; a slot that does not
    answer: ZH zclCommand error with the adapter's timeout text, on bridge/logging only."""
    lock = FakeZigbeeLock("front", "0x000d6f00000000aa", no_answer={5})
    async with z2m(mosquitto, [lock]) as (_, obs):
        await obs.send("front/get", {"pin_code": {"user": 30}})
        await obs.send("front/get", {"pin_code": {"user": 5}})
        await obs.wait(lambda: len(obs.logs()) >= 2)
        assert obs.logs()[0] == ("z2m: Publish 'get' 'pin_code' to 'front' failed: "
                                 "'Error: userId must be in range for device'")
        timeout = obs.logs()[1]
        assert timeout.startswith(
            "z2m: Publish 'get' 'pin_code' to 'front' failed: 'Error: ZCL command "
            "0x000d6f00000000aa/2 closuresDoorLock.getPinCode({\"userid\":5}, {\"timeout\":10000,")
        assert "failed (Timeout after 10000ms [address=170 endpoint=2 clusterId=257 cmdId=6" \
            in timeout
        assert obs.on("bridge/logging")[0]["level"] == "error"
        assert set(obs.on("bridge/logging")[0]) == {"level", "message"}
        assert not obs.on("bridge/response")


async def test_get_all_one_message_per_slot_and_stops_at_first_failure(
        mosquitto: Mosquitto) -> None:
    """`{"pin_code": ""}`: getPinCode 0..count-1 in turn (zigbee2mqtt#17242, one message each);
    the loop throws at the first failing slot."""
    lock = FakeZigbeeLock("front", "0x0001", pin_code_count=5, table={0: "1111"})
    async with z2m(mosquitto, [lock]) as (fake, obs):
        await obs.send("front/get", {"pin_code": ""})
        await obs.wait(lambda: len([u for u in users(obs) if u]) == 5)
        assert sorted([u for u in users(obs) if u][-1]) == ["0", "1", "2", "3", "4"]
        fake.lock("front").no_answer.add(2)
        before = len(obs.on("front"))
        await obs.send("front/get", {"pin_code": {}})
        await obs.wait(obs.logs)
        await obs.quiet()
        assert len(obs.on("front")) - before == 2
        assert "getPinCode({\"userid\":2}" in obs.logs()[0]


# -- 3. setting and clearing ---------------------------------------------------------------------


async def test_set_publishes_nothing_and_users_stay_stale(mosquitto: Mosquitto) -> None:
    """publish.ts publishes only a converter's result.state (pincode_lock has none); Yale sends
    no programming event for a Zigbee set (ST zigbee-lock.groovy), so nothing at all follows;
    the cached `users` (state.ts) still shows the old entry until a getPinCode answer."""
    lock = FakeZigbeeLock("front", "0x0001", model="YRD256HA20BP", table={1: "1111"})
    async with z2m(mosquitto, [lock]) as (fake, obs):
        await obs.send("front/get", {"pin_code": {"user": 1}})
        await obs.wait(lambda: [u for u in users(obs) if u])
        count = len(obs.on("front"))
        await obs.send("front/set", {"pin_code": {"user": 1, "user_type": "unrestricted",
                                                  "user_enabled": True, "pin_code": "2222"}})
        await obs.quiet()
        assert len(obs.on("front")) == count and not obs.logs()
        assert lock.table == {1: "2222"}
        await fake.republish_cached("front")
        await obs.wait(lambda: len(obs.on("front")) > count)
        assert obs.on("front")[-1]["users"] == {"1": {"status": "enabled", "pin_code": "1111"}}
        assert obs.on("front")[-1]["battery"] == 87
        await obs.send("front/get", {"pin_code": {"user": 1}})
        await obs.wait(lambda: users(obs)[-1]["1"]["pin_code"] == "2222")


async def test_kwikset_set_brings_a_rf_programming_event(mosquitto: Mosquitto) -> None:
    """ST: non-Yale locks send a programming event after a Zigbee set; fromZigbee
    lock_programming_event maps it; `action*` are not cached (state.ts)."""
    lock = FakeZigbeeLock("front", "0x0001", cache={"2": {"status": "available"}})
    async with z2m(mosquitto, [lock]) as (fake, obs):
        await obs.send("front/set", {"pin_code": {"user": 2, "pin_code": 4321}})
        event = await obs.wait(lambda: [m for m in obs.on("front") if "action" in m])
        assert event[0]["action"] == "pin_code_added"
        assert event[0]["action_user"] == 2 and event[0]["action_source"] == 1
        assert event[0]["action_source_name"] == "rf"
        assert event[0]["users"] == {"2": {"status": "available"}}  # still the cached entry
        assert lock.table == {2: "4321"}  # numeric pin_code: pinCode.toString()
        await fake.republish_cached("front")
        await obs.wait(lambda: obs.on("front")[-1].get("battery") == 87)
        assert "action" not in obs.on("front")[-1]


async def test_clear_with_null_or_without_pin_code(mosquitto: Mosquitto) -> None:
    """pincode_lock: `if (pinCode == null)` -> clearPinCode, so a set with no pin_code clears
    (DLM-300Z docs: "To clear a code, call set but omit the value for pin_code")."""
    lock = FakeZigbeeLock("front", "0x0001", table={1: "1111", 2: "2222"},
                          program_event_on_rf=False)
    async with z2m(mosquitto, [lock]) as (_, obs):
        await obs.send("front/set", {"pin_code": {"user": 1, "pin_code": None}})
        await obs.send("front/set", {"pin_code": {"user": 2}})
        await obs.quiet()
        assert lock.table == {} and lock.applied == [(1, None), (2, None)]
        assert not obs.logs()


async def test_refusals_are_silent(mosquitto: Mosquitto) -> None:
    """setPinCodeRsp duplicate / memory full / general failure: no log, no state, nothing
    (Kwikset/Yale/Schlage have no lock_set_pin_code_response; even that one ignores failures).
    keymaster#660: Yale YRD210 answers 3 when the same code goes again into its own slot."""
    lock = FakeZigbeeLock("front", "0x0001", table={1: "1234"}, duplicate_same_slot=True,
                          set_status=deque([MEMORY_FULL]))
    async with z2m(mosquitto, [lock]) as (_, obs):
        count = len(obs.on("front"))
        await obs.send("front/set", {"pin_code": {"user": 3, "pin_code": "5555"}})
        await obs.send("front/set", {"pin_code": {"user": 2, "pin_code": "1234"}})
        await obs.send("front/set", {"pin_code": {"user": 1, "pin_code": "1234"}})
        await obs.send("front/set", {"pin_code": {"user": 4, "pin_code": "12"}})
        await obs.quiet()
        assert lock.answers == [("setPinCode", 3, MEMORY_FULL), ("setPinCode", 2, DUPLICATE_CODE),
                                ("setPinCode", 1, DUPLICATE_CODE),
                                ("setPinCode", 4, GENERAL_FAILURE)]
        assert lock.table == {1: "1234"} and not obs.logs()
        assert len(obs.on("front")) == count


async def test_validation_failures_are_logged_as_converter_errors(mosquitto: Mosquitto) -> None:
    """publish.ts catch: `Publish 'set' 'pin_code' to '<name>' failed: '${error}'`, with the
    converter's messages (utils.assertObject, getFromLookup); identical lines in a row are
    published once (bridge.ts lastBridgeLoggingPayload)."""
    lock = FakeZigbeeLock("front", "0x0001")
    async with z2m(mosquitto, [lock]) as (_, obs):
        await obs.send("front/set", {"pin_code": "1234"})
        await obs.send("front/set", {"pin_code": {"user": 1, "user_type": "guest",
                                                  "pin_code": "1234"}})
        await obs.send("front/set", {"pin_code": {"user": 1, "user_type": "guest",
                                                  "pin_code": "1234"}})
        await obs.send("front/set", {"pin_code": {"pin_code": "1234"}})
        await obs.send("front/set", "not json")
        await obs.send("front/set", {"colour": "red"})
        await obs.send("ghost/set", {"pin_code": {"user": 1}})
        await obs.wait(lambda: len(obs.logs()) >= 6)
        await obs.quiet()
        head = "z2m: Publish 'set' 'pin_code' to 'front' failed: 'Error: "
        assert obs.logs() == [
            head + "pin_code is not a object, got string (\"1234\")'",
            head + "Key 'guest' not found in: [unrestricted, year_day_schedule, "
                   "week_day_schedule, master, non_access]'",
            head + "user must be in range for device'",
            "z2m: Invalid message 'undefined', skipping...",
            "z2m: No converter available for 'colour' on 'front': (\"red\")",
            "z2m: Entity 'ghost' is unknown"]


async def test_javascript_coercions_of_user(mosquitto: Mosquitto) -> None:
    """The range check is a JavaScript comparison: "3" passes as 3; the attribute topic form
    `<name>/set/pin_code` carries the value alone (publish.ts parseTopic/parseMessage)."""
    lock = FakeZigbeeLock("front", "0x0001", program_event_on_rf=False)
    async with z2m(mosquitto, [lock]) as (_, obs):
        await obs.send("front/set", {"pin_code": {"user": "3", "pin_code": "3333"}})
        await obs.send("front/set/pin_code", {"user": 4, "pin_code": "4444"})
        await obs.quiet()
        assert lock.table == {3: "3333", 4: "4444"} and not obs.logs()


# -- 4. events, availability, bridge state ------------------------------------------------------


async def test_keypad_programming_and_operation_events(mosquitto: Mosquitto) -> None:
    """fromZigbee lock_programming_event (source keypad) leaves `users` alone (no read-back for
    Kwikset); lock_operation_event then the lockState report: two messages."""
    lock = FakeZigbeeLock("front", "0x0001", silent_keypad_delete=True)
    async with z2m(mosquitto, [lock]) as (fake, obs):
        await fake.keypad_set("front", 5, "5678")
        await fake.keypad_unlock("front", 5)
        await fake.keypad_clear("front", 5)
        await obs.wait(lambda: len([m for m in obs.on("front") if "action" in m]) >= 2)
        await obs.quiet()
        events = [m for m in obs.on("front") if "action" in m]
        assert [(e["action"], e["action_user"], e["action_source_name"]) for e in events] == [
            ("pin_code_added", 5, "keypad"), ("unlock", 5, "keypad")]
        assert "users" not in events[0]
        assert events[1]["state"] == "LOCK"  # the op event carries the cached state
        assert obs.on("front")[-1]["state"] == "UNLOCK"
        assert lock.table == {}


async def test_read_pin_on_programming_event(mosquitto: Mosquitto) -> None:
    """modernExtend lock({readPinCodeOnProgrammingEvent}) adds
    lock_programming_event_read_pincode: a keypad change is read back into `users`."""
    lock = FakeZigbeeLock("front", "0x0001", read_pin_on_program_event=True)
    async with z2m(mosquitto, [lock]) as (fake, obs):
        await fake.keypad_set("front", 2, "2468")
        got = await obs.wait(lambda: [u for u in users(obs) if u])
        assert got[0] == {"2": {"status": "enabled", "pin_code": "2468"}}


async def test_availability_offline_and_radio_failure(mosquitto: Mosquitto) -> None:
    """availability.ts publishAvailability; an unreachable lock fails at the radio (ZH z-stack
    DataConfirmError)."""
    lock = FakeZigbeeLock("front", "0x0001")
    async with z2m(mosquitto, [lock]) as (fake, obs):
        await fake.set_online("front", False)
        await obs.send("front/set", {"pin_code": {"user": 1, "pin_code": "1234"}})
        line = await obs.wait(obs.logs)
        assert obs.on("front/availability")[-1] == {"state": "offline"}
        assert "closuresDoorLock.setPinCode({\"userid\":1,\"userstatus\":1,\"usertype\":0," \
               "\"pincodevalue\":\"1234\"}" in line[0]
        assert line[0].endswith("(Data request failed with error: 'MAC_NO_ACK' (0xe9))'")


async def test_legacy_payloads_and_stop(mosquitto: Mosquitto) -> None:
    """Z2M 1.x legacy_availability_payload: plain text; 1.x bridge/logging had no `z2m: `; Z2M
    publishes bridge/state offline when it stops (mqtt.ts disconnect)."""
    lock = FakeZigbeeLock("front", "0x0001")
    async with z2m(mosquitto, [lock], legacy_availability_payload=True,
                   log_namespace=False) as (fake, obs):
        assert obs.on("bridge/state")[0] == "online"
        assert obs.on("front/availability")[0] == "online"
        await obs.send("front/get", {"pin_code": {"user": 99}})
        line = await obs.wait(obs.logs)
        assert line[0].startswith("Publish 'get'")
        await fake.stop()
        await obs.wait(lambda: obs.on("bridge/state")[-1] == "offline")


# -- 5. locks that hide PINs ---------------------------------------------------------------------


async def test_lock_that_does_not_send_pins(mosquitto: Mosquitto) -> None:
    """ST zigbee-lock.groovy writes sendPinOta=1 because locks reset it to 0: then the PIN is
    left out of getPinCodeRsp. expose_pin shows what came: "" (or a masked value)."""
    plain = FakeZigbeeLock("front", "0x0001", table={1: "1234"}, send_pin_ota=False)
    masked = FakeZigbeeLock("back", "0x0002", table={1: "1234"}, send_pin_ota=False,
                            masked_pin="****")
    async with z2m(mosquitto, [plain, masked]) as (_, obs):
        await obs.send("front/get", {"pin_code": {"user": 1}})
        await obs.send("back/get", {"pin_code": {"user": 1}})
        front = await obs.wait(lambda: [u for u in users(obs) if u])
        back = await obs.wait(lambda: [u for u in users(obs, "back") if u])
        assert front[0] == {"1": {"status": "enabled", "pin_code": ""}}
        assert back[0] == {"1": {"status": "enabled", "pin_code": "****"}}


async def test_cache_is_deep_merged(mosquitto: Mosquitto) -> None:
    """state.ts objectAssignDeep: an answer without pin_code keeps the cached pin_code."""
    lock = FakeZigbeeLock("front", "0x0001", table={1: "1234"})
    async with z2m(mosquitto, [lock]) as (_, obs):
        await obs.send("front/get", {"pin_code": {"user": 1}})
        await obs.wait(lambda: [u for u in users(obs) if u])
        lock.expose_pin = False
        lock.table.pop(1)
        await obs.send("front/get", {"pin_code": {"user": 1}})
        await obs.wait(lambda: users(obs)[-1]["1"]["status"] == "available")
        assert users(obs)[-1] == {"1": {"status": "available", "pin_code": "1234"}}
