"""A real device's RTP, replayed from a capture into a live session, watched over HTTP-FLV.

The capture (``tests/data/ps/device_sim_udp_digest_h264.pcapng``, see the data README) holds 798
RTP/PS packets a GB28181 device simulator sent to port 9000: H.264 640x480 25 fps, 350 frames,
one packet lost on the wire. The simulated camera answers the INVITE as usual, but instead of its
own pattern it sends the captured packets (read with dpkt, addresses rewritten to 127.0.0.1) to
the port of the offer. What the viewer receives is compared with the same packets run offline
through the receiver and the FLV muxer.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import aiohttp
import dpkt
import pytest

from media import FlvMuxer, RtpPsReceiver

from .conftest import wait_for
from .livekit import auth, base, camera, decode, live_url, media_server, read_flv

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "ps" / "device_sim_udp_digest_h264.pcapng"
CAPTURE_SSRC = 100000001          # y=0100000001 in the capture's SDP


def captured_rtp() -> list[bytes]:
    packets = []
    with open(CAPTURE, "rb") as fh:
        for _, buf in dpkt.pcapng.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP) and ip.data.dport == 9000:
                packets.append(bytes(ip.data.data))
    return packets


def offline_video_tags(packets: list[bytes]) -> int:
    """Coded video frames the FLV muxer writes for these packets (same stages, no sockets)."""
    receiver = RtpPsReceiver()
    frames = receiver.feed_packets(packets) + receiver.flush()
    muxer = FlvMuxer("h264", None)
    return sum(1 for f in frames if muxer.mux(f))


def with_ssrc(packet: bytes, ssrc: int) -> bytes:
    return packet[:8] + struct.pack(">I", ssrc) + packet[12:]


@pytest.mark.parametrize("keep_ssrc", [False, True], ids=["ssrc-rewritten", "device-own-ssrc"])
async def test_captured_device_rtp_played_live(tmp_path, keep_ssrc):
    packets = captured_rtp()
    assert len(packets) == 798
    expected = offline_video_tags(packets)
    sent = asyncio.Event()

    async with media_server(tmp_path) as server, camera(server) as device, \
            aiohttp.ClientSession() as http:
        async def replay(s):
            """Stands in for the simulator's own streaming (called after the ACK)."""
            ssrc = CAPTURE_SSRC if keep_ssrc else s.ssrc
            # the viewer is attached before the first packet, so it gets every frame (a viewer
            # joining later starts on the last keyframe, and this replay is fast)
            await wait_for(lambda: any(st.relay.flv_viewers for st in server.platform.streams.list()))
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            try:
                for i in range(0, len(packets), 16):
                    for p in packets[i:i + 16]:
                        sock.sendto(with_ssrc(p, ssrc), ("127.0.0.1", s.dest_port))
                    await asyncio.sleep(0.002)
            finally:
                sock.close()
            sent.set()

        device.media._stream = replay
        async with http.get(live_url(server)) as resp:
            assert resp.status == 200
            reading = asyncio.ensure_future(read_flv(resp, timeout=30))
            await asyncio.wait_for(sent.wait(), 15)
            stream = server.platform.streams.list()[0]
            await wait_for(lambda: stream.stats().get("packets") == len(packets))
            async with http.get(f"{base(server)}/api/v1/streams/{stream.stream_id}", headers=auth()) as r:
                listed = await r.json()
            assert listed["packets"] == 798 and listed["bitrate"] > 0
            assert listed["video_codec"] == "h264" and listed["audio_codec"] is None
            await device.media.bye()                    # the device ends the session
            tags = await reading
        assert len(tags.video_frames) == expected and expected >= 345
        pictures, key_first = decode(tags.data)
        assert key_first and pictures >= expected - 1   # the frame hit by the lost packet may not decode
        assert server.platform.streams.list() == []
        # (the packet lost on the wire is the last but one: only the final flush can tell it is
        # missing, so the loss counters do not show it)
        async with http.get(f"{base(server)}/metrics", headers=auth()) as r:
            text = await r.text()
        assert "sip28181_rtp_packets_received_total 798.0" in text
