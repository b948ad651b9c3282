"""Video requested by an upper platform: INVITE, ACK, BYE, CANCEL and INFO from it (PROTOCOL §11.5).

The upper INVITEs one of the channels we share with it, as it would a device. We hold the
channel's stream through :meth:`StreamManager.acquire <sip28181.platform.streams.StreamManager.acquire>`
(a running stream is reused; otherwise the device is INVITEd), answer with our sending address,
and after the ACK send the stream re-muxed into PS over RTP (:class:`media.psrtp.PsRtpSink`) to
where the upper's offer says:

* ``RTP/AVP``: UDP datagrams to the offer's ``c=``/``m=`` from the port in our answer, the
  packets of a frame in one ``sendmsg`` with Linux UDP GSO (:mod:`media.udpsend`; one send per
  packet through asyncio where GSO is off or refused);
* ``TCP/RTP/AVP`` + ``a=setup:passive`` (the upper listens): we connect to ``c=``/``m=`` after the
  ACK and answer ``a=setup:active``;
* ``TCP/RTP/AVP`` + ``a=setup:active`` (the upper connects): we listen on the port in our answer
  (``a=setup:passive``) before answering.

Over TCP every packet carries the RFC 4571 length prefix. The SSRC is the upper's ``y=`` (one is
generated when the offer has none) and is what our answer says and our RTP carries. Our sending
port comes from the ``[media]`` port range (the ingest's pool), the one field firewalls open; the
offer's ``c=`` must be an IP address (a name would be looked up, blocking, for every packet).
Playback and download get a device session of their own, so the upper's INFO moves nobody else's.

The call ends from either side, through :meth:`UpperMedia._end` whatever the cause: the upper's
BYE (we free the sink; the device session follows after the stream's linger when nobody else
watches), the upper's CANCEL before our answer (487), the stream ending (device BYE, no media,
shutdown: we BYE the upper), the end of a recording (MediaStatus 121 from the device: we send
MediaStatus 121 in the upper's dialog and BYE it unless it does first), the media connection
closing, no ACK, or the upper lost, removed or disabled (a settings change that keeps its
address, transport and our ID replaces the link and the calls go on). Playback and download carry ``t=``,
``u=`` and ``a=downloadspeed`` down to the device; the upper's INFO (MANSRTSP) is applied to the
device session.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from media.errors import MediaError
from media.psmux import rfc4571_frame
from media.psrtp import PsRtpSink
from media.udpsend import UdpSender

from ..errors import NotFoundError, RemoteProtocolError, Sip28181Error, TransactionError
from ..manscdp.codec import CONTENT_TYPE as MANSCDP_TYPE
from ..manscdp.messages import MediaStatusNotify
from ..mansrtsp import CONTENT_TYPE as MANSRTSP_TYPE, MansrtspResponse, Method, parse_request
from ..sdp import MediaDescription, Rtpmap, SdpError, SessionDescription, normalize_ssrc, parse as parse_sdp
from ..sip.dialog import Dialog, new_tag
from ..sip.message import Request, Response
from ..sip.uri import SipUri
from ..tasks import TaskSet
from ..transport import Flow
from ..platform.sessions import MediaTransport, SessionError, SessionKind

if TYPE_CHECKING:
    from .link import UpperLink
    from .service import Cascade
    from .settings import UpperSettings

__all__ = ["UpperMedia", "UpperCall", "CallState", "keeps_calls"]

log = logging.getLogger("sip28181.cascade.media")

SDP_TYPE = "APPLICATION/SDP"


class CallState(str, enum.Enum):
    ANSWERING = "answering"     # INVITE received, stream being acquired
    ANSWERED = "answered"       # 200 OK sent, waiting for the ACK
    SENDING = "sending"         # ACKed: media flows (once the TCP connection is up)
    CLOSED = "closed"


@dataclass(eq=False)
class UpperCall:
    """One INVITE dialog from an upper for one shared channel."""

    link: "UpperLink"
    invite: Request
    flow: Flow
    upper_side_id: str          # the channel ID the upper uses (Request-URI user)
    device_id: str
    channel_id: str
    kind: SessionKind
    transport: MediaTransport   # the upper's point of view, like MediaTransport for devices
    ssrc: str                   # 10 digits: our answer's y= and the RTP SSRC
    dest_host: str
    dest_port: int
    start: int = 0
    end: int = 0
    speed: int | None = None
    generated_ssrc: bool = False
    state: CallState = CallState.ANSWERING
    dialog: Dialog | None = None
    handle: Any = None          # StreamHandle
    sink: PsRtpSink | None = None
    local_port: int = 0         # taken from the media port range until the call ends
    close_reason: str | None = None
    bye_sent: bool = False
    media_status_sent: bool = False
    upper_bye: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    _sock: socket.socket | None = None      # bound, not yet handed to asyncio
    _udp: asyncio.DatagramTransport | None = None
    _udp_sender: UdpSender | None = None    # GSO sends on the socket under _udp, bypassing it
    _server: asyncio.AbstractServer | None = None
    _accepted: asyncio.Future | None = None
    _writer: asyncio.StreamWriter | None = None
    _tasks: list[asyncio.Task] = field(default_factory=list)

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    @property
    def extra(self) -> dict[str, str]:
        return {"device_id": self.link.upper_id, "call_id": self.call_id}

    def status(self) -> dict[str, Any]:
        sink = self.sink
        return {"call_id": self.call_id, "upper_id": self.link.upper_id, "channel_id": self.upper_side_id,
                "device_id": self.device_id, "local_channel_id": self.channel_id, "kind": self.kind.value,
                "transport": self.transport.value, "ssrc": self.ssrc, "state": self.state.value,
                "destination": f"{self.dest_host}:{self.dest_port}",
                "media": sink.stats() if sink is not None else None,
                "udp": self._udp_sender.stats() if self._udp_sender is not None else None}


class UpperMedia:
    """The media sessions uppers open with us (``platform.cascade.media``)."""

    #: Seconds to wait for the ACK of our 200 OK (RFC 3261 Timer H).
    ack_timeout = 32.0
    #: Seconds to wait for a TCP media connection (ours to the upper, or the upper's to us).
    connect_timeout = 10.0
    #: Seconds the upper may take to BYE after our MediaStatus 121 before we BYE it.
    end_of_file_grace = 5.0
    #: Seconds to wait for answers to our BYE, MESSAGE.
    request_timeout = 5.0
    #: Bytes queued on a TCP media connection beyond which output skips to the next keyframe.
    tcp_queue_limit = 4 * 1024 * 1024
    #: The same for UDP: asyncio queues datagrams without limit while the socket would block.
    udp_queue_limit = 1024 * 1024
    #: Send the packets of a frame with one system call (Linux UDP GSO, :mod:`media.udpsend`)
    #: rather than one per packet through the asyncio transport (``[cascade] udp_gso``). A socket
    #: that would block then drops the rest of the frame and the stream resumes at a keyframe, as
    #: over the queue limit.
    udp_gso = True

    @staticmethod
    def keeps_calls(old: "UpperSettings", new: "UpperSettings") -> bool:
        """See :func:`keeps_calls` (:meth:`Cascade.update` asks it whether to unregister)."""
        return keeps_calls(old, new)

    def __init__(self, cascade: "Cascade") -> None:
        self.cascade = cascade
        self.platform = cascade.platform
        self.calls: dict[str, UpperCall] = {}
        self.udp_gso = self.platform.config.cascade_udp_gso
        self._tasks = TaskSet(log)
        self._closing = False
        handlers = cascade.request_handlers
        handlers["INVITE"] = self._on_invite
        handlers["BYE"] = self._on_bye
        handlers["CANCEL"] = self._on_cancel
        handlers["INFO"] = self._on_info
        endpoint = self.platform.endpoint
        self._next_ack = endpoint.on_ack
        endpoint.on_ack = self._on_ack
        cascade.listeners.append(self._on_link_changed)

    # -- lookup -----------------------------------------------------------------------------------
    def list(self, upper_id: str | None = None) -> list[UpperCall]:
        return [c for c in self.calls.values() if upper_id is None or c.link.upper_id == upper_id]

    def __len__(self) -> int:
        return len(self.calls)

    async def close(self) -> None:
        """End every call (BYE to the uppers) and wait for the cleanup."""
        self._closing = True
        await asyncio.gather(*(self._end(c, "shutdown", bye=True) for c in list(self.calls.values())),
                             return_exceptions=True)
        await self._tasks.close(grace=2.0)

    async def end_calls(self, upper_id: str, reason: str) -> None:
        """End an upper's calls now (BYE to it), whatever the state of its link."""
        await asyncio.gather(*(self._end(c, reason, bye=True) for c in self.list(upper_id)),
                             return_exceptions=True)

    # -- INVITE -----------------------------------------------------------------------------------
    def _respond(self, request: Request, status: int, reason: str | None = None, *, tag: str | None = None,
                 body: bytes = b"", content_type: str | None = None,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        response = Response.for_request(request, status, reason, to_tag=tag or new_tag())
        for name, value in headers:
            response.headers.add(name, value)
        if body:
            response.headers.add("Content-Type", content_type or SDP_TYPE)
            response.body = body
        self.platform.endpoint.respond(response)

    def _refuse(self, link: "UpperLink", request: Request, status: int, reason: str) -> None:
        log.info("INVITE refused: %d %s", status, reason,
                 extra={"device_id": link.upper_id, "call_id": request.call_id})
        self.platform._count("upper_invites", "-", str(status))
        self._respond(request, status, reason)

    def _on_invite(self, link: "UpperLink", request: Request, flow: Flow) -> None:
        if request.to.tag is not None:
            call = self.calls.get(request.call_id)
            if call is None or call.dialog is None or not call.dialog.matches(request):
                self._respond(request, 481, "no such dialog")       # RFC 3261 §12.2.2
            else:
                self._respond(request, 488, "re-INVITE not supported", tag=call.dialog.local_tag)
            return
        if request.call_id in self.calls:
            self._respond(request, 491, "INVITE of this call already pending")
            return
        if self._closing or self.platform.streams is None:
            self._refuse(link, request, 503, "no media service")
            return
        try:
            call = self._read_offer(link, request, flow)
        except RemoteProtocolError as exc:
            self._refuse(link, request, exc.status_hint, exc.reason)
            return
        except NotFoundError as exc:
            self._refuse(link, request, 404, str(exc))
            return
        self.calls[call.call_id] = call
        log.info("INVITE %s %s over %s, SSRC %s, media to %s:%d", call.kind.value, call.upper_side_id,
                 call.transport.value, call.ssrc, call.dest_host, call.dest_port, extra=call.extra)
        call._tasks.append(self._spawn(self._answer(call), f"answer {call.call_id}"))

    def _read_offer(self, link: "UpperLink", request: Request, flow: Flow) -> UpperCall:
        """The call an offer asks for; :class:`SdpError` (400/488) or :class:`NotFoundError`."""
        if not request.contacts or request.contacts[0].uri is None:
            raise RemoteProtocolError("INVITE without Contact", 400)
        if not request.from_.tag:
            raise RemoteProtocolError("INVITE without a From tag", 400)
        if not request.body.strip():
            raise SdpError("INVITE without SDP offer", 400)
        offer = parse_sdp(request.body)
        media = offer.video
        if media is None:
            raise SdpError("no media section", 400)
        if media.proto.upper() not in ("RTP/AVP", "TCP/RTP/AVP"):
            raise SdpError(f"unsupported media transport {media.proto}", 488)
        if "96" not in media.formats:
            raise SdpError("PS (payload type 96) not offered", 488)
        try:
            kind = SessionKind(offer.session_name)
        except ValueError:
            raise SdpError(f"unsupported session {offer.session_name!r}", 488) from None
        if media.tcp and media.setup not in ("active", "passive"):
            raise SdpError("TCP media without a=setup:active or a=setup:passive", 488)
        if not 0 < media.port <= 65535:
            raise SdpError("no media port in the offer", 488)
        host = offer.connection_for(media)
        if not host or host in ("0.0.0.0", "::"):
            raise SdpError("no media address in the offer", 400)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            # a name would cost a blocking lookup per packet sent; uppers write addresses
            raise SdpError(f"media address {host!r} is not an IP address", 488) from None
        if kind.history and not 0 <= offer.start < offer.stop:
            raise SdpError("playback and download need a t= range", 488)
        try:
            upper_side_id = SipUri.parse(str(request.uri)).user
        except RemoteProtocolError:
            raise RemoteProtocolError("unreadable Request-URI", 400) from None
        if not upper_side_id:
            raise NotFoundError("no channel in the Request-URI")
        local = self.cascade.resolve(link, upper_side_id)
        if local is None:
            raise NotFoundError(f"channel {upper_side_id} not shared")
        device_id, channel_id = local
        if media.tcp:
            # a=setup is the writer's role: the upper passive (listening) means we connect
            transport = MediaTransport.TCP_PASSIVE if media.setup == "passive" else MediaTransport.TCP_ACTIVE
        else:
            transport = MediaTransport.UDP
        ssrc = normalize_ssrc(offer.ssrc)
        generated = ssrc is None or ssrc == "0000000000"
        if generated:
            ssrc = self.platform.sessions.allocate_ssrc(kind)
        return UpperCall(link, request, flow, upper_side_id, device_id, channel_id, kind, transport, ssrc,
                         host, media.port, start=offer.start if kind.history else 0,
                         end=offer.stop if kind.history else 0,
                         speed=(media.download_speed or 1) if kind is SessionKind.DOWNLOAD else None,
                         generated_ssrc=generated)

    async def _answer(self, call: UpperCall) -> None:
        streams = self.platform.streams
        try:
            # an upper's playback gets a device session of its own: its INFO must not pause or
            # seek what another upper or a local viewer of the same recording watches
            call.handle = await streams.acquire(call.device_id, call.channel_id, call.kind,
                                                start=call.start, end=call.end, speed=call.speed,
                                                exclusive=call.kind.history)
            call.handle.describe("cascade", f"{call.link.upper_id} {call.dest_host}:{call.dest_port}")
            await self._open_media(call)
            if call.state is not CallState.ANSWERING:
                return
            endpoint = self.platform.endpoint
            answer = self._answer_sdp(call)
            response = Response.for_request(call.invite, 200, to_tag=new_tag())
            transport_param = ";transport=tcp" if call.flow.transport == "TCP" else ""
            response.headers.add("Contact", f"<sip:{call.upper_side_id}@{endpoint.advertised_host}:"
                                            f"{endpoint.port}{transport_param}>")
            response.headers.add("Content-Type", SDP_TYPE)
            response.body = answer.encode()
            call.dialog = Dialog.from_uas(call.invite, response)
        except asyncio.CancelledError:
            raise
        except Exception as exc:        # noqa: BLE001 - every failure is the upper's final answer
            status, reason = _sip_status(exc)
            log.info("cannot serve INVITE: %d %s", status, reason, extra=call.extra)
            self.platform._count("upper_invites", call.kind.value, str(status))
            self._respond(call.invite, status, reason)
            self._close(call, f"start failed: {reason}")
            return
        call.state = CallState.ANSWERED
        endpoint.respond(response)
        self.platform._count("upper_invites", call.kind.value, "200")
        log.info("answered %s: sending from port %d, SSRC %s", call.kind.value, call.local_port, call.ssrc,
                 extra=call.extra)
        call._tasks.append(self._spawn(self._ack_timer(call), f"ack timer {call.call_id}"))

    def _send_host(self, call: UpperCall) -> str:
        return (call.link.settings.media_host or self.platform.streams.media_host
                or self.platform.endpoint.advertised_host)

    def _answer_sdp(self, call: UpperCall) -> SessionDescription:
        """Our answer, as PROTOCOL §11.5 lists it."""
        host = self._send_host(call)
        tcp = call.transport.tcp
        setup = None
        if call.transport is MediaTransport.TCP_PASSIVE:
            setup = "active"
        elif call.transport is MediaTransport.TCP_ACTIVE:
            setup = "passive"
        md = MediaDescription(media="video", port=call.local_port or 9, proto="TCP/RTP/AVP" if tcp else "RTP/AVP",
                              formats=["96"], direction="sendonly", rtpmaps=[Rtpmap(96, "PS", 90000)],
                              setup=setup, connection_mode="new" if tcp else None)
        session = call.handle.session if call.handle is not None else None
        if call.kind is SessionKind.DOWNLOAD:
            md.download_speed = call.speed
            if session is not None and session.filesize is not None:
                md.filesize = session.filesize
        return SessionDescription(session_name=call.kind.value, origin_user=call.upper_side_id,
                                  origin_address=host, connection=host, start=call.start, stop=call.end,
                                  media=[md], ssrc=call.ssrc, media_format="")

    async def _open_media(self, call: UpperCall) -> None:
        """Our sending side, before the answer names its port: a port of the ``[media]`` range
        (the one field firewalls open), taken from the ingest's pool so no stream meets it."""
        loop = asyncio.get_running_loop()
        ingest = self.platform.streams.ingest
        kind = {MediaTransport.UDP: "udp", MediaTransport.TCP_ACTIVE: "tcp-listen"}.get(call.transport, "tcp")
        sock = ingest.bind_port(kind)
        call.local_port = sock.getsockname()[1]
        # While asyncio takes the socket over, it belongs to nobody else: a cancellation there
        # (the upper's CANCEL) must not see it in the call and close its fd under a reader.
        if call.transport is MediaTransport.UDP:
            try:
                call._udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
            except BaseException:
                sock.close()        # asyncio closed its transport (and the reader) already
                raise
            if self.udp_gso:
                # the transport keeps reading (and closes the socket); we write on the same fd
                sock.setblocking(False)
                call._udp_sender = UdpSender(sock)
        elif call.transport is MediaTransport.TCP_ACTIVE:       # the upper connects to us
            call._accepted = loop.create_future()

            def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                if call._accepted is not None and not call._accepted.done():
                    call._accepted.set_result((reader, writer))
                else:
                    writer.close()
            try:
                server = await asyncio.start_server(accepted, sock=sock, start_serving=False)
            except BaseException:
                sock.close()
                raise
            call._server = server   # owned by the call from here: _close_media closes it
            await server.start_serving()
        else:
            call._sock = sock       # TCP passive (the upper listens): we connect from it after the ACK

    # -- ACK and media ----------------------------------------------------------------------------
    def _on_ack(self, request: Request, flow: Flow) -> None:
        call = self.calls.get(request.call_id)
        if call is None or call.dialog is None or not call.dialog.matches(request):
            if self._next_ack is not None:
                self._next_ack(request, flow)
            return
        if call.state is not CallState.ANSWERED:
            return
        call.state = CallState.SENDING
        call._tasks.append(self._spawn(self._start_media(call), f"media {call.call_id}"))

    async def _ack_timer(self, call: UpperCall) -> None:
        await asyncio.sleep(self.ack_timeout)
        if call.state is CallState.ANSWERED:
            log.info("no ACK from the upper", extra=call.extra)
            await self._end(call, "no ack", bye=True)

    async def _start_media(self, call: UpperCall) -> None:
        reader: asyncio.StreamReader | None = None
        try:
            if call.transport is MediaTransport.TCP_PASSIVE:
                sock, call._sock = call._sock, None
                if sock is None:
                    return
                try:
                    async with asyncio.timeout(self.connect_timeout):
                        await asyncio.get_running_loop().sock_connect(sock, (call.dest_host, call.dest_port))
                        reader, call._writer = await asyncio.open_connection(sock=sock)
                except BaseException:
                    sock.close()
                    raise
            elif call.transport is MediaTransport.TCP_ACTIVE:
                assert call._accepted is not None
                async with asyncio.timeout(self.connect_timeout):
                    reader, call._writer = await asyncio.shield(call._accepted)
                if call._server is not None:
                    call._server.close()
                    call._server = None
        except (OSError, TimeoutError) as exc:
            log.info("media connection with the upper failed: %s", exc or type(exc).__name__, extra=call.extra)
            self._spawn(self._end(call, "media connection failed", bye=True), f"end {call.call_id}")
            return
        if call.state is not CallState.SENDING:
            return
        relay = call.handle.relay
        call.sink = PsRtpSink(int(call.ssrc), lambda packets: self._send(call, packets),
                              on_end=lambda reason: self._on_stream_end(call, reason),
                              video_codec=relay.video_codec, audio_codec=relay.audio_codec)
        log.info("sending %s over %s to %s:%d", call.kind.value, call.transport.value, call.dest_host,
                 call.dest_port, extra=call.extra)
        relay.add_sink(call.sink)
        if reader is not None:
            await self._watch(call, reader)

    async def _watch(self, call: UpperCall, reader: asyncio.StreamReader) -> None:
        """Read (and drop) what the upper sends on the media connection (RTCP at most) until it
        closes it: then the call is over."""
        try:
            while await reader.read(65536):
                pass
        except (OSError, asyncio.IncompleteReadError):
            pass
        if call.state is not CallState.CLOSED:
            log.info("the upper closed the media connection", extra=call.extra)
            self._spawn(self._end(call, "media connection closed", bye=True), f"end {call.call_id}")

    def _send(self, call: UpperCall, packets: list[bytes]) -> None:
        sender = call._udp_sender
        if sender is not None and sender.gso and call._udp is not None:
            if sender.send(packets, (call.dest_host, call.dest_port)) < len(packets) and call.sink is not None:
                call.sink.resync()          # the rest was dropped: resume at a keyframe
            return
        if call._udp is not None:
            if call._udp.get_write_buffer_size() > self.udp_queue_limit:
                if call.sink is not None:
                    call.sink.resync()      # the network cannot keep up: resume at a keyframe
                return
            dest = (call.dest_host, call.dest_port)
            sendto = call._udp.sendto
            for packet in packets:
                sendto(packet, dest)
        elif call._writer is not None:
            transport = call._writer.transport
            if transport.is_closing():
                return
            if transport.get_write_buffer_size() > self.tcp_queue_limit:
                if call.sink is not None:
                    call.sink.resync()      # the upper cannot keep up: resume at a keyframe
                return
            call._writer.write(b"".join(rfc4571_frame(p) for p in packets))

    def _on_stream_end(self, call: UpperCall, reason: str) -> None:
        if call.state is CallState.CLOSED:
            return
        self._spawn(self._stream_ended(call, reason), f"end {call.call_id}")

    async def _stream_ended(self, call: UpperCall, reason: str) -> None:
        if reason == "end of file" and call.kind.history:
            await self._media_status(call)
            try:
                async with asyncio.timeout(self.end_of_file_grace):
                    await call.upper_bye.wait()
            except TimeoutError:
                pass
        await self._end(call, f"stream {reason}", bye=True)

    async def _media_status(self, call: UpperCall) -> None:
        """MediaStatus 121 in the upper's dialog (PROTOCOL §5.15, §11.5)."""
        if call.dialog is None or call.media_status_sent:
            return
        call.media_status_sent = True
        body = MediaStatusNotify(call.link.next_sn(), call.upper_side_id, notify_type="121")
        request = call.dialog.create_request("MESSAGE", body.encode(call.link.settings.charset), MANSCDP_TYPE)
        try:
            response = await self.platform.endpoint.request(request, await self._flow(call), self.request_timeout)
            log.info("MediaStatus 121 sent to the upper: %d", response.status, extra=call.extra)
        except (TransactionError, OSError, Sip28181Error) as exc:
            log.info("MediaStatus 121 not answered: %s", exc, extra=call.extra)

    async def _flow(self, call: UpperCall) -> Flow:
        """Where in-dialog requests to the upper go: the INVITE's source over UDP, the link's
        connection over TCP (opened again if it was lost)."""
        if call.flow.transport == "UDP":
            return call.flow
        return await call.link.flow()

    # -- ending -----------------------------------------------------------------------------------
    def _close(self, call: UpperCall, reason: str) -> bool:
        """End ``call`` now (idempotent): stop sending, free the stream hold, ports and SSRC.
        True when it was open."""
        if call.state is CallState.CLOSED:
            return False
        call.state = CallState.CLOSED
        call.close_reason = reason
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]
        current = asyncio.current_task()
        for task in call._tasks:
            if task is not current and not task.done():
                task.cancel()
        if call.sink is not None:
            call.sink.close(reason)
            if call.handle is not None:
                call.handle.relay.remove_sink(call.sink)
        if call.handle is not None:
            call.handle.release()
        self._close_media(call)
        if call.generated_ssrc:
            self.platform.sessions.release_ssrc(call.ssrc)
        self.platform._count("upper_calls_closed", _reason_label(reason))
        log.info("call ended (%s)", reason, extra=call.extra)
        if not call.closed.done():
            call.closed.set_result(reason)
        return True

    async def _end(self, call: UpperCall, reason: str, *, bye: bool) -> None:
        """:meth:`_close`, then BYE the upper when asked and the call was answered."""
        dialog = call.dialog
        if not self._close(call, reason) or not bye or dialog is None or call.bye_sent:
            return
        call.bye_sent = True
        request = dialog.create_request("BYE")
        try:
            await self.platform.endpoint.request(request, await self._flow(call), self.request_timeout)
        except (TransactionError, OSError, Sip28181Error) as exc:
            log.info("BYE to the upper not answered: %s", exc, extra=call.extra)

    def _close_media(self, call: UpperCall) -> None:
        if call._sock is not None:
            call._sock.close()
            call._sock = None
        if call.local_port:
            self.platform.streams.ingest.release_port(call.local_port)
        if call._udp is not None:
            call._udp.close()       # the sender stays for its counters; _send checks _udp
            call._udp = None
        if call._server is not None:
            call._server.close()
            call._server = None
        if call._accepted is not None:
            if call._accepted.done() and not call._accepted.cancelled():
                call._accepted.result()[1].close()
            else:
                call._accepted.cancel()
            call._accepted = None
        if call._writer is not None:
            call._writer.close()
            call._writer = None

    def _on_bye(self, link: "UpperLink", request: Request, flow: Flow) -> None:
        call = self.calls.get(request.call_id)
        if call is None or call.dialog is None or not call.dialog.matches(request):
            self._respond(request, 481)
            return
        self._respond(request, 200, tag=call.dialog.local_tag)
        call.upper_bye.set()
        self._close(call, "upper bye")

    def _on_cancel(self, link: "UpperLink", request: Request, flow: Flow) -> None:
        layer = self.platform.endpoint.layer
        key = layer.cancel_target(request)
        invite = layer.request_for(key) if key is not None else None
        if invite is None:
            self._respond(request, 481)
            return
        self._respond(request, 200)
        call = self.calls.get(invite.call_id)
        if call is not None and call.state is CallState.ANSWERING:
            log.info("INVITE cancelled by the upper", extra=call.extra)
            self._respond(invite, 487)
            self.platform._count("upper_invites", call.kind.value, "487")
            self._close(call, "cancelled")

    def _on_link_changed(self, link: "UpperLink", online: bool, reason: str) -> None:
        if online:
            return
        calls = [c for c in self.list(link.upper_id) if c.link is link]
        if not calls:
            return
        if reason == "stopped":
            # a link stops for a settings change too (Cascade.update replaces it): decide once
            # the replacement, if any, is in place
            self._spawn(self._link_replaced(link, calls), f"upper {link.upper_id} stopped")
            return
        for call in calls:
            self._spawn(self._end(call, "upper offline", bye=True), f"end {call.call_id}")

    async def _link_replaced(self, old: "UpperLink", calls: list[UpperCall]) -> None:
        """Calls go on with the upper's new link when only settings that do not reach them
        changed (its name, what is shared, intervals); they end when the upper was removed or
        disabled, or now lives at another address or transport."""
        await asyncio.sleep(0)
        new = self.cascade.links.get(old.upper_id)
        same = new is not None and new is not old and keeps_calls(old.settings, new.settings)
        for call in calls:
            if call.state is CallState.CLOSED:
                continue
            if same:
                call.link = new
                log.info("the upper's settings changed: the call goes on", extra=call.extra)
            else:
                self._spawn(self._end(call, "upper removed" if new is None else "upper offline", bye=True),
                            f"end {call.call_id}")

    # -- INFO (playback control) ------------------------------------------------------------------
    def _on_info(self, link: "UpperLink", request: Request, flow: Flow) -> None:
        call = self.calls.get(request.call_id)
        if call is None or call.dialog is None or not call.dialog.matches(request):
            self._respond(request, 481)
            return
        tag = call.dialog.local_tag
        try:
            call.dialog.receive_request(request)
            control = parse_request(request.body)
        except RemoteProtocolError as exc:
            self._respond(request, exc.status_hint, exc.reason, tag=tag)
            return
        if not call.kind.history:
            self._respond(request, 488, "INFO controls playback and download only", tag=tag)
            return
        self._spawn(self._control(call, request, control), f"INFO {call.call_id}")

    async def _control(self, call: UpperCall, request: Request, control) -> None:
        tag = call.dialog.local_tag if call.dialog is not None else None
        session = call.handle.session if call.handle is not None else None
        try:
            if control.method is Method.TEARDOWN:
                self._respond(request, 200, tag=tag)
                await self._end(call, "teardown", bye=True)
                return
            if session is None:
                raise SessionError(481, "no device session")
            if control.method is Method.PAUSE:
                await session.pause()
            else:
                await session.play(range_start=control.range_start, scale=control.scale)
        except SessionError as exc:
            self._respond(request, exc.status if 400 <= exc.status < 700 else 500, exc.reason, tag=tag)
            return
        log.info("INFO %s forwarded to the device", control.method.value, extra=call.extra)
        self._respond(request, 200, tag=tag, body=MansrtspResponse(200, "OK", control.cseq).encode(),
                      content_type=MANSRTSP_TYPE)

    # -- tasks ------------------------------------------------------------------------------------
    def _spawn(self, coro, name: str) -> asyncio.Task:
        return self._tasks.spawn(coro, name)


def keeps_calls(old: "UpperSettings", new: "UpperSettings") -> bool:
    """Whether the upper's video calls survive its settings changing from ``old`` to ``new``: it
    stays enabled, at the same address and transport, and we stay the same registered party (so
    the link is replaced without unregistering, which would end the upper's streams)."""
    return new.enabled and all(getattr(old, key) == getattr(new, key)
                               for key in ("host", "port", "transport", "local_id", "local_domain"))


def _sip_status(exc: BaseException) -> tuple[int, str]:
    """The final answer to the upper for a failure to get the stream."""
    if isinstance(exc, NotFoundError):
        return 404, str(exc)
    if isinstance(exc, RemoteProtocolError):
        return exc.status_hint, exc.reason
    status = getattr(exc, "status", None)
    sip_status = getattr(exc, "sip_status", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if sip_status is not None and 400 <= sip_status < 700 and sip_status != 408:
        return sip_status, message
    if status == 404:
        return 404, message
    if status == 504 or sip_status == 408:
        return 408, message
    if status == 503:
        return 503, message
    if status == 400:
        return 400, message
    if isinstance(exc, (OSError, MediaError)):
        return 503, f"no media port: {exc}"
    return 500, message


def _reason_label(reason: str) -> str:
    if reason.startswith("start failed"):
        return "start failed"
    if reason.startswith("stream "):
        return "stream ended"
    return reason
