"""Request models of the automation routes: spaces, customers' push_data and delete_data,
access grants, access methods (Seam's) and automation runs (lockbridge's own).

Field names follow Seam's SDK. Parameters lockbridge takes but does not act on (entrances,
customer data, customization profiles) are accepted and ignored; the collections of push_data
it does not act on are accepted and named in the run."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.api.models import Cursor, Limit, Name, Pin, Request
from bridge.instants import Instant

Key = Annotated[str, Field(min_length=1, max_length=200)]
Keys = list[Key] | None
Anything = Any | None


class _Loose(BaseModel):
    """A pushed item: its known fields checked, other fields accepted (a PMS sends more)."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)


# -- spaces ------------------------------------------------------------------------------------


class SpacesCreate(Request):
    """`/spaces/create`."""

    name: Name
    space_key: Key | None = None
    device_ids: list[UUID] = []
    customer_key: Key | None = None
    acs_entrance_ids: list[UUID] | None = None
    connected_account_ids: list[UUID] | None = None
    customer_data: Anything = None


class SpacesGet(Request):
    """`/spaces/get` and `/spaces/delete`: by `space_id` or `space_key`."""

    space_id: UUID | None = None
    space_key: Key | None = None

    @model_validator(mode="after")
    def _one_key(self) -> SpacesGet:
        if self.space_id is None and self.space_key is None:
            raise ValueError("give space_id or space_key")
        return self


class SpacesList(Request):
    """`/spaces/list`."""

    customer_key: Key | None = None
    space_key: Key | None = None
    search: Annotated[str, Field(max_length=200)] | None = None
    limit: Limit | None = None
    page_cursor: Cursor | None = None


class SpacesUpdate(SpacesGet):
    """`/spaces/update`."""

    name: Name | None = None
    device_ids: list[UUID] | None = None
    acs_entrance_ids: list[UUID] | None = None
    customer_data: Anything = None


class SpacesDevices(Request):
    """`/spaces/add_devices` and `/spaces/remove_devices`."""

    space_id: UUID
    device_ids: list[UUID]


# -- customers ---------------------------------------------------------------------------------


class PushedIdentity(_Loose):
    """A user identity of push_data."""

    user_identity_key: Key
    name: Name | None = None
    full_name: Name | None = None
    email_address: Annotated[str, Field(max_length=320)] | None = None
    phone_number: Annotated[str, Field(max_length=40)] | None = None


class PushedGuest(_Loose):
    """A guest of push_data: a user identity by another name."""

    guest_key: Key
    name: Name | None = None
    email_address: Annotated[str, Field(max_length=320)] | None = None
    phone_number: Annotated[str, Field(max_length=40)] | None = None


class PushedReservation(_Loose):
    """A reservation of push_data; `preferred_code` is lockbridge's name for the PIN asked
    for."""

    reservation_key: Key
    starts_at: Instant
    ends_at: Instant
    space_keys: list[Key] = []
    user_identity_key: Key | None = None
    guest_key: Key | None = None
    name: Name | None = None
    preferred_code: Pin | None = None


class PushData(Request):
    """`/customers/push_data`."""

    customer_key: Key
    user_identities: list[PushedIdentity] | None = None
    guests: list[PushedGuest] | None = None
    reservations: list[PushedReservation] | None = None
    access_grants: list[dict[str, Any]] | None = None
    bookings: list[dict[str, Any]] | None = None
    buildings: list[dict[str, Any]] | None = None
    common_areas: list[dict[str, Any]] | None = None
    facilities: list[dict[str, Any]] | None = None
    listings: list[dict[str, Any]] | None = None
    properties: list[dict[str, Any]] | None = None
    property_listings: list[dict[str, Any]] | None = None
    residents: list[dict[str, Any]] | None = None
    rooms: list[dict[str, Any]] | None = None
    sites: list[dict[str, Any]] | None = None
    spaces: list[dict[str, Any]] | None = None
    staff_members: list[dict[str, Any]] | None = None
    tenants: list[dict[str, Any]] | None = None
    units: list[dict[str, Any]] | None = None
    users: list[dict[str, Any]] | None = None
    customization_profile_id: Anything = None
    low_battery_alert_threshold: Anything = None


# Collections of push_data lockbridge acts on; the others are named in the run as ignored.
PUSH_ACTED_ON = frozenset({"customer_key", "user_identities", "guests", "reservations"})


class DeleteData(Request):
    """`/customers/delete_data`."""

    customer_keys: Keys = None
    reservation_keys: Keys = None
    user_identity_keys: Keys = None
    guest_keys: Keys = None
    space_keys: Keys = None
    access_grant_keys: Keys = None
    booking_keys: Keys = None
    building_keys: Keys = None
    common_area_keys: Keys = None
    facility_keys: Keys = None
    listing_keys: Keys = None
    property_keys: Keys = None
    property_listing_keys: Keys = None
    resident_keys: Keys = None
    room_keys: Keys = None
    staff_member_keys: Keys = None
    tenant_keys: Keys = None
    unit_keys: Keys = None
    user_keys: Keys = None


DELETE_ACTED_ON = frozenset({"customer_keys", "reservation_keys", "user_identity_keys",
                             "guest_keys", "space_keys", "access_grant_keys"})


# -- access grants and methods -----------------------------------------------------------------


class RequestedMethod(BaseModel):
    """One of `requested_access_methods`: lockbridge issues PIN codes only."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    mode: Literal["code"]
    code: Pin | None = None


class GrantIdentity(BaseModel):
    """`user_identity` of `/access_grants/create`."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    user_identity_key: Key | None = None
    full_name: Name | None = None
    email_address: Annotated[str, Field(max_length=320)] | None = None
    phone_number: Annotated[str, Field(max_length=40)] | None = None


class AccessGrantsCreate(Request):
    """`/access_grants/create`."""

    requested_access_methods: Annotated[list[RequestedMethod], Field(min_length=1,
                                                                     max_length=1)]
    starts_at: Instant | None = None
    ends_at: Instant
    device_ids: list[UUID] = []
    space_ids: list[UUID] = []
    space_keys: list[Key] = []
    name: Name | None = None
    access_grant_key: Key | None = None
    reservation_key: Key | None = None
    user_identity: GrantIdentity | None = None
    user_identity_id: UUID | None = None
    acs_entrance_ids: list[UUID] | None = None
    location_ids: list[UUID] | None = None
    location: Anything = None
    customization_profile_id: Anything = None


class AccessGrantsGet(Request):
    """`/access_grants/get`: by `access_grant_id` or `access_grant_key`."""

    access_grant_id: UUID | None = None
    access_grant_key: Key | None = None

    @model_validator(mode="after")
    def _one_key(self) -> AccessGrantsGet:
        if self.access_grant_id is None and self.access_grant_key is None:
            raise ValueError("give access_grant_id or access_grant_key")
        return self


class AccessGrantsUpdate(AccessGrantsGet):
    """`/access_grants/update`."""

    name: Name | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None


class AccessGrantsDelete(Request):
    """`/access_grants/delete`."""

    access_grant_id: UUID


class AccessGrantsList(Request):
    """`/access_grants/list`."""

    access_grant_ids: list[UUID] | None = None
    access_grant_key: Key | None = None
    customer_key: Key | None = None
    device_id: UUID | None = None
    space_id: UUID | None = None
    reservation_key: Key | None = None
    user_identity_id: UUID | None = None
    access_code_id: UUID | None = None
    acs_entrance_id: UUID | None = None
    acs_system_id: UUID | None = None
    location_id: UUID | None = None
    search: Annotated[str, Field(max_length=200)] | None = None
    limit: Limit | None = None
    page_cursor: Cursor | None = None


class AccessMethodsList(Request):
    """`/access_methods/list`."""

    access_grant_id: UUID | None = None
    access_grant_key: Key | None = None
    device_id: UUID | None = None
    space_id: UUID | None = None
    access_code_id: UUID | None = None
    acs_entrance_id: UUID | None = None
    limit: Limit | None = None
    page_cursor: Cursor | None = None


class AccessMethodsGet(Request):
    """`/access_methods/get`."""

    access_method_id: UUID


class AutomationRunsList(Request):
    """`/automation_runs/list` (lockbridge's own): newest last."""

    customer_key: Key | None = None
    reservation_key: Key | None = None
    trigger: Key | None = None
    limit: Limit | None = None
    page_cursor: Cursor | None = None
