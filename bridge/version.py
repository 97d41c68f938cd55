"""lockbridge's installed version, in a module of its own: the status page needs it without the
upstream link's module (its protocol models are most of a megabyte the daemon need not hold)."""

from __future__ import annotations

import importlib.metadata


def software_version() -> str:
    """lockbridge's installed version (the upstream's `hello`, the status page)."""
    try:
        return importlib.metadata.version("lockbridge")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
