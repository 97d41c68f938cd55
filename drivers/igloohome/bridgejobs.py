"""Custom PINs through an igloohome Bridge: jobs sent one at a time per bridge and polled.

`POST /devices/{lock}/jobs/bridges/{bridge}` with job 4 (create a PIN, with its window) or 5
(delete a PIN) answers a `jobId`; `GET /jobs/{jobId}` says `completed` (or `jobStatus` 0) when
the lock has it and `jobStatus` 2 when it failed (the published material gives no reason: the
lock out of range, already holding the PIN, or full look the same). A bridge refuses a job
while it is offline or the lock is not linked to it, and while it has 20 or more pending.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from bridge.clock import Clock
from bridge.driver import CommandRejected, LocalWindow, RejectReason, RetryLater
from bridge.model import AccessCodeErrorCode
from drivers.igloohome.api import Account, ApiRefusal
from drivers.igloohome.config import Config
from drivers.igloohome.records import CodeBook, CodeRecord
from drivers.igloohome.windows import job_date

_LOG = logging.getLogger(__name__)
CREATE_PIN, DELETE_PIN = 4, 5
DURATION_PIN = 4  # pinType of a PIN with a start and an end (the only one published)
JOB_DONE, JOB_FAILED = 0, 2
# An ongoing code is sent as a duration PIN this long (no other pinType is published).
ONGOING = timedelta(days=3650)
_MINUTE = timedelta(minutes=1)


class BridgeLock(Protocol):
    device_id: str
    bridge_id: str | None


class BridgeJobs:
    """The job calls, one queue per bridge."""

    def __init__(self, config: Config, clock: Clock, account: Account) -> None:
        self._config = config
        self._clock = clock
        self._account = account
        self._queues: dict[str, asyncio.Lock] = {}

    def window(self, zone: str | None, window: LocalWindow | None) -> tuple[str, str]:
        """The job's startDate and endDate: the window to the minute (start floored, end
        raised), in its zone; an ongoing code from this minute for ONGOING."""
        if window is None:
            start = self._clock.now().astimezone(ZoneInfo(zone or "UTC"))
            start = start.replace(second=0, microsecond=0)
            return job_date(start), job_date(start + ONGOING)
        tz = ZoneInfo(window.zone or zone or "UTC")
        start = window.starts_at.replace(second=0, microsecond=0)
        end = window.ends_at.replace(second=0, microsecond=0)
        if end != window.ends_at:
            end += _MINUTE
        return job_date(start.replace(tzinfo=tz)), job_date(end.replace(tzinfo=tz))

    def longest_job_s(self) -> float:
        """The longest one job may take: a full queue's pauses, then the job itself."""
        busy = sum(self._config.busy_retry_s * 2.0 ** n for n in range(self._config.busy_retries))
        return busy + self._config.job_timeout_s

    async def create(self, lock: BridgeLock, record: CodeRecord, name: str,
                     book: CodeBook) -> None:
        """Have the bridge put the record's PIN on the lock; the record is kept with its job
        while it runs (a command that gave up resumes the same job), and once done."""
        async with self._queue(lock):
            if record.job_id is None:
                pin = book.pin(record, lock.device_id)
                record.job_id = await self._submit(lock, CREATE_PIN, {
                    "accessName": (name.strip() or "lockbridge")[:60], "pin": pin,
                    "pinType": DURATION_PIN, "startDate": record.start,
                    "endDate": record.end})
                book.put(lock.device_id, record)
            done = await self._wait(record.job_id)
            if done is None:
                raise RetryLater("the igloohome bridge has not finished putting the PIN on the "
                                 f"lock in {self._config.job_timeout_s:.0f} s")
            record.job_id = None
            if not done:
                book.drop(lock.device_id, record.slot)
                raise RetryLater("the igloohome bridge could not put the PIN on the lock (the "
                                 "job failed: the lock out of the bridge's range, full, or "
                                 "holding the PIN already; Igloohome does not say which)")
            book.put(lock.device_id, record)

    async def delete(self, lock: BridgeLock, record: CodeRecord, book: CodeBook) -> None:
        """Have the bridge take the record's PIN off the lock."""
        async with self._queue(lock):
            job_id = await self._submit(lock, DELETE_PIN, {"pin": book.pin(record,
                                                                             lock.device_id)})
            done = await self._wait(job_id)
        if done is None:
            raise RetryLater("the igloohome bridge has not finished deleting the PIN in "
                             f"{self._config.job_timeout_s:.0f} s")
        if not done:
            raise RetryLater("the igloohome bridge could not delete the PIN from the lock (the "
                             "job failed: the lock out of range, or the PIN no longer on it)")

    @staticmethod
    def offline_error(refusal: ApiRefusal) -> CommandRejected:
        why = ("the lock is not linked to its igloohome bridge"
               if refusal.error == "LockNotLinkedToBridge" else "the igloohome bridge is offline")
        return CommandRejected(
            RejectReason.OTHER, f"Igloohome bridge is offline: {why}; the code is sent again "
            "once the lock is reachable", error_code=AccessCodeErrorCode.IGLOOHOME_BRIDGE_OFFLINE)

    # -- internals ----------------------------------------------------------------------------

    def _queue(self, lock: BridgeLock) -> asyncio.Lock:
        return self._queues.setdefault(lock.bridge_id or lock.device_id, asyncio.Lock())

    async def _submit(self, lock: BridgeLock, job_type: int, data: dict[str, Any]) -> str:
        """Send one job; a bridge with a full queue is asked again after a doubling pause."""
        if lock.bridge_id is None:
            raise RetryLater(f"lock {lock.device_id} has no igloohome bridge")
        path = f"/devices/{lock.device_id}/jobs/bridges/{lock.bridge_id}"
        for attempt in range(self._config.busy_retries + 1):
            try:
                answer = await self._account.call("POST", path, {"jobType": job_type,
                                                                 "jobData": data})
            except ApiRefusal as refusal:
                if refusal.error != "TooManyPendingJobs":
                    raise
                if attempt == self._config.busy_retries:
                    raise CommandRejected(
                        RejectReason.OTHER, "Igloohome bridge has too many pending jobs in the "
                        "queue (20 or more); the code is sent again once it is changed or the "
                        "lock reconnects", error_code=AccessCodeErrorCode
                        .IGLOOHOME_BRIDGE_TOO_MANY_PENDING_JOBS) from None
                _LOG.info("igloohome %s: bridge %s has too many pending jobs; asking again",
                          self._config.name, lock.bridge_id)
                await self._clock.sleep(self._config.busy_retry_s * 2 ** attempt)
                continue
            job_id = answer.get("jobId") if isinstance(answer, dict) else None
            if not isinstance(job_id, str) or not job_id:
                raise RetryLater("Igloohome's job answer has no jobId")
            return job_id
        raise AssertionError("unreachable")  # pragma: no cover

    async def _wait(self, job_id: str) -> bool | None:
        """True once the job is done, False if it failed, None after job_timeout_s."""
        deadline = self._clock.monotonic() + self._config.job_timeout_s
        while True:
            status = await self._status(job_id)
            if status is not None:
                return status
            left = deadline - self._clock.monotonic()
            if left <= 0:
                return None
            await self._clock.sleep(min(self._config.job_poll_s, left))

    async def _status(self, job_id: str) -> bool | None:
        answer = await self._account.call("GET", f"/jobs/{job_id}")
        if not isinstance(answer, dict):
            return None
        if answer.get("completed") is True:
            return True
        response = answer.get("jobResponse")
        status = response.get("jobStatus") if isinstance(response, dict) else None
        if status == JOB_DONE:
            return True
        if status == JOB_FAILED:
            return False
        return None


