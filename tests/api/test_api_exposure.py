"""Listening beyond loopback is deliberate and safe: check-config refuses plain HTTP on the
network unless asked for, the daemon serves HTTPS with the configured certificate, only /health
(and the routes opened by name) answer without a key, and doctor says what is exposed
(docs/reliability.md)."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bridge.api.status_page import STATIC_FILES
from bridge.listener import keyless_paths
from tests.api_helpers import ROOT, Daemon, lockbridge, start_daemon
from tests.upstream.test_upstream_tls import make_pki

pytestmark = pytest.mark.timeout(120)

CONFIG = """\
bridge: {{id: exposed}}
state_dir: {state}
api:
  host: HOST
  port: 0
API
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    locks: [{{id: front, name: Front door}}]
"""
KEY_ONLY = ["/status", "/status.js", "/status.css", "/status.json", "/metrics", "/openapi.json",
            "/devices/list"]


def config_text(host: str, *api_lines: str) -> str:
    """A daemon config (still a template for `state`) with extra `api:` settings."""
    api = "".join(f"  {line}\n" for line in api_lines)
    return CONFIG.replace("HOST", host).replace("API\n", api)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lockbridge(*args), capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def get(url: str, key: str | None = None, tls: ssl.SSLContext | None = None) -> int:
    """The status of one GET."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10,
                                    context=tls) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def stopped_cleanly(daemon: Daemon) -> str:
    log = daemon.stop()
    assert "Traceback" not in log, log[-3000:]
    return log


# -- check-config ----------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "'::'", "192.168.1.20", "gateway.local"])
def test_check_config_refuses_plain_http_beyond_loopback(tmp_path: Path, host: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(host).format(state=tmp_path / "state"))
    for args in (("check-config", str(config)), ("doctor", "-c", str(config))):
        proc = cli(*args)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out
        assert "Traceback" not in out
        assert f"{config}:4: api.host: " in out, out
        assert "api.tls_cert_file and api.tls_key_file" in out
        assert "api.allow_plain_http: true" in out


def test_check_config_refuses_half_tls_and_routes_that_hold_secrets(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text("0.0.0.0", "tls_cert_file: /etc/lockbridge/api.pem",
                                  "public_routes: [/status, /devices/list]")
                      .format(state=tmp_path / "state"))
    proc = cli("check-config", str(config))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert any(line.startswith(f"{config}:6: api.tls_cert_file: give api.tls_cert_file and "
                               "api.tls_key_file together") for line in lines), proc.stderr
    assert any(line.startswith(f"{config}:7: api.public_routes.1: '/devices/list' cannot be "
                               "opened without a key") for line in lines), proc.stderr


def test_check_config_accepts_a_deliberate_listener(tmp_path: Path) -> None:
    for extra in (["allow_plain_http: true"],
                  ["tls_cert_file: api.pem", "tls_key_file: api.key",
                   "public_routes: [/status, /status.json]"]):
        config = tmp_path / "config.yaml"
        config.write_text(config_text("0.0.0.0", *extra).format(state=tmp_path / "state"))
        proc = cli("check-config", str(config))
        assert proc.returncode == 0, proc.stderr


def test_loopback_keeps_every_keyless_route() -> None:
    assert keyless_paths("127.0.0.1", []) == keyless_paths("::1", []) == {
        "/health", "/openapi.json", "/metrics", "/", "/status.json", *STATIC_FILES}
    assert keyless_paths("localhost", ["/metrics"]) == keyless_paths("127.0.0.1", [])


# -- the daemon ------------------------------------------------------------------------------

def test_https_beyond_loopback_needs_a_key_everywhere_but_health(tmp_path: Path) -> None:
    ca, _ = make_pki(tmp_path)
    text = config_text("0.0.0.0", f"tls_cert_file: {tmp_path / 'server.pem'}",
                       f"tls_key_file: {tmp_path / 'server.key'}")
    daemon = start_daemon(tmp_path, text)
    try:
        trust = ssl.create_default_context(cafile=str(ca))
        base = f"https://127.0.0.1:{daemon.port}"
        assert get(f"{base}/health", tls=trust) in (200, 503)
        for path in KEY_ONLY:
            assert get(base + path, tls=trust) == 401, path
        for path in ("/status.json", "/metrics", "/devices/list"):
            assert get(base + path, daemon.key, tls=trust) == 200, path
        with pytest.raises((OSError, http.client.HTTPException)):
            get(f"http://127.0.0.1:{daemon.port}/health")
        listed = daemon.cli("devices", "list", "--json", check=False)
        assert listed.returncode == 0 and "Front door" in listed.stdout, listed.stderr
        doctor = daemon.cli("doctor", check=False)
        assert "beyond loopback" in doctor.stdout and "It is HTTPS" in doctor.stdout
        assert "without a key they get /health;" in doctor.stdout, doctor.stdout
    finally:
        log = stopped_cleanly(daemon)
    assert "API listening on https://0.0.0.0:" in log
    assert "API reachable beyond loopback over HTTPS; without a key: /health" in log


def test_plain_http_when_asked_with_routes_opened_by_name(tmp_path: Path) -> None:
    text = config_text("0.0.0.0", "allow_plain_http: true",
                       "public_routes: [/status, /status.json]")
    daemon = start_daemon(tmp_path, text)
    try:
        base = f"http://127.0.0.1:{daemon.port}"
        assert get(f"{base}/health") in (200, 503)
        for path in ("/status", "/status.js", "/status.css", "/status.json"):
            assert get(base + path) == 200, path
        for path in ("/metrics", "/openapi.json", "/devices/list"):
            assert get(base + path) == 401, path
            assert get(base + path, daemon.key) == 200, path
        doctor = daemon.cli("doctor", check=False)
        assert "plain HTTP" in doctor.stdout and "cross the network in clear" in doctor.stdout
        assert "/health, /status, /status.css, /status.js, /status.json" in doctor.stdout
    finally:
        stopped_cleanly(daemon)


def test_unusable_tls_files_stop_the_start_in_one_line(tmp_path: Path) -> None:
    ca, _ = make_pki(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(config_text("0.0.0.0", f"tls_cert_file: {tmp_path / 'server.pem'}",
                                  f"tls_key_file: {ca}").format(state=tmp_path / "state"))
    proc = cli("run", "-c", str(config))
    assert proc.returncode == 78 and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("lockbridge: ")]
    assert len(lines) == 1 and "are not a PEM certificate and its private key" in lines[0]
    assert "give the PEM certificate" in lines[0]
