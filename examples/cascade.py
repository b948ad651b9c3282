"""A city platform registered to a province platform, a camera at the city: the province sees, plays,
turns and hears the camera through the city.

    python examples/cascade.py [PROVINCE_SIP_PORT] [CITY_SIP_PORT]

Both platforms run in this process on loopback, each a full :class:`~sip28181.server.Server`; the
city is configured the way you would configure it in production, with an ``[[upper]]`` table in
its TOML file (printed below). In a real deployment each runs on its own machine with
``python -m sip28181.server --config city.toml``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from sip28181.config import Config
from sip28181.device import DeviceSimulator
from sip28181.logutil import setup_logging
from sip28181.platform.events import AlarmReceived, DeviceOffline, DeviceOnline
from sip28181.server import Server

PROVINCE = "44000000002000000001"
CITY = "44010000002000000001"
CAMERA = "44010600001320000001"

CITY_TOML = """\
data_dir = "{data_dir}"

[sip]
id = "{city}"
host = "127.0.0.1"
port = {city_port}

[auth]
password = "camera-secret"          # what the city's cameras register with

[http]
host = "127.0.0.1"
port = 0
api_token = "example"

[media]
host = "127.0.0.1"
bind = "127.0.0.1"
linger = 0.0

# The province this city registers to; add one [[upper]] table per upper platform.
[[upper]]
sip_id = "{province}"
host = "127.0.0.1"
port = {province_port}
transport = "udp"
password = "province-secret"        # the password the province gave this city
register_interval = 3600
keepalive_interval = 5
share = "all"                       # or a list of device and channel IDs
tree = "2016"                       # catalog tree rules the province expects ("2022" too)
"""


class FrameCounter:
    """A relay sink (``media.relay.FrameSink``): called in the event loop, so it must not block."""

    def __init__(self) -> None:
        self.video = self.keyframes = 0

    def on_frames(self, frames) -> None:
        for frame in frames:
            if frame.codec in ("h264", "h265"):
                self.video += 1
                self.keyframes += frame.keyframe

    def on_end(self, reason: str) -> None:
        print("stream ended:", reason)


async def until(predicate, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


async def main(province_port: int, city_port: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        province = Server(Config(
            sip_id=PROVINCE, sip_host="127.0.0.1", sip_port=province_port, password="province-secret",
            http_host="127.0.0.1", http_port=0, media_host="127.0.0.1", media_bind="127.0.0.1",
            media_linger=0.0, data_dir=str(Path(tmp) / "province"), api_token="example"))
        city_toml = Path(tmp) / "city.toml"
        city_toml.write_text(CITY_TOML.format(data_dir=Path(tmp) / "city", city=CITY, city_port=city_port,
                                              province=PROVINCE, province_port=province_port))
        print(f"city.toml:\n{city_toml.read_text()}")
        city = Server(Config.load(["--config", str(city_toml)]))

        seen: asyncio.Queue = asyncio.Queue()       # the city coming and going, at the province
        alarms: asyncio.Queue = asyncio.Queue()
        await province.start()
        province.platform.events.on(seen.put_nowait, DeviceOnline, DeviceOffline)
        province.platform.events.on(alarms.put_nowait, AlarmReceived)
        await city.start()
        camera = DeviceSimulator(CAMERA, server_id=CITY, server_port=city_port, password="camera-secret",
                                 channels=2)
        try:
            link = city.platform.cascade.link(PROVINCE)
            await until(lambda: link.online, "city registered with the province")
            print(f"city {CITY} registered with province {PROVINCE}: {link.state.value}")
            online = await asyncio.wait_for(seen.get(), 5)
            print(f"province: {online.device_id} is online ({online.reason})")

            await camera.start()
            await city.platform.query_catalog(CAMERA)
            # the province asked for the city's catalog when the city registered; ask again now
            # that the camera is there (a catalog NOTIFY from the city would bring it as well)
            result = await province.platform.query_catalog(CITY, timeout=10)
            channels = [c for c in province.platform.channels(CITY) if c.kind == "channel"]
            print(f"province: catalog of the city, {result.received} of {result.sum_num} items, "
                  f"{len(channels)} channels")
            for channel in channels:
                print(f"province: channel {channel.channel_id} {channel.name} {channel.status}")
            channel_id = channels[0].channel_id

            # what http://<province>/live/<city>/<channel>.flv serves: the province INVITEs the
            # city, the city INVITEs the camera and forwards its stream as PS over RTP
            handle = await province.platform.streams.acquire(CITY, channel_id)
            counter = FrameCounter()
            handle.relay.add_sink(counter)
            await asyncio.sleep(2)
            handle.relay.remove_sink(counter)
            handle.release()
            print(f"province: watched {counter.video} video frames ({counter.keyframes} keyframes) "
                  f"of /live/{CITY}/{channel_id}.flv")

            cmd = await province.platform.ptz(CITY, channel_id, "right", 128)
            await until(lambda: camera.management.ptz_log, "PTZ at the camera")
            entry = camera.management.ptz_log[-1]
            print(f"camera: PTZ {entry.raw} on {entry.channel_id} (province sent {cmd})")

            await camera.management.send_alarm(channel_id, method=5, alarm_type=100001,
                                               image_urls=["http://127.0.0.1/outfall-2.jpg"])
            event = await asyncio.wait_for(alarms.get(), 10)
            alarm = event.alarm
            print(f"province: alarm from {event.device_id} on {alarm.alarm_device_id}: method {alarm.method} "
                  f"type {alarm.alarm_type} image {alarm.image_urls[0]}")
        finally:
            await camera.stop()
            await city.stop()
            try:
                offline = await asyncio.wait_for(seen.get(), 5)
                print(f"province: {offline.device_id} is offline ({offline.reason})")
            except asyncio.TimeoutError:
                pass
            await province.stop()


if __name__ == "__main__":
    setup_logging("WARNING")
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5060,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 5070))
