"""systemd's notify protocol: READY, STATUS, WATCHDOG and STOPPING datagrams to $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from bridge.clock import Clock
from bridge.stateview import StateView

if TYPE_CHECKING:
    from bridge.daemon import Bridge

_LOG = logging.getLogger(__name__)

# How often STATUS= is refreshed when systemd asked for no watchdog.
STATUS_INTERVAL_S = 15.0


class Notifier:
    """Sends notify messages to one socket; every method is a no-op without a socket."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._target: str | bytes | None = _target(address)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """The notifier systemd asked for through $NOTIFY_SOCKET (disabled when unset)."""
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        """True when messages go somewhere."""
        return self._target is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` fields as one datagram; False when disabled or the send failed."""
        if self._target is None or not fields:
            return False
        payload = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the event loop: a full queue in the manager drops this message.
                sock.setblocking(False)
                sock.sendto(payload, self._target)
        except OSError as exc:
            _LOG.debug("notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up is complete."""
        return self.send("READY=1", *_status_field(status))

    def status(self, text: str) -> bool:
        """One line for `systemctl status`."""
        return self.send(*_status_field(text))

    def watchdog(self, status: str | None = None) -> bool:
        """A keep-alive ping, optionally with a new status line."""
        return self.send("WATCHDOG=1", *_status_field(status))

    def stopping(self) -> bool:
        """Tell systemd the daemon is shutting down."""
        return self.send("STOPPING=1")


def watchdog_interval(environ: Mapping[str, str] = os.environ,
                      pid: int | None = None) -> float | None:
    """The watchdog timeout in seconds from $WATCHDOG_USEC, or None when there is none for us."""
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner and owner.isdigit() and int(owner) != (pid if pid is not None else os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


async def watchdog_task(clock: Clock, notifier: Notifier, status_fn: Callable[[], str],
                        timeout_s: float | None = None) -> None:
    """Ping at half the watchdog timeout and send STATUS when it changes; STOPPING on cancel.

    The pings come from the event loop itself, so a loop that stops turning misses them and
    systemd restarts the daemon.
    """
    period = timeout_s / 2 if timeout_s else STATUS_INTERVAL_S
    last_status: str | None = None
    try:
        while True:
            try:
                status: str | None = status_fn()
            except Exception:
                _LOG.exception("status line failed")
                status = None
            fresh = status if status != last_status else None
            if timeout_s:
                notifier.watchdog(fresh)
            elif fresh is not None:
                notifier.status(fresh)
            if status is not None:
                last_status = status
            await clock.sleep(period)
    except asyncio.CancelledError:
        notifier.stopping()
        raise


def status_line(bridge: Bridge) -> str:
    """`3/4 locks online, 2 codes pending, upstream connected` from the running bridge."""
    state = StateView(bridge.engine)
    devices = [d for d in state.devices.values() if d.is_managed and not d.removed]
    online = sum(1 for d in devices if d.online)
    pending = state.outstanding()
    upstream = bridge.extras.get("upstream")
    if upstream is None:
        link = "no upstream"
    else:
        link = "upstream connected" if getattr(upstream, "connected", False) else \
            "upstream disconnected"
    return (f"{online}/{len(devices)} locks online, {pending} code{'s' * (pending != 1)} "
            f"pending, {link}")


async def start_systemd(bridge: Bridge, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
    """READY=1, then the watchdog and status task, when run by systemd.

    It is the last of `daemon.STARTERS`: by the time it runs the store is open, the drivers
    are started and the local API listens, which is what READY promises.
    """
    notifier = Notifier.from_env()
    if not notifier.enabled:
        return []
    notifier.ready(status_line(bridge))
    timeout = watchdog_interval()
    task = group.create_task(
        watchdog_task(bridge.clock, notifier, lambda: status_line(bridge), timeout),
        name="systemd-notify",
    )
    _LOG.info("systemd notify on %s, watchdog %s", notifier.address,
              f"{timeout:.0f} s" if timeout else "off")
    return [task]


def _target(address: str | None) -> str | bytes | None:
    if not address:
        return None
    if address.startswith("@"):
        # An abstract socket: a leading NUL byte instead of '@', no file on disk.
        return b"\0" + address[1:].encode()
    if address.startswith("/"):
        return address
    _LOG.warning("NOTIFY_SOCKET=%s is not a path or an abstract name; not notifying", address)
    return None


def _status_field(text: str | None) -> list[str]:
    if text is None:
        return []
    return ["STATUS=" + " ".join(text.splitlines())]
