"""The Z-Wave JS UI fake against its published behaviour, with plain MQTT messages on a real
Mosquitto (no lockbridge driver). Each test names the source the fake cites for it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiomqtt
import pytest

from tests.fakes.zwavejs_ui import (
    CODE_DUPLICATE,
    DEFAULT_NAME,
    DEFAULT_PREFIX,
    FakeNode,
    FakeZwaveJsUI,
)
from tests.mqtt_env import unique

if TYPE_CHECKING:
    from tests.mosquitto import Mosquitto

pytest_plugins = ["tests.mosquitto"]

VERIFY = 0.3  # the fake's verification delay in these tests (zwave-js: 1 s)


class Client:
    """A plain MQTT client that records everything under the prefix and calls the API."""

    def __init__(self, client: aiomqtt.Client, fake: FakeZwaveJsUI) -> None:
        self.client = client
        self.fake = fake
        self.seen: list[tuple[str, Any, bool]] = []
        self._event = asyncio.Event()

    async def run(self) -> None:
        async for message in self.client.messages:
            raw = message.payload
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            try:
                payload: Any = json.loads(text)
            except ValueError:
                payload = text
            self.seen.append((message.topic.value, payload, message.retain))
            self._event.set()

    async def wait_for(self, topic: str, timeout: float = 3.0, start: int = 0) -> Any:
        """The first payload on `topic` seen from index `start` on."""
        deadline = time.monotonic() + timeout
        while True:
            for t, payload, _ in self.seen[start:]:
                if t == topic:
                    return payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"nothing on {topic}; seen {[t for t, _, _ in self.seen]}")
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), left)

    def on(self, topic: str, start: int = 0) -> list[Any]:
        return [p for t, p, _ in self.seen[start:] if t == topic]

    async def call(self, api: str, payload: Any) -> Any:
        start = len(self.seen)
        data = payload if isinstance(payload, str | bytes) else json.dumps(payload)
        await self.client.publish(f"{self.fake.api_topic(api)}/set", data, qos=1)
        return await self.wait_for(self.fake.api_topic(api), start=start)

    async def api(self, api: str, *args: Any) -> Any:
        return await self.call(api, {"args": list(args)})


@contextlib.asynccontextmanager
async def gateway(broker: Mosquitto, nodes: list[FakeNode], *, prefix: str | None = None,
                  name: str = "gw", **kwargs: Any) -> AsyncIterator[tuple[FakeZwaveJsUI,
                                                                       Client]]:
    prefix = prefix or unique("zui")
    kwargs.setdefault("verify_delay_s", VERIFY)
    fake = FakeZwaveJsUI(broker.host, broker.port, prefix, name, nodes, **kwargs)
    async with aiomqtt.Client(broker.host, broker.port, identifier=unique("probe")) as client:
        await client.subscribe(f"{prefix}/#", qos=1)
        probe = Client(client, fake)
        reader = asyncio.create_task(probe.run())
        await fake.start()
        try:
            yield fake, probe
        finally:
            await fake.stop()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


def uc(slot: int, prop: str = "userCode", node: int = 5) -> dict[str, Any]:
    return {"nodeId": node, "commandClass": 99, "endpoint": 0, "property": prop,
            "propertyKey": slot}


CTX = {"nodeId": 5, "commandClass": 99, "endpoint": 0}


# -- 5. defaults and topics -------------------------------------------------------------------


async def test_default_name_prefix_status_version_and_will(mosquitto: Mosquitto) -> None:
    # ZUI src/stores/base.js mqtt defaults; MqttClient status/version/will.
    assert (DEFAULT_NAME, DEFAULT_PREFIX) == ("zwave-js-ui", "zwave")
    fake = FakeZwaveJsUI(mosquitto.host, mosquitto.port)
    assert fake.client_topic == "zwave/_CLIENTS/ZWAVE_GATEWAY-zwave-js-ui"
    assert fake.will is not None and json.loads(str(fake.will.payload)) == {"value": False}
    async with gateway(mosquitto, [FakeNode(5, slot_count=2)]) as (fake, probe):
        status = await probe.wait_for(f"{fake.client_topic}/status")
        assert status["value"] is True and isinstance(status["time"], int)
        assert (await probe.wait_for(f"{fake.client_topic}/version"))["value"]
        assert await probe.wait_for(f"{fake.prefix}/driver/status") is True


async def test_default_layout_value_ids_with_node_names(mosquitto: Mosquitto) -> None:
    # ZUI Gateway.nodeTopic / valueTopic, gateway type 0 and nodeNames true (UI defaults).
    nodes = [FakeNode(5, slot_count=2), FakeNode(6, slot_count=1, name="Front Door",
                                                 loc="Main House")]
    async with gateway(mosquitto, nodes) as (fake, probe):
        p = fake.prefix
        assert (await probe.wait_for(f"{p}/nodeID_5/status"))["status"] == "Alive"
        await probe.wait_for(f"{p}/nodeID_5/99/0/userCode/2")
        await probe.wait_for(f"{p}/Main_House/Front_Door/99/0/userIdStatus/1")
        assert fake.notification_topic(nodes[0], CODE_DUPLICATE) == (
            f"{p}/nodeID_5/113/0/Access_Control/New_user_code_not_added_due_to_duplicate_code")
        assert nodes[1].topic == "Main_House/Front_Door"


@pytest.mark.parametrize(("settings", "expected"), [
    ({"node_names": False}, "Main_House/6/99/0/userCode/1"),
    ({"gateway_type": "named"}, "Main_House/Front_Door/user_code/endpoint_0/userCode/1"),
    ({"ignore_loc": True}, "Front_Door/99/0/userCode/1"),
])
async def test_other_layouts(mosquitto: Mosquitto, settings: dict[str, Any],
                             expected: str) -> None:
    node = FakeNode(6, slot_count=1, name="Front Door", loc="Main House")
    async with gateway(mosquitto, [node], **settings) as (fake, probe):
        await probe.wait_for(f"{fake.prefix}/{expected}")
        assert fake.value_topic(node, 99, "userCode", 1) == f"{fake.prefix}/{expected}"


async def test_get_nodes_names_locations_and_answer_shape(mosquitto: Mosquitto) -> None:
    # ZUI Gateway._onApiRequest (origin), ZwaveClient.callApi (args, message), getNodes.
    node = FakeNode(5, slot_count=2, name="Back", loc="Garage")
    async with gateway(mosquitto, [node]) as (_fake, probe):
        answer = await probe.api("getNodes")
        assert answer["success"] is True and answer["message"] == "Success zwave api call"
        assert answer["args"] == [] and answer["origin"] == {"args": []}
        ids = [n["id"] for n in answer["result"]]
        assert ids == [1, 5]  # the controller is a node too
        lock = answer["result"][1]
        assert (lock["name"], lock["loc"], lock["status"]) == ("Back", "Garage", "Alive")


# -- 1. slot count ----------------------------------------------------------------------------


@pytest.mark.parametrize("slots", [8, 250])
async def test_defined_values_and_users_count(mosquitto: Mosquitto, slots: int) -> None:
    # ZJS UserCodeCC: supportedUsers internal; interview defines metadata for 1..N without
    # querying codes; ZUI getNodes returns defined values; sendCommand getUsersCount.
    node = FakeNode(5, slot_count=slots, codes={1: "1234"})
    async with gateway(mosquitto, [node]) as (fake, probe):
        values = (await probe.api("getNodes"))["result"][1]["values"]
        expected = {f"99-0-{p}-{n}" for n in range(1, slots + 1)
                    for p in ("userIdStatus", "userCode")}
        assert set(values) == expected
        assert not any("supportedUsers" in key for key in values)
        assert all("value" not in v for v in values.values())
        assert values["99-0-userCode-1"]["maxLength"] == 10
        assert (await probe.api("sendCommand", CTX, "getUsersCount", []))["result"] == slots
        # Each slot was published once at node ready, retained, with no value.
        payload = await probe.wait_for(f"{fake.prefix}/nodeID_5/99/0/userCode/{slots}")
        assert set(payload) == {"time"}


async def test_query_all_user_codes_fills_values(mosquitto: Mosquitto) -> None:
    node = FakeNode(5, slot_count=3, codes={2: "2468"}, unavailable_slots={3})
    async with gateway(mosquitto, [node], query_all_user_codes=True) as (_fake, probe):
        values = (await probe.api("getNodes"))["result"][1]["values"]
        assert values["99-0-userCode-2"]["value"] == "2468"
        assert values["99-0-userIdStatus-1"]["value"] == 0
        assert "99-0-userCode-3" not in values  # 254: removed


# -- 2. status 254 and slots beyond the count -------------------------------------------------


async def test_write_beyond_supported_users_is_invalid_value(mosquitto: Mosquitto) -> None:
    # ZJS UserCodeCCAPI.set: Argument_Invalid -> Node.setValue InvalidValue with message.
    async with gateway(mosquitto, [FakeNode(5, slot_count=8)]) as (_fake, probe):
        answer = await probe.api("writeValue", uc(9), "1234")
        assert answer["success"] is True
        assert answer["result"] == {
            "status": 5,
            "message": "The user ID must be between 0 and the number of supported users 8."}
        short = await probe.api("writeValue", uc(1), "123")
        assert short["result"]["status"] == 5 and "length of 4 to 10" in short["result"][
            "message"]


async def test_status_254_removes_the_slot(mosquitto: Mosquitto) -> None:
    node = FakeNode(5, slot_count=4, unavailable_slots={4})
    async with gateway(mosquitto, [node]) as (fake, probe):
        await probe.wait_for(f"{fake.prefix}/nodeID_5/99/0/userCode/4")
        start = len(probe.seen)
        got = await probe.api("sendCommand", CTX, "get", [4])
        assert got["result"] == {"userIdStatus": 254, "userCode": ""}
        assert not probe.on(f"{fake.prefix}/nodeID_5/99/0/userIdStatus/4", start)
        values = (await probe.api("getNodes"))["result"][1]["values"]
        assert "99-0-userIdStatus-4" not in values and "99-0-userCode-3" in values
        # Sent to the lock, which refuses: a bare Fail under Supervision.
        assert (await probe.api("writeValue", uc(4), "1234"))["result"] == {"status": 2}


# -- 3. writeValue result shapes --------------------------------------------------------------


async def test_refusal_and_noack_look_alike(mosquitto: Mosquitto) -> None:
    # ZJS Supervision Fail -> {status: 2}; NoAck throws, ZUI writeValue catches -> {status: 2};
    # only the node status (Dead) and the verification read tell them apart.
    node = FakeNode(5, slot_count=4, codes={1: "1111"})
    async with gateway(mosquitto, [node]) as (fake, probe):
        p = fake.prefix
        node.refuse.append("lock says no")
        start = len(probe.seen)
        refused = await probe.api("writeValue", uc(2), "2222")
        assert refused["success"] is True and refused["result"] == {"status": 2}
        verified = await probe.wait_for(f"{p}/nodeID_5/99/0/userIdStatus/2", start=start)
        assert verified["value"] == 0
        node.reachable = False
        start = len(probe.seen)
        silent = await probe.api("writeValue", uc(3), "3333")
        assert silent["result"] == {"status": 2}
        assert (await probe.wait_for(f"{p}/nodeID_5/status", start=start))["status"] == "Dead"
        failed = await probe.api("sendCommand", CTX, "get", [1])
        assert failed["success"] is False
        assert failed["message"] == "Failed to send the command after 3 attempts (Status NoAck)"
        assert "result" not in failed
        assert node.codes == {1: "1111"}


async def test_unknown_node_and_no_value_id(mosquitto: Mosquitto) -> None:
    async with gateway(mosquitto, [FakeNode(5)]) as (_fake, probe):
        assert (await probe.api("writeValue", uc(1, node=77), "1234"))["result"] == {
            "status": 2}
        missing = await probe.api("writeValue")
        assert missing["success"] is False and "reading 'commandClass'" in missing["message"]
        other = await probe.api("sendCommand", {"nodeId": 5, "commandClass": 98}, "get", [])
        assert other["message"] == (
            "Node 5 does not support CC 98 or it has not been implemented yet")
        assert (await probe.api("frobnicate"))["message"] == "Unknown API"


# -- 4. notification without parameters -------------------------------------------------------


async def test_duplicate_event_may_carry_no_parameters(mosquitto: Mosquitto) -> None:
    # ZJS NotificationCC (no event params -> undefined), ZUI Gateway._onNotification.
    node = FakeNode(5, duplicate_params=False)
    async with gateway(mosquitto, [node]) as (fake, probe):
        topic = fake.notification_topic(node, CODE_DUPLICATE)
        await fake.keypad_duplicate(5, 3)
        payload = await probe.wait_for(topic)
        assert set(payload) == {"time"}
        start = len(probe.seen)
        await fake.keypad_duplicate(5, 3, with_params=True)
        assert (await probe.wait_for(topic, start=start))["value"] == {"userId": 3}
        assert not [r for t, _, r in probe.seen if t == topic and r]  # never retained


# -- 6. what each kind of write publishes -----------------------------------------------------


async def test_supervised_write_publishes_only_the_written_value(mosquitto: Mosquitto) -> None:
    node = FakeNode(5, slot_count=4)
    async with gateway(mosquitto, [node]) as (fake, probe):
        p = fake.prefix
        await probe.wait_for(f"{p}/nodeID_5/99/0/userCode/4")
        start = len(probe.seen)
        answer = await probe.api("writeValue", uc(2), "2580")
        assert answer["result"] == {"status": 255}
        assert answer["origin"]["args"][1] == "2580"
        assert (await probe.wait_for(f"{p}/nodeID_5/99/0/userCode/2", start=start))[
            "value"] == "2580"
        await asyncio.sleep(VERIFY + 0.3)
        assert not probe.on(f"{p}/nodeID_5/99/0/userIdStatus/2", start)
        assert len(probe.on(f"{p}/nodeID_5/99/0/userCode/2", start)) == 1
        assert node.codes == {2: "2580"}


async def test_unsupervised_write_is_optimistic_then_verified(mosquitto: Mosquitto) -> None:
    node = FakeNode(5, slot_count=4, supervised=False, codes={1: "1111"})
    async with gateway(mosquitto, [node]) as (fake, probe):
        p = fake.prefix
        await probe.wait_for(f"{p}/nodeID_5/99/0/userCode/4")
        start = len(probe.seen)
        before = time.time() * 1000
        # A duplicate: the lock ACKs, drops it and only says so in a notification.
        answer = await probe.api("writeValue", uc(2), "1111")
        assert answer["result"] == {"status": 254}
        optimistic = probe.on(f"{p}/nodeID_5/99/0/userCode/2", start)
        assert optimistic and optimistic[0]["value"] == "1111"
        assert not probe.on(f"{p}/nodeID_5/99/0/userIdStatus/2", start)
        dup = await probe.wait_for(fake.notification_topic(node, CODE_DUPLICATE), start=start)
        assert dup["value"] == {"userId": 2}
        status = await probe.wait_for(f"{p}/nodeID_5/99/0/userIdStatus/2", start=start)
        assert status == {"time": status["time"], "value": 0}
        assert status["time"] >= before + VERIFY * 1000 - 50
        verified = await probe.wait_for(f"{p}/nodeID_5/99/0/userCode/2",
                                        start=start + probe.seen[start:].index(
                                            next(m for m in probe.seen[start:]
                                                 if m[0].endswith("userCode/2"))) + 1)
        assert verified["value"] == ""
        assert node.codes == {1: "1111"}


async def test_keypad_programming_publishes_only_the_notification(
        mosquitto: Mosquitto) -> None:
    node = FakeNode(5, slot_count=4)
    async with gateway(mosquitto, [node]) as (fake, probe):
        p = fake.prefix
        await probe.wait_for(f"{p}/nodeID_5/99/0/userCode/4")
        start = len(probe.seen)
        await fake.keypad_set(5, 3, "9753")
        event = await probe.wait_for(f"{p}/nodeID_5/113/0/Access_Control/New_user_code_added",
                                     start=start)
        assert event["value"] == {"userId": 3}
        await asyncio.sleep(0.2)
        assert [t for t, _, _ in probe.seen[start:]] == [
            f"{p}/nodeID_5/113/0/Access_Control/New_user_code_added"]


async def test_send_command_clear_without_slot_wipes(mosquitto: Mosquitto) -> None:
    node = FakeNode(5, slot_count=4, codes={1: "1111", 2: "2222"}, supervised=False)
    async with gateway(mosquitto, [node]) as (fake, probe):
        answer = await probe.api("sendCommand", CTX, "clear", [])
        assert answer["success"] is True and "result" not in answer  # undefined: unsupervised
        assert node.codes == {} and node.wiped == 1 and fake.clears_without_slot() == 1


# -- 6. boot phase and node status ------------------------------------------------------------


async def test_boot_phase_answers_not_connected(mosquitto: Mosquitto) -> None:
    # ZUI ZwaveClient.callApi: 'Z-Wave client not connected' until the driver is ready.
    async with gateway(mosquitto, [FakeNode(5, slot_count=1)], boot_s=0.6) as (fake, probe):
        early = await probe.api("getNodes")
        assert early == {"success": False, "message": "Z-Wave client not connected",
                         "args": [], "origin": {"args": []}}
        assert await probe.wait_for(f"{fake.prefix}/driver/status") is True
        assert (await probe.api("getNodes"))["success"] is True


async def test_unknown_status_and_revival(mosquitto: Mosquitto) -> None:
    # ZJS NodeStatus; ZUI available = status !== Dead; a node that answers becomes Alive.
    node = FakeNode(5, slot_count=2)
    async with gateway(mosquitto, [node]) as (fake, probe):
        start = len(probe.seen)
        await fake.set_status(5, "Unknown")
        unknown = await probe.wait_for(fake.status_topic(node), start=start)
        assert (unknown["value"], unknown["status"], unknown["nodeId"]) == (True, "Unknown", 5)
        start = len(probe.seen)
        assert (await probe.api("pingNode", 5))["result"] is True
        assert (await probe.wait_for(fake.status_topic(node), start=start))["status"] == "Alive"
        await fake.set_status(5, "Dead")
        assert (await probe.api("pingNode", 5))["result"] is False
        assert (await probe.api("writeValue", uc(1), "1234"))["result"] == {"status": 2}


# -- payload parsing --------------------------------------------------------------------------


async def test_payload_parsing(mosquitto: Mosquitto) -> None:
    # ZUI MqttClient._onMessageReceived and Gateway._onApiRequest.
    async with gateway(mosquitto, [FakeNode(5, slot_count=1)]) as (_fake, probe):
        bad = await probe.call("getNodes", {"args": "nope"})
        assert bad == {"success": False, "message": "Args must be an array",
                       "origin": {"args": "nope"}}
        text = await probe.call("getNodes", "not json")
        assert text["success"] is True and text["origin"] == "not json" and text["args"] == []


async def test_value_topic_write_coerces_numbers(mosquitto: Mosquitto) -> None:
    # A PIN sent raw to a value's /set topic arrives as a Number (MqttClient), which User Code
    # refuses (must be a string); as {"value": "..."} it stays a string.
    node = FakeNode(5, slot_count=2)
    async with gateway(mosquitto, [node]) as (fake, probe):
        topic = f"{fake.prefix}/nodeID_5/99/0/userCode/1"
        await probe.wait_for(topic)
        start = len(probe.seen)
        await probe.client.publish(f"{topic}/set", "0123", qos=1)
        await probe.client.publish(f"{topic}/set", json.dumps({"value": "4567"}), qos=1)
        assert (await probe.wait_for(topic, start=start))["value"] == "4567"
        assert [c[1][1] for c in fake.calls if c[0] == "_writeRequest"] == [123, "4567"]
        assert node.codes == {1: "4567"}
