"""When an access method is issued: every lock of it holds its PIN. Watches the engine's code
events and tells `access_method.issued` once (then `access_method.reissued` after a missing or
moved code was put back), carrying the keys that made it, never the PIN."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import replace

from bridge.application import Application
from bridge.model import Event, EventType
from bridge.reservations.apply import is_issued, method_codes
from bridge.reservations.records import AccessMethod
from bridge.reservations.state import AutomationState, Change, method_event_data, new_event

_LOG = logging.getLogger(__name__)


class Issuance:
    """Turns code events into access_method.issued / reissued."""

    def __init__(self, app: Application, state: AutomationState, lock: asyncio.Lock) -> None:
        self._app = app
        self._state = state
        self._lock = lock
        self._pending: set[str] = set()
        self._wake = asyncio.Event()

    def on_events(self, events: list[Event]) -> None:
        """The engine's listener: note the methods whose codes just changed."""
        codes = {e.access_code_id for e in events if e.access_code_id is not None}
        if not codes:
            return
        for method in self._state.methods.values():
            if codes.intersection(method.codes.values()):
                self._pending.add(method.access_method_id)
        if self._pending:
            self._wake.set()

    async def run(self) -> None:
        """Check noted methods until cancelled."""
        while True:  # until cancelled at shutdown
            await self._wake.wait()
            self._wake.clear()
            ids, self._pending = self._pending, set()
            try:
                async with self._lock:
                    await self.check_locked(ids)
            except Exception:  # the store failed: the methods are checked again next time
                _LOG.exception("access methods could not be checked")
                self._pending |= ids

    async def check_all(self) -> None:
        """Check every method (at start: codes may have been set while the daemon was down)."""
        async with self._lock:
            await self.check_locked(list(self._state.methods))

    async def check_locked(self, method_ids: Iterable[str]) -> None:
        """Tell of methods issued (or reissued) since last checked; the caller holds the
        automations' lock."""
        codes = self._app.state.codes
        changed: list[AccessMethod] = []
        events: list[Event] = []
        for method_id in method_ids:
            method = self._state.methods.get(method_id)
            if method is None or not is_issued(method, codes):
                continue
            if method.issued_at is not None and not method.reissue_pending:
                continue
            grant = self._state.grants.get(method.access_grant_id)
            if grant is None:
                continue
            kind = EventType.ACCESS_METHOD_REISSUED if method.issued_at is not None \
                else EventType.ACCESS_METHOD_ISSUED
            held = method_codes(method, codes)
            pin = next((c.code for c in held.values() if c is not None and c.code), None)
            events.append(new_event(self._app, kind, method_event_data(method, grant)))
            changed.append(replace(method, issued_at=method.issued_at or self._app.clock.now(),
                                   reissue_pending=False, issued_code=pin))
        if changed:
            await self._state.commit(self._app, Change(put=list(changed), events=events))
