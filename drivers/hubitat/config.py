"""Settings of the Hubitat Maker API driver, and building it.

A Hubitat Elevation hub sits on the LAN; its Maker API app gives an access token that travels in
every request's query string. The token is a secret (`token` only as ${ENV_VAR}, or
`token_file`) and goes only to the configured hub, which must be a LAN or loopback address: a
Maker API instance can also answer through Hubitat's cloud, which this driver refuses to use.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.drivercontext import DriverContext
from drivers.cloud_config import TokenSettings

# Names a resolver answers only on the LAN (mDNS, the RFC 8375 home domain, common router ones).
_LAN_SUFFIXES = (".local", ".lan", ".home", ".home.arpa", ".internal")


def is_lan_host(host: str) -> bool:
    """True for a loopback, private or link-local address written literally, and for names that
    only resolve on the LAN (no dot, or a LAN-only suffix); no DNS lookup."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.lower().rstrip(".")
        return "." not in name or name.endswith(_LAN_SUFFIXES)
    return address.is_private or address.is_loopback or address.is_link_local


class LockConfig(BaseModel):
    """Settings for one lock, by its Hubitat device id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    ignore: bool = False


class Config(TokenSettings):
    """The Hubitat driver's settings."""

    kind: Literal["hubitat"]
    name: str = "hubitat"
    property: str | None = None
    # The hub on the LAN, e.g. http://192.168.1.20, and the Maker API instance's app id.
    url: str
    app_id: Annotated[int, Field(ge=1)]
    devices: dict[Annotated[int, Field(ge=1)], LockConfig] = {}
    # Where the bridge listens for the events the hub POSTs (None: no listener, polling only),
    # and the URL the hub is told to post to (default: http://<listen_host>:<port>/hubitat/events).
    listen_host: str = "0.0.0.0"
    listen_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    post_url: str | None = None
    # Maker API keeps one post URL per instance: setting it replaces another client's.
    register_post_url: bool = True
    # How often every lock's attributes are read when no event comes.
    poll_interval_s: Annotated[float, Field(gt=0)] = 30.0
    request_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    # The hub answers a command at once; the lock applies it later. How long a change is looked
    # for on the lock (lockCodes) before it counts as not programmed, and how often.
    confirm_wait_s: Annotated[float, Field(gt=0)] = 60.0
    confirm_poll_s: Annotated[float, Field(gt=0)] = 2.0
    name_max_length: Annotated[int, Field(ge=4, le=64)] = 20
    command_spacing_s: Annotated[float, Field(ge=0)] = 1.0

    @model_validator(mode="after")
    def _checks(self) -> Config:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname or \
                parts.path.strip("/") or parts.query:
            raise ValueError("url must be the hub's address, like http://192.168.1.20")
        if not is_lan_host(parts.hostname):
            raise ValueError("url must be the hub's LAN (or loopback) address: the Maker API "
                             "token travels in every request and must not leave the LAN")
        if self.post_url is not None:
            target = urlsplit(self.post_url)
            if target.scheme not in ("http", "https") or not target.hostname:
                raise ValueError("post_url must look like http://192.168.1.10:39501/hubitat/events")
            if self.listen_port is None:
                raise ValueError("post_url needs listen_port (the bridge must serve it)")
        elif self.listen_port is not None and self.listen_host in ("0.0.0.0", "::", ""):
            raise ValueError("give post_url (an address of this box the hub can reach), or a "
                             "listen_host the hub can reach")
        return self

    def lock(self, device_id: int) -> LockConfig:
        """The settings of one lock (defaults when the file says nothing about it)."""
        return self.devices.get(device_id) or LockConfig()


def build(config: Config, context: DriverContext) -> object:
    """Make the Hubitat driver (it needs only aiohttp, which the core has)."""
    from drivers.hubitat.driver import HubitatDriver

    return HubitatDriver(config, context.clock)
