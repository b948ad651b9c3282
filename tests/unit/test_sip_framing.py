"""Content-Length framing of SIP over TCP: split and merged reads, CRLF pings, oversize input."""

from __future__ import annotations

import pytest

from sip28181.errors import RemoteProtocolError
from sip28181.sip.framing import StreamFramer
from sip28181.sip.message import MAX_HEADER_BYTES, Request, parse_message


def message(n: int, body: bytes = b"") -> bytes:
    return (f"MESSAGE sip:44010600002000000001@4401060000 SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP 192.168.1.64:5060;branch=z9hG4bK-{n}\r\n"
            "From: <sip:44010600001320000010@4401060000>;tag=a\r\n"
            "To: <sip:44010600002000000001@4401060000>\r\n"
            f"Call-ID: frame-{n}\r\nCSeq: {n} MESSAGE\r\n"
            "Content-Type: Application/MANSCDP+xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


BODY = b'<?xml version="1.0"?>\r\n<Notify><CmdType>Keepalive</CmdType></Notify>\r\n\r\n'


def test_several_messages_in_one_read() -> None:
    framer = StreamFramer()
    out = framer.feed(message(1, BODY) + message(2) + message(3, b"x"))
    assert [m.cseq.number for m in out] == [1, 2, 3]
    assert out[0].body == BODY and out[1].body == b"" and out[2].body == b"x"
    assert framer.buffered == 0


@pytest.mark.parametrize("step", [1, 2, 7, 100])
def test_one_message_over_many_reads(step: int) -> None:
    framer = StreamFramer()
    data = message(1, BODY) + message(2, BODY)
    out = []
    for i in range(0, len(data), step):
        out += framer.feed(data[i:i + step])
        if i + step < len(message(1, BODY)):
            assert out == []
    assert [m.call_id for m in out] == ["frame-1", "frame-2"]
    assert all(m.body == BODY for m in out)


def test_body_containing_blank_lines_is_not_cut() -> None:
    body = b"\r\n\r\n\r\nSIP/2.0 200 OK\r\n\r\n"
    (m,) = StreamFramer().feed(message(5, body))
    assert m.body == body


def test_crlf_pings_are_skipped_and_counted() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.pings == 1                       # a double CRLF is one ping (RFC 5626 §3.5.1)
    assert len(framer.feed(b"\r\n\r\n" + message(1) + b"\r\n\r\n")) == 1
    assert framer.pings == 3
    assert framer.feed(b"\r\n") == [] and framer.pings == 3   # a lone CRLF is a pong
    assert framer.feed(message(2))[0].cseq.number == 2


def test_bad_message_with_sound_framing_is_returned_not_raised() -> None:
    framer = StreamFramer()
    bad = message(1).replace(b"CSeq: 1 MESSAGE", b"CSeq: 1 INVITE")
    out = framer.feed(bad + message(2))
    assert isinstance(out[0], RemoteProtocolError) and out[0].status_hint == 400
    assert isinstance(out[1], Request) and out[1].cseq.number == 2


def test_oversize_header_section_rejected() -> None:
    framer = StreamFramer()
    with pytest.raises(RemoteProtocolError) as exc:
        framer.feed(b"MESSAGE sip:a@b SIP/2.0\r\nX: " + b"a" * (MAX_HEADER_BYTES + 10))
    assert exc.value.status_hint == 413


def test_oversize_body_rejected_before_it_arrives() -> None:
    head = message(1).replace(b"Content-Length: 0", b"Content-Length: 999999")
    with pytest.raises(RemoteProtocolError) as exc:
        StreamFramer().feed(head)
    assert exc.value.status_hint in (400, 413)
    head = message(1).replace(b"Content-Length: 0", b"Content-Length: 70000")
    with pytest.raises(RemoteProtocolError) as exc:
        StreamFramer().feed(head)
    assert exc.value.status_hint == 413


def test_bad_content_length_breaks_the_stream() -> None:
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed(message(1).replace(b"Content-Length: 0", b"Content-Length: ten"))


def test_compact_content_length() -> None:
    data = message(1, b"abc").replace(b"Content-Length: 3", b"l: 3")
    m, second = StreamFramer().feed(data + message(2))
    assert m.body == b"abc" and second.cseq.number == 2


def test_framed_output_equals_datagram_parse() -> None:
    data = message(7, BODY)
    (framed,) = StreamFramer().feed(data)
    assert framed.encode() == parse_message(data).encode()
