"""Media sessions over loopback: platform.sessions against the device simulator, RTP received here.

The test plays the media receiver: it opens a UDP socket or TCP listener (or connects, for TCP
active), invites through ``platform.sessions`` and decodes what arrives with ``RtpPsReceiver``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from media import Rfc4571Framer, RtpPsReceiver, parse_rtp
from sip28181.device import DeviceSimulator
from sip28181.device.media import MediaOptions, SsrcMode
from sip28181.errors import LocalProtocolError, NotFoundError
from sip28181.platform.sessions import (MediaOffer, MediaSession, MediaTransport, SessionError, SessionKind,
                                        SessionState)
from sip28181.server import Server

from .conftest import SERVER_ID, wait_for

DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"
PS_FILE = "tests/data/ps/libmpeg_h264_g711a.ps"


# -- media receivers (the test's side of the stream) -----------------------------------------------
class Sink:
    """Collects RTP packets and decodes them to frames."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self.receiver = RtpPsReceiver()
        self.frames = []
        self.port = 0
        self.connected = asyncio.Event()
        self.eof = asyncio.Event()

    def add(self, packets: list[bytes]) -> None:
        self.packets += packets
        self.frames += self.receiver.feed_packets(packets)

    @property
    def video(self) -> list:
        return [f for f in self.frames if f.codec in ("h264", "h265")]

    @property
    def ssrcs(self) -> set[int]:
        return {parse_rtp(p).ssrc for p in self.packets}

    def video_pts(self) -> list[int]:
        return [f.pts for f in self.video]


class UdpSink(Sink, asyncio.DatagramProtocol):
    @classmethod
    async def open(cls) -> "UdpSink":
        sink = cls()
        loop = asyncio.get_running_loop()
        sink.transport, _ = await loop.create_datagram_endpoint(lambda: sink, local_addr=("127.0.0.1", 0))
        sink.port = sink.transport.get_extra_info("sockname")[1]
        return sink

    def datagram_received(self, data, addr) -> None:
        self.add([data])

    async def close(self) -> None:
        self.transport.close()


class TcpSink(Sink):
    """RFC 4571 over TCP: listens (we offered tcp-passive) or connects (tcp-active)."""

    def __init__(self) -> None:
        super().__init__()
        self.framer = Rfc4571Framer()
        self.server = None
        self.writers = []
        self.tasks = []

    @classmethod
    async def listen(cls) -> "TcpSink":
        sink = cls()
        sink.server = await asyncio.start_server(sink._accepted, "127.0.0.1", 0)
        sink.port = sink.server.sockets[0].getsockname()[1]
        return sink

    async def _accepted(self, reader, writer) -> None:
        self.writers.append(writer)
        self.connected.set()
        await self._read(reader)

    async def connect(self, host: str, port: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        self.writers.append(writer)
        self.connected.set()
        self.tasks.append(asyncio.get_running_loop().create_task(self._read(reader)))

    async def _read(self, reader) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                self.eof.set()
                return
            self.add(self.framer.feed(data))

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def simulator(server: Server, **kw) -> DeviceSimulator:
    kw.setdefault("keepalive_interval", 30)
    return DeviceSimulator(DEVICE, server_id=SERVER_ID, server_host="127.0.0.1", server_port=server.sip_port, **kw)


async def online(server: Server, device: DeviceSimulator) -> None:
    await device.start()
    await wait_for(lambda: (s := server.platform.registry.get(DEVICE)) is not None and s.status == "online")


def window() -> tuple[int, int]:
    now = int(time.time())
    return now - 3600, now - 3600 + 600


# -- live ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sip_transport", ["udp", "tcp"])
async def test_live_udp_bye_from_platform(server, sip_transport):
    sessions = server.platform.sessions
    sink = await UdpSink.open()
    device = simulator(server, transport=sip_transport)
    await online(server, device)
    try:
        ssrc = sessions.allocate_ssrc(SessionKind.PLAY)
        assert ssrc[0] == "0" and ssrc[1:6] == SERVER_ID[3:8] and len(ssrc) == 10
        session = await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", sink.port, "udp", ssrc), timeout=5)
        assert isinstance(session, MediaSession) and session.active
        assert session.kind is SessionKind.PLAY and session.transport is MediaTransport.UDP
        assert session.ssrc == ssrc and session.answer is not None and session.answer.ssrc == ssrc
        assert session.device_id == DEVICE and session.channel_id == CHANNEL
        assert session.remote_host == "127.0.0.1" and session.remote_port > 0
        assert sessions.get(session.call_id) is session and len(sessions) == 1

        await wait_for(lambda: len(sink.video) >= 30, timeout=10)
        assert sink.ssrcs == {int(ssrc)}
        assert sink.video[0].keyframe                       # a receiver can show the first picture
        stream = device.media.stream(session.call_id)
        assert stream is not None and stream.acked and stream.ssrc == int(ssrc)
        # the device saw our offer as GB devices expect it
        invite = stream.invite
        assert invite.headers.get("Subject") == f"{CHANNEL}:{ssrc},{SERVER_ID}:0"
        assert invite.uri.startswith(f"sip:{CHANNEL}@")

        await session.bye()
        assert await asyncio.wait_for(session.closed, 2) == "bye"
        assert await asyncio.wait_for(stream.ended, 2) == "bye received"
        assert not session.active and sessions.get(session.call_id) is None
        assert not sessions.ssrcs.in_use(ssrc)
        count = len(sink.packets)
        await asyncio.sleep(0.3)
        assert len(sink.packets) == count                   # media stopped with the BYE
    finally:
        await device.stop()
        await sink.close()


async def test_live_tcp_passive(server):
    """We offer a=setup:passive: we listen, the device connects to us (§8.6)."""
    sessions = server.platform.sessions
    sink = await TcpSink.listen()
    device = simulator(server)
    await online(server, device)
    try:
        session = await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", sink.port, MediaTransport.TCP_PASSIVE),
                                        timeout=5)
        assert session.transport is MediaTransport.TCP_PASSIVE
        media = session.answer.video
        assert media.tcp and media.setup == "active" and media.connection_mode == "new"
        offer = device.media.stream(session.call_id).offer.video
        assert offer.proto == "TCP/RTP/AVP" and offer.setup == "passive"
        await asyncio.wait_for(sink.connected.wait(), 5)
        await wait_for(lambda: len(sink.video) >= 25, timeout=10)
        assert sink.ssrcs == {session.ssrc_int}
        assert sink.framer.resyncs == 0
        await session.bye()
        await asyncio.wait_for(sink.eof.wait(), 3)         # the device closed its connection
    finally:
        await device.stop()
        await sink.close()


async def test_live_tcp_active(server):
    """We offer a=setup:active: the device listens on its answer's port and we connect."""
    sessions = server.platform.sessions
    sink = TcpSink()
    device = simulator(server)
    await online(server, device)
    try:
        session = await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", 9, MediaTransport.TCP_ACTIVE),
                                        timeout=5)
        media = session.answer.video
        assert media.setup == "passive" and session.remote_port == media.port and session.remote_port != 9
        await sink.connect(session.remote_host, session.remote_port)
        await wait_for(lambda: len(sink.video) >= 25, timeout=10)
        assert sink.ssrcs == {session.ssrc_int}
        await session.bye()
        assert await session.closed == "bye"
    finally:
        await device.stop()
        await sink.close()


async def test_live_from_ps_file_and_device_bye(server):
    sessions = server.platform.sessions
    sink = await UdpSink.open()
    device = simulator(server, media=MediaOptions(source=PS_FILE))
    await online(server, device)
    try:
        session = await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", sink.port), timeout=5)
        await wait_for(lambda: len(sink.video) >= 10 and any(f.codec == "g711a" for f in sink.frames), timeout=10)
        assert {f.codec for f in sink.frames} == {"h264", "g711a"}
        await device.media.bye(session.call_id)
        assert await asyncio.wait_for(session.closed, 3) == "device bye"
        assert sessions.get(session.call_id) is None
    finally:
        await device.stop()
        await sink.close()


@pytest.mark.parametrize("mode", [SsrcMode.OWN, SsrcMode.OMIT, SsrcMode.OMIT_OWN])
async def test_device_ssrc_quirks(server, mode):
    """Field devices answer with their own y=, or none (§8.3): session.ssrc says what RTP carries."""
    sessions = server.platform.sessions
    sink = await UdpSink.open()
    device = simulator(server, media=MediaOptions(ssrc_mode=mode))
    await online(server, device)
    try:
        offered = sessions.allocate_ssrc()
        session = await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", sink.port, ssrc=offered), timeout=5)
        await wait_for(lambda: len(sink.video) >= 5, timeout=10)
        (carried,) = sink.ssrcs
        if mode is SsrcMode.OWN:
            assert session.answer.ssrc != offered and session.ssrc == session.answer.ssrc
            assert carried == int(session.ssrc) != int(offered)
        elif mode is SsrcMode.OMIT:
            assert session.answer.ssrc is None and session.ssrc == offered and carried == int(offered)
        else:   # no y= and RTP with another SSRC: only a receiver accepting any SSRC plays it
            assert session.answer.ssrc is None and session.ssrc == offered and carried != int(offered)
        await session.bye()
        assert not sessions.ssrcs.in_use(offered) and len(sessions.ssrcs) == 0
    finally:
        await device.stop()
        await sink.close()


async def test_answer_without_sdp(server):
    sessions = server.platform.sessions
    sink = await UdpSink.open()
    device = simulator(server, media=MediaOptions(answer_sdp=False))
    await online(server, device)
    try:
        session = await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", sink.port), timeout=5)
        assert session.answer is None and session.remote_host == "127.0.0.1"
        await wait_for(lambda: len(sink.video) >= 5, timeout=10)
        assert sink.ssrcs == {session.ssrc_int}
        await session.bye()
    finally:
        await device.stop()
        await sink.close()


# -- failures --------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [b"this is not SDP", b"v=0\r\nm=video abc RTP/AVP 96\r\n",
                                  b"v=0\r\no=x 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n"])
async def test_bad_sdp_answer_fails_cleanly(server, body):
    sessions = server.platform.sessions
    device = simulator(server, media=MediaOptions(answer_body=body))
    await online(server, device)
    try:
        ssrc = sessions.allocate_ssrc()
        with pytest.raises(SessionError) as info:
            await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", 30000, ssrc=ssrc), timeout=5)
        assert info.value.status == 502 and "SDP" in info.value.reason
        assert len(sessions) == 0 and not sessions.ssrcs.in_use(ssrc)
        # the call was ACKed and ended with BYE: the device has nothing left
        await wait_for(lambda: not device.media.streams)
    finally:
        await device.stop()


async def test_rejected_and_unknown(server):
    sessions = server.platform.sessions
    with pytest.raises(NotFoundError):
        await sessions.invite("34020000001320009999", CHANNEL, MediaOffer("127.0.0.1", 30000))
    with pytest.raises(LocalProtocolError):
        MediaOffer("127.0.0.1", 30000, kind=SessionKind.PLAYBACK)        # no t= range
    with pytest.raises(LocalProtocolError):
        MediaOffer("127.0.0.1", 30000, transport="sctp")
    device = simulator(server, media=MediaOptions(reject_status=486))
    await online(server, device)
    try:
        with pytest.raises(SessionError) as info:
            await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", 30000), timeout=5)
        assert info.value.status == 486
        assert len(sessions) == 0 and len(sessions.ssrcs) == 0
        device.media.options.reject_status = None
        with pytest.raises(LocalProtocolError):
            await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", 30000, ssrc="12ab"))
    finally:
        await device.stop()


async def test_device_rejects_bad_offers(server):
    """The simulator as UAS answers malformed or unsupported offers with 400/488."""
    device = simulator(server)
    await online(server, device)
    try:
        flow = server.platform.registry.get(DEVICE).flow
        endpoint = server.platform.endpoint
        for body, status in ((b"garbage", 400), (b"v=0\r\ns=Play\r\nt=0 0\r\nm=video 1 RTP/AVP 98\r\n", 488),
                             (b"v=0\r\ns=Talk\r\nt=0 0\r\nm=audio 1 RTP/AVP 96\r\n", 488)):
            request = endpoint.build_request("INVITE", f"sip:{CHANNEL}@{flow.host}:{flow.port}",
                                             from_uri=f"sip:{SERVER_ID}@3402000000", to_uri=f"sip:{CHANNEL}@3402000000",
                                             flow=flow, body=body, content_type="APPLICATION/SDP",
                                             extra=[("Contact", f"<sip:{SERVER_ID}@127.0.0.1:{endpoint.port}>")])
            response, dialog = await endpoint.invite(request, flow, 5)
            assert response.status == status and dialog is None
    finally:
        await device.stop()


async def test_cancel_while_device_delays(server):
    sessions = server.platform.sessions
    device = simulator(server, media=MediaOptions(answer_delay=3.0))
    await online(server, device)
    try:
        task = asyncio.ensure_future(sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", 30000), timeout=10))
        await wait_for(lambda: device.media.streams)                 # INVITE arrived (100 Trying sent)
        stream = next(iter(device.media.streams.values()))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.wait_for(stream.ended, 3) == "cancelled"
        assert device.media.cancels_received == 1 and stream.dialog is None
        assert len(sessions) == 0 and len(sessions.ssrcs) == 0
    finally:
        await device.stop()


async def test_invite_timeout_cancels(server):
    sessions = server.platform.sessions
    device = simulator(server, media=MediaOptions(answer_delay=5.0))
    await online(server, device)
    try:
        with pytest.raises(SessionError) as info:
            await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", 30000), timeout=0.5)
        assert info.value.status == 408
        await wait_for(lambda: device.media.cancels_received == 1)
        await wait_for(lambda: not device.media.streams)
    finally:
        await device.stop()


# -- playback and download -------------------------------------------------------------------------
async def test_playback_ends_with_media_status(server):
    sessions = server.platform.sessions
    sink = await UdpSink.open()
    device = simulator(server, media=MediaOptions(history_seconds=1.0))
    await online(server, device)
    start, end = window()
    try:
        ssrc = sessions.allocate_ssrc(SessionKind.PLAYBACK)
        assert ssrc[0] == "1"
        session = await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", sink.port, "udp", ssrc,
                                                                    kind=SessionKind.PLAYBACK, start=start, end=end),
                                        timeout=5)
        offer = device.media.stream(session.call_id).offer
        assert offer.session_name == "Playback" and (offer.start, offer.stop) == (start, end)
        assert offer.uri == f"{CHANNEL}:0"
        assert await asyncio.wait_for(session.closed, 10) == "end of file"
        stream = device.media.stream(session.call_id)
        await wait_for(lambda: sessions.get(session.call_id) is None)
        # one second of a 25 fps recording
        assert 20 <= len(sink.video) <= 26
        assert not sessions.ssrcs.in_use(ssrc)
        assert stream is None or stream.media_status_sent
    finally:
        await device.stop()
        await sink.close()


async def test_download_with_speed(server):
    sessions = server.platform.sessions
    sink = await UdpSink.open()
    device = simulator(server, media=MediaOptions(history_seconds=2.0))
    await online(server, device)
    start, end = window()
    try:
        session = await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", sink.port, kind="Download",
                                                                    start=start, end=end, speed=4), timeout=5)
        stream = device.media.stream(session.call_id)
        assert stream.offer.session_name == "Download" and stream.download_speed == 4
        assert session.filesize and session.filesize > 0          # a=filesize in the answer
        assert await asyncio.wait_for(session.closed, 10) == "end of file"
        assert 45 <= len(sink.video) <= 51                        # two seconds of 25 fps
        assert stream.media_status_sent
    finally:
        await device.stop()
        await sink.close()


async def test_playback_pause_seek_scale(server):
    sessions = server.platform.sessions
    sink = await UdpSink.open()
    device = simulator(server, media=MediaOptions(history_seconds=60.0, pattern_seconds=2.0))
    await online(server, device)
    start, end = window()
    try:
        session = await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", sink.port, "udp",
                                                                    kind=SessionKind.PLAYBACK, start=start, end=end),
                                        timeout=5)
        stream = device.media.stream(session.call_id)
        await wait_for(lambda: len(sink.video) >= 5)

        await session.pause()
        assert stream.paused and stream.controls[-1].method.value == "PAUSE"
        await asyncio.sleep(0.2)
        paused_at = len(sink.video)
        await asyncio.sleep(0.4)
        assert len(sink.video) == paused_at                      # nothing sent while paused

        await session.play()                                     # resume: Range npt=now-
        assert not stream.paused and stream.controls[-1].is_resume
        await wait_for(lambda: len(sink.video) > paused_at + 3)

        await session.seek(30)                                   # Range: npt=30-
        assert stream.controls[-1].range_start == 30
        await wait_for(lambda: sink.video[-1].pts >= 30 * 90000)
        # after the seek the timestamps continue from the 30 s mark (a keyframe at or before it)
        assert any(29 * 90000 <= f.pts <= 31 * 90000 for f in sink.video)

        await session.scale(2.0)
        assert stream.scale == 2.0 and stream.controls[-1].scale == 2.0
        await session.bye()
        assert await session.closed == "bye"
        with pytest.raises(SessionError):
            await session.pause()                                # closed: nothing to control
    finally:
        await device.stop()
        await sink.close()


# -- lifecycle -------------------------------------------------------------------------------------
async def test_device_offline_closes_sessions(server):
    sessions = server.platform.sessions
    sink = await UdpSink.open()
    device = simulator(server)
    await online(server, device)
    try:
        session = await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", sink.port), timeout=5)
        await wait_for(lambda: len(sink.video) >= 3)
    finally:
        await device.stop()                                        # unregisters
    assert await asyncio.wait_for(session.closed, 3) == "device offline"
    assert len(sessions) == 0 and len(sessions.ssrcs) == 0
    await sink.close()


async def test_device_bye_for_unknown_dialog_gets_481(server):
    device = simulator(server)
    await online(server, device)
    try:
        flow = await device.server_flow()
        request = device.endpoint.build_request("BYE", device.server_uri, from_uri=device.uri,
                                                to_uri=device.server_uri, flow=flow)
        response = await device.endpoint.request(request, flow, timeout=3)
        assert response.status == 481
    finally:
        await device.stop()


async def test_platform_stop_sends_bye(config_factory):
    server = Server(config_factory())
    await server.start()
    sink = await UdpSink.open()
    device = simulator(server)
    try:
        await online(server, device)
        sessions = server.platform.sessions
        session = await sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", sink.port), timeout=5)
        stream = device.media.stream(session.call_id)
        await server.stop()
        assert session.closed.result() == "platform stop"
        assert await asyncio.wait_for(stream.ended, 2) == "bye received"
        assert session.state is SessionState.CLOSED
    finally:
        await device.stop(unregister=False)
        await sink.close()
        await server.stop()


async def test_metrics_count_invites(server, api):
    sink = await UdpSink.open()
    device = simulator(server)
    await online(server, device)
    try:
        session = await server.platform.sessions.invite(DEVICE, CHANNEL, MediaOffer("127.0.0.1", sink.port), timeout=5)
        status, text = await api.get("/metrics")
        assert 'sip28181_invites_total{kind="Play",result="ok"} 1.0' in text
        assert "sip28181_media_sessions 1.0" in text
        await session.bye()
        status, text = await api.get("/metrics")
        assert 'sip28181_media_sessions_closed_total{reason="bye"} 1.0' in text
        assert "sip28181_media_sessions 0.0" in text
    finally:
        await device.stop()
        await sink.close()
