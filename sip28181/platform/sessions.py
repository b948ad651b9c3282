"""Media sessions: INVITE/ACK/BYE/CANCEL/INFO towards devices (PROTOCOL §8), one per stream.

The platform is the media receiver and the UAC: it offers where to send (host, port, transport,
SSRC), the device answers with its SDP, and the session lives until one side sends BYE, the device
reports the end of a recording (MediaStatus 121), goes offline, or the platform stops::

    offer = MediaOffer("10.0.0.11", 30000, MediaTransport.UDP, platform.sessions.allocate_ssrc(kind))
    session = await platform.sessions.invite(device_id, channel_id, offer, timeout=10)
    await session.pause(); await session.play(range_start=600); await session.scale(2.0)
    reason = await session.closed          # "bye", "device bye", "end of file", "device offline"...

What the network does with the media is not this module's business: the caller opens the port
(or TCP listener) before inviting, and for TCP active connects to ``session.remote_host/port``.

Device answers are read the way field devices write them (PROTOCOL §8.3, §14): no SDP at all (the
offer stands), no ``y=`` (our SSRC stands), their own SSRC (theirs is the one RTP carries),
``y=`` without leading zeros, ``c=`` only in the media section, a 2xx without Contact. An answer
that is not SDP ends the call (ACK, BYE) and fails the invite with :class:`SessionError` 502.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from ..errors import LocalProtocolError, ManscdpError, NotFoundError, Sip28181Error, TransactionError
from ..manscdp.codec import parse_envelope
from ..mansrtsp import CONTENT_TYPE as MANSRTSP_TYPE, MansrtspRequest
from ..sdp import SdpError, SessionDescription, normalize_ssrc, parse as parse_sdp
from ..sip.dialog import Dialog, new_tag
from ..sip.message import Request, Response
from ..transport import Flow
from .events import DeviceOffline, DeviceUnregistered
from .ssrc import SsrcAllocator

if TYPE_CHECKING:
    from .core import Platform

__all__ = ["Sessions", "MediaSession", "SessionKind", "MediaTransport", "MediaOffer", "SessionError",
           "SessionState"]

log = logging.getLogger("sip28181.sessions")

SDP_TYPE = "APPLICATION/SDP"


class SessionKind(str, enum.Enum):
    """The ``s=`` of the offer."""

    PLAY = "Play"
    PLAYBACK = "Playback"
    DOWNLOAD = "Download"

    @property
    def history(self) -> bool:
        """Playback and download read recordings: their SSRC starts with 1 (§8.3)."""
        return self is not SessionKind.PLAY


class MediaTransport(str, enum.Enum):
    """How RTP travels: UDP, TCP where the device connects to us (we offer ``a=setup:passive``),
    or TCP where we connect to the device (we offer ``a=setup:active``), PROTOCOL §8.6."""

    UDP = "udp"
    TCP_PASSIVE = "tcp-passive"
    TCP_ACTIVE = "tcp-active"

    @property
    def tcp(self) -> bool:
        return self is not MediaTransport.UDP


class SessionError(Sip28181Error):
    """The device refused or failed the session: ``status`` is the SIP final status (408 when no
    answer came, 502 when the answer could not be used)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class MediaOffer:
    """What we offer: where the device sends media and how.

    ``start``/``end`` are Unix seconds (``t=``) for playback and download; ``speed`` is the
    ``a=downloadspeed`` of a download (1 when not given). ``attributes`` are extra media ``a=``
    lines some devices need (``("streamnumber", "1")`` for a sub-stream, PROTOCOL §8.4).
    ``ssrc`` None lets :meth:`Sessions.invite` allocate one.
    """

    host: str
    port: int
    transport: MediaTransport | str = MediaTransport.UDP
    ssrc: str | None = None
    kind: SessionKind | str = SessionKind.PLAY
    start: int = 0
    end: int = 0
    speed: int | None = None
    attributes: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self) -> None:
        try:
            self.transport = MediaTransport(str(getattr(self.transport, "value", self.transport)).lower())
            self.kind = SessionKind(getattr(self.kind, "value", self.kind))
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        if not 0 <= self.port <= 65535:
            raise LocalProtocolError("media port out of range")
        if self.kind.history and not 0 <= self.start < self.end:
            raise LocalProtocolError("playback and download need 0 <= start < end (Unix seconds)")
        if self.speed is not None and self.speed < 1:
            raise LocalProtocolError("download speed must be >= 1")

    def sdp(self, origin: str, channel_id: str, ssrc: str) -> SessionDescription:
        """The offer's SDP (PROTOCOL §8.4, §8.4.1)."""
        kind, transport = SessionKind(self.kind), MediaTransport(self.transport)
        speed = (self.speed or 1) if kind is SessionKind.DOWNLOAD else None
        return SessionDescription.offer(
            kind.value, origin=origin, host=self.host, port=self.port, ssrc=ssrc,
            tcp=transport.tcp, setup="passive" if transport is MediaTransport.TCP_PASSIVE else "active",
            start=self.start if kind.history else 0, stop=self.end if kind.history else 0,
            uri=f"{channel_id}:0" if kind.history else None, download_speed=speed,
            attributes=list(self.attributes))


class SessionState(str, enum.Enum):
    INVITING = "inviting"
    ACTIVE = "active"
    CLOSED = "closed"


#: The session lifecycle: (state, input) -> next state. Anything else is ignored (a BYE for a closed
#: session, a second MediaStatus...).
TRANSITIONS: dict[tuple[SessionState, str], SessionState] = {
    (SessionState.INVITING, "2xx"): SessionState.ACTIVE,
    (SessionState.INVITING, "failed"): SessionState.CLOSED,
    (SessionState.ACTIVE, "bye"): SessionState.CLOSED,
    (SessionState.ACTIVE, "device bye"): SessionState.CLOSED,
    (SessionState.ACTIVE, "end of file"): SessionState.CLOSED,
    (SessionState.ACTIVE, "device offline"): SessionState.CLOSED,
    (SessionState.ACTIVE, "platform stop"): SessionState.CLOSED,
    (SessionState.ACTIVE, "gone"): SessionState.CLOSED,
}


class MediaSession:
    """One INVITE dialog with a device's channel. Built by :meth:`Sessions.invite`."""

    def __init__(self, sessions: "Sessions", device_id: str, channel_id: str, offer: MediaOffer,
                 call_id: str, ssrc: str, flow: Flow) -> None:
        self._sessions = sessions
        self.device_id = device_id
        self.channel_id = channel_id
        self.offer = offer
        self.kind: SessionKind = SessionKind(offer.kind)
        self.transport: MediaTransport = MediaTransport(offer.transport)
        self.call_id = call_id
        self.offered_ssrc = ssrc
        #: The SSRC media will carry: the device's ``y=`` if it answered another one, else ours.
        self.ssrc = ssrc
        self.flow = flow
        self.remote_host: str | None = None
        self.remote_port: int | None = None
        self.answer: SessionDescription | None = None
        self.dialog: Dialog | None = None
        self.state = SessionState.INVITING
        self.started_at: float | None = None            # wall clock of the 2xx
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._rtsp_cseq = 0

    def __repr__(self) -> str:
        return (f"<MediaSession {self.kind.value} {self.device_id}/{self.channel_id} {self.transport.value} "
                f"ssrc={self.ssrc} {self.state.value} Call-ID={self.call_id}>")

    @property
    def ssrc_int(self) -> int:
        """:attr:`ssrc` as the 32-bit value of the RTP header."""
        return int(self.ssrc)

    @property
    def active(self) -> bool:
        return self.state is SessionState.ACTIVE

    @property
    def filesize(self) -> int | None:
        """``a=filesize`` of a download answer (bytes), for progress."""
        media = self.answer.video if self.answer is not None else None
        return media.filesize if media is not None else None

    @property
    def _extra(self) -> dict[str, str]:
        return {"device_id": self.device_id, "call_id": self.call_id}

    # -- control ------------------------------------------------------------------------------
    async def bye(self) -> None:
        """End the session (BYE in the dialog); ``closed`` resolves with ``"bye"``."""
        await self._sessions._bye(self, "bye")

    async def pause(self) -> None:
        """INFO ``PAUSE`` (playback/download)."""
        await self._control(MansrtspRequest.pause(self._next_cseq()))

    async def play(self, range_start: float | None = None, scale: float | None = None) -> None:
        """INFO ``PLAY``: resume (no arguments), seek to ``range_start`` seconds from the start of
        the recorded range, and/or change the speed to ``scale``."""
        await self._control(MansrtspRequest.play(self._next_cseq(), range_start, scale))

    async def seek(self, seconds: float) -> None:
        await self.play(range_start=seconds)

    async def scale(self, scale: float) -> None:
        """INFO ``PLAY`` with ``Scale`` (0.25 … 4; negative = reverse where devices support it)."""
        await self.play(scale=scale)

    def _next_cseq(self) -> int:
        self._rtsp_cseq += 1
        return self._rtsp_cseq

    async def _control(self, body: MansrtspRequest) -> None:
        if not self.active or self.dialog is None:
            raise SessionError(481, "session not active")
        info = self.dialog.create_request("INFO", body.encode(), MANSRTSP_TYPE,
                                          headers=[("User-Agent", self._sessions.endpoint.user_agent)])
        sessions = self._sessions
        try:
            response = await sessions.endpoint.request(info, sessions._flow_of(self), sessions.request_timeout)
        except TransactionError as exc:
            raise SessionError(408, str(exc)) from None
        sessions.platform._count("sip_messages", "out", "INFO")
        if response.status == 481:
            sessions._finish(self, "gone")
        if response.status >= 300:
            log.info("INFO %s refused: %d %s", body.method.value, response.status, response.reason,
                     extra=self._extra)
            raise SessionError(response.status, response.reason)
        log.debug("INFO %s accepted", body.method.value, extra=self._extra)


class Sessions:
    """The media sessions of one platform (``platform.sessions``)."""

    #: Seconds to wait for a final answer to INVITE when the caller gives no timeout (devices can
    #: take several seconds, PROTOCOL §8.1).
    invite_timeout = 10.0
    #: Seconds to wait for the answer to BYE and INFO.
    request_timeout = 5.0
    #: Seconds a BYE may take when the platform stops or a device went offline.
    shutdown_timeout = 2.0

    def __init__(self, platform: "Platform") -> None:
        self.platform = platform
        self.endpoint = platform.endpoint
        self.ssrcs = SsrcAllocator(platform.sip_id)
        self._sessions: dict[str, MediaSession] = {}
        self._next_message = platform.request_handlers.get("MESSAGE")
        platform.request_handlers["BYE"] = self._on_bye
        platform.request_handlers["MESSAGE"] = self._on_message
        platform.message_handlers["MediaStatus"] = self._on_media_status
        platform.events.on(self._on_device_gone, DeviceOffline, DeviceUnregistered)
        if platform.metrics is not None and hasattr(platform.metrics, "media_sessions"):
            platform.metrics.media_sessions.set_function(lambda: len(self._sessions))

    # -- SSRC ---------------------------------------------------------------------------------
    def allocate_ssrc(self, kind: SessionKind | str = SessionKind.PLAY) -> str:
        """A 10-digit SSRC (§8.3) unique among live sessions; freed when its session closes."""
        return self.ssrcs.allocate(SessionKind(getattr(kind, "value", kind)).history)

    def release_ssrc(self, ssrc: str | None) -> None:
        """Free an SSRC allocated but not used (idempotent)."""
        self.ssrcs.release(ssrc)

    # -- lookup -------------------------------------------------------------------------------
    def get(self, call_id: str) -> MediaSession | None:
        return self._sessions.get(call_id)

    def list(self, device_id: str | None = None) -> list[MediaSession]:
        return [s for s in self._sessions.values() if device_id is None or s.device_id == device_id]

    def __iter__(self) -> Iterator[MediaSession]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    # -- INVITE -------------------------------------------------------------------------------
    async def invite(self, device_id: str, channel_id: str, offer: MediaOffer,
                     timeout: float | None = None) -> MediaSession:
        """Open a session: INVITE with ``offer``, ACK the 2xx, read the answer.

        Raises :class:`NotFoundError` for an unknown or offline device, :class:`SessionError` for a
        refusal (its status), no answer in time (408) or an unusable answer (502). Cancelling the
        awaitable sends CANCEL (or BYE if the 2xx crossed it).
        """
        platform = self.platform
        state = platform.registry.get(device_id)
        if state is None or state.status != "online" or state.flow is None:
            raise NotFoundError(f"device {device_id} is not online")
        flow = state.flow
        kind = SessionKind(offer.kind)
        if offer.ssrc is None:
            ssrc = self.allocate_ssrc(kind)
        else:
            normal = self.ssrcs.reserve(offer.ssrc)
            if normal is None:
                raise LocalProtocolError(f"bad SSRC {offer.ssrc!r}: 10 decimal digits below 2^32")
            ssrc = normal
        sdp = offer.sdp(platform.sip_id, channel_id, ssrc)
        endpoint = self.endpoint
        target = f"sip:{channel_id}@{flow.host}:{flow.port}"
        transport_param = ";transport=tcp" if flow.transport == "TCP" else ""
        request = endpoint.build_request(
            "INVITE", target, from_uri=f"sip:{platform.sip_id}@{platform.domain}", to_uri=target,
            flow=flow, body=sdp.encode(), content_type=SDP_TYPE, extra=[
                ("Contact", f"<sip:{platform.sip_id}@{endpoint.advertised_host}:{endpoint.port}{transport_param}>"),
                ("Subject", f"{channel_id}:{ssrc},{platform.sip_id}:0"),
            ])
        session = MediaSession(self, device_id, channel_id, offer, request.call_id, ssrc, flow)
        self._sessions[session.call_id] = session
        extra = session._extra
        log.info("INVITE %s %s over %s, SSRC %s, media to %s:%d", kind.value, channel_id,
                 session.transport.value, ssrc, offer.host, offer.port, extra=extra)
        platform._count("sip_messages", "out", "INVITE")
        try:
            response, dialog = await endpoint.invite(request, flow, timeout or self.invite_timeout)
        except TransactionError as exc:
            self._fail(session, "timeout")
            raise SessionError(408, str(exc)) from None
        except asyncio.CancelledError:
            self._fail(session, "cancelled")
            raise
        except BaseException:
            self._fail(session, "error")
            raise
        if response.status >= 300:
            self._fail(session, "rejected")
            log.info("INVITE refused: %d %s", response.status, response.reason, extra=extra)
            raise SessionError(response.status, response.reason)
        if dialog is None:
            self._fail(session, "bad_answer")
            raise SessionError(502, "2xx without a To tag")
        session.dialog = dialog
        try:
            self._read_answer(session, response, state.flow or flow)
        except SdpError as exc:
            self._fail(session, "bad_answer")
            endpoint.send_nowait(dialog.create_request("BYE"), flow)
            log.warning("unusable answer, call ended: %s", exc.reason, extra=extra)
            raise SessionError(502, f"unusable SDP answer: {exc.reason}") from None
        self._move(session, "2xx")
        session.started_at = time.time()
        platform._count("invites", kind.value, "ok")
        log.info("session up: device sends from %s:%s, SSRC %s", session.remote_host, session.remote_port,
                 session.ssrc, extra=extra)
        return session

    def _read_answer(self, session: MediaSession, response: Response, flow: Flow) -> None:
        """Fill the session from the 2xx (PROTOCOL §8.3/§8.6, leniently; see the module doc)."""
        extra = session._extra
        body = response.body.strip()
        session.remote_host = flow.host
        if not body:
            log.info("answer without SDP: keeping the offer (SSRC %s)", session.ssrc, extra=extra)
            return
        answer = parse_sdp(body)
        media = answer.video
        if media is None:
            raise SdpError("answer without a media section", 488)
        if media.port == 0:
            raise SdpError("the device rejected the media stream (port 0)", 488)
        session.answer = answer
        host = answer.connection_for(media)
        if host and host not in ("0.0.0.0", "::"):
            session.remote_host = host
        session.remote_port = media.port
        theirs = normalize_ssrc(answer.ssrc)
        if answer.ssrc is None:
            log.info("answer without y=: media expected with our SSRC %s", session.ssrc, extra=extra)
        elif theirs is None:
            log.warning("unreadable y=%r in the answer: keeping SSRC %s", answer.ssrc, session.ssrc, extra=extra)
        elif theirs != session.ssrc:
            log.info("device chose its own SSRC %s (offered %s)", theirs, session.ssrc, extra=extra)
            session.ssrc = theirs
        if session.transport.tcp != media.tcp:
            log.warning("offered %s, device answered %s", session.transport.value, media.proto, extra=extra)
        elif session.transport.tcp:
            expected = "active" if session.transport is MediaTransport.TCP_PASSIVE else "passive"
            if media.setup is not None and media.setup != expected:
                log.warning("answer has a=setup:%s where %s was expected", media.setup, expected, extra=extra)

    # -- ending -------------------------------------------------------------------------------
    def _move(self, session: MediaSession, what: str) -> bool:
        new = TRANSITIONS.get((session.state, what))
        if new is None:
            return False
        session.state = new
        return True

    def _fail(self, session: MediaSession, result: str) -> None:
        self.platform._count("invites", session.kind.value, result)
        self._move(session, "failed")
        self._release(session)
        if not session.closed.done():
            session.closed.set_result(f"invite {result}")

    def _release(self, session: MediaSession) -> None:
        if self._sessions.get(session.call_id) is session:
            del self._sessions[session.call_id]
        self.ssrcs.release(session.offered_ssrc)
        if session.ssrc != session.offered_ssrc:
            self.ssrcs.release(session.ssrc)

    def _finish(self, session: MediaSession, reason: str) -> bool:
        """Close ``session`` for ``reason`` (no BYE sent here); False when it was not active."""
        if not self._move(session, reason):
            return False
        self._release(session)
        self.platform._count("media_sessions_closed", reason)
        log.info("session closed (%s)", reason, extra=session._extra)
        if not session.closed.done():
            session.closed.set_result(reason)
        return True

    async def _bye(self, session: MediaSession, reason: str, timeout: float | None = None) -> None:
        dialog, flow = session.dialog, self._flow_of(session)
        if self._finish(session, reason) and dialog is not None:
            await self._send_bye(session, dialog, flow, timeout or self.request_timeout)

    async def _send_bye(self, session: MediaSession, dialog: Dialog, flow: Flow, timeout: float) -> None:
        bye = dialog.create_request("BYE", headers=[("User-Agent", self.endpoint.user_agent)])
        self.platform._count("sip_messages", "out", "BYE")
        try:
            response = await self.endpoint.request(bye, flow, timeout)
            if response.status >= 300 and response.status != 481:
                log.info("BYE answered %d %s", response.status, response.reason, extra=session._extra)
        except (TransactionError, OSError) as exc:
            log.info("BYE not answered: %s", exc, extra=session._extra)

    def _bye_later(self, session: MediaSession, reason: str) -> None:
        """Close now (``closed`` resolves at once) and send the BYE in the background."""
        dialog, flow = session.dialog, self._flow_of(session)
        if self._finish(session, reason) and dialog is not None:
            self.platform._spawn(self._send_bye(session, dialog, flow, self.shutdown_timeout),
                                 f"BYE {session.call_id}")

    def _flow_of(self, session: MediaSession) -> Flow:
        """Where in-dialog requests go: where the device is heard from now (§14.1)."""
        state = self.platform.registry.get(session.device_id)
        return state.flow if state is not None and state.flow is not None else session.flow

    async def close(self) -> None:
        """BYE every session (the platform is stopping); waits at most :attr:`shutdown_timeout`."""
        active = [s for s in self._sessions.values() if s.active]
        if active:
            await asyncio.gather(*(self._bye(s, "platform stop", self.shutdown_timeout) for s in active),
                                 return_exceptions=True)

    # -- requests from devices ----------------------------------------------------------------
    def _respond(self, request: Request, status: int, reason: str | None = None, tag: str | None = None) -> None:
        self.endpoint.respond(Response.for_request(request, status, reason, to_tag=tag or new_tag()))

    def _on_bye(self, request: Request, flow: Flow) -> None:
        session = self._sessions.get(request.call_id)
        if session is None or session.dialog is None or not session.dialog.matches(request):
            self._respond(request, 481)
            return
        self._respond(request, 200, tag=session.dialog.local_tag)
        self._finish(session, "device bye")

    def _on_message(self, request: Request, flow: Flow) -> None:
        """In-dialog MESSAGEs (MediaStatus) are ours, found by Call-ID: Hikvision's From is not
        the device ID (§5.15). Every other MESSAGE goes on to the platform."""
        session = self._sessions.get(request.call_id)
        if session is None or session.dialog is None:
            if self._next_message is not None:
                self._next_message(request, flow)
            else:
                self.platform._on_message(request, flow)
            return
        try:
            envelope = parse_envelope(request.body)
        except ManscdpError as exc:
            self._respond(request, exc.status_hint, exc.reason, tag=session.dialog.local_tag)
            return
        self._respond(request, 200, tag=session.dialog.local_tag)
        if envelope.cmd_type == "MediaStatus":
            self._media_status(session, envelope.text("NotifyType"))
        else:
            log.debug("in-dialog MANSCDP %s ignored", envelope.cmd_type, extra=session._extra)

    def _on_media_status(self, envelope, request: Request, state) -> None:
        """A MediaStatus outside the dialog (already answered 200): by Call-ID, else the device's
        one history session (of that channel when several)."""
        session = self._sessions.get(request.call_id)
        if session is None:
            history = [s for s in self._sessions.values()
                       if s.device_id == state.device_id and s.kind.history and s.active]
            exact = [s for s in history if s.channel_id == envelope.device_id]
            candidates = exact or history
            session = candidates[0] if len(candidates) == 1 else None
        if session is None:
            log.info("MediaStatus for no known session", extra={"device_id": state.device_id,
                                                                 "call_id": request.call_id})
            return
        self._media_status(session, envelope.text("NotifyType"))

    def _media_status(self, session: MediaSession, notify_type: str | None) -> None:
        if (notify_type or "").strip() != "121":
            log.info("MediaStatus NotifyType %s", notify_type, extra=session._extra)
            return
        log.info("end of file reported by the device", extra=session._extra)
        self._bye_later(session, "end of file")

    def _on_device_gone(self, event: DeviceOffline | DeviceUnregistered) -> None:
        for session in self.list(event.device_id):
            if session.active:
                self._bye_later(session, "device offline")
