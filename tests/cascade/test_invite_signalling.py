"""The city answering INVITEs written by hand from the province's SIP endpoint: bad offers,
an offer without y=, CANCEL before the answer, the upper closing its TCP media connection, and
the city stopping while the province watches."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from media import Rfc4571Framer, RtpPsReceiver, parse_rtp
from sip28181.device.media import MediaOptions
from sip28181.errors import TransactionError
from sip28181.sdp import parse as parse_sdp
from sip28181.transport import Flow

from ..integration.conftest import wait_for
from ..integration.livekit import read_flv
from .test_invite import CHANNEL, PROVINCE, chain, live_url, upper_calls


def offer(port: int = 40000, *, session: str = "Play", proto: str = "RTP/AVP", formats: str = "96",
          extra: str = "", ssrc: str | None = "0100000077", t: str = "0 0") -> bytes:
    lines = ["v=0", f"o={PROVINCE} 0 0 IN IP4 127.0.0.1", f"s={session}", "c=IN IP4 127.0.0.1",
             f"t={t}", f"m=video {port} {proto} {formats}", "a=recvonly", "a=rtpmap:96 PS/90000"]
    lines += [line for line in extra.split("\n") if line]
    if ssrc is not None:
        lines.append(f"y={ssrc}")
    return ("\r\n".join(lines) + "\r\n").encode()


async def invite(province, city, body: bytes, *, user: str = CHANNEL, timeout: float = 6.0):
    endpoint = province.platform.endpoint
    flow = Flow("UDP", "127.0.0.1", city.sip_port)
    target = f"sip:{user}@127.0.0.1:{city.sip_port}"
    request = endpoint.build_request(
        "INVITE", target, from_uri=f"sip:{PROVINCE}@4400000000", to_uri=target, flow=flow, body=body,
        content_type="APPLICATION/SDP" if body else None,
        extra=[("Contact", f"<sip:{PROVINCE}@127.0.0.1:{endpoint.port}>"),
               ("Subject", f"{user}:0100000077,{PROVINCE}:0")])
    response, dialog = await endpoint.invite(request, flow, timeout)
    return response, dialog, flow


async def test_bad_offers_are_refused_with_a_reason(tmp_path):
    async with chain(tmp_path) as (province, city, camera):
        cases = [
            (b"garbage", 400),
            (b"", 400),
            (offer(formats="8").replace(b"a=rtpmap:96 PS/90000\r\n", b""), 488),    # no PS
            (offer(session="Talk"), 488),
            (offer(proto="TCP/RTP/AVP"), 488),                                       # no a=setup
            (offer(proto="UDP/TLS/RTP/SAVP"), 488),
            (offer(session="Playback"), 488),                                          # no t= range
            (offer(port=0), 488),
        ]
        for body, status in cases:
            response, dialog, _ = await invite(province, city, body)
            assert response.status == status, (body, response.status, response.reason)
            assert dialog is None and response.reason
        response, _, _ = await invite(province, city, offer(), user="44010000001310009999")
        assert response.status == 404 and "not shared" in response.reason
        assert camera.media.invites_received == 0
        assert not upper_calls(city) and len(city.platform.streams) == 0
        # the city still serves a good offer afterwards
        response, dialog, flow = await invite(province, city, offer())
        assert response.status == 200
        await province.platform.endpoint.request(dialog.create_request("BYE"), flow, 5)


@pytest.mark.parametrize("ssrc", [None, "0100000077"])
async def test_ssrc_is_the_upper_s_or_generated_and_rtp_carries_it(tmp_path, ssrc):
    loop = asyncio.get_running_loop()
    packets: list[bytes] = []

    class Receiver(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            packets.append(data)

    rx, _ = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
    port = rx.get_extra_info("sockname")[1]
    try:
        async with chain(tmp_path) as (province, city, camera):
            response, dialog, flow = await invite(province, city, offer(port, ssrc=ssrc))
            assert response.status == 200
            answer = parse_sdp(response.body)
            media = answer.video
            assert answer.session_name == "Play" and media.direction == "sendonly"
            assert media.proto == "RTP/AVP" and media.formats == ["96"] and answer.connection == "127.0.0.1"
            assert answer.origin_user == CHANNEL and answer.media_format == ""
            assert len(answer.ssrc) == 10 and answer.ssrc[0] == "0"
            if ssrc is not None:
                assert answer.ssrc == ssrc
            await wait_for(lambda: len(packets) > 50)
            assert {parse_rtp(p).ssrc for p in packets} == {int(answer.ssrc)}
            # sent from the port of the answer
            call = upper_calls(city)[0]
            assert call.local_port == media.port and call.generated_ssrc == (ssrc is None)
            frames = RtpPsReceiver().feed_packets(sorted(packets, key=lambda p: parse_rtp(p).sequence))
            video = [f for f in frames if f.codec == "h264"]
            assert video and video[0].keyframe
            bye = await province.platform.endpoint.request(dialog.create_request("BYE"), flow, 5)
            assert bye.status == 200
            assert await asyncio.wait_for(call.closed, 5) == "upper bye"
            assert len(city.platform.sessions.ssrcs) <= 1          # a generated SSRC is freed
            await wait_for(lambda: len(city.platform.streams) == 0)
            # BYE again: the dialog is gone
            again = await province.platform.endpoint.request(dialog.create_request("BYE"), flow, 5)
            assert again.status == 481
    finally:
        rx.close()


async def test_cancel_before_the_answer(tmp_path):
    async with chain(tmp_path, options=MediaOptions(answer_delay=2.0)) as (province, city, camera):
        task = asyncio.ensure_future(invite(province, city, offer(), timeout=0.8))
        await wait_for(lambda: upper_calls(city))
        call = upper_calls(city)[0]
        with pytest.raises(TransactionError):
            await task                     # the province gave up: CANCEL after the 100 Trying
        assert await asyncio.wait_for(call.closed, 5) == "cancelled"
        assert call.dialog is None and not upper_calls(city)
        # nobody else wanted the camera: its pending INVITE is cancelled or ended after the linger
        await wait_for(lambda: len(city.platform.streams) == 0 and len(city.platform.sessions) == 0, timeout=8)
        assert camera.media.cancels_received == 1 or not camera.media.streams


async def test_upper_closing_the_tcp_media_connection_ends_the_call(tmp_path):
    got = bytearray()
    connected = asyncio.Event()
    writers = []

    async def serve(reader, writer):
        writers.append(writer)
        connected.set()
        while len(got) < 20000 and (chunk := await reader.read(65536)):
            got.extend(chunk)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with chain(tmp_path) as (province, city, camera):
            body = offer(port, proto="TCP/RTP/AVP", extra="a=setup:passive\na=connection:new")
            response, dialog, flow = await invite(province, city, body)
            assert response.status == 200
            media = parse_sdp(response.body).video
            assert media.proto == "TCP/RTP/AVP" and media.setup == "active"
            call = upper_calls(city)[0]
            await asyncio.wait_for(connected.wait(), 5)
            # RFC 4571 framed RTP with the offered SSRC, starting at a keyframe
            assert await asyncio.wait_for(call.closed, 10) == "media connection closed"
            packets = Rfc4571Framer().feed(bytes(got))
            assert packets and {parse_rtp(p).ssrc for p in packets} == {100000077}
            video = [f for f in RtpPsReceiver().feed_packets(packets) if f.codec == "h264"]
            assert video and video[0].keyframe
            assert call.bye_sent                    # the city told the province it is over
            await wait_for(lambda: len(city.platform.streams) == 0)
    finally:
        server.close()


async def test_city_stopping_ends_the_province_stream(tmp_path):
    async with chain(tmp_path) as (province, city, camera), aiohttp.ClientSession() as http:
        async with http.get(live_url(province)) as resp:
            tags = await read_flv(resp, frames=10)
            call = upper_calls(city)[0]
            await city.stop()
            assert call.bye_sent and call.closed.done()
            await read_flv(resp, frames=None, tags=tags, timeout=10)      # the viewer sees the end
        await wait_for(lambda: len(province.platform.streams) == 0 and len(province.platform.sessions) == 0)


async def test_losing_the_upper_ends_its_calls(tmp_path):
    async with chain(tmp_path) as (province, city, camera), aiohttp.ClientSession() as http:
        async with http.get(live_url(province)) as resp:
            tags = await read_flv(resp, frames=10)
            call = upper_calls(city)[0]
            cascade = city.platform.cascade
            # what the link reports when the upper stops answering keepalives
            cascade.link_changed(cascade.link(PROVINCE), online=False, reason="3 keepalives without answer")
            assert await asyncio.wait_for(call.closed, 5) == "upper offline"
            await wait_for(lambda: call.bye_sent)
            await read_flv(resp, frames=None, tags=tags, timeout=10)      # the BYE reached the province
        await wait_for(lambda: len(province.platform.streams) == 0)
        await wait_for(lambda: len(city.platform.streams) == 0)
