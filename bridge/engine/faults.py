"""The fault boundary's bookkeeping: an unexpected exception on one lock is logged, counted for
/metrics and shown on that lock as the device warning `lock_worker_fault`, never spread."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from bridge.engine.issues import drop_codes, with_issue
from bridge.engine.state import EngineState
from bridge.model import DeviceWarningCode

if TYPE_CHECKING:
    from bridge.engine.worker import LockWorker

_LOG = logging.getLogger("bridge.engine")

# A worker's fault warning stays until it has worked for 10 minutes without a fault.
FAULT_WARNING_HOLD_S = 600.0


class Faults:
    """Records unexpected exceptions per lock and clears their warning once work goes well."""

    def __init__(self, state: EngineState) -> None:
        self._state = state
        # device_id -> unexpected exceptions seen on that lock since start (for /metrics).
        self.counts: dict[str, int] = {}

    def count(self, device_id: str) -> None:
        """One more unexpected exception on a lock, with nothing else to record."""
        self.counts[device_id] = self.counts.get(device_id, 0) + 1

    async def note(self, device_id: str, exc: BaseException, where: str) -> None:
        """An unexpected exception on one lock: logged (with its traceback the first time in a
        row), counted for /metrics, and shown on the lock as a device warning."""
        worker = self._state.workers.get(device_id)
        self.count(device_id)
        if worker is None:
            _LOG.error("lock %s: unexpected error in %s", device_id, where, exc_info=exc)
            return
        worker.faults.failures += 1
        worker.last_fault_at = self._state.clock.monotonic()
        what = f"{type(exc).__name__} in {where}"
        if worker.faults.failures == 1:
            _LOG.error("lock %s: unexpected error (%s); its work restarts after a pause, other "
                       "locks carry on", device_id, what, exc_info=exc)
        else:
            _LOG.warning("lock %s: unexpected error again (%s, %d in a row): %s", device_id,
                         what, worker.faults.failures, exc)
        message = (f"lockbridge hit an unexpected error working on this lock ({what}) and "
                   f"retries after a pause; other locks are not affected. The log has the "
                   f"details")
        try:
            await self._warn(device_id, message)
        except Exception:  # a store that cannot write must not break the boundary
            _LOG.warning("lock %s: could not record the fault warning", device_id)

    async def _warn(self, device_id: str, message: str) -> None:
        state = self._state
        async with state.lock_for(device_id):
            device = state.devices.get(device_id)
            if device is None or any(w.code == DeviceWarningCode.LOCK_WORKER_FAULT
                                     and w.message == message for w in device.warnings):
                return
            warnings = drop_codes(device.warnings, {DeviceWarningCode.LOCK_WORKER_FAULT})
            warnings = with_issue(warnings, DeviceWarningCode.LOCK_WORKER_FAULT, message,
                                  state.clock.now())
            await state.commit(devices=[replace(device, warnings=warnings)])

    async def cleared(self, device_id: str) -> None:
        """The lock's work has gone well for a while since its last fault: drop the warning."""
        state = self._state
        state.workers[device_id].faults.reset()
        async with state.lock_for(device_id):
            device = state.devices[device_id]
            if any(w.code == DeviceWarningCode.LOCK_WORKER_FAULT for w in device.warnings):
                _LOG.info("lock %s: working normally again", device_id)
                await state.commit(devices=[replace(device, warnings=drop_codes(
                    device.warnings, {DeviceWarningCode.LOCK_WORKER_FAULT}))])

    @staticmethod
    def resume_after(worker: LockWorker) -> None:
        """Before working again, read back every slot a command was in flight for, as after a
        restart: the fault may have struck between sending a command and recording its answer."""
        worker.busy = False
        worker.waiting = False
        worker.pending_reads.update(slot for slot in worker.intents if slot >= 0)
