"""Drive a simulated camera from code: register, send keepalives, unregister.

    python -m sip28181.server --api-token secret &     # a platform to talk to
    python examples/simulated_camera.py [PORT]
"""

from __future__ import annotations

import asyncio
import sys

from sip28181.device import DeviceSimulator, RegistrationError
from sip28181.logutil import setup_logging


async def main(port: int) -> None:
    camera = DeviceSimulator("34020000001320000001", server_host="127.0.0.1", server_port=port,
                             password="12345678", transport="tcp", keepalive_interval=5)
    try:
        async with camera:
            response = camera.last_response
            print(f"registered; platform time {response.headers.get('Date')}")
            for _ in range(3):
                await asyncio.sleep(1)
                print("keepalive:", (await camera.keepalive()).status)
    except RegistrationError as exc:
        print(f"refused: {exc}")
    print("unregistered")


if __name__ == "__main__":
    setup_logging("WARNING")
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5060))
