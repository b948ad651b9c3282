"""Embed the platform in your own asyncio application and react to devices coming and going.

    python examples/embed_platform.py [PORT] [DATA_DIR]   # SIP on 127.0.0.1:5060, registry in ./data

Register a device against it with ``python -m sip28181.device`` and watch the events.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from sip28181.config import Config
from sip28181.logutil import setup_logging
from sip28181.platform import DeviceOffline, DeviceOnline, Platform
from sip28181.store import create_store


async def main(port: int, data_dir: str) -> None:
    config = Config(sip_host="127.0.0.1", sip_port=port, data_dir=data_dir, password="12345678")
    platform = Platform(config, create_store(config))
    log = logging.getLogger("example")

    platform.events.on(lambda e: log.info("%s is online (%s)", e.device_id, e.reason), DeviceOnline)
    platform.events.on(lambda e: log.info("%s is offline (%s)", e.device_id, e.reason), DeviceOffline)

    await platform.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await platform.stop()


if __name__ == "__main__":
    setup_logging("INFO")
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5060, sys.argv[2] if len(sys.argv) > 2 else "data"))
