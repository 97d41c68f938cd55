"""The second demo: the daemon on config/demo-radios.yaml, with its radio locks simulated in
this process. Two Zigbee door locks join the fake radio once the daemon runs (as an installer
pairs them), a Xiaomi lock answers miIO on 127.0.0.42, and an Aqara gateway with one Door lock
S2 pro answers at the address its config names. Stop with Ctrl-C."""

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
from drivers.miio.config import Config as MiioConfig
from tests.fakes.miio_gateway import FakeAqaraGateway
from tests.fakes.miio_lock import FakeMiioLock
from tests.fakes.zigpy_radio import FakeDoorLock, FakeNetwork

ROOT = Path(__file__).resolve().parents[1]
_LOG = logging.getLogger("demo-radios")


async def main(config_path: Path) -> None:
    loaded = load_config(config_path)
    state = loaded.config.state_dir
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = _token(state / "miio.token")
    [gateway] = [g for d in loaded.drivers if isinstance(d, MiioConfig) for g in d.gateways]
    gateway_token = _token(gateway.token_file)
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

    async with FakeMiioLock("127.0.0.42", token, "loock.lock.v5"), \
            FakeAqaraGateway(gateway.host, gateway_token, gateway.model) as aqara:
        aqara.add_lock("lumi.lock.acn03", sid="lumi.158d0003cc2e1d", battery=76)
        await serve(loaded, on_ready=pair, stop=stop)


def _token(path: Path) -> str:
    """The demo device's miIO token, made on the first run."""
    if not path.exists():
        path.write_text(secrets.token_hex(16) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1
                     else ROOT / "config" / "demo-radios.yaml"))
