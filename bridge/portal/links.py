"""Magic links and sessions, kept in the store as hashes of their tokens only.

A link (`/portal/open?token=...`) is made by `create_portal` and can be opened until it
expires; opening it starts a session, a second random token in an HttpOnly cookie. Both
tokens carry 256 bits of randomness, so one SHA-256 is as good as a slow password hash here
(as for API keys, bridge/api/auth.py): the database alone lets nobody in."""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from bridge.store import Reader, Store, Tx

# Expired links are kept this long, so opening one says "expired" rather than "unknown".
KEEP_EXPIRED = timedelta(days=30)
_MAX_TOKEN_LENGTH = 100


@dataclass(frozen=True, slots=True)
class PortalOptions:
    """What a link was made with and every session it opens keeps."""

    customer_key: str
    read_only: bool = False
    is_embedded: bool = False
    navigation_mode: str = "full"
    deep_link_device_id: str | None = None
    locale: str = "en-US"


@dataclass(frozen=True, slots=True)
class PortalLink:
    """A link as `create_portal` returns it; `token` is only known when it is made."""

    token: str
    options: PortalOptions
    created_at: datetime
    expires_at: datetime


class LinkState(enum.StrEnum):
    """What opening a link finds."""

    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Opened:
    """The outcome of opening a link: its state and, when valid, its options."""

    state: LinkState
    options: PortalOptions | None = None


@dataclass(frozen=True, slots=True)
class PortalSession:
    """A signed-in browser: what its link allowed, until when."""

    options: PortalOptions
    expires_at: datetime


def token_hash(token: str) -> str:
    """The stored form of a link or session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def link_state(expires_at: datetime | None, now: datetime) -> LinkState:
    """Valid until `expires_at`, expired after; unknown when no such link is kept."""
    if expires_at is None:
        return LinkState.UNKNOWN
    return LinkState.VALID if now < expires_at else LinkState.EXPIRED


async def create_link(store: Store, options: PortalOptions, now: datetime,
                      ttl: timedelta) -> PortalLink:
    """Make and keep a link (its hash); links long expired are forgotten on the way."""
    link = PortalLink(secrets.token_urlsafe(32), options, now, now + ttl)

    def write(tx: Tx) -> None:
        tx.execute("DELETE FROM portal_links WHERE expires_at < ?",
                   ((now - KEEP_EXPIRED).isoformat(),))
        tx.execute("DELETE FROM portal_sessions WHERE expires_at < ?", (now.isoformat(),))
        tx.execute("INSERT INTO portal_links VALUES (?, ?, ?, ?, ?)", (
            token_hash(link.token), options.customer_key, json.dumps(asdict(options)),
            now.isoformat(), link.expires_at.isoformat()))

    await store.write(write)
    return link


async def open_link(store: Store, token: str, now: datetime) -> Opened:
    """What the link with this token is now: valid (with its options), expired or unknown."""
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        return Opened(LinkState.UNKNOWN)
    rows = await store.read(lambda r: r.rows(
        "SELECT options, expires_at FROM portal_links WHERE token_hash = ?",
        (token_hash(token),)))
    if not rows:
        return Opened(LinkState.UNKNOWN)
    options, expires_at = rows[0]
    state = link_state(datetime.fromisoformat(expires_at), now)
    return Opened(state, _options(options) if state is LinkState.VALID else None)


async def start_session(store: Store, options: PortalOptions, now: datetime,
                        ttl: timedelta) -> tuple[str, PortalSession]:
    """A new session for an opened link: its cookie token (never stored) and the session."""
    token = secrets.token_urlsafe(32)
    session = PortalSession(options, now + ttl)

    def write(tx: Tx) -> None:
        tx.execute("INSERT INTO portal_sessions VALUES (?, ?, ?, ?)", (
            token_hash(token), options.customer_key, json.dumps(asdict(options)),
            session.expires_at.isoformat()))

    await store.write(write)
    return token, session


async def find_session(store: Store, token: str | None, now: datetime) -> PortalSession | None:
    """The live session of a cookie token, or None (no cookie, unknown or expired)."""
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        return None
    hashed = token_hash(token)
    rows = await store.read(lambda r: _session_rows(r, hashed))
    if not rows:
        return None
    options, expires_at = rows[0]
    expiry = datetime.fromisoformat(expires_at)
    if link_state(expiry, now) is not LinkState.VALID:
        return None
    return PortalSession(_options(options), expiry)


def _session_rows(reader: Reader, hashed: str) -> list[tuple[str, str]]:
    rows = reader.rows("SELECT options, expires_at FROM portal_sessions WHERE session_hash = ?",
                       (hashed,))
    return [(str(a), str(b)) for a, b in rows]


def _options(raw: str) -> PortalOptions:
    return PortalOptions(**json.loads(raw))
