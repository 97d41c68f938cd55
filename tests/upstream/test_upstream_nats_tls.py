"""`upstream.kind: nats` over TLS: wss:// to NATS's websocket listener with a private CA from
`ca_file` delivers events; a server whose certificate that CA did not sign is never trusted."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from bridge.clock import SystemClock
from bridge.config import NatsUpstreamConfig
from bridge.fleet.streams import ensure_streams
from bridge.reconnect import FailureKind
from bridge.upstream.nats_link import NatsLink, classify
from bridge.upstream.nats_subjects import FleetNames, close_client
from drivers.simulator import SimLockSpec
from tests.harness import Harness
from tests.nats_cluster import NatsCluster, password_file
from tests.upstream.test_upstream_nats import published_event_ids
from tests.upstream.test_upstream_tls import make_pki
from tests.upstream_helpers import bridge_event_ids, eventually, unlock_events

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]
BRIDGE = "b1"


async def test_wss_with_a_private_ca(harness_factory, tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "other").mkdir()
    ca_file, _ = make_pki(tmp_path / "pki")
    other_ca, _ = make_pki(tmp_path / "other")
    pki = tmp_path / "pki"
    cluster = NatsCluster.build(tmp_path / "nats", [BRIDGE, "b2"], size=1,
                                tls=(ca_file, pki / "server.pem", pki / "server.key"))
    await cluster.start()
    h: Harness = await harness_factory([SimLockSpec(lock_id="front", name="Front")])
    links: list[tuple[NatsLink, asyncio.Task[None]]] = []
    try:
        nc = await cluster.backend()
        await ensure_streams(nc.jetstream(), FleetNames(), replicas=1)
        await close_client(nc)
        for ca in (other_ca, ca_file):
            config = NatsUpstreamConfig.model_validate({
                "kind": "nats", "servers": [f"wss://127.0.0.1:{cluster.nodes[0].ws_port}"],
                "user": BRIDGE, "password_file": password_file(tmp_path, BRIDGE),
                "ca_file": ca, "backoff_base_s": 0.05, "backoff_cap_s": 0.2,
                "refused_retry_s": 0.2, "connect_timeout_s": 2})
            link = NatsLink(config, h.store, h.engine, SystemClock(), BRIDGE)
            await link.prepare()
            links.append((link, asyncio.create_task(link.run())))
            if ca == other_ca:
                await eventually(lambda lk=link: lk.supervisor.attempts >= 2, timeout=20,
                                 what="attempts with the wrong CA")
                assert not link.connected and link.sessions == 0
                # Judged a refusal (retried slowly), not a network blip.
                assert classify(link.supervisor.last_error or Exception()) is \
                    FailureKind.REFUSED, repr(link.supervisor.last_error)
                links[-1][1].cancel()
        good = links[-1][0]
        assert await good.wait_connected(20)
        await unlock_events(h.engine, h.device_id("front"), 3)

        async def delivered() -> bool:
            return sorted(await published_event_ids(cluster)) == sorted(
                await bridge_event_ids(h.engine))

        await eventually(delivered, timeout=20, what="events over wss")
    finally:
        for _, task in links:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        cluster.stop()
