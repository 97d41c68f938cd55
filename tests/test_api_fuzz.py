"""Schemathesis against /openapi.json of the real daemon: valid and invalid requests to every
operation, bounded in count, and never a 5xx or a crash."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from .api_helpers import Daemon, start_daemon

pytestmark = pytest.mark.slow
EXAMPLES = 300


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(tmp_path)
    try:
        yield d
    finally:
        log = d.stop()
        assert "Traceback" not in log and "failed" not in log, log[-3000:]


def test_fuzzing_every_operation_finds_no_server_error(daemon: Daemon) -> None:
    schema = schemathesis.openapi.from_url(daemon.url + "/openapi.json")
    strategy = (schema.as_strategy(GenerationMode.POSITIVE)
                | schema.as_strategy(GenerationMode.NEGATIVE))
    headers = {"Authorization": f"Bearer {daemon.key}"}
    seen: set[str] = set()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def call(case: schemathesis.Case) -> None:
        response = case.call(base_url=daemon.url, headers=headers, timeout=10)
        seen.add(f"{case.method} {case.path}")
        assert response.status_code < 500, (case.method, case.path, response.text)
        content_type = response.headers["content-type"]
        assert "application/json" in str(content_type), content_type

    call()
    assert daemon.proc.poll() is None, "the daemon died"
    assert len(seen) >= 20, sorted(seen)
