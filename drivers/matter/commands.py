"""The Door Lock cluster's commands to one lock through the Matter server: timed where the
cluster needs it, BUSY and TIMEOUT sent again, every failure turned into the bridge's errors at
this one boundary."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bridge.clock import Clock
from bridge.driver import DriverError, RetryLater
from drivers.matter import mapping
from drivers.matter.client import LinkLost, MatterLink, ServerError

_LOG = logging.getLogger(__name__)

# Commands the cluster refuses outside a timed interaction (0xC6 otherwise).
_TIMED = frozenset({"SetUser", "ClearUser", "SetCredential", "ClearCredential"})


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How long and how often one command is tried."""

    timeout_s: float
    timed_request_ms: int
    busy_retries: int
    busy_retry_s: float


@dataclass(frozen=True, slots=True)
class CredentialStatus:
    """GetCredentialStatus for one PIN slot (the PIN itself never comes back)."""

    exists: bool
    user_index: int | None
    creator_fabric: int | None
    modifier_fabric: int | None
    next_index: int | None


class DoorLockCommands:
    """Door Lock commands to one endpoint of one node."""

    def __init__(self, link: Callable[[], MatterLink | None], clock: Clock, node_id: int,
                 endpoint: int, policy: CallPolicy,
                 on_offline: Callable[[], None] = lambda: None) -> None:
        self._link = link
        # Told when the server says the node is not ready (it learned before its next update).
        self._on_offline = on_offline
        self._clock = clock
        self.node_id = node_id
        self.endpoint = endpoint
        self._policy = policy

    async def invoke(self, command: str, payload: dict[str, Any]) -> Any:
        """One cluster command; its response (a dict for commands that answer, else None)."""
        args: dict[str, Any] = {"node_id": self.node_id, "endpoint_id": self.endpoint,
                                "cluster_id": mapping.DOOR_LOCK, "command_name": command,
                                "payload": payload}
        if command in _TIMED:
            args["timed_request_timeout_ms"] = self._policy.timed_request_ms
        return await self.call("device_command", args, command)

    async def read(self, attribute: int, timeout_s: float | None = None) -> Any:
        """One attribute read from the lock."""
        attribute_path = mapping.path(self.endpoint, mapping.DOOR_LOCK, attribute)
        answer = await self.call("read_attribute", {"node_id": self.node_id,
                                                    "attribute_path": attribute_path},
                                 f"reading {attribute_path}", timeout_s=timeout_s, retries=0)
        return answer.get(attribute_path) if isinstance(answer, dict) else answer

    async def call(self, command: str, args: dict[str, Any], what: str, *,
                   timeout_s: float | None = None, retries: int | None = None) -> Any:
        """Send `command`, again after BUSY or TIMEOUT; errors as the bridge's."""
        attempts = 1 + (self._policy.busy_retries if retries is None else retries)
        for attempt in range(1, attempts + 1):
            try:
                return await self._once(command, args, timeout_s or self._policy.timeout_s)
            except ServerError as exc:
                if attempt < attempts and mapping.retried(exc.error_code, exc.details):
                    _LOG.info("matter node %d: %s answered %s; sending it again", self.node_id,
                              what, exc.details)
                    await self._clock.sleep(self._policy.busy_retry_s * attempt)
                    continue
                if exc.error_code in mapping.OFFLINE_ERRORS:
                    self._on_offline()
                raise mapping.server_error(exc.error_code, exc.details, what) from exc
        raise RetryLater(f"{what}: no answer")  # pragma: no cover - the loop returns or raises

    async def _once(self, command: str, args: dict[str, Any], timeout_s: float) -> Any:
        link = self._link()
        if link is None:
            raise RetryLater("the Matter server is not connected")
        try:
            async with asyncio.timeout(timeout_s):
                return await link.call(command, args)
        except TimeoutError:
            raise RetryLater(f"node {self.node_id} did not answer within {timeout_s:g} s") \
                from None
        except LinkLost as exc:
            raise RetryLater(str(exc)) from exc

    # -- the cluster's commands ----------------------------------------------------------------

    async def credential_status(self, slot: int) -> CredentialStatus:
        answer = await self.invoke("GetCredentialStatus", {"credential": _pin_slot(slot)})
        answer = answer if isinstance(answer, dict) else {}
        return CredentialStatus(exists=bool(answer.get("credentialExists")),
                                user_index=_int(answer.get("userIndex")),
                                creator_fabric=_int(answer.get("creatorFabricIndex")),
                                modifier_fabric=_int(answer.get("lastModifiedFabricIndex")),
                                next_index=_int(answer.get("nextCredentialIndex")))

    async def user(self, user_index: int) -> dict[str, Any]:
        answer = await self.invoke("GetUser", {"userIndex": user_index})
        return answer if isinstance(answer, dict) else {}

    async def set_user(self, operation: int, user_index: int, name: str,
                       user_type: int) -> None:
        await self.invoke("SetUser", {
            "operationType": operation, "userIndex": user_index, "userName": name,
            "userUniqueID": None, "userStatus": mapping.USER_STATUS_ENABLED,
            "userType": user_type, "credentialRule": None})

    async def set_credential(self, operation: int, slot: int, pin: str,
                             user_index: int | None) -> int:
        """SetCredential; the status the lock answered (its error texts become exceptions)."""
        answer = await self.invoke("SetCredential", {
            "operationType": operation, "credential": _pin_slot(slot),
            "credentialData": base64.b64encode(pin.encode()).decode(),
            "userIndex": user_index, "userStatus": None, "userType": None})
        status = answer.get("status") if isinstance(answer, dict) else None
        return status if isinstance(status, int) else mapping.STATUS_FAILURE

    async def clear_user(self, user_index: int) -> None:
        await self.invoke("ClearUser", {"userIndex": user_index})

    async def set_year_day(self, user_index: int, starts: int, ends: int) -> None:
        await self.invoke("SetYearDaySchedule", {"yearDayIndex": 1, "userIndex": user_index,
                                                 "localStartTime": starts,
                                                 "localEndTime": ends})

    async def clear_year_day(self, user_index: int) -> None:
        await self.invoke("ClearYearDaySchedule", {"yearDayIndex": 1, "userIndex": user_index})


async def best_effort(step: Awaitable[None], what: str) -> None:
    """A cleanup step whose failure must not hide the error that made it necessary."""
    try:
        await step
    except DriverError as exc:
        _LOG.warning("matter: %s failed: %s", what, exc)


def _pin_slot(slot: int) -> dict[str, int]:
    return {"credentialType": mapping.CREDENTIAL_PIN, "credentialIndex": slot}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
