"""SDP as GB/T 28181 speaks it (PROTOCOL §8.4–8.6), sans-IO: parse and build.

The GB profile of RFC 4566: ``s=`` names the session kind (Play, Playback, Download, Talk), ``u=``
the recorded channel, ``t=`` a Unix-epoch range for history, ``y=`` the 10-digit SSRC and ``f=``
the media description, after the media section. TCP media uses ``TCP/RTP/AVP`` with the RFC 4145
``a=setup``/``a=connection`` attributes::

    offer = SessionDescription.offer("Play", origin="34020000002000000001", host="10.0.0.11",
                                     port=30000, ssrc="0106000001")
    body = offer.encode()
    answer = parse(response.body)          # SdpError (status_hint 400) when it cannot be read
    answer.ssrc, answer.media[0].port, answer.connection_for(answer.media[0])

Parsing is lenient where devices are sloppy (LF or CRLF, blank lines, ``c=`` only in the media
section, unknown lines and attributes kept, ``y=`` without its leading zeros) and strict where a
value is needed and unreadable (no ``v=``, a broken ``m=`` or ``c=`` line, a ``t=`` that is not
two integers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import RemoteProtocolError

__all__ = ["SdpError", "Rtpmap", "MediaDescription", "SessionDescription", "parse",
           "normalize_ssrc", "ssrc_value", "DEFAULT_RTPMAPS", "SESSION_NAMES"]

#: The ``s=`` values of GB/T 28181 (2016; 2022 drops Talk).
SESSION_NAMES = ("Play", "Playback", "Download", "Talk")

MAX_SDP = 64 * 1024
MAX_SSRC = 0xFFFFFFFF


class SdpError(RemoteProtocolError):
    """An SDP body that cannot be used; ``status_hint`` 400 (malformed) or 488 (not acceptable)."""


@dataclass(slots=True)
class Rtpmap:
    """``a=rtpmap:<pt> <encoding>/<clock>[/<params>]``."""

    payload_type: int
    encoding: str
    clock_rate: int
    params: str | None = None

    def __str__(self) -> str:
        text = f"{self.payload_type} {self.encoding}/{self.clock_rate}"
        return f"{text}/{self.params}" if self.params else text


#: The payload types GB devices understand, in the order we offer them (PROTOCOL §8.4: 96 PS
#: first, then the ones every reading of the standard agrees on; 99 = H.265 as WVP/ZLMediaKit).
DEFAULT_RTPMAPS = (Rtpmap(96, "PS", 90000), Rtpmap(97, "MPEG4", 90000), Rtpmap(98, "H264", 90000),
                   Rtpmap(99, "H265", 90000))


@dataclass(slots=True)
class MediaDescription:
    """One ``m=`` section with the attributes GB/T 28181 gives meaning to.

    ``attributes`` keeps every ``a=`` line in order as ``(name, value)`` (value ``None`` for a
    flag), including the ones also decoded into fields, so an unknown attribute survives a round
    trip; :meth:`encode` writes the decoded fields and then the attributes not decoded.
    """

    media: str = "video"
    port: int = 0
    proto: str = "RTP/AVP"
    formats: list[str] = field(default_factory=lambda: ["96"])
    connection: str | None = None           # media-level c= address
    direction: str | None = None            # recvonly / sendonly / sendrecv / inactive
    rtpmaps: list[Rtpmap] = field(default_factory=list)
    setup: str | None = None                # a=setup: active / passive / actpass
    connection_mode: str | None = None      # a=connection: new / existing
    download_speed: int | None = None       # a=downloadspeed:
    filesize: int | None = None             # a=filesize: (in device answers)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def tcp(self) -> bool:
        """Whether the media goes over TCP (``TCP/RTP/AVP``, RFC 4571 framing)."""
        return self.proto.upper().startswith("TCP")

    @property
    def payload_types(self) -> list[int]:
        return [int(f) for f in self.formats if f.isdigit()]

    def rtpmap(self, payload_type: int) -> Rtpmap | None:
        for r in self.rtpmaps:
            if r.payload_type == payload_type:
                return r
        return None

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=<name>`` (``""`` for a flag), or None."""
        lowered = name.lower()
        for k, v in self.attributes:
            if k.lower() == lowered:
                return v if v is not None else ""
        return None

    def encode_lines(self) -> list[str]:
        lines = [f"m={self.media} {self.port} {self.proto} {' '.join(self.formats)}"]
        if self.connection:
            lines.append(f"c=IN IP4 {self.connection}")
        if self.direction:
            lines.append(f"a={self.direction}")
        lines += [f"a=rtpmap:{r}" for r in self.rtpmaps]
        if self.setup:
            lines.append(f"a=setup:{self.setup}")
        if self.connection_mode:
            lines.append(f"a=connection:{self.connection_mode}")
        if self.download_speed is not None:
            lines.append(f"a=downloadspeed:{self.download_speed}")
        if self.filesize is not None:
            lines.append(f"a=filesize:{self.filesize}")
        for name, value in self.attributes:
            if name.lower() in _DECODED_ATTRIBUTES:
                continue
            lines.append(f"a={name}" if value is None else f"a={name}:{value}")
        return lines


_DIRECTIONS = frozenset({"recvonly", "sendonly", "sendrecv", "inactive"})
_DECODED_ATTRIBUTES = frozenset({"recvonly", "sendonly", "sendrecv", "inactive", "rtpmap", "setup",
                                 "connection", "downloadspeed", "filesize"})


@dataclass(slots=True)
class SessionDescription:
    """A GB/T 28181 session description (offer or answer)."""

    session_name: str = "Play"              # s=
    origin_user: str = "-"                  # o=<user> <sess-id> <sess-version> IN IP4 <address>
    origin_session_id: str = "0"
    origin_version: str = "0"
    origin_address: str = "0.0.0.0"
    connection: str | None = None           # session-level c= address
    uri: str | None = None                  # u=<channel id>:<n> for history
    start: int = 0                          # t=<start> <stop>, Unix epoch seconds (not NTP)
    stop: int = 0
    media: list[MediaDescription] = field(default_factory=list)
    ssrc: str | None = None                 # y= exactly as written
    media_format: str | None = None         # f= ("" when the line is present but empty)
    version: int = 0
    attributes: list[tuple[str, str | None]] = field(default_factory=list)   # session-level a=
    extra_lines: list[str] = field(default_factory=list)                     # i=, b=, k=... kept

    # -- reading ------------------------------------------------------------------------------
    @property
    def video(self) -> MediaDescription | None:
        """The first video section, else the first section (a Talk answer is audio only)."""
        for m in self.media:
            if m.media.lower() == "video":
                return m
        return self.media[0] if self.media else None

    def connection_for(self, media: MediaDescription | None = None) -> str | None:
        """The address of ``media`` (its own ``c=``, else the session's)."""
        m = media if media is not None else self.video
        if m is not None and m.connection:
            return m.connection
        return self.connection

    @property
    def ssrc_value(self) -> int | None:
        """``y=`` as the 32-bit RTP SSRC, or None when absent or unreadable (see :func:`ssrc_value`)."""
        return ssrc_value(self.ssrc)

    @property
    def normalized_ssrc(self) -> str | None:
        """``y=`` as the 10-digit string, or None (see :func:`normalize_ssrc`)."""
        return normalize_ssrc(self.ssrc)

    # -- writing ------------------------------------------------------------------------------
    def encode(self) -> bytes:
        """The body, CRLF line ends, the GB lines ``y=`` and ``f=`` after the media section."""
        lines = [f"v={self.version}",
                 f"o={self.origin_user} {self.origin_session_id} {self.origin_version} IN IP4 "
                 f"{self.origin_address}",
                 f"s={self.session_name}"]
        lines += self.extra_lines
        if self.uri is not None:
            lines.append(f"u={self.uri}")
        if self.connection:
            lines.append(f"c=IN IP4 {self.connection}")
        lines.append(f"t={self.start} {self.stop}")
        for name, value in self.attributes:
            lines.append(f"a={name}" if value is None else f"a={name}:{value}")
        for m in self.media:
            lines += m.encode_lines()
        if self.ssrc is not None:
            lines.append(f"y={self.ssrc}")
        if self.media_format is not None:
            lines.append(f"f={self.media_format}")
        return ("\r\n".join(lines) + "\r\n").encode()

    __bytes__ = encode

    def __str__(self) -> str:
        return self.encode().decode()

    @classmethod
    def offer(cls, session_name: str, *, origin: str, host: str, port: int, ssrc: str | None,
              tcp: bool = False, setup: str | None = None, start: int = 0, stop: int = 0,
              uri: str | None = None, download_speed: int | None = None,
              rtpmaps: tuple[Rtpmap, ...] = DEFAULT_RTPMAPS, media: str = "video",
              direction: str = "recvonly", media_format: str | None = None,
              attributes: list[tuple[str, str | None]] | None = None) -> "SessionDescription":
        """A receiver's offer (PROTOCOL §8.4): where to send (``host``/``port``), which SSRC, and
        for TCP who connects (``setup="passive"``: we listen; ``"active"``: we connect)."""
        md = MediaDescription(
            media=media, port=port, proto="TCP/RTP/AVP" if tcp else "RTP/AVP",
            formats=[str(r.payload_type) for r in rtpmaps], direction=direction,
            rtpmaps=list(rtpmaps), setup=setup if tcp else None,
            connection_mode="new" if tcp else None, download_speed=download_speed,
            attributes=list(attributes or []))
        return cls(session_name=session_name, origin_user=origin, origin_address=host,
                   connection=host, uri=uri, start=start, stop=stop, media=[md], ssrc=ssrc,
                   media_format=media_format)


def normalize_ssrc(text: str | None) -> str | None:
    """``y=`` as the 10-digit decimal string of §8.3, or None.

    Devices drop the leading zero (``106000001``) or write more digits with leading zeros
    (``00106000001``); both mean the same SSRC. Anything else (letters, a value above 2³²-1,
    empty) is None: the caller keeps its own SSRC and accepts whatever RTP arrives.
    """
    value = ssrc_value(text)
    if value is None:
        return None
    return f"{value:010d}"


def ssrc_value(text: str | None) -> int | None:
    """``y=`` as the 32-bit SSRC carried in RTP headers (the decimal number), or None."""
    if text is None:
        return None
    text = text.strip()
    if not text or not (text.isascii() and text.isdigit()) or len(text) > 20:
        return None
    value = int(text)
    return value if value <= MAX_SSRC else None


def parse(data: bytes | str) -> SessionDescription:
    """Parse an SDP body; :class:`SdpError` (status hint 400) when it is not usable SDP."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if len(raw) > MAX_SDP:
            raise SdpError("SDP body too large")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("gb18030", errors="replace")
    else:
        text = data
    sdp = SessionDescription(connection=None)
    seen_version = False
    current: MediaDescription | None = None
    for number, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"SDP line {number} is not <type>=<value>: {line[:40]!r}")
        kind, value = line[0].lower(), line[2:].strip()
        if not seen_version:
            if kind != "v":
                raise SdpError("SDP does not start with v=")
            if value != "0":
                raise SdpError(f"unsupported SDP version {value[:10]!r}")
            seen_version = True
            continue
        if kind == "m":
            current = _parse_media(value)
            sdp.media.append(current)
        elif kind == "c":
            address = _parse_connection(value)
            if current is None:
                sdp.connection = address
            else:
                current.connection = address
        elif kind == "a":
            name, _, val = value.partition(":")
            attr = (name.strip(), val.strip() if _ else None)
            if current is None:
                sdp.attributes.append(attr)
            else:
                _media_attribute(current, attr)
        elif kind == "o":
            _parse_origin(sdp, value)
        elif kind == "s":
            sdp.session_name = value
        elif kind == "u":
            sdp.uri = value
        elif kind == "t":
            parts = value.split()
            if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
                raise SdpError(f"bad t= line {value[:40]!r}")
            sdp.start, sdp.stop = int(parts[0]), int(parts[1])
        elif kind == "y":
            sdp.ssrc = value
        elif kind == "f":
            sdp.media_format = value
        elif kind == "v":
            raise SdpError("second v= line")
        else:
            sdp.extra_lines.append(line)
    if not seen_version:
        raise SdpError("empty SDP body")
    return sdp


def _parse_media(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"bad m= line {value[:60]!r}")
    port_text = parts[1].split("/")[0]
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise SdpError(f"bad port in m= line {value[:60]!r}")
    return MediaDescription(media=parts[0], port=int(port_text), proto=parts[2],
                            formats=parts[3:])


def _parse_connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0].upper() != "IN" or parts[1].upper() not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line {value[:60]!r}")
    return parts[2].split("/")[0]     # multicast TTL/count suffix dropped


def _parse_origin(sdp: SessionDescription, value: str) -> None:
    parts = value.split()
    if len(parts) >= 1:
        sdp.origin_user = parts[0]
    if len(parts) >= 3:
        sdp.origin_session_id, sdp.origin_version = parts[1], parts[2]
    if len(parts) >= 6:
        sdp.origin_address = parts[5]


def _media_attribute(m: MediaDescription, attr: tuple[str, str | None]) -> None:
    m.attributes.append(attr)
    name, value = attr[0].lower(), attr[1]
    if name in _DIRECTIONS and value is None:
        m.direction = name
    elif name == "rtpmap" and value:
        pt, _, rest = value.partition(" ")
        enc = rest.strip().split("/")
        if pt.isascii() and pt.isdigit() and enc and enc[0]:
            clock = int(enc[1]) if len(enc) > 1 and enc[1].isascii() and enc[1].isdigit() else 90000
            m.rtpmaps.append(Rtpmap(int(pt), enc[0], clock, "/".join(enc[2:]) or None))
    elif name == "setup" and value:
        m.setup = value.lower()
    elif name == "connection" and value:
        m.connection_mode = value.lower()
    elif name == "downloadspeed" and value:
        m.download_speed = _int_or_none(value)
    elif name == "filesize" and value:
        m.filesize = _int_or_none(value)


def _int_or_none(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 20 else None
