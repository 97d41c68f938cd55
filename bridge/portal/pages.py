"""The portal's server-rendered pages for a browser that has no session: an expired or unknown
link, a session that ended. Each says what happened and what to do (never a blank page or a
bare 404); they load only the portal's stylesheet, so the strict CSP holds."""

from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Notice:
    """A page that explains itself: HTTP status, title and what to do."""

    status: int
    title: str
    what_happened: str
    what_to_do: str


EXPIRED_LINK = Notice(
    410, "This portal link has expired",
    "Portal links work for a limited time, and this one's time is up.",
    "Ask whoever sent it for a fresh link: they make one with create_portal (or "
    "“lockbridge portal link” on the box).")
UNKNOWN_LINK = Notice(
    404, "This portal link is not valid",
    "The box does not know this link: it may be mistyped or cut short, or it was made for "
    "another box.",
    "Open the link exactly as you received it, or ask for a fresh one (create_portal, or "
    "“lockbridge portal link” on the box).")
NO_SESSION = Notice(
    401, "You are not signed in to the portal",
    "Your portal session has ended, or this browser never opened a portal link. An embedded "
    "portal also needs cookies: a private window or blocked third-party cookies keep it "
    "from signing in.",
    "Open your portal link again, or ask for a fresh one. Where the embedded portal cannot "
    "sign in, use a standalone link instead.")


def render(notice: Notice) -> str:
    """The notice as a small HTML page."""
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(notice.title)}</title>"
        "<link rel=\"stylesheet\" href=\"/portal/portal.css\"></head>"
        "<body class=\"notice\"><main><h1 id=\"notice-title\">"
        f"{html.escape(notice.title)}</h1><p>{html.escape(notice.what_happened)}</p>"
        f"<p id=\"notice-todo\"><strong>What to do:</strong> {html.escape(notice.what_to_do)}"
        "</p></main></body></html>\n")
