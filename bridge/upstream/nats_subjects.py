"""Names on the NATS side of a fleet (docs/fleet.md): subjects, streams, the state bucket's keys,
and the options a bridge connects with. Shared by the bridge's link and the fleet backend, so
both agree on one naming without either importing the other."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.config import NatsUpstreamConfig

# JetStream's de-duplication header: a message id seen within the stream's window is dropped.
MSG_ID = "Nats-Msg-Id"
# The key-value wire protocol: a delete is a message with this header on the key's subject.
KV_OPERATION = "KV-Operation"


@dataclass(frozen=True, slots=True)
class FleetNames:
    """Every subject, stream and key a fleet uses, from one prefix."""

    prefix: str = "lockbridge"
    events_stream: str = "LOCKBRIDGE_EVENTS"
    commands_stream: str = "LOCKBRIDGE_COMMANDS"
    state_bucket: str = "lockbridge_state"

    @classmethod
    def of(cls, config: NatsUpstreamConfig) -> FleetNames:
        """The names a bridge's configuration gives."""
        return cls(config.subject_prefix, config.events_stream, config.commands_stream,
                   config.state_bucket)

    def events(self, bridge_id: str) -> str:
        """Where a bridge publishes its outbox events."""
        return f"{self.prefix}.events.{bridge_id}"

    def results(self, bridge_id: str) -> str:
        """Where a bridge publishes its command results."""
        return f"{self.prefix}.results.{bridge_id}"

    def commands(self, bridge_id: str) -> str:
        """Where the backend publishes a bridge's commands."""
        return f"{self.prefix}.commands.{bridge_id}"

    def heartbeat(self, bridge_id: str) -> str:
        """Core NATS (not stored): a bridge's liveness, every `heartbeat_s`."""
        return f"{self.prefix}.heartbeat.{bridge_id}"

    @staticmethod
    def command_consumer(bridge_id: str) -> str:
        """The durable consumer a bridge reads its commands from."""
        return f"bridge_{bridge_id}"

    @property
    def state_stream(self) -> str:
        """The stream behind the key-value bucket."""
        return f"KV_{self.state_bucket}"

    def state_subject(self, key: str) -> str:
        """The subject a key is written on."""
        return f"$KV.{self.state_bucket}.{key}"

    @staticmethod
    def device_key(bridge_id: str, device_id: str) -> str:
        """A device's key in the state bucket."""
        return f"{bridge_id}.device.{device_id}"

    @staticmethod
    def code_key(bridge_id: str, access_code_id: str) -> str:
        """A managed code's key in the state bucket."""
        return f"{bridge_id}.code.{access_code_id}"

    @staticmethod
    def unmanaged_key(bridge_id: str, access_code_id: str) -> str:
        """An unmanaged code's key in the state bucket."""
        return f"{bridge_id}.unmanaged.{access_code_id}"

    @staticmethod
    def inbox_prefix(bridge_id: str) -> str:
        """A bridge's own reply subjects, so its permissions can exclude everyone else's."""
        return f"_INBOX_{bridge_id}"

    def bridge_permissions(self, bridge_id: str) -> dict[str, Any]:
        """What a bridge's NATS user may do: its own subjects and nothing else (docs/fleet.md
        shows it as nats-server configuration)."""
        durable = self.command_consumer(bridge_id)
        cmd = self.commands_stream
        return {
            "publish": {"allow": [
                self.events(bridge_id), self.results(bridge_id), self.heartbeat(bridge_id),
                self.state_subject(f"{bridge_id}.>"),
                f"$JS.API.CONSUMER.INFO.{cmd}.{durable}",
                f"$JS.API.CONSUMER.CREATE.{cmd}.{durable}.{self.commands(bridge_id)}",
                f"$JS.API.CONSUMER.MSG.NEXT.{cmd}.{durable}",
                f"$JS.ACK.{cmd}.{durable}.>",
            ]},
            "subscribe": {"allow": [f"{self.inbox_prefix(bridge_id)}.>"]},
        }


def tls_context(config: NatsUpstreamConfig) -> ssl.SSLContext | None:
    """TLS for tls:// and wss:// servers or a private CA; a client certificate when given."""
    wants = any(s.startswith(("tls://", "wss://")) for s in config.servers)
    if not wants and config.ca_file is None and config.cert_file is None:
        return None
    context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    if config.cert_file is not None and config.key_file is not None:
        context.load_cert_chain(str(config.cert_file), str(config.key_file))
    return context


def connect_options(config: NatsUpstreamConfig, bridge_id: str) -> dict[str, Any]:
    """Keyword arguments for `nats.connect`; secrets are read from their files now, so a rotated
    file takes effect at the next connect."""
    options: dict[str, Any] = {
        "servers": list(config.servers),
        "name": f"lockbridge:{bridge_id}",
        "connect_timeout": config.connect_timeout_s,
        # One connection is one session: the link's supervisor reconnects with its backoff and
        # resumes from the outbox, so nats-py's own reconnect would only hide the outage.
        "allow_reconnect": False,
        # Each server tried twice at connect, then the attempt fails (0 would mean forever).
        "max_reconnect_attempts": 1,
        "inbox_prefix": FleetNames.inbox_prefix(bridge_id),
    }
    context = tls_context(config)
    if context is not None:
        options["tls"] = context
    if config.user is not None and config.password_file is not None:
        options["user"] = config.user
        options["password"] = _secret(config.password_file)
    if config.nkey_seed_file is not None:
        options["nkeys_seed"] = str(config.nkey_seed_file)
    if config.creds_file is not None:
        options["user_credentials"] = str(config.creds_file)
    return options


def _secret(path: Path) -> str:
    return path.read_text().strip()


def subscription_tasks(nc: Any) -> list[asyncio.Task[Any]]:
    """The delivery tasks of a client's subscriptions (its request mux's among them). nats-py's
    close cancels them without waiting and forgets them, also when it closes by itself on a
    lost connection: read them while the client is up, to wait for them after."""
    subs = getattr(nc, "_subs", None) or {}
    found = [getattr(sub, "_wait_for_msgs_task", None) for sub in subs.values()]
    return [task for task in found if isinstance(task, asyncio.Task)]


async def close_client(nc: Any, tasks: Iterable[asyncio.Task[Any]] = ()) -> None:
    """Close a nats-py client and wait for its own background tasks, which its `close` only
    cancels: a stopped link or replica leaves nothing running behind it. `tasks`: more of its
    tasks to wait for (`subscription_tasks`, read while it was up). A task that swallowed its
    cancellation (Python 3.11's `wait_for`, inside nats-py) is asked again until it ends."""
    pending = [*subscription_tasks(nc), *tasks]
    with contextlib.suppress(Exception):
        await nc.close()
    for name in ("_reading_task", "_ping_interval_task", "_flusher_task", "_reconnection_task"):
        task = getattr(nc, name, None)
        if isinstance(task, asyncio.Task):
            pending.append(task)
    for task in pending:
        await _finish(task)


async def _finish(task: asyncio.Task[Any]) -> None:
    """Cancel a client's task until it has ended (bounded), its outcome retrieved."""
    if task is asyncio.current_task():
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: a closed client's last error is not news


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that nats-py swallowed: on Python 3.11, `asyncio.wait_for` (which
    its requests and fetches use) returns the result instead of raising when the awaited thing
    finishes as the task is cancelled, and a loop that only awaits would then never stop. The
    task still counts the request (`cancelling()`), so each loop iteration checks it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
