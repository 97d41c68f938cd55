"""Restore from the upstream: a bridge whose state is gone gets its managed codes back from the
upstream and adopts them where they already are on the locks, without writing them again.

`lockbridge restore --from-upstream` prepares an empty store with RESTORE_PENDING; the daemon,
once its drivers have registered the locks, asks the upstream (`hello.restore_wanted`), commits
the codes marked awaiting adoption (`CodeSync.awaiting_adoption`) through the application layer
(`Application.restore_codes`, the restore's end kept with them as a `RestoreReceipt`), and the
engine's first full read of each lock claims the slot that holds each code's PIN; a code not
found on its lock is then written as usual.
docs/reliability.md, "Lost state".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge.application import Application, RestoreReceipt
from bridge.model import AccessCodeStatus, AccessCodeType
from bridge.records import CodeRecord, CodeSync
from bridge.statecheck import CONTINUE_AFTER_UPSTREAM, RESTORED_FROM, StateLost
from bridge.stateview import StateView
from bridge.store import Tx

if TYPE_CHECKING:
    from bridge.daemon import Bridge

_LOG = logging.getLogger(__name__)
# kv keys: a restore from the upstream is still to be fetched; the store came from one.
RESTORE_PENDING = "store.restore_pending"


def code_from_upstream(obj: dict[str, Any], now: datetime) -> CodeRecord | None:
    """Pure: a managed code awaiting adoption, from an upstream `access_code` object; None for
    a backup code (the pool refills itself) or a code without a PIN."""
    if obj.get("is_backup") or not obj.get("code"):
        return None
    removing = obj.get("status") == AccessCodeStatus.REMOVING.value
    return CodeRecord(
        access_code_id=str(obj["access_code_id"]), device_id=str(obj["device_id"]),
        created_at=_when(obj.get("created_at")) or now,
        type=AccessCodeType(obj.get("type", AccessCodeType.ONGOING.value)),
        name=obj.get("name"), code=str(obj["code"]),
        starts_at=_when(obj.get("starts_at")), ends_at=_when(obj.get("ends_at")),
        status=AccessCodeStatus.REMOVING if removing else AccessCodeStatus.SETTING,
        deleted=removing, common_code_key=obj.get("common_code_key"),
        allow_external_modification=bool(obj.get("is_external_modification_allowed")),
        sync=CodeSync(awaiting_adoption=True),
    )


def prepare(tx: Tx) -> None:
    """Mark a new, empty store for a restore from the upstream at the next start."""
    tx.put_kv(RESTORE_PENDING, "upstream")
    tx.put_kv(RESTORED_FROM, "upstream")
    # Its own events (the locks registered at start) follow the upstream's numbers.
    tx.put_kv(CONTINUE_AFTER_UPSTREAM, "restored:0")


async def restore_if_pending(bridge: Bridge) -> None:
    """Fetch and commit the upstream's codes when the store is marked for it; StateLost when
    the upstream cannot be asked (the next start tries again)."""
    store, config = bridge.store, bridge.loaded.config
    if await store.read(lambda r: r.kv(RESTORE_PENDING)) is None:
        return
    if bridge.accept_fresh_state:
        # The operator gave up on the restore: start with what is on the locks, unmanaged.
        await store.write(lambda tx: tx.drop_kv(RESTORE_PENDING))
        _LOG.warning("restore from the upstream abandoned by the operator's choice "
                     "(--accept-fresh-state)")
        return
    if config.upstream is None or config.upstream.kind != "websocket":
        raise StateLost("the store waits for a restore from the upstream, but no websocket "
                        "upstream is configured (a NATS upstream cannot restore yet)",
                        bridge.loaded.path)
    from bridge.upstream.link import fetch_restore

    try:
        state = await fetch_restore(config.upstream, config.bridge.id)
    except Exception as exc:  # any failure to ask is the same to the operator: retry
        raise StateLost(f"the store waits for a restore from the upstream, which cannot be "
                        f"asked now ({exc})", bridge.loaded.path) from exc
    app = Application(bridge.engine)
    now = bridge.clock.now()
    codes = [c for c in (code_from_upstream(o, now) for o in
                         (state.access_codes if state else [])) if c is not None]
    codes = [c for c in codes if c.device_id in app.state.devices]
    await app.restore_codes(codes, RestoreReceipt(_declared(bridge, app.state, codes),
                                                  RESTORE_PENDING))
    _LOG.warning("restored %d managed codes from the upstream; each is looked for on its lock "
                 "before anything is written", len(codes))


def _declared(bridge: Bridge, state: StateView, codes: Sequence[CodeRecord]) -> dict[str, str]:
    """The `codes:` entries of the configuration that the restored codes are."""
    by_external = {d.external_id: d.device_id for d in state.devices.values()}
    found: dict[str, str] = {}
    for entry in bridge.loaded.config.codes:
        device_id = by_external.get(entry.device)
        for code in codes:
            if code.device_id == device_id and code.code == entry.code and not code.deleted:
                found[entry.key] = code.access_code_id
                break
    return found


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
