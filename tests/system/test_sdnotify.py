"""sd_notify on a real AF_UNIX datagram socket: path and abstract names, the watchdog task, and
the real daemon under a NOTIFY_SOCKET and WATCHDOG_USEC the way systemd starts it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.clock import FakeClock
from bridge.sdnotify import Notifier, start_systemd, watchdog_interval, watchdog_task
from tests.system.test_daemon import CONFIG, ROOT, lockbridge


@contextlib.contextmanager
def listener(address: str | bytes) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    try:
        yield sock
    finally:
        sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with listener(str(path)) as sock:
        notifier = Notifier(str(path))
        assert notifier.ready("2/2 locks online")
        assert received(sock) == ["READY=1", "STATUS=2/2 locks online"]
        assert notifier.watchdog()
        assert received(sock) == ["WATCHDOG=1"]
        assert notifier.status("line one\nline two")
        assert received(sock) == ["STATUS=line one line two"]
        assert notifier.stopping()
        assert received(sock) == ["STOPPING=1"]


def test_abstract_socket() -> None:
    name = f"lockbridge-test-{uuid.uuid4().hex}"
    with listener(b"\0" + name.encode()) as sock:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.enabled
        assert notifier.send("READY=1", "STATUS=ok")
        assert received(sock) == ["READY=1", "STATUS=ok"]


def test_without_a_socket_nothing_is_sent(tmp_path: Path) -> None:
    assert not Notifier.from_env({}).enabled
    assert not Notifier.from_env({}).ready()
    assert not Notifier("relative/name").enabled
    # Nobody listening: the daemon carries on.
    assert not Notifier(str(tmp_path / "gone")).watchdog()


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=7) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=8) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


async def test_watchdog_task_pings_and_sends_status_on_change(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    clock = FakeClock()
    statuses = iter(["1/2 locks online", "1/2 locks online", "2/2 locks online"])
    with listener(str(path)) as sock:
        task = asyncio.create_task(
            watchdog_task(clock, Notifier(str(path)), lambda: next(statuses), timeout_s=10.0))
        await clock.advance(0)
        assert received(sock) == ["WATCHDOG=1", "STATUS=1/2 locks online"]
        await clock.advance(5)
        assert received(sock) == ["WATCHDOG=1"]
        await clock.advance(5)
        assert received(sock) == ["WATCHDOG=1", "STATUS=2/2 locks online"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert received(sock) == ["STOPPING=1"]


async def test_status_only_without_watchdog(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    clock = FakeClock()
    with listener(str(path)) as sock:
        task = asyncio.create_task(watchdog_task(clock, Notifier(str(path)), lambda: "same"))
        await clock.advance(0)
        assert received(sock) == ["STATUS=same"]
        await clock.advance(60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # No repeat of an unchanged status, no WATCHDOG=1 nobody asked for.
        assert received(sock) == ["STOPPING=1"]


async def test_starter_does_nothing_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    async with asyncio.TaskGroup() as group:
        assert await start_systemd(None, group) == []  # type: ignore[arg-type]


@pytest.mark.slow
def test_real_daemon_notifies_ready_status_and_watchdog(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    path = tmp_path / "notify"
    env = dict(os.environ, NOTIFY_SOCKET=str(path), WATCHDOG_USEC="1000000")
    with listener(str(path)) as sock:
        sock.settimeout(0.2)
        proc = subprocess.Popen(lockbridge("run", "-c", str(config)), stderr=subprocess.PIPE,
                                text=True, cwd=ROOT, env=env)
        running = threading.Event()

        def watch_log() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                if " running: " in line:
                    running.set()

        reader = threading.Thread(target=watch_log, daemon=True)
        reader.start()
        fields: list[str] = []
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    fields.extend(received(sock))
                if {"READY=1", "WATCHDOG=1"} <= set(fields) and \
                        any(f.startswith("STATUS=") for f in fields):
                    break
                # Once the daemon says it runs, wait two watchdog periods, no more.
                if running.is_set() and deadline - time.monotonic() > 2:
                    deadline = time.monotonic() + 2
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            with contextlib.suppress(TimeoutError):
                while True:
                    fields.extend(received(sock))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=5)
    assert "READY=1" in fields
    assert "WATCHDOG=1" in fields
    statuses = [f for f in fields if f.startswith("STATUS=")]
    assert statuses and "locks online" in statuses[0], statuses
    assert "STOPPING=1" in fields
    assert proc.returncode == 0
