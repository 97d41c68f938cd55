"""The real daemon in a subprocess with its API on a free port, and checks of its answers
against the Seam OpenAPI subset (minus the differences docs/api.md lists)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from drivers.simulator.driver import load_state_file

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT / "tests" / "fixtures" / "seam-openapi-subset.json"

CONFIG = """\
bridge: {{id: api-test}}
state_dir: {state}
logging: {{level: debug}}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    locks:
      - {{id: front, name: Front door, faults: {{keypad_codes: {{20: "86420", 21: "97531"}}}}}}
      - {{id: back, name: Back door, preset: schlage_be469}}
      - {{id: side, name: Side door}}
"""

# Fields and values where lockbridge's answers differ from Seam's schema on purpose; each is
# listed with its reason in docs/api.md. Paths are JSON pointers into the object, "*" any index.
DOCUMENTED_DIFFERENCES: tuple[tuple[str, str], ...] = (
    # device_type: generic locks have no Seam brand value.
    ("device_type", "not valid"),
    # PIN rules Seam has no constraint_type for.
    ("constraint_type", "no_zeros_at_start"),
    ("constraint_type", "cannot_specify_pin_code_prefix"),
    # lockbridge's own warning codes where Seam's documents name none.
    ("warning_code", "code_differs_from_requested"),
    ("warning_code", "schedule_enforced_by_bridge"),
    ("warning_code", "will_not_fit_on_device"),
    ("warning_code", "unknown_time_zone"),
    ("warning_code", "system_clock_unsynchronized"),
    ("warning_code", "lock_worker_fault"),
    ("warning_code", "write_only_lock"),
    # Device error codes of Seam's documents that Seam's newer schema dropped.
    ("error_code", "ttlock_lock_not_paired_to_gateway"),
    # Event types of Seam's documents that Seam's newer schema dropped.
    ("event_type", "access_code.duplicate_code_on_device"),
    ("event_type", "access_code.duplicate_code_attempt_prevented"),
    ("event_type", "access_code.no_space_for_access_code_on_device"),
)


def lockbridge(*args: str) -> list[str]:
    """The CLI as a user runs it."""
    return [sys.executable, "-m", "bridge.cli", *args]


@dataclass
class Daemon:
    """A running `lockbridge run` with an API key."""

    config: Path
    state: Path
    proc: subprocess.Popen[str]
    key: str
    port: int
    pins: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://127.0.0.1:{self.port}"

    def slots(self, lock_id: str) -> dict[int, str]:
        """What is physically on a simulated lock."""
        path = self.state / "sim.json"
        return load_state_file(path).get(lock_id, {}) if path.exists() else {}

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a `lockbridge` subcommand against this daemon."""
        return subprocess.run(lockbridge(*args, "-c", str(self.config)), capture_output=True,
                              text=True, cwd=ROOT, check=check, timeout=60)

    def stop(self) -> str:
        """SIGTERM, wait for a clean exit, return the log."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        took = time.monotonic() - started
        assert self.proc.stderr is not None
        log = self.proc.stderr.read()
        assert took < 5, f"shutdown took {took:.1f} s"
        assert "stopped cleanly" in log, log[-2000:]
        return log


class LocalApi(httpx.Client):
    """The daemon's local API with its key, and the reads the daemon scenarios check."""

    def __init__(self, base: str, key: str) -> None:
        super().__init__(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=20)

    def code(self, access_code_id: str) -> dict[str, Any]:
        """One access code as /access_codes/get shows it."""
        got: dict[str, Any] = self.get("/access_codes/get", params={
            "access_code_id": access_code_id}).json()["access_code"]
        return got

    def code_errors(self, access_code_id: str) -> list[str]:
        """The error codes an access code carries."""
        return [e["error_code"] for e in self.code(access_code_id)["errors"]]

    def device_errors(self, device_id: str) -> list[str]:
        """The error codes a device carries."""
        got = self.get("/devices/get", params={"device_id": device_id}).json()["device"]
        return [e["error_code"] for e in got["errors"]]


def start_daemon(tmp: Path, config_text: str = CONFIG, key: str | None = None,
                 run_args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Daemon:
    """Start the daemon on a fresh (or existing) state directory and wait for its API
    (`run_args` added to `lockbridge run`, `env` added to its environment)."""
    state = tmp / "state"
    config = tmp / "config.yaml"
    config.write_text(config_text.format(state=state))
    if key is None:
        made = subprocess.run(lockbridge("api-key", "create", "-c", str(config), "--name",
                                         "tests"), capture_output=True, text=True, cwd=ROOT,
                              check=True, timeout=60)
        key = made.stdout.strip()
    port_file = state / "api.port"
    port_file.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(lockbridge("run", "-c", str(config), *run_args),
                            stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("daemon did not start: " + (proc.stderr.read()
                                                            if proc.stderr else ""))
        time.sleep(0.05)
    time.sleep(0.05)
    port = int(port_file.read_text())
    return Daemon(config, state, proc, key, port)


def wait_until(predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll `predicate` (real time: the daemon runs on the system clock) until truthy; the
    bound is generous because the suite runs two test processes on a two-core box."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s")
        time.sleep(0.05)


# -- schema checks -----------------------------------------------------------------------------


@cache
def _subset() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SUBSET.read_text())
    return _to_json_schema(doc)


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable` spelled as JSON Schema 2020-12."""
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items()}
    if out.pop("nullable", False):
        if "type" in out:
            kinds = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*kinds, "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        elif any(k in out for k in ("$ref", "oneOf", "anyOf", "allOf", "enum")):
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _registry() -> Registry:
    return Registry().with_resource("urn:seam", Resource(_subset(), DRAFT202012))


def response_schema(path: str, method: str) -> dict[str, Any]:
    """The 200 answer's schema of a route in Seam's document."""
    op = _subset()["paths"][path][method.lower()]
    schema = copy.deepcopy(op["responses"]["200"]["content"]["application/json"]["schema"])
    return _rebase(schema)


def object_schema(name: str) -> dict[str, Any]:
    """One of the component schemas (device, access_code, ...)."""
    return {"$ref": f"urn:seam#/components/schemas/{name}"}


def _rebase(node: Any) -> Any:
    if isinstance(node, list):
        return [_rebase(n) for n in node]
    if isinstance(node, dict):
        return {k: ("urn:seam" + v if k == "$ref" and v.startswith("#") else _rebase(v))
                for k, v in node.items()}
    return node


def schema_problems(schema: dict[str, Any], instance: Any) -> list[str]:
    """Violations of `schema`, minus the documented differences."""
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    problems = []
    for error in _leaves(validator.iter_errors(instance)):
        where = "/".join(str(p) for p in error.absolute_path)
        text = f"{where}: {error.message}"
        if not _documented(where, error.message):
            problems.append(text)
    return sorted(set(problems))


def _leaves(errors: Iterator[jsonschema.ValidationError]) -> Iterator[jsonschema.ValidationError]:
    # A oneOf failure carries the errors of every branch; the branch whose discriminator
    # (event_type, action_type, ...) matched is the one that says what is wrong.
    for error in errors:
        if not error.context:
            yield error
            continue
        branches: dict[Any, list[jsonschema.ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        matching = [errs for errs in branches.values()
                    if not any(e.validator in ("enum", "const") and e.relative_path and
                               e.relative_path[-1] in _DISCRIMINATORS for e in errs)]
        chosen = min(matching or list(branches.values()), key=len)
        yield from _leaves(iter(chosen))


_DISCRIMINATORS = frozenset({"event_type", "action_type", "status", "constraint_type"})


def _documented(where: str, message: str) -> bool:
    last = where.rsplit("/", 1)[-1]
    for name, needle in DOCUMENTED_DIFFERENCES:
        if last == name and (needle in message or needle == "not valid"):
            return True
    return False


def assert_valid(path: str, method: str, body: Any) -> None:
    """Fail when an answer breaks Seam's schema beyond the documented differences."""
    problems = schema_problems(response_schema(path, method), body)
    assert not problems, f"{method} {path}: " + "\n".join(problems)
