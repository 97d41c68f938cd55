"""The reconnect supervisor (on a fake clock) and the MQTT link against a real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bridge.clock import FakeClock
from bridge.reconnect import Backoff, FailureKind, LinkState, ReconnectSupervisor
from drivers.mqtt.config import BrokerConfig
from drivers.mqtt.link import LinkDown, MqttLink
from tests.harness import until

if TYPE_CHECKING:
    from tests.mosquitto import Mosquitto

pytest_plugins = ["tests.mosquitto"]


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_is_jittered_and_capped(attempt: int) -> None:
    backoff = Backoff(base_s=1.0, cap_s=60.0)
    ceiling = min(60.0, 2.0 ** (attempt - 1))
    delays = [backoff.delay(attempt, random.Random(seed)) for seed in range(50)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len({round(d, 6) for d in delays}) > 1  # jitter: not everyone in step


class Script:
    """A session that follows a script: fail, refuse, drop after connecting, or stay up."""

    def __init__(self, clock: FakeClock, outcomes: list[str]) -> None:
        self.clock = clock
        self.outcomes = outcomes
        self.calls: list[float] = []

    async def __call__(self, established: Callable[[], None]) -> None:
        self.calls.append(self.clock.monotonic())
        outcome = self.outcomes.pop(0) if self.outcomes else "up"
        if outcome == "fail":
            raise ConnectionRefusedError("connection refused")
        if outcome == "refuse":
            raise PermissionError("not authorised")
        established()
        if outcome == "drop":
            raise ConnectionResetError("reset by peer")
        await asyncio.Event().wait()


def classify(error: BaseException) -> FailureKind:
    return FailureKind.REFUSED if isinstance(error, PermissionError) else FailureKind.TRANSIENT


@contextlib.asynccontextmanager
async def supervising(supervisor: ReconnectSupervisor) -> AsyncIterator[None]:
    task = asyncio.create_task(supervisor.run(), name="supervisor")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_for(clock: FakeClock, seconds: float, step: float = 0.25) -> None:
    for _ in range(int(seconds / step)):
        await clock.advance(step)


async def test_outage_warns_once_backs_off_and_says_recovered(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    script = Script(clock, ["drop", "fail", "fail", "fail", "fail", "fail", "up"])
    states: list[LinkState] = []
    supervisor = ReconnectSupervisor("link", clock, script, classify=classify,
                                     backoff=Backoff(1.0, 8.0), rng=random.Random(3),
                                     on_state=states.append)
    caplog.set_level(logging.DEBUG, logger="bridge.reconnect")
    async with supervising(supervisor):
        await run_for(clock, 60)
        assert supervisor.state is LinkState.CONNECTED and supervisor.failures == 0
    gaps = [b - a for a, b in zip(script.calls, script.calls[1:], strict=False)]
    # Each wait grows (within jitter) and none exceeds the cap.
    ceilings = [min(8.0, 2.0 ** i) for i in range(len(gaps))]
    assert all(c / 2 - 0.25 <= g <= c + 0.25 for g, c in zip(gaps, ceilings, strict=True))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "lost" in warnings[0].getMessage()
    assert len(infos) == 1 and "recovered after 6 failed attempts" in infos[0].getMessage()
    assert states[:3] == [LinkState.CONNECTING, LinkState.CONNECTED, LinkState.BACKING_OFF]


async def test_sessions_that_fail_right_after_connecting_keep_backing_off() -> None:
    # A peer that accepts the connection and drops it at once (a broken upstream, a broker that
    # refuses the first subscribe) must not reset the backoff each time: no reconnect storm.
    clock = FakeClock()
    script = Script(clock, ["drop"] * 12)
    supervisor = ReconnectSupervisor("link", clock, script, classify=classify,
                                     backoff=Backoff(1.0, 16.0), rng=random.Random(5))
    async with supervising(supervisor):
        await run_for(clock, 120, step=0.5)
    gaps = [b - a for a, b in zip(script.calls, script.calls[1:], strict=False)]
    assert len(gaps) >= 6
    assert max(gaps[4:]) > 8.0, gaps  # grown towards the cap, not stuck at the base
    assert len(script.calls) <= 14


async def test_a_session_that_did_real_work_ends_the_outage() -> None:
    clock = FakeClock()
    calls: list[float] = []
    holder: list[ReconnectSupervisor] = []

    async def session(established: Callable[[], None]) -> None:
        calls.append(clock.monotonic())
        if len(calls) <= 5:
            raise ConnectionRefusedError("connection refused")
        established()
        if len(calls) == 6:
            holder[0].worked()  # e.g. the upstream acknowledged events
        raise ConnectionResetError("reset by peer")

    supervisor = ReconnectSupervisor("link", clock, session, classify=classify,
                                     backoff=Backoff(1.0, 64.0), rng=random.Random(5))
    holder.append(supervisor)
    async with supervising(supervisor):
        await run_for(clock, 200, step=0.5)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    # After the session that worked, the wait starts again from the base.
    assert gaps[5] <= 1.0 + 0.5, gaps


async def test_refused_credentials_are_not_retried_in_a_storm(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    script = Script(clock, ["refuse"] * 100)
    supervisor = ReconnectSupervisor("link", clock, script, classify=classify,
                                     backoff=Backoff(1.0, 30.0), refused_retry_s=900.0)
    async with supervising(supervisor):
        await run_for(clock, 3600, step=30)
        assert supervisor.state is LinkState.REFUSED
    # One attempt at start, then one per 900 s: never a storm.
    assert len(script.calls) == 5
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "refused" in errors[0].getMessage()


async def test_kick_cuts_the_wait_short() -> None:
    clock = FakeClock()
    script = Script(clock, ["refuse", "up"])
    supervisor = ReconnectSupervisor("link", clock, script, classify=classify,
                                     refused_retry_s=900.0)
    async with supervising(supervisor):
        await run_for(clock, 1)
        assert len(script.calls) == 1
        supervisor.kick()
        await clock.advance(0)
        await run_for(clock, 1)
        assert len(script.calls) == 2 and supervisor.state is LinkState.CONNECTED


def settings(broker: Mosquitto, **extra: object) -> BrokerConfig:
    return BrokerConfig.model_validate({"host": broker.host, "port": broker.port,
                                        "reconnect_min_s": 0.5, "reconnect_max_s": 2.0,
                                        "refused_retry_s": 600.0, **extra})


async def test_broker_refusing_login_is_retried_rarely_and_said_once(
        mosquitto_factory: Callable[..., Mosquitto],
        caplog: pytest.LogCaptureFixture) -> None:
    broker = mosquitto_factory(allow_anonymous=False)
    clock = FakeClock()
    link = MqttLink("locked-out", settings(broker, username="lockbridge", password="wrong"),
                    clock)
    try:
        await link.start()
        await until(lambda: link.state is LinkState.REFUSED, what="refused")
        for _ in range(12):  # an hour of fake time
            await clock.advance(300)
            await asyncio.sleep(0.01)
        assert not link.connected
        assert link.supervisor.attempts <= 7
        with pytest.raises(LinkDown) as raised:
            await link.publish("a/b", b"x")
        assert not raised.value.maybe_sent
    finally:
        await link.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "Not authorized" in errors[0] and "wrong" not in errors[0]


async def test_unreadable_password_file_is_a_refusal(mosquitto: Mosquitto,
                                                    tmp_path: Path) -> None:
    clock = FakeClock()
    link = MqttLink("no-secret", settings(mosquitto, username="u",
                                          password_file=tmp_path / "missing"), clock)
    try:
        await link.start()
        await until(lambda: link.state is LinkState.REFUSED, what="refused")
    finally:
        await link.stop()


async def test_messages_reach_handlers_and_a_failing_handler_is_contained(
        mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    seen: list[tuple[str, bytes, bool]] = []

    def broken(topic: str, payload: bytes, retained: bool) -> None:
        raise ValueError("boom")

    link = MqttLink("dispatch", settings(mosquitto), clock)
    link.subscribe("dispatch-test/+", lambda t, p, r: seen.append((t, p, r)))
    link.subscribe("dispatch-test/#", broken)
    states: list[bool] = []
    link.add_listener(states.append)
    try:
        await link.start()
        assert await link.wait_up(5)
        for i in range(3):
            await link.publish("dispatch-test/x", f"m{i}".encode())
        await until(lambda: len(seen) == 3, what="three messages")
        assert seen[0] == ("dispatch-test/x", b"m0", False) and link.connected
    finally:
        await link.stop()
    assert states == [True, False]
    contained = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert [r.levelno for r in contained] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
