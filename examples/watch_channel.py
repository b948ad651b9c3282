"""A platform and a camera in one process: catalog, live video, PTZ and an eco-environment alarm.

    python examples/watch_channel.py [SIP_PORT]

The server (SIP, media and HTTP on loopback) takes in a simulated camera with two channels; the
script lists them, watches the first one's live stream for two seconds through the relay (the same
stream ``/live/{device}/{channel}.flv`` serves), turns the camera, and receives an HJ alarm with
its image URL.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile

from sip28181.config import Config
from sip28181.device import DeviceSimulator
from sip28181.logutil import setup_logging
from sip28181.platform.events import AlarmReceived
from sip28181.server import Server

CAMERA = "34020000001320000001"


class FrameCounter:
    """A relay sink (``media.relay.FrameSink``): called in the event loop, so it must not block."""

    def __init__(self) -> None:
        self.video = self.keyframes = self.audio = 0
        self.codecs: set[str] = set()

    def on_frames(self, frames) -> None:
        for frame in frames:
            self.codecs.add(frame.codec)
            if frame.codec in ("h264", "h265"):
                self.video += 1
                self.keyframes += frame.keyframe
            else:
                self.audio += 1

    def on_end(self, reason: str) -> None:
        print("stream ended:", reason)


async def main(sip_port: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        config = Config(sip_host="127.0.0.1", sip_port=sip_port, http_host="127.0.0.1", http_port=0,
                        media_host="127.0.0.1", media_bind="127.0.0.1", data_dir=data_dir,
                        api_token="example", media_linger=0.0)
        server = Server(config)
        await server.start()
        platform = server.platform
        alarms: asyncio.Queue = asyncio.Queue()
        platform.events.on(alarms.put_nowait, AlarmReceived)
        camera = DeviceSimulator(CAMERA, server_port=platform.sip_port, channels=2)
        try:
            await camera.start()
            result = await platform.query_catalog(CAMERA)
            print(f"catalog: {result.received} of {result.sum_num} items, partial={result.partial}")
            channels = [c for c in platform.channels(CAMERA) if c.kind == "channel"]
            for channel in channels:
                print(f"channel {channel.channel_id} {channel.name} {channel.status}")
            channel_id = channels[0].channel_id

            handle = await platform.streams.acquire(CAMERA, channel_id)
            counter = FrameCounter()
            handle.relay.add_sink(counter)
            await asyncio.sleep(2)
            handle.relay.remove_sink(counter)
            handle.release()
            print(f"watched {counter.video} video frames ({counter.keyframes} keyframes) "
                  f"and {counter.audio} audio frames: {', '.join(sorted(counter.codecs))}")

            print("PTZ right:", await platform.ptz(CAMERA, channel_id, "right", 128))
            print("PTZ stop:", await platform.ptz(CAMERA, channel_id, "stop"))

            await camera.management.send_alarm(channel_id, method=5, alarm_type=100001,
                                               image_urls=["http://127.0.0.1/outfall-2.jpg"])
            event = await asyncio.wait_for(alarms.get(), 5)
            alarm = event.alarm
            print(f"alarm from {event.device_id}: method {alarm.method} type {alarm.alarm_type} "
                  f"image {alarm.image_urls[0]}")
        finally:
            await camera.stop()
            await server.stop()


if __name__ == "__main__":
    setup_logging("WARNING")
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5060))
