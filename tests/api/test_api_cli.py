"""`lockbridge devices | codes | unmanaged` over the real daemon's API: tables and --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api_helpers import start_daemon, wait_until

pytestmark = pytest.mark.slow


def test_cli_commands_drive_the_api(tmp_path: Path) -> None:
    d = start_daemon(tmp_path)
    try:
        table = d.cli("devices", "list").stdout
        assert "Front door" in table and "Back door" in table and "DEVICE ID" in table
        devices = json.loads(d.cli("devices", "list", "--json").stdout)
        front = next(x["device_id"] for x in devices if x["display_name"] == "Front door")
        assert json.loads(d.cli("devices", "get", "Front door", "--json").stdout)[
            "device_id"] == front
        made = json.loads(d.cli("codes", "create", "--device", "Front door", "--name", "Cli",
                                "--code", "31415", "--json").stdout)
        code_id = made["access_code"]["access_code_id"]
        wait_until(lambda: "31415" in d.slots("front").values(), what="code on the lock")
        listed = d.cli("codes", "list", "--device", front).stdout
        assert code_id in listed and "31415" not in listed and "*****" in listed
        d.cli("codes", "update", code_id, "--code", "27182")
        wait_until(lambda: "27182" in d.slots("front").values(), what="new PIN on the lock")
        unmanaged = json.loads(d.cli("unmanaged", "list", "--device", "Front door",
                                     "--json").stdout)
        assert sorted(u["code"] for u in unmanaged) == ["86420", "97531"]
        d.cli("unmanaged", "convert", unmanaged[0]["access_code_id"])
        d.cli("unmanaged", "delete", unmanaged[1]["access_code_id"])
        out = d.cli("codes", "delete", code_id).stdout
        assert "DELETE_ACCESS_CODE" in out
        wait_until(lambda: "27182" not in d.slots("front").values(), what="code removed")
        refused = d.cli("codes", "pull-backup", unmanaged[0]["access_code_id"], check=False)
        assert refused.returncode == 1 and "invalid_input" in refused.stderr
        missing = d.cli("devices", "get", "Nowhere", check=False)
        assert missing.returncode == 1 and "device_not_found" in missing.stderr
    finally:
        log = d.stop()
    for pin in ("31415", "27182", "86420", "97531"):
        assert pin not in log
