"""docs/configuration.md names every key of the sections it documents key by key, so a key
added to a configuration model cannot go undocumented."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from bridge.config import (
    AutomationsConfig,
    Config,
    DeclaredReservation,
    DeclaredSpace,
    TimeSlotRule,
)
from bridge.portal.config import PortalConfig
from tests.paths import ROOT

PAGE = (ROOT / "docs" / "configuration.md").read_text()


def section(heading: str) -> str:
    """The page's text under `### heading`, up to the next heading."""
    start = PAGE.index(f"### {heading}\n")
    following = re.search(r"^#{2,3} ", PAGE[start + 4:], re.MULTILINE)
    return PAGE[start:start + 4 + following.start()] if following else PAGE[start:]


def undocumented(model: type[BaseModel], text: str) -> list[str]:
    """The model's keys that `text` never names as `key` (or `key[]`)."""
    return [name for name in model.model_fields
            if f"`{name}`" not in text and f"`{name}[]`" not in text]


@pytest.mark.parametrize(("heading", "model"), [
    ("`portal`", PortalConfig),
    ("`spaces[]` and `automations`", DeclaredSpace),
    ("`spaces[]` and `automations`", DeclaredReservation),
    ("`spaces[]` and `automations`", AutomationsConfig),
    ("`spaces[]` and `automations`", TimeSlotRule),
])
def test_every_key_of_a_section_is_documented(heading: str, model: type[BaseModel]) -> None:
    assert not undocumented(model, section(heading)), heading


def test_every_top_level_key_has_a_row_or_a_section() -> None:
    table = PAGE[PAGE.index("## Top-level keys\n"):PAGE.index("\n### ")]
    # Rows name a key alone (`state_dir`), with its subkey (`bridge.id`) or as a list (`codes[]`).
    missing = [name for name in Config.model_fields
               if f"| `{name}" not in table and f", `{name}" not in table
               and f"\n### `{name}`\n" not in PAGE]
    assert not missing
