"""The small JSON file in which a driver remembers its locks between runs (what it learned of
them, so they are served before their network answers): read leniently, written atomically
and fsynced, by every driver."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

_LOG = logging.getLogger(__name__)


def load_memory(path: Path | None) -> dict[str, object]:
    """What a driver remembered in `path` ({} when there is nothing usable)."""
    if path is None:
        return {}
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        _LOG.warning("cannot read %s (%s); starting without it", path, type(exc).__name__)
        return {}
    return doc if isinstance(doc, dict) else {}


def save_memory(path: Path | None, doc: dict[str, object]) -> None:
    """Replace `path` with `doc` atomically; a failure is logged, never raised."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _LOG.warning("cannot save %s (%s)", path, exc.strerror)
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)
