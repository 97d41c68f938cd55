"""Request models of every route: what the handlers validate with and /openapi.json shows.

Field names and types follow Seam's. Fields Seam's SDK may send that lockbridge has no use
for (`sync`, `attempt_for_offline_device`, ...) are accepted and ignored, so that SDK calls work
unchanged; any other unknown field is refused (`invalid_input`).
"""

from __future__ import annotations

import functools
import typing
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.instants import Instant

Limit = Annotated[int, Field(ge=1, le=10000, description="Most records to return.")]
Pin = Annotated[str, Field(pattern=r"^[0-9]{1,12}$", description="A PIN of digits only.")]
Name = Annotated[str, Field(max_length=200)]
Cursor = Annotated[str, Field(max_length=200, description="`next_page_cursor` of the "
                                                         "previous page.")]
Ignored = Annotated[bool | None, Field(description="Accepted for compatibility; ignored.")]


class Request(BaseModel):
    """Base of every request: unknown fields are refused, values are frozen.

    A model's validator is built by its first request (`defer_build`), not at import: the
    API's 50 models cost 10 to 20 ms before READY, and most routes of a bridge are never
    called."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# -- devices ---------------------------------------------------------------------------------


class DevicesList(Request):
    """`/devices/list`."""

    device_ids: list[UUID] | None = None
    device_type: Annotated[str, Field(max_length=100)] | None = None
    device_types: list[Annotated[str, Field(max_length=100)]] | None = None
    manufacturer: Annotated[str, Field(max_length=200)] | None = None
    connected_account_id: UUID | None = None
    connected_account_ids: list[UUID] | None = None
    created_before: Instant | None = None
    search: Annotated[str, Field(max_length=200)] | None = None
    limit: Limit | None = None
    page_cursor: Cursor | None = None


class DevicesGet(Request):
    """`/devices/get`: by `device_id` or by `name`."""

    device_id: UUID | None = None
    name: Name | None = None

    @model_validator(mode="after")
    def _one_key(self) -> DevicesGet:
        if self.device_id is None and self.name is None:
            raise ValueError("give device_id or name")
        return self


class DevicesUpdate(Request):
    """`/devices/update`: take a lock out of lockbridge, or switch its backup pool on."""

    device_id: UUID
    is_managed: bool | None = None
    backup_access_code_pool_enabled: bool | None = None


class UnmanagedDevicesUpdate(Request):
    """`/devices/unmanaged/update`: bring an unmanaged lock back under lockbridge."""

    device_id: UUID
    is_managed: bool | None = None


# -- access codes ----------------------------------------------------------------------------


class AccessCodesCreate(Request):
    """`/access_codes/create`: ongoing without times, time-bound with `starts_at`/`ends_at`."""

    device_id: UUID
    name: Name | None = None
    code: Pin | None = None
    common_code_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    preferred_code_length: Annotated[int, Field(ge=1, le=12)] | None = None
    allow_external_modification: bool | None = None
    is_external_modification_allowed: bool | None = None
    use_backup_access_code_pool: bool | None = None
    is_offline_access_code: Literal[False] | None = None
    use_offline_access_code: Literal[False] | None = None
    is_one_time_use: Literal[False] | None = None
    max_time_rounding: Literal["1hour", "1day", "1h", "1d"] | None = None
    attempt_for_offline_device: Ignored = None
    prefer_native_scheduling: Ignored = None
    sync: Ignored = None

    @model_validator(mode="after")
    def _times(self) -> AccessCodesCreate:
        if (self.starts_at is None) != (self.ends_at is None):
            raise ValueError("a time-bound code needs both starts_at and ends_at")
        return self


class AccessCodesList(Request):
    """`/access_codes/list`: one device's codes, some codes by id, or all."""

    device_id: UUID | None = None
    access_code_ids: list[UUID] | None = None
    search: Annotated[str, Field(max_length=200)] | None = None
    limit: Limit | None = None
    page_cursor: Cursor | None = None


class AccessCodesGet(Request):
    """`/access_codes/get` (and the unmanaged one): by id, or by device and PIN."""

    access_code_id: UUID | None = None
    device_id: UUID | None = None
    code: Pin | None = None

    @model_validator(mode="after")
    def _one_key(self) -> AccessCodesGet:
        if self.access_code_id is None and (self.device_id is None or self.code is None):
            raise ValueError("give access_code_id, or both device_id and code")
        return self


class AccessCodesUpdate(Request):
    """`/access_codes/update`."""

    access_code_id: UUID
    device_id: UUID | None = None
    name: Name | None = None
    code: Pin | None = None
    type: Literal["ongoing", "time_bound"] | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    allow_external_modification: bool | None = None
    is_external_modification_allowed: bool | None = None
    use_backup_access_code_pool: bool | None = None
    is_managed: Literal[True] | None = None
    attempt_for_offline_device: Ignored = None
    sync: Ignored = None


class AccessCodesDelete(Request):
    """`/access_codes/delete`."""

    access_code_id: UUID
    device_id: UUID | None = None
    sync: Ignored = None


class GenerateCode(Request):
    """`/access_codes/generate_code`."""

    device_id: UUID


class PullBackup(Request):
    """`/access_codes/pull_backup_access_code`."""

    access_code_id: UUID


# -- unmanaged access codes ------------------------------------------------------------------


class UnmanagedList(Request):
    """`/access_codes/unmanaged/list`."""

    device_id: UUID
    search: Annotated[str, Field(max_length=200)] | None = None
    limit: Limit | None = None
    page_cursor: Cursor | None = None


class ConvertToManaged(Request):
    """`/access_codes/unmanaged/convert_to_managed`."""

    access_code_id: UUID
    allow_external_modification: bool | None = None
    is_external_modification_allowed: bool | None = None
    force: Ignored = None
    sync: Ignored = None


class UnmanagedDelete(Request):
    """`/access_codes/unmanaged/delete`."""

    access_code_id: UUID
    sync: Ignored = None


# -- events and action attempts --------------------------------------------------------------


class EventsList(Request):
    """`/events/list`: oldest first, filtered by any of these."""

    device_id: UUID | None = None
    device_ids: list[UUID] | None = None
    access_code_id: UUID | None = None
    access_code_ids: list[UUID] | None = None
    event_type: Annotated[str, Field(max_length=100)] | None = None
    event_types: list[Annotated[str, Field(max_length=100)]] | None = None
    event_ids: list[UUID] | None = None
    since: Instant | None = None
    between: Annotated[list[Instant], Field(min_length=2, max_length=2)] | None = None
    limit: Limit | None = None
    unstable_offset: Annotated[int, Field(ge=0)] | None = None


class EventsGet(Request):
    """`/events/get`: by id, or the latest event of a type on a device."""

    event_id: UUID | None = None
    event_type: Annotated[str, Field(max_length=100)] | None = None
    device_id: UUID | None = None

    @model_validator(mode="after")
    def _one_key(self) -> EventsGet:
        if self.event_id is None and (self.event_type is None or self.device_id is None):
            raise ValueError("give event_id, or both device_id and event_type")
        return self


class ActionAttemptsGet(Request):
    """`/action_attempts/get`."""

    action_attempt_id: UUID


class ActionAttemptsList(Request):
    """`/action_attempts/list`."""

    action_attempt_ids: list[UUID] | None = None
    device_id: UUID | None = None
    limit: Limit | None = None
    page_cursor: Cursor | None = None


class Empty(Request):
    """A route without parameters."""


@functools.cache  # a model's fields never change; asked on every request
def list_fields(model: type[Request]) -> frozenset[str]:
    """Names of the fields that hold arrays (repeated keys in a query string)."""
    names = set()
    for name, info in model.model_fields.items():
        if _is_list(info.annotation):
            names.add(name)
    return frozenset(names)


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    return any(_is_list(arg) for arg in typing.get_args(annotation))


# -- lockbridge's own: networks a driver runs itself (a Zigbee radio) -----------------------


class NetworkPermitJoin(Request):
    """`/lockbridge/networks/permit_join`: open a driver's network to a new lock for a while."""

    driver: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    seconds: Annotated[int, Field(ge=1, le=3600)] = 60


class NetworkRemoveDevice(Request):
    """`/lockbridge/networks/remove_device`: make one lock leave its driver's network."""

    device_id: UUID

