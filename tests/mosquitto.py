"""A real Mosquitto broker for the tests: a free 127.0.0.1 port, a temporary config, and the
means to kill it (SIGKILL, like a crash) and start it again on the same port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

MOSQUITTO = next((p for p in (shutil.which("mosquitto"), "/usr/sbin/mosquitto")
                  if p and os.access(p, os.X_OK)), None)
_MISSING = "mosquitto is not installed: run scripts/test.sh (it installs Debian's mosquitto)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Mosquitto:
    """One broker process on 127.0.0.1:`port`, with no persistence (a kill loses everything)."""

    def __init__(self, directory: Path, *, port: int | None = None,
                 allow_anonymous: bool = True) -> None:
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed (scripts/peers.sh installs it)")
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.directory = directory
        self.config = directory / f"mosquitto-{self.port}.conf"
        self.log = directory / f"mosquitto-{self.port}.log"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if allow_anonymous else 'false'}\n"
            "persistence false\n"
            "set_tcp_nodelay true\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n")
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 5.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return
        log = self.log.open("ab")
        try:
            self.process = subprocess.Popen([str(MOSQUITTO), "-c", str(self.config)],
                                            stdout=log, stderr=log)
        finally:
            log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start: {self.log.read_text()[-500:]}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port),
                                                                         timeout=0.2):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def kill(self) -> None:
        """SIGKILL the broker: every connection drops, retained messages are gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=5)
        self.process = None

    def stop(self) -> None:
        """Terminate the broker cleanly (kill it if it does not go)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def restart(self) -> None:
        """Kill and start again on the same port."""
        self.kill()
        self.start()

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.process is not None and self.process.poll() is None


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """The session's shared broker (tests keep apart by using their own topic prefixes)."""
    if MOSQUITTO is None:
        pytest.fail(_MISSING)
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test's own, which the test may kill and restart."""
    if MOSQUITTO is None:
        pytest.fail(_MISSING)
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start brokers of this test's own with given settings (e.g. `allow_anonymous=False`)."""
    if MOSQUITTO is None:
        pytest.fail(_MISSING)
    made: list[Mosquitto] = []

    def make(**settings: bool) -> Mosquitto:
        broker = Mosquitto(tmp_path, **settings)  # type: ignore[arg-type]
        broker.start()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.stop()
