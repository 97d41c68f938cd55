"""Prometheus metrics from a running engine, read back with Prometheus' own text parser."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bridge.driver import Availability
from bridge.engine import CodeRequest
from bridge.metrics import BridgeMetrics
from bridge.model import AccessCodeStatus
from drivers.simulator import SimLockSpec


def samples(metrics: BridgeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}, parsed as Prometheus would."""
    parsed = text_string_to_metric_families(metrics.render().decode())
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parsed for s in family.samples}


async def test_metrics_follow_locks_codes_issues_and_commands(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front"), SimLockSpec("back", "Back")])
    bridge = SimpleNamespace(engine=h.engine, extras={})
    metrics = BridgeMetrics(bridge)  # type: ignore[arg-type]
    front, back = h.device_id("front"), h.device_id("back")
    for pin in ("1357", "2468"):
        await h.engine.create_code(front, CodeRequest(name="Staff", code=pin))
    await h.settle()
    await h.driver.set_availability("back", Availability.OFFLINE)
    await h.engine.create_code(back, CodeRequest(name="Guest", code="9753"))
    await h.settle()

    got = samples(metrics)
    assert got[("lockbridge_locks", (("availability", "online"),))] == 1
    assert got[("lockbridge_locks", (("availability", "offline"),))] == 1
    set_key = ("lockbridge_access_codes", (("is_backup", "false"), ("status", "set")))
    setting_key = ("lockbridge_access_codes", (("is_backup", "false"), ("status", "setting")))
    assert got[set_key] == 2
    assert got[setting_key] == 1
    assert got[("lockbridge_errors", (("code", "device_offline"), ("on", "device")))] == 1
    assert got[("lockbridge_upstream_configured", ())] == 0
    # Both writes and their read-backs went through the driver and were timed.
    calls = got[("lockbridge_command_duration_seconds_count",
                 (("driver", "sim"), ("outcome", "ok")))]
    assert calls >= 2

    await h.engine.delete_code(next(c.access_code_id for c in h.engine.codes_of(front)
                                    if c.status is AccessCodeStatus.SET))
    await h.settle()
    assert samples(metrics)[set_key] == 1


async def test_upstream_state_and_outbox_depth_are_reported(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    link = SimpleNamespace(connected=True, outbox_depth=42)
    metrics = BridgeMetrics(SimpleNamespace(engine=h.engine, extras={"upstream": link}))  # type: ignore[arg-type]
    got = samples(metrics)
    assert got[("lockbridge_upstream_connected", ())] == 1
    assert got[("lockbridge_outbox_depth", ())] == 42
    link.connected = False
    assert samples(metrics)[("lockbridge_upstream_connected", ())] == 0


async def test_registering_the_metrics_does_not_walk_the_codes(harness_factory) -> None:  # type: ignore[no-untyped-def]
    # Collecting walks every code (30,000 on a big property): at registration, before READY,
    # that was a third of a second for nothing.
    from bridge import metrics as module

    h = await harness_factory([SimLockSpec("front", "Front")])
    collected = 0
    original = module._StateCollector.collect

    def counting(self: Any) -> Any:
        nonlocal collected
        collected += 1
        return original(self)

    module._StateCollector.collect = counting  # type: ignore[method-assign]
    try:
        metrics = BridgeMetrics(SimpleNamespace(engine=h.engine, extras={}))  # type: ignore[arg-type]
        assert collected == 0
        assert ("lockbridge_locks", (("availability", "online"),)) in samples(metrics)
        assert collected == 1
    finally:
        module._StateCollector.collect = original  # type: ignore[method-assign]
