"""The city answering INVITEs written by hand from the province's SIP endpoint (or a raw UDP
socket where the request must be malformed): bad offers, an offer without y=, CANCEL before the
answer, media ports from the configured range, the upper closing its TCP media connection, the
upper's settings changing while it watches, and the city stopping while the province watches."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from media import Rfc4571Framer, RtpPsReceiver, parse_rtp
from sip28181.device.media import MediaOptions
from sip28181.errors import TransactionError
from sip28181.sdp import parse as parse_sdp
from sip28181.transport import Flow

from ..integration.conftest import TOKEN, wait_for
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


class RawSip(asyncio.DatagramProtocol):
    """A UDP SIP peer writing requests by hand: what a real endpoint would never send."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.responses.put_nowait(data)

    @classmethod
    async def open(cls):
        transport, peer = await asyncio.get_running_loop().create_datagram_endpoint(
            cls, local_addr=("127.0.0.1", 0))
        peer.transport = transport
        peer.port = transport.get_extra_info("sockname")[1]
        return peer

    async def send(self, city, method: str, *, body: bytes = b"", from_tag: str | None = "f1",
                   to_tag: str | None = None, content_type: str = "APPLICATION/SDP") -> tuple[int, str]:
        """The final status and reason the city answers."""
        target = f"sip:{CHANNEL}@127.0.0.1:{city.sip_port}"
        lines = [f"{method} {target} SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch=z9hG4bK{uuid.uuid4().hex[:16]}",
                 f"From: <sip:{PROVINCE}@4400000000>" + (f";tag={from_tag}" if from_tag else ""),
                 f"To: <{target}>" + (f";tag={to_tag}" if to_tag else ""),
                 f"Call-ID: {uuid.uuid4().hex}@127.0.0.1", f"CSeq: 2 {method}",
                 f"Contact: <sip:{PROVINCE}@127.0.0.1:{self.port}>", "Max-Forwards: 70"]
        if body:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        self.transport.sendto(("\r\n".join(lines) + "\r\n\r\n").encode() + body, ("127.0.0.1", city.sip_port))
        while True:
            data = await asyncio.wait_for(self.responses.get(), 5)
            status_line = data.split(b"\r\n", 1)[0].decode()
            _, status, reason = status_line.split(" ", 2)
            if int(status) >= 200:
                return int(status), reason


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
            # a name would cost a blocking lookup per RTP packet
            (offer().replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 localhost"), 488),
        ]
        for body, status in cases:
            response, dialog, _ = await invite(province, city, body)
            assert response.status == status, (body, response.status, response.reason)
            assert dialog is None and response.reason
        response, _, _ = await invite(province, city, offer(), user="44010000001310009999")
        assert response.status == 404 and "not shared" in response.reason
        raw = await RawSip.open()
        try:
            # no From tag: no dialog can be built, refused before the camera is asked
            status, reason = await raw.send(city, "INVITE", body=offer(), from_tag=None)
            assert status == 400 and "From tag" in reason
            # a re-INVITE or INFO in a dialog the city does not know (RFC 3261 §12.2.2)
            status, _ = await raw.send(city, "INVITE", body=offer(), to_tag="nosuchdialog")
            assert status == 481
            status, _ = await raw.send(city, "INFO", body=b"PAUSE RTSP/1.0\r\nCSeq: 1\r\n\r\n",
                                       to_tag="nosuchdialog", content_type="Application/MANSRTSP")
            assert status == 481
        finally:
            raw.transport.close()
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
            # the SSRC the city generated is free again; the upper's own was never the city's
            assert not city.platform.sessions.ssrcs.in_use(call.ssrc)
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
        assert camera.media.cancels_received == 1 and not camera.media.streams


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


async def test_media_ports_come_from_the_configured_range(tmp_path):
    low, high = 47310, 47329
    loop = asyncio.get_running_loop()
    sources = []

    class Receiver(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            sources.append(addr[1])

    rx, _ = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
    accepted = asyncio.Queue()

    async def serve(reader, writer):
        accepted.put_nowait(writer.get_extra_info("peername")[1])
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        async with chain(tmp_path, media_port_min=low, media_port_max=high) as (province, city, camera):
            # UDP: sent from the port of the answer, in the range
            response, dialog, flow = await invite(province, city, offer(rx.get_extra_info("sockname")[1]))
            assert response.status == 200
            port = parse_sdp(response.body).video.port
            assert low <= port <= high
            await wait_for(lambda: len(sources) > 10)
            assert set(sources) == {port}
            # TCP, the upper connects: the city listens on a port of the range
            body = offer(9, proto="TCP/RTP/AVP", extra="a=setup:active\na=connection:new", ssrc="0100000078")
            response2, dialog2, _ = await invite(province, city, body)
            assert response2.status == 200
            listen = parse_sdp(response2.body).video.port
            assert low <= listen <= high and listen != port
            reader, writer = await asyncio.open_connection("127.0.0.1", listen)
            packets = Rfc4571Framer().feed(await reader.readexactly(2000))
            assert packets and parse_rtp(packets[0]).ssrc == 100000078
            # TCP, the upper listens: the city connects from a port of the range
            body = offer(server.sockets[0].getsockname()[1], proto="TCP/RTP/AVP",
                         extra="a=setup:passive\na=connection:new", ssrc="0100000079")
            response3, dialog3, _ = await invite(province, city, body)
            assert response3.status == 200
            source = await asyncio.wait_for(accepted.get(), 5)
            assert low <= source <= high and source == parse_sdp(response3.body).video.port
            for d in (dialog, dialog2, dialog3):
                await province.platform.endpoint.request(d.create_request("BYE"), flow, 5)
            writer.close()
            await wait_for(lambda: not upper_calls(city))
            # the ports went back to the pool
            assert not {port, listen, source} & city.platform.streams.ingest._used
    finally:
        rx.close()
        server.close()


async def test_a_settings_change_keeps_the_calls_removal_ends_them(tmp_path):
    async with chain(tmp_path) as (province, city, camera), aiohttp.ClientSession() as http:
        cascade = city.platform.cascade
        old = cascade.link(PROVINCE)
        url = f"http://127.0.0.1:{city.http_port}/api/v1/uppers/{PROVINCE}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        settings = {"host": "127.0.0.1", "port": province.platform.sip_port, "transport": "udp",
                    "keepalive_interval": 5}
        async with http.get(live_url(province)) as resp:
            tags = await read_flv(resp, frames=10)
            call = upper_calls(city)[0]
            # a new name: the link is replaced, the province keeps watching
            async with http.put(url, headers=headers, json={**settings, "name": "Province"}) as r:
                assert r.status == 200, await r.text()
            new = cascade.link(PROVINCE)
            assert new is not old
            await wait_for(lambda: new.online)
            await read_flv(resp, frames=len(tags.video_frames) + 25, tags=tags)
            assert not call.closed.done() and call.link is new
            assert upper_calls(city) == [call]
            # the upper disabled: its calls end, the province's viewer sees the end
            async with http.put(url, headers=headers, json={**settings, "enabled": False}) as r:
                assert r.status == 200, await r.text()
            # (the unregistration may reach the province first: it BYEs)
            assert await asyncio.wait_for(call.closed, 5) in ("upper offline", "upper bye")
            await read_flv(resp, frames=None, tags=tags, timeout=10)
        assert not upper_calls(city)
        await wait_for(lambda: len(city.platform.streams) == 0)
