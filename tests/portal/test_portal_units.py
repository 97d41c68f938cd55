"""The portal's parts without a browser: links and sessions in a real store on a fake clock,
the scope mapping, which create_portal options a box honours, what the pages show of codes
(PINs, backups) and the remedy of every problem lockbridge reports."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.clock import FakeClock
from bridge.engine import CodeRequest, EngineError
from bridge.model import (
    AccessCodeErrorCode,
    AccessCodeType,
    AccessCodeWarningCode,
    DeviceErrorCode,
    DeviceWarningCode,
)
from bridge.portal import links
from bridge.portal.create import CreatePortal, portal_options
from bridge.portal.remedies import REMEDIES, UNKNOWN, remedy_for
from bridge.portal.scope import PortalScope, ScopeError, scope_for
from bridge.portal.views import codes_view, lock_view
from bridge.secrets import PinCipher
from bridge.stateview import StateView
from bridge.store import Store
from drivers.simulator import SimLockSpec
from tests.conftest import START
from tests.harness import Harness

H = timedelta(hours=1)
OPTIONS = links.PortalOptions(customer_key="owner-1", read_only=True)


async def test_a_link_opens_until_it_expires_and_only_its_hash_is_kept(tmp_path: Path) -> None:
    clock = FakeClock(START)
    store = Store(tmp_path / "lockbridge.db", PinCipher(os.urandom(32)))
    await store.open()
    try:
        link = await links.create_link(store, OPTIONS, clock.now(), timedelta(hours=24))
        assert link.expires_at == START + 24 * H
        opened = await links.open_link(store, link.token, clock.now())
        assert opened == links.Opened(links.LinkState.VALID, OPTIONS)
        assert (await links.open_link(store, "x" + link.token, clock.now())).state is \
            links.LinkState.UNKNOWN
        assert (await links.open_link(store, "", clock.now())).state is links.LinkState.UNKNOWN

        token, session = await links.start_session(store, OPTIONS, clock.now(), 12 * H)
        assert await links.find_session(store, token, clock.now()) == session
        assert await links.find_session(store, None, clock.now()) is None
        assert await links.find_session(store, link.token, clock.now()) is None

        await clock.advance(24 * 3600)
        assert (await links.open_link(store, link.token, clock.now())).state is \
            links.LinkState.EXPIRED
        assert await links.find_session(store, token, clock.now()) is None
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "lockbridge.db") as conn:
        dump = "\n".join(conn.iterdump())
    assert link.token not in dump and token not in dump
    assert links.token_hash(link.token) in dump


def test_the_scope_file_names_each_customers_locks(tmp_path: Path) -> None:
    assert scope_for("anyone", None) is None
    path = tmp_path / "scope.yaml"
    path.write_text("owner-1: [dev-a, dev-b]\n")
    assert scope_for("owner-1", path) == frozenset({"dev-a", "dev-b"})
    assert scope_for("owner-2", path) is None  # no spaces: every lock
    assert PortalScope(frozenset({"dev-a"})).allows("dev-a")
    assert not PortalScope(frozenset({"dev-a"})).allows("dev-c")
    assert PortalScope(None).allows("dev-c")
    path.write_text("owner-1: dev-a\n")
    with pytest.raises(ScopeError):
        scope_for("owner-1", path)
    path.write_text("[not, a, mapping]\n")
    with pytest.raises(ScopeError):
        scope_for("owner-1", path)


@pytest.mark.parametrize(("body", "field"), [
    ({}, "customer_data"),
    ({"customer_data": {"customer_key": "k"}, "locale": "fr-FR"}, "locale"),
    ({"customer_data": {"customer_key": "k"},
      "customer_resources_filters": [{"field": "x", "operation": "=", "value": "y"}]},
     "customer_resources_filters"),
    ({"customer_data": {"customer_key": "k"}, "features": {"manage": True}}, "features"),
])
def test_options_a_box_cannot_honour_are_refused_by_name(body: dict[str, object],
                                                         field: str) -> None:
    with pytest.raises(EngineError) as refused:
        portal_options(CreatePortal.model_validate(body), None)  # type: ignore[arg-type]
    assert refused.value.kind == "invalid_input" and refused.value.field_name == field


def test_every_problem_lockbridge_reports_has_a_cause_and_a_remedy() -> None:
    codes = {c.value for enum in (AccessCodeErrorCode, AccessCodeWarningCode, DeviceErrorCode,
                                  DeviceWarningCode) for c in enum}
    assert codes <= set(REMEDIES)
    assert remedy_for("something_new") is UNKNOWN
    assert "connected elsewhere" in remedy_for("account_disconnected").cause


async def test_pins_show_to_sessions_allowed_and_backups_only_once_handed_out(
        harness_factory: Callable[..., Awaitable[Harness]]) -> None:
    h = await harness_factory([SimLockSpec("front", "Front")])
    dev = h.device_id("front")
    code = await h.engine.create_code(dev, CodeRequest(
        name="Guest", type=AccessCodeType.TIME_BOUND, starts_at=START + 2 * H,
        ends_at=START + 26 * H, use_backup_access_code_pool=True))
    await h.settle()
    state = StateView(h.engine)
    device = state.devices[dev]
    shown = codes_view(state, device, show_pins=True)
    guest = next(c for c in shown if c["access_code_id"] == code.access_code_id)
    assert guest["pin"] == code.code and guest["can_pull_backup"] and guest["origin"] is None
    pool = [c for c in shown if c["is_backup"]]
    assert pool and all(c["pin"] is None and c["backup_in_pool"] for c in pool)
    assert lock_view(state, device, 5)["backup_pool"] == {"ready": len(pool), "size": 5}

    backup, _ = await h.engine.pull_backup(code.access_code_id)
    shown = codes_view(state, state.devices[dev], show_pins=True)
    pulled = next(c for c in shown if c["access_code_id"] == backup.access_code_id)
    assert pulled["pin"] == backup.code and pulled["backup_for"] == "Guest"
    assert all(c["pin"] is None for c in codes_view(state, state.devices[dev], show_pins=False))
