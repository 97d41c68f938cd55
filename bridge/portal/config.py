"""The `portal:` section of the configuration; imports nothing but pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# An origin as a browser sends it: scheme, host and optional port, nothing after.
Origin = Annotated[str, Field(pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+$", max_length=200)]


class PortalConfig(BaseModel):
    """Magic links and the sessions they open (docs/portal.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # How long a link from create_portal can be opened; Seam's links expire too.
    link_ttl_hours: Annotated[float, Field(gt=0, le=24 * 90)] = 24.0
    # How long a browser stays signed in after opening a link.
    session_ttl_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0
    # Origins allowed to show embedded links in an iframe (CSP frame-ancestors); none: no
    # embedding at all, the link must be opened on its own.
    frame_ancestors: list[Origin] = []
    # Where links point, as a browser reaches the box (https://gateway.local:8787); default:
    # the address the create_portal request came to.
    public_url: Annotated[str, Field(pattern=r"^https?://[^\s/]+$")] | None = None
    # Optional YAML mapping of customer_key to the device ids its portal may show; a
    # customer not in it (or no file) sees every lock.
    scope_file: Path | None = None
