"""Spaces, declared reservations and automation rules in the configuration: `check-config`
reports each mistake as FILE:LINE: key.path: reason, like the rest of the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import load_config
from bridge.reservations.decide import SlotRule
from bridge.reservations.starter import rules_from

GOOD = """\
state_dir: ./state
drivers:
  - kind: simulator
    name: sim
    locks:
      - {id: front, name: Front door}
automations:
  pin_source_by_customer: {pm-2: generated}
  time_slots:
    front: {minutes: 240, widen: false}
spaces:
  - key: flat
    name: Flat
    devices: [front]
    reservations:
      - {key: stay-1, guest: Ana, starts_at: "+1h", ends_at: "+2d", code: "735193"}
"""


def test_a_good_file_passes_and_gives_its_rules(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    loaded = load_config(path)
    assert loaded.config.spaces[0].reservations[0].code == "735193"
    rules = rules_from(loaded.config.automations)
    assert rules.slot_rules == {"front": SlotRule(240, widen=False)}
    assert not rules.preferred_allowed("pm-2") and rules.preferred_allowed("pm-1")


@pytest.mark.parametrize(("text", "line", "path", "reason"), [
    (GOOD + "  - key: flat\n    name: Again\n", 17, "spaces.1.key", "used twice"),
    (GOOD.replace('starts_at: "+1h"', 'starts_at: "tomorrow"'), 16,
     "spaces.0.reservations.0.starts_at", "neither an ISO 8601 time nor an offset"),
    (GOOD.replace('code: "735193"', 'code: "73a5"'), 16, "spaces.0.reservations.0.code",
     "pattern"),
    (GOOD.replace("minutes: 240", "minutes: 0"), 10, "automations.time_slots.front.minutes",
     "greater than or equal to 1"),
    (GOOD.replace("pm-2: generated", "pm-2: sometimes"), 8,
     "automations.pin_source_by_customer.pm-2", "'preferred' or 'generated'"),
    (GOOD.replace("    devices: [front]", "    devices: [front]\n    colour: blue"), 15,
     "spaces.0.colour", "unknown key"),
])
def test_each_mistake_is_reported_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, path: str,
    reason: str,
) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(text)
    assert main(["check-config", str(file)]) == 2
    err = capsys.readouterr().err
    matching = [e for e in err.splitlines() if e.startswith(f"{file}:{line}: {path}: ")]
    assert matching, err
    assert reason in matching[0]
