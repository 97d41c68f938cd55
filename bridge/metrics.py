"""Prometheus metrics of a running bridge, in the text exposition format.

Gauges are read from the engine's state at scrape time, so nothing has to be kept in step with
it; only command latency is recorded as it happens (through `Engine.command_observer`).

prometheus_client is imported by the first command timed or the first scrape, both after
READY: importing it cost 15 to 20 ms of the start (it brings http.server and its exposition).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol, cast

from bridge.driver import Availability
from bridge.model import AccessCodeStatus
from bridge.stateview import StateView

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Histogram
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector

    from bridge.daemon import Bridge

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Z-Wave and Zigbee locks answer in 0.5 to 5 s; cloud APIs and sleepy locks can take longer.
_LATENCY_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class BridgeMetrics:
    """One registry per bridge (tests run several bridges in one process), made on first use."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._registry: CollectorRegistry | None = None
        self._latency: Histogram | None = None
        bridge.engine.command_observer = self.observe_command

    @property
    def registry(self) -> CollectorRegistry:
        """The bridge's registry: the command latency histogram and the state collector."""
        return self._made()[0]

    def observe_command(self, driver: str, seconds: float, ok: bool) -> None:
        """Record one driver call."""
        self._made()[1].labels(driver, "ok" if ok else "failed").observe(seconds)

    def _made(self) -> tuple[CollectorRegistry, Histogram]:
        if self._registry is None or self._latency is None:
            from prometheus_client import CollectorRegistry, Histogram

            # No auto_describe: registering a collector without describe() would collect it
            # once to learn its names, a walk over every code (0.3 s at 30,000 codes).
            self._registry = CollectorRegistry(auto_describe=False)
            self._latency = Histogram(
                "lockbridge_command_duration_seconds",
                "Time a driver took to answer one command to a lock.",
                ["driver", "outcome"], buckets=_LATENCY_BUCKETS, registry=self._registry)
            # A collector is anything with collect(): the registry asks nothing else of it.
            self._registry.register(cast("Collector", _StateCollector(self._bridge)))
        return self._registry, self._latency

    def render(self) -> bytes:
        """The text exposition of every metric."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _StateCollector:
    """Every gauge from the engine's state, read at scrape time."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge

    def collect(self) -> Iterator[Metric]:
        """The metric families of the bridge's state now."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        engine = self._bridge.engine
        view = StateView(engine)
        devices = [d for d in view.devices.values() if d.is_managed and not d.removed]
        locks = GaugeMetricFamily("lockbridge_locks", "Locks by availability.",
                                  labels=["availability"])
        by_state = Counter(str(d.availability) for d in devices)
        for state in Availability:
            if state is not Availability.REMOVED:
                locks.add_metric([str(state)], by_state.get(str(state), 0))
        yield locks

        live = [c for c in view.codes.values() if not c.deleted]
        codes = GaugeMetricFamily("lockbridge_access_codes",
                                  "Managed access codes by status (backups included).",
                                  labels=["status", "is_backup"])
        by_status = Counter((str(c.status), c.is_backup) for c in live if c.is_managed)
        for status in AccessCodeStatus:
            for is_backup in (False, True):
                codes.add_metric([str(status), str(is_backup).lower()],
                                 by_status.get((str(status), is_backup), 0))
        yield codes
        yield GaugeMetricFamily("lockbridge_unmanaged_access_codes",
                                "Codes found on locks that lockbridge does not manage.",
                                value=sum(1 for c in live if not c.is_managed))

        errors = GaugeMetricFamily("lockbridge_errors", "Errors present now, by code.",
                                   labels=["on", "code"])
        warnings = GaugeMetricFamily("lockbridge_warnings", "Warnings present now, by code.",
                                     labels=["on", "code"])
        for family, attr in ((errors, "errors"), (warnings, "warnings")):
            counts: Counter[tuple[str, str]] = Counter()
            for device in devices:
                counts.update(("device", i.code) for i in getattr(device, attr))
            for code in live:
                counts.update(("access_code", i.code) for i in getattr(code, attr))
            for (on, issue), count in sorted(counts.items()):
                family.add_metric([on, issue], count)
            yield family

        pool = GaugeMetricFamily("lockbridge_backup_pool_codes",
                                 "Unpulled backup codes set on each lock with the pool on.",
                                 labels=["device_id"])
        for device in devices:
            if device.backup_pool_enabled:
                ready = sum(1 for c in view.codes_of(device.device_id)
                            if c.is_backup and not c.deleted and c.backup_pulled_for is None
                            and c.status is AccessCodeStatus.SET)
                pool.add_metric([device.device_id], ready)
        yield pool

        faults = CounterMetricFamily(
            "lockbridge_lock_faults", "Unexpected exceptions in a lock's worker or its driver "
            "since start; the lock's work restarted after each.", labels=["device_id"])
        for device_id, count in sorted(engine.fault_counts.items()):
            faults.add_metric([device_id], count)
        yield faults
        store = engine.store.health
        yield GaugeMetricFamily("lockbridge_store_writable",
                                "1 when the store can write; 0 while the disk is full, failing "
                                "or read-only.", value=int(store.writable))
        yield CounterMetricFamily("lockbridge_store_write_failures",
                                  "Writes refused because the store's disk failed.",
                                  value=store.failed_writes)

        yield from _upstream_metrics(self._bridge.extras.get("upstream"))


class UpstreamState(Protocol):
    """What metrics, /health and systemd's status line read of the upstream link."""

    @property
    def connected(self) -> bool: ...

    @property
    def outbox_depth(self) -> int: ...


def _upstream_metrics(upstream: UpstreamState | None) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    yield GaugeMetricFamily("lockbridge_upstream_configured",
                            "1 when an upstream link is configured.",
                            value=int(upstream is not None))
    if upstream is None:
        return
    yield GaugeMetricFamily("lockbridge_upstream_connected", "1 when the upstream link is up.",
                            value=int(upstream.connected))
    yield GaugeMetricFamily("lockbridge_outbox_depth",
                            "Events waiting for the upstream's acknowledgement.",
                            value=upstream.outbox_depth)
