"""The MQTT drivers' shared base on its own: a stub gateway behind its hooks, no broker."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import pytest

from bridge.clock import FakeClock
from bridge.driver import (
    Availability,
    CodeWrite,
    RetryLater,
    SlotRead,
    SlotState,
)
from drivers.mqtt.link import LinkDown
from drivers.mqtt.lockdriver import (
    LockSettings,
    LockState,
    MqttLockDriver,
    MqttOptions,
    slot_lock_info,
)
from tests.conftest import START


class _Link:
    """Stands in for MqttLink: only what the base touches."""

    def __init__(self) -> None:
        self.connected = True
        self.listeners: list[object] = []

    def add_listener(self, listener: object) -> None:
        self.listeners.append(listener)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


@dataclass
class _Gateway:
    codes: dict[int, str] = field(default_factory=dict)
    reads: list[int] = field(default_factory=list)
    sent: list[tuple[int, str | None]] = field(default_factory=list)
    fail_at: set[int] = field(default_factory=set)
    # A command whose answer is lost with the broker (it may or may not have landed).
    lose_answer: bool = False


class _Driver(MqttLockDriver[LockState, MqttOptions[LockSettings]]):
    kind = "stub"
    network = "Stub"
    lock_noun = "stub lock"
    slot_noun = "slot"

    def __init__(self, gateway: _Gateway, link: _Link | None = None) -> None:
        self.stub_link = link or _Link()
        super().__init__("t", MqttOptions(), FakeClock(START),
                         self.stub_link,  # type: ignore[arg-type]
                         logging.getLogger("tests.stub"))
        self.gateway = gateway
        info = slot_lock_info("front", LockSettings(), display_name="Front", maker=("S", "1"),
                              device_type="stub", hub_id="stub", first_slot=1, slot_count=5,
                              reserved=(), masks_pins=False, lengths=(4, 8), spacing_s=0.0)
        self._locks["front"] = LockState(external_id="front", info=info)

    def _offline(self, lock: LockState) -> bool:
        return False

    async def _read_now(self, lock: LockState, slot: int) -> SlotRead | None:
        if slot in self.gateway.fail_at:
            self.gateway.fail_at.discard(slot)
            raise RetryLater(f"slot {slot} timed out")
        self.gateway.reads.append(slot)
        pin = self.gateway.codes.get(slot)
        return SlotRead(slot=slot, state=SlotState.EMPTY if pin is None else SlotState.KNOWN,
                        pin=pin)

    async def _reread(self, lock: LockState, slot: int, pin: str | None) -> SlotRead:
        read = await self._read_now(lock, slot)
        assert read is not None
        return read

    async def _send(self, lock: LockState, slot: int, pin: str | None) -> None:
        with self._in_doubt(lock, slot, pin):
            self.gateway.sent.append((slot, pin))
            if pin is None:
                self.gateway.codes.pop(slot, None)
            else:
                self.gateway.codes[slot] = pin
            if self.gateway.lose_answer:
                raise LinkDown("lost", maybe_sent=True)
        self._settled(lock, slot)


async def test_a_whole_lock_read_cut_short_resumes_where_it_stopped() -> None:
    gateway = _Gateway(codes={2: "2222", 4: "4444"}, fail_at={3})
    driver = _Driver(gateway)
    with pytest.raises(RetryLater):
        await driver.list_codes("front")
    assert gateway.reads == [1, 2]
    listed = await driver.list_codes("front")
    assert [(r.slot, r.pin) for r in listed] == [(2, "2222"), (4, "4444")]
    assert gateway.reads == [1, 2, 3, 4, 5]


async def test_a_cut_short_read_is_not_reused_after_a_broker_outage_or_our_write() -> None:
    gateway = _Gateway(codes={2: "2222"}, fail_at={4})
    driver = _Driver(gateway)
    with pytest.raises(RetryLater):
        await driver.list_codes("front")
    await driver.write_code("front", CodeWrite(slot=1, pin="1111", name="x"))
    gateway.reads.clear()
    gateway.fail_at = {5}
    with pytest.raises(RetryLater):
        await driver.list_codes("front")
    assert gateway.reads == [1, 4]  # slot 1 was written since; 2 and 3 are reused
    driver._on_link(False)
    gateway.reads.clear()
    await driver.list_codes("front")
    assert gateway.reads == [1, 2, 3, 4, 5]


async def test_an_uncertain_write_is_read_before_it_is_sent_again() -> None:
    gateway = _Gateway(lose_answer=True)
    driver = _Driver(gateway)
    with pytest.raises(LinkDown):
        await driver.write_code("front", CodeWrite(slot=3, pin="3333", name="x"))
    gateway.lose_answer = False
    result = await driver.write_code("front", CodeWrite(slot=3, pin="3333", name="x"))
    assert result.slot == 3 and gateway.sent == [(3, "3333")]  # read back, not sent twice


async def test_availability_follows_the_broker_and_the_gateway() -> None:
    driver = _Driver(_Gateway())
    link = driver.stub_link
    assert driver.availability("front") is Availability.ONLINE
    driver._gateway_is(False)
    assert driver.availability("front") is Availability.HUB_DISCONNECTED
    link.connected = False
    assert driver.availability("front") is Availability.DISCONNECTED
    assert driver.availability("back") is Availability.REMOVED
    assert not await driver.probe("front")


async def test_background_work_is_stopped_and_its_failure_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    driver = _Driver(_Gateway())

    async def fails() -> None:
        raise ValueError("boom")

    async def waits() -> None:
        await asyncio.Event().wait()

    driver._spawn(fails(), "fails")
    driver._spawn(waits(), "waits")
    for _ in range(3):  # the task runs, then its done callback
        await asyncio.sleep(0)
    assert any("stub:t:fails failed" in r.getMessage() for r in caplog.records)
    await driver.stop()
    assert driver._tasks == []
