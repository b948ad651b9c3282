"""UDP media to an upper sent with UDP GSO (one sendmsg per frame) or one sendto per packet:
the province decodes either way, every RTP packet arrives as its own datagram in sequence, and a
socket that would block drops the rest of the frame and the stream resumes at a keyframe."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from media import RtpPsReceiver, parse_rtp, udpsend
from sip28181.device.media import MediaOptions

from ..integration.conftest import wait_for
from ..integration.livekit import decode, read_flv
from .test_invite import chain, live_url, upper_calls
from .test_invite_signalling import invite, offer

#: Big enough pictures that most frames take several RTP packets (a GSO send each).
PICTURES = MediaOptions(pattern_size=(640, 480))

needs_gso = pytest.mark.skipif(not udpsend.gso_supported(), reason="no UDP GSO on this platform")


@pytest.mark.parametrize("gso", [pytest.param(True, marks=needs_gso), False], ids=["gso", "sendto"])
async def test_province_decodes_the_city_stream_over_udp(tmp_path, gso):
    async with chain(tmp_path, options=PICTURES, cascade_udp_gso=gso) as (province, city, camera), \
            aiohttp.ClientSession() as http:
        async with http.get(live_url(province, "udp")) as resp:
            assert resp.status == 200
            tags = await read_flv(resp, frames=40)
            call = upper_calls(city)[0]
            status = call.status()
            assert status["transport"] == "udp" and call.sink.packets_sent > 0
            assert province.platform.streams.list()[0].stats()["lost"] == 0
            if gso:
                udp = status["udp"]
                assert udp["gso"] and udp["gso_sends"] > 0 and udp["dropped"] == 0
                # fewer system calls than datagrams: whole frames left in one call
                assert udp["syscalls"] < udp["datagrams"] <= call.sink.packets_sent
            else:
                assert status["udp"] is None
        frames = len(tags.video_frames)
        assert frames >= 40
        pictures, key_first = decode(tags.data)
        assert key_first and pictures >= frames - 1


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data, addr):
        self.datagrams.append(data)


async def receiver() -> tuple[asyncio.DatagramTransport, Collect, int]:
    """A plain UDP media port with room for the GOP cache's burst."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    transport, collect = await asyncio.get_running_loop().create_datagram_endpoint(Collect, sock=sock)
    return transport, collect, sock.getsockname()[1]


def sequences(datagrams: list[bytes]) -> list[int]:
    return [parse_rtp(d).sequence for d in datagrams]


def continuous(seqs: list[int]) -> bool:
    return all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))


@needs_gso
async def test_every_rtp_packet_arrives_as_its_own_datagram_in_sequence(tmp_path):
    rx, collect, port = await receiver()
    try:
        async with chain(tmp_path, options=PICTURES) as (province, city, camera):
            response, dialog, flow = await invite(province, city, offer(port, ssrc="0100000077"))
            assert response.status == 200
            await wait_for(lambda: len(collect.datagrams) >= 400, timeout=10)
            call = upper_calls(city)[0]
            udp = call.status()["udp"]
            assert udp["gso_sends"] > 0 and udp["syscalls"] < udp["datagrams"] and udp["dropped"] == 0
            got = list(collect.datagrams)
            packets = [parse_rtp(d) for d in got]
            # one RTP packet per datagram: the header's SSRC and PT, no packet above 12 + 1400 bytes
            # (never two glued together), every one but a frame's last (marker) of full size
            assert {(p.ssrc, p.payload_type) for p in packets} == {(100000077, 96)}
            assert all(len(d) <= 1412 for d in got)
            assert all(len(d) == 1412 for d, p in zip(got, packets) if not p.marker)
            assert sum(p.marker for p in packets) >= 10
            # in order, nothing missing, nothing twice
            assert continuous(sequences(got))
            frames = RtpPsReceiver().feed_packets(got)
            video = [f for f in frames if f.codec == "h264"]
            assert len(video) >= 10 and video[0].keyframe
            bye = await province.platform.endpoint.request(dialog.create_request("BYE"), flow, 5)
            assert bye.status == 200
    finally:
        rx.close()


class Blocking:
    """The city's media socket, full for the next ``count`` sends (EAGAIN), then itself again."""

    def __init__(self, sock, count: int) -> None:
        self.sock, self.count = sock, count

    def _full(self) -> bool:
        if self.count > 0:
            self.count -= 1
            return True
        return False

    def sendmsg(self, *args):
        if self._full():
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return self.sock.sendmsg(*args)

    def sendto(self, *args):
        if self._full():
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return self.sock.sendto(*args)


@needs_gso
async def test_a_full_socket_drops_the_rest_of_the_frame_and_resumes_at_a_keyframe(tmp_path):
    rx, collect, port = await receiver()
    try:
        async with chain(tmp_path, options=PICTURES) as (province, city, camera):
            response, dialog, flow = await invite(province, city, offer(port, ssrc="0100000078"))
            assert response.status == 200
            await wait_for(lambda: len(collect.datagrams) >= 100, timeout=10)
            call = upper_calls(city)[0]
            sender = call._udp_sender
            sender.sock = Blocking(sender.sock, 1)
            await wait_for(lambda: call.sink.resyncs == 1, timeout=5)
            before = len(collect.datagrams)
            await wait_for(lambda: len(collect.datagrams) >= before + 200, timeout=10)
            udp = call.status()["udp"]
            assert udp["blocked"] == 1 and udp["dropped"] > 0 and udp["errors"] == 0 and udp["gso"]
            assert call.status()["media"]["resyncs"] == 1
            seqs = sequences(collect.datagrams)
            gaps = [(i, (b - a - 1) & 0xFFFF) for i, (a, b) in enumerate(zip(seqs, seqs[1:]))
                    if (b - a) & 0xFFFF != 1]
            # one gap, exactly the packets dropped; sequence numbers go on after it
            assert [n for _, n in gaps] == [udp["dropped"]]
            after = collect.datagrams[gaps[0][0] + 1:]
            video = [f for f in RtpPsReceiver().feed_packets(after) if f.codec == "h264"]
            assert video and video[0].keyframe
            bye = await province.platform.endpoint.request(dialog.create_request("BYE"), flow, 5)
            assert bye.status == 200
    finally:
        rx.close()
