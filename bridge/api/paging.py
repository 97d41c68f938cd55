"""Cursor pagination with Seam's `pagination` object."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, TypeVar

from yarl import URL

from bridge.api.errors import ApiError

_T = TypeVar("_T")
DEFAULT_LIMIT = 500


def page(items: Sequence[_T], limit: int | None, cursor: str | None,
         url: URL) -> tuple[list[_T], dict[str, Any]]:
    """One page of `items` and the `pagination` object that leads to the next one."""
    offset = decode_cursor(cursor)
    size = limit or DEFAULT_LIMIT
    chosen = list(items[offset:offset + size])
    more = offset + size < len(items)
    next_cursor = encode_cursor(offset + size) if more else None
    next_url = str(url.update_query(page_cursor=next_cursor)) if next_cursor else None
    return chosen, {"has_next_page": more, "next_page_cursor": next_cursor,
                    "next_page_url": next_url}


def encode_cursor(offset: int) -> str:
    """An opaque cursor for a position in a list."""
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The position a cursor from `encode_cursor` stands for (0 for none)."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, number = text.partition(":")
        offset = int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        offset = -1
        kind = ""
    if kind != "o" or offset < 0:
        raise ApiError(400, "invalid_input", "page_cursor is not a cursor this API returned",
                       {"_errors": [], "page_cursor": {"_errors": ["unknown cursor"]}})
    return offset
