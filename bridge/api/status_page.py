"""The local status page: what a person at the gateway needs to see at a glance, the
customer portal's read-only overview (bridge/portal/: codes, PINs and actions need a link).

`/status` is a static page that renders `/status.json` and refreshes it every few seconds. The
summary holds no PIN and no code name (guests' names), only locks, counts and issue codes, so it
is served without a key like `/health` and `/metrics`; lock names come from drivers and peers
(an MQTT topic, say), so the page puts them in the DOM as text, never as markup."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from bridge.backup import available
from bridge.model import AccessCodeStatus
from bridge.portal.views import problems
from bridge.serialize import iso
from bridge.stateview import StateView

if TYPE_CHECKING:
    from bridge.daemon import Bridge
    from bridge.records import DeviceRecord

# Served files: name in the URL -> (file in bridge/api/static, content type).
STATIC_FILES = {
    "/status": ("status.html", "text/html; charset=utf-8"),
    "/status.js": ("status.js", "text/javascript; charset=utf-8"),
    "/status.css": ("status.css", "text/css; charset=utf-8"),
}
# The page loads only its own script, style and data: no inline code, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "connect-src 'self'; img-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def static_file(name: str) -> bytes:
    """One of the page's files, from the installed package."""
    return (resources.files("bridge.api") / "static" / name).read_bytes()


def status_summary(bridge: Bridge, now: datetime, version: str) -> dict[str, Any]:
    """Locks, code counts, issues and the upstream link, for the page (no PINs, no names of
    codes)."""
    state = StateView(bridge.engine)
    devices = sorted((d for d in state.devices.values() if d.is_managed and not d.removed),
                     key=lambda d: (d.display_name.lower(), d.device_id))
    upstream = bridge.extras.get("upstream")
    return {
        "bridge_id": bridge.loaded.config.bridge.id,
        "version": version,
        "generated_at": iso(now),
        "clock_synchronized": state.clock_synchronized(),
        "codes_pending": state.outstanding(),
        "upstream": None if upstream is None else {
            "connected": bool(getattr(upstream, "connected", False)),
            "outbox_depth": int(getattr(upstream, "outbox_depth", 0)),
        },
        "locks": [_lock(state, d) for d in devices],
    }


def _lock(state: StateView, device: DeviceRecord) -> dict[str, Any]:
    codes = state.codes_of(device.device_id)
    guest_codes = [c for c in codes if c.is_managed and not c.is_backup and not c.deleted]
    by_status = Counter(c.status.value for c in guest_codes)
    return {
        "device_id": device.device_id,
        "name": device.display_name,
        "driver": device.driver,
        "availability": device.availability.value,
        "online": device.online,
        "codes": {s.value: by_status.get(s.value, 0) for s in AccessCodeStatus},
        "unmanaged_codes": sum(1 for c in codes if not c.is_managed),
        "backup_pool": {"ready": len(available(codes))} if device.backup_pool_enabled else None,
        # With the cause and remedy the portal shows (no PIN, no guest in them).
        "problems": problems(device.errors, device.warnings),
        "errors": [i.code for i in device.errors],
        "warnings": [i.code for i in device.warnings],
        "code_errors": sorted({i.code for c in guest_codes for i in c.errors}),
    }
