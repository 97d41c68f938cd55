"""`POST /customers/create_portal`: Seam's magic link, with the options that apply on a box."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from bridge.api.models import Request
from bridge.engine import EngineError, ErrorKind
from bridge.portal.config import PortalConfig
from bridge.portal.links import PortalLink, PortalOptions, create_link
from bridge.serialize import iso, workspace_id
from bridge.stateview import StateView
from bridge.store import Store

# The locales the portal's pages are written in.
TRANSLATED = ("en-US",)
SeamLocale = Literal["en-US", "pt-PT", "fr-FR", "it-IT", "es-ES", "de-DE", "nl-NL", "el-GR",
                     "pl-PL", "ru-RU"]


class CustomerData(BaseModel):
    """`customer_data`: the customer the portal is for. Only `customer_key` means something
    on a box; the rest of Seam's customer data (spaces, reservations...) is accepted and kept
    nowhere."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    customer_key: Annotated[str, Field(min_length=1, max_length=200)]


class DeepLink(BaseModel):
    """`deep_link`: the lock the portal opens on."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    device_id: UUID


class CreatePortal(Request):
    """`/customers/create_portal`."""

    customer_data: CustomerData | None = None
    customer_resources_filters: list[dict[str, Any]] | None = None
    customization_profile_id: Annotated[str, Field(max_length=200)] | None = None
    deep_link: DeepLink | None = None
    exclude_locale_picker: bool | None = None
    features: dict[str, Any] | None = None
    is_embedded: bool | None = None
    landing_page: dict[str, Any] | None = None
    locale: SeamLocale | None = None
    navigation_mode: Literal["full", "restricted"] | None = None
    read_only: bool | None = None
    # lockbridge's own: a shorter life than `portal.link_ttl_hours` (docs/api.md).
    expires_in_s: Annotated[float, Field(gt=0, le=90 * 86400)] | None = None


def portal_options(p: CreatePortal, state: StateView) -> PortalOptions:
    """The options a link keeps, or EngineError invalid_input for what a box cannot honour."""
    if p.customer_data is None:
        raise _invalid("customer_data", "give customer_data.customer_key: the customer the "
                       "portal is for")
    if p.customer_resources_filters:
        raise _invalid("customer_resources_filters", "lockbridge keeps no custom_metadata on "
                       "its locks, so a filter on it would match none")
    for name in ("customization_profile_id", "features", "landing_page"):
        if getattr(p, name):
            raise _invalid(name, f"lockbridge's portal has no {name}")
    if p.locale is not None and p.locale not in TRANSLATED:
        raise _invalid("locale", "the portal is translated into " + ", ".join(TRANSLATED))
    device_id = str(p.deep_link.device_id) if p.deep_link else None
    if device_id is not None:
        state.device(device_id)
    return PortalOptions(
        customer_key=p.customer_data.customer_key, read_only=bool(p.read_only),
        is_embedded=bool(p.is_embedded), navigation_mode=p.navigation_mode or "full",
        deep_link_device_id=device_id, locale=p.locale or TRANSLATED[0])


async def make_link(store: Store, config: PortalConfig, options: PortalOptions,
                    expires_in_s: float | None, now: Any) -> PortalLink:
    """Keep a new link; it lives `portal.link_ttl_hours`, or less when asked."""
    ttl = timedelta(hours=config.link_ttl_hours)
    if expires_in_s is not None:
        ttl = min(ttl, timedelta(seconds=expires_in_s))
    return await create_link(store, options, now, ttl)


def portal_json(link: PortalLink, base_url: str, bridge_id: str) -> dict[str, Any]:
    """Seam's `customer_portal` object."""
    return {
        "url": f"{base_url.rstrip('/')}/portal/open?token={link.token}",
        "customer_key": link.options.customer_key,
        "created_at": iso(link.created_at),
        "expires_at": iso(link.expires_at),
        "workspace_id": workspace_id(bridge_id),
    }


def _invalid(field: str, message: str) -> EngineError:
    return EngineError(ErrorKind.INVALID_INPUT, message, field)
