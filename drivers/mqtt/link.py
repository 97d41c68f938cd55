"""One supervised connection to an MQTT broker (aiomqtt), shared by a driver's locks.

Every session is a fresh aiomqtt client with a clean session: nothing published while the broker
was away is replayed by the client library on reconnect. A command is either sent on a live
connection or refused at once with `LinkDown`, and the engine's per-lock queue decides when to
try again; so no command is queued twice, in two places.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import uuid
from collections.abc import Callable

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from bridge.clock import Clock
from bridge.driver import RetryLater
from bridge.reconnect import Backoff, FailureKind, LinkState, ReconnectSupervisor
from drivers.mqtt.config import BrokerConfig, PasswordUnavailable
from drivers.tasks import cancel_and_wait

_LOG = logging.getLogger(__name__)


class _DebugOnly(logging.Filter):
    """paho and aiomqtt report a dropped connection as an error; the supervisor already says
    so once per outage, so their lines are kept for debugging only."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return _WIRE_LOG.isEnabledFor(logging.DEBUG)


# paho's own packet log (topics and sizes, never payloads) stays apart from ours.
_WIRE_LOG = logging.getLogger("drivers.mqtt.wire")
_WIRE_LOG.addFilter(_DebugOnly())

# MQTT 5 reason codes (paho maps MQTT 3.1.1 CONNACK codes 4 and 5 onto 134 and 135).
_REFUSED_CODES = frozenset({133, 134, 135, 138, 140})
_REFUSED_V3 = frozenset({2, 4, 5})

Handler = Callable[[str, bytes, bool], None]
StateListener = Callable[[bool], None]


class LinkDown(RetryLater):
    """The broker connection is down. `maybe_sent` is True when a publish was under way and the
    broker may have taken it before the connection broke."""

    def __init__(self, message: str, *, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


def classify(error: BaseException) -> FailureKind:
    """Refused credentials and unusable TLS settings are not retried in a storm."""
    if isinstance(error, PasswordUnavailable):
        return FailureKind.REFUSED
    if isinstance(error, MqttConnectError):
        rc = error.rc
        if isinstance(rc, ReasonCode) and rc.value in _REFUSED_CODES:
            return FailureKind.REFUSED
        if isinstance(rc, int) and rc in _REFUSED_V3:
            return FailureKind.REFUSED
    if "CERTIFICATE_VERIFY_FAILED" in str(error):
        return FailureKind.REFUSED
    return FailureKind.TRANSIENT


class MqttLink:
    """A broker connection kept up by a `ReconnectSupervisor`; handlers see every message."""

    def __init__(self, name: str, config: BrokerConfig, clock: Clock, *,
                 rng: random.Random | None = None) -> None:
        self.name = name
        self.config = config
        self._subscriptions: list[tuple[str, Handler]] = []
        self._listeners: list[StateListener] = []
        self._client: aiomqtt.Client | None = None
        self._up = asyncio.Event()
        self._down: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed_handlers: set[str] = set()
        self._client_id = config.client_id or f"lockbridge-{name}-{uuid.uuid4().hex[:8]}"
        self.sessions = 0
        self.supervisor = ReconnectSupervisor(
            f"mqtt link {name} ({config.describe()})", clock, self._session, classify=classify,
            backoff=Backoff(config.reconnect_min_s, config.reconnect_max_s),
            refused_retry_s=config.refused_retry_s, rng=rng, logger=_LOG)

    # -- set-up ---------------------------------------------------------------------------

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        """Call `handler(topic, payload, retained)` for every message matching `topic_filter`;
        register before `start`."""
        self._subscriptions.append((topic_filter, handler))

    def add_listener(self, listener: StateListener) -> None:
        """Call `listener(True)` when a session is up and subscribed, `listener(False)` when it
        ends."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self._task is None:
            self._task = asyncio.create_task(self.supervisor.run(), name=f"mqtt:{self.name}")

    async def stop(self) -> None:
        """Disconnect and stop reconnecting; safe to call twice."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    # -- use ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a session is up and subscribed."""
        return self._client is not None and self._up.is_set()

    @property
    def state(self) -> LinkState:
        """The supervisor's state."""
        return self.supervisor.state

    async def wait_up(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the link to be up; True if it is."""
        if self.connected:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            return False
        return self.connected

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1,
                      retain: bool = False) -> None:
        """Send one message; QoS 1 waits for the broker's acknowledgement.

        Raises `LinkDown` when there is no connection (nothing was sent) or when it broke
        during the publish (`maybe_sent`).
        """
        client, down = self._client, self._down
        if client is None or down is None or not self._up.is_set():
            raise LinkDown(f"MQTT broker {self.config.describe()} is not connected")
        sending = asyncio.ensure_future(client.publish(
            topic, payload, qos=qos, retain=retain, timeout=self.config.publish_timeout_s))
        try:
            # The broker's acknowledgement, or the end of the session, whichever comes first.
            await asyncio.wait({sending, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not sending.done():
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await sending
        if sending.cancelled():
            raise LinkDown(f"the connection to {self.config.describe()} broke during a publish",
                           maybe_sent=True)
        error = sending.exception()
        if error is not None:
            raise LinkDown(f"publish to {self.config.describe()} failed: {error}",
                           maybe_sent=True) from error

    # -- internals ------------------------------------------------------------------------

    async def _session(self, established: Callable[[], None]) -> None:
        password = self.config.read_password()
        tls = self.config.tls.context() if self.config.tls is not None else None
        client = aiomqtt.Client(
            self.config.host, self.config.port, username=self.config.username,
            password=password, identifier=self._client_id, clean_session=True,
            keepalive=self.config.keepalive_s, timeout=self.config.connect_timeout_s,
            tls_context=tls, logger=_WIRE_LOG,
            # Commands are small request/answer exchanges: do not let Nagle hold them back.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        async with client:
            filters = list(dict.fromkeys(f for f, _ in self._subscriptions))
            if filters:
                await client.subscribe([(f, 1) for f in filters])
            self._down = asyncio.get_running_loop().create_future()
            self._client = client
            self._up.set()
            self.sessions += 1
            established()
            self._notify(True)
            try:
                async for message in client.messages:
                    self._dispatch(message)
            finally:
                self._client = None
                self._up.clear()
                self._down.set_result(None)
                self._notify(False)

    def _dispatch(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if isinstance(payload, str):
            data = payload.encode()
        elif isinstance(payload, bytes | bytearray):
            data = bytes(payload)
        elif payload is None:
            data = b""
        else:
            data = str(payload).encode()
        topic = message.topic.value
        for topic_filter, handler in self._subscriptions:
            if not message.topic.matches(topic_filter):
                continue
            try:
                handler(topic, data, bool(message.retain))
            except Exception as exc:  # a bad message must never stop the link
                level = logging.DEBUG if topic_filter in self._failed_handlers \
                    else logging.WARNING
                self._failed_handlers.add(topic_filter)
                _LOG.log(level, "mqtt link %s: message on %s ignored (%s)", self.name, topic,
                         type(exc).__name__)

    def _notify(self, up: bool) -> None:
        for listener in self._listeners:
            try:
                listener(up)
            except Exception:
                _LOG.exception("mqtt link %s: state listener failed", self.name)
