"""Content-Length framing of SIP over a stream transport (RFC 3261 §18.3).

Several messages may arrive in one read and one message over many reads; CRLF keep-alive pings
(RFC 5626) between messages are skipped and counted so the transport can answer them.
"""

from __future__ import annotations

from ..errors import RemoteProtocolError
from .message import MAX_HEADER_BYTES, MAX_MESSAGE_SIZE, Request, Response, parse_message


class StreamFramer:
    """Feed bytes from a TCP connection; get complete messages back.

    A framing error (oversized, unterminated or unparseable header section) raises
    :class:`RemoteProtocolError`: the stream cannot be resynchronised and the connection must close.
    A message whose framing is sound but whose content is bad is returned as the error instance in
    the list, so one bad message does not cost the connection.
    """

    __slots__ = ("_buf", "pings")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.pings = 0

    def feed(self, data: bytes) -> list[Request | Response | RemoteProtocolError]:
        buf = self._buf
        buf += data
        out: list[Request | Response | RemoteProtocolError] = []
        while True:
            # skip CRLF pings between messages
            start = 0
            while buf[start:start + 2] == b"\r\n":
                start += 2
                if buf[start:start + 2] == b"\r\n":
                    self.pings += 1
            if start:
                del buf[:start]
            if not buf:
                break
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    raise RemoteProtocolError("header section too large", 413)
                break
            length = _content_length(bytes(buf[:end]))
            total = end + 4 + length
            if total > MAX_MESSAGE_SIZE:
                raise RemoteProtocolError("message too large", 413)
            if len(buf) < total:
                break
            chunk = bytes(buf[:total])
            del buf[:total]
            try:
                out.append(parse_message(chunk))
            except RemoteProtocolError as exc:
                out.append(exc)
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            value = value.strip()
            if not (value.isascii() and value.isdigit()) or len(value) > 6:
                raise RemoteProtocolError("bad Content-Length")
            return int(value)
    return 0   # a stream message without Content-Length has no body
