"""The second demo: the daemon on config/demo-radios.yaml, with its radio locks simulated in
this process. Two Zigbee door locks join the fake radio once the daemon runs (as an installer
pairs them), and a Xiaomi lock answers miIO on 127.0.0.42. Stop with Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import sys
from pathlib import Path

from bridge import logs
from bridge.config import load_config
from bridge.daemon import Bridge, serve
from bridge.driver import NetworkCommands
from tests.fakes.miio_lock import FakeMiioLock
from tests.fakes.zigpy_radio import FakeDoorLock, FakeNetwork

ROOT = Path(__file__).resolve().parents[1]
_LOG = logging.getLogger("demo-radios")


async def main(config_path: Path) -> None:
    loaded = load_config(config_path)
    state = loaded.config.state_dir
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    token_file = state / "miio.token"
    if not token_file.exists():
        token_file.write_text(secrets.token_hex(16) + "\n")
        token_file.chmod(0o600)
    token = token_file.read_text().strip()
    logs.setup(loaded.config.logging.level)
    FakeNetwork("demo")
    locks = [FakeDoorLock(ieee="00:0d:6f:00:0a:90:69:e7", nwk=0x2B3C, profile="yale",
                          end_device=False),
             FakeDoorLock(ieee="00:0d:6f:00:0b:11:22:33", nwk=0x2B3D, profile="kwikset",
                          end_device=False)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def pair(bridge: Bridge) -> None:
        radio = bridge.drivers["zigbee"]
        assert isinstance(radio, NetworkCommands)
        if len(radio.devices()) < len(locks):
            await radio.permit_join(60)
            for lock in locks:
                await FakeNetwork.get("demo").join(lock)
        _LOG.info("demo: two Zigbee locks paired; open http://127.0.0.1:%d/status",
                  loaded.config.api.port)

    async with FakeMiioLock("127.0.0.42", token, "loock.lock.v5"):
        await serve(loaded, on_ready=pair, stop=stop)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1
                     else ROOT / "config" / "demo-radios.yaml"))
