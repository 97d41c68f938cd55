"""`lockbridge check-config` and `run` report every mistake as FILE:LINE: key.path: reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main

GOOD = """\
bridge:
  id: test-bridge
state_dir: ./state
drivers:
  - kind: simulator
    name: sim
    locks:
      - id: front
        name: Front door
"""


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    code = main(["check-config", str(path)])
    return code, capsys.readouterr().err


def test_good_file_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = check(tmp_path, GOOD, capsys)
    assert code == 0 and err == ""


@pytest.mark.parametrize(
    ("text", "line", "path", "reason"),
    [
        # an unknown key, top level and nested
        (GOOD + "colour: blue\n", 10, "colour", "unknown key"),
        (GOOD.replace("  id: test-bridge", "  id: test-bridge\n  nmae: x"), 3, "bridge.nmae",
         "unknown key"),
        # a value of the wrong type
        (GOOD + "api:\n  port: eighty\n", 11, "api.port", "valid integer"),
        # out of range
        (GOOD + "api:\n  port: 70000\n", 11, "api.port", "less than or equal to 65535"),
        # an unknown driver kind
        (GOOD.replace("kind: simulator", "kind: telepathy"), 5, "drivers.0.kind",
         "unknown driver kind 'telepathy'"),
        # a mistake inside a driver's own settings
        (GOOD.replace("        name: Front door", "        name: Front door\n        slots: 9"),
         10, "drivers.0.locks.0.slots", "unknown key"),
        # an unknown time zone
        (GOOD + "properties:\n  - id: house\n    time_zone: Mars/Olympus\n", 12,
         "properties.0.time_zone", "unknown time zone 'Mars/Olympus'"),
        # an unknown time zone inside a driver's lock: checked like the core's
        (GOOD.replace("        name: Front door",
                      "        name: Front door\n        time_zone: Europe/Lisbn"),
         10, "drivers.0.locks.0.time_zone", "unknown time zone 'Europe/Lisbn'"),
        # a time-bound code without its times
        (GOOD + "codes:\n  - key: g\n    device: front\n    name: G\n    type: time_bound\n",
         14, "codes.0.type", "needs starts_at and ends_at"),
        # a secret written inline
        (GOOD.replace("    name: sim", "    name: sim\n    password: hunter2"), 7,
         "drivers.0.password", "secrets may not be written in the file"),
        # a TTLock client secret written inline
        (GOOD + "  - kind: ttlock\n    client_id: c\n    username: u\n"
         "    password_file: p\n    client_secret: hunter2\n", 14,
         "drivers.1.client_secret", "secrets may not be written in the file"),
        # a missing environment variable
        (GOOD.replace("id: test-bridge", "id: ${LOCKBRIDGE_TEST_UNSET_VAR}"), 2, "bridge.id",
         "environment variable LOCKBRIDGE_TEST_UNSET_VAR is not set"),
        # a key given twice
        (GOOD.replace("state_dir: ./state", "state_dir: ./state\nstate_dir: ./other"), 4,
         "state_dir", "key appears twice"),
        # the same driver name twice
        (GOOD + "  - kind: simulator\n    name: sim\n", 11, "drivers.1.name", "used twice"),
        # broken YAML
        ("bridge:\n  id: [unclosed\n", 3, "(top)", "invalid YAML"),
    ],
)
def test_each_mistake_is_reported_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, path: str,
    reason: str,
) -> None:
    code, err = check(tmp_path, text, capsys)
    assert code == 2
    file = tmp_path / "config.yaml"
    matching = [e for e in err.splitlines() if e.startswith(f"{file}:{line}: {path}: ")]
    assert matching, err
    assert reason in matching[0]


def test_every_problem_is_listed_not_just_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = check(tmp_path, GOOD + "colour: blue\napi:\n  port: -1\n", capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 2


def test_environment_variables_are_substituted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LB_ID", "from-env")
    code, _ = check(tmp_path, GOOD.replace("id: test-bridge", "id: ${LB_ID}"), capsys)
    assert code == 0


def test_run_refuses_a_bad_file_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD + "colour: blue\n")
    proc = subprocess.run([sys.executable, "-m", "bridge.cli", "run", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{path}:10: colour: unknown key" in proc.stderr
    assert not (tmp_path / "state").exists()


def test_secret_and_certificate_files_are_relative_to_the_config_file(tmp_path: Path) -> None:
    from bridge.config import load_config

    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "config.yaml"
    path.write_text(GOOD + """\
  - kind: zigbee2mqtt
    name: z2m
    broker:
      username: lockbridge
      password_file: secrets/broker.password
upstream:
  url: wss://cloud.example.com/bridge
  token_file: upstream.token
  ca_file: /etc/ssl/certs/ca.pem
""")
    loaded = load_config(path)
    assert loaded.config.upstream is not None
    assert loaded.config.upstream.token_file == folder / "upstream.token"
    assert loaded.config.upstream.ca_file == Path("/etc/ssl/certs/ca.pem")
    assert loaded.config.state_dir == folder / "state"
    z2m = loaded.drivers[1]
    assert z2m.broker.password_file == folder / "secrets" / "broker.password"


def test_engine_settings_pass_each_device_override_as_the_configuration_has_it(
        tmp_path: Path) -> None:
    from bridge.clock import FakeClock
    from bridge.config import DeviceOverride, load_config
    from bridge.daemon import engine_settings
    from bridge.timesync import ClockGuard

    text = GOOD + """\
properties:
  - {id: beach, time_zone: Europe/Lisbon}
  - {id: city, time_zone: America/New_York}
devices:
  front: {property: city, pin_length: 5}
"""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    loaded = load_config(path)
    settings = engine_settings(loaded, ClockGuard(FakeClock(), None))
    assert settings.device_overrides == {"front": DeviceOverride(property="city", pin_length=5)}
    assert settings.device_overrides["front"] is loaded.config.devices["front"]
    assert settings.default_time_zone("sim", "front") == "America/New_York"
    assert settings.default_time_zone("sim", "back") is None
