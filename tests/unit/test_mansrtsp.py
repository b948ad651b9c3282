"""MANSRTSP bodies of INFO (PROTOCOL §8.8): build, parse, and what a device reads from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from sip28181.mansrtsp import (CONTENT_TYPE, MansrtspError, MansrtspRequest, MansrtspResponse, Method,
                               parse_request, parse_response)
from sip28181.sip.message import parse_message


def test_table_of_protocol_8_8():
    assert MansrtspRequest.pause(3).encode() == b"PAUSE RTSP/1.0\r\nCSeq: 3\r\nPauseTime: now\r\n\r\n"
    assert MansrtspRequest.play(4).encode() == b"PLAY RTSP/1.0\r\nCSeq: 4\r\nRange: npt=now-\r\n\r\n"
    assert MansrtspRequest.play(5, scale=2).encode() == b"PLAY RTSP/1.0\r\nCSeq: 5\r\nScale: 2.0\r\n\r\n"
    assert MansrtspRequest.play(6, range_start=600).encode() == b"PLAY RTSP/1.0\r\nCSeq: 6\r\nRange: npt=600-\r\n\r\n"
    assert MansrtspRequest.teardown(7).encode() == b"TEARDOWN RTSP/1.0\r\nCSeq: 7\r\n\r\n"
    assert MansrtspRequest.play(8, scale=0.25).encode().endswith(b"Scale: 0.25\r\n\r\n")
    assert MansrtspRequest.play(9, scale=-1).encode().endswith(b"Scale: -1.0\r\n\r\n")   # reverse (2022)
    assert MansrtspRequest.play(10, 12.5, 2, range_end=60).encode() == (
        b"PLAY RTSP/1.0\r\nCSeq: 10\r\nRange: npt=12.5-60\r\nScale: 2.0\r\n\r\n")
    assert CONTENT_TYPE == "Application/MANSRTSP"


@pytest.mark.parametrize("request_, resume, seek, scale", [
    (MansrtspRequest.play(1), True, False, False),
    (MansrtspRequest.play(1, range_start=600), False, True, False),
    (MansrtspRequest.play(1, scale=4.0), False, False, True),
    (MansrtspRequest.play(1, range_start=5, scale=0.5), False, True, True),
])
def test_device_side_reading(request_, resume, seek, scale):
    """A device tells resume, seek and speed apart the way §8.8 describes, after a round trip."""
    parsed = parse_request(request_.encode())
    assert (parsed.is_resume, parsed.is_seek, parsed.is_scale) == (resume, seek, scale)
    assert parsed == request_


def test_info_from_the_sample_message():
    raw = (Path(__file__).parents[1] / "data" / "sip" / "info_mansrtsp.sip").read_bytes()
    message = parse_message(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    assert message.content_type == CONTENT_TYPE.lower()
    body = parse_request(message.body)
    assert body.method is Method.PLAY and body.cseq == 5 and body.scale == 2.0 and body.is_scale


def test_lenient_forms():
    body = b"play rtsp/1.0\ncseq: 12\nrange: npt = now -\nX-Vendor: 1\n\n"
    parsed = parse_request(body)
    assert parsed.method is Method.PLAY and parsed.cseq == 12 and parsed.range_now and parsed.is_resume
    assert parsed.headers == [("X-Vendor", "1")]
    assert parse_request("PAUSE RTSP/1.0\r\nCSeq: 1\r\nPauseTime: now\r\n").pause_time == "now"
    assert parse_request(b"PLAY RTSP/1.0\r\nCSeq: 2\r\nRange: npt=10.5-20\r\n").range_end == 20.0


@pytest.mark.parametrize("body, status", [
    (b"", 400),
    (b"\r\n\r\n", 400),
    (b"PLAY\r\nCSeq: 1\r\n", 400),
    (b"GET_PARAMETER RTSP/1.0\r\nCSeq: 1\r\n", 405),
    (b"PLAY HTTP/1.1\r\nCSeq: 1\r\n", 400),
    (b"PLAY RTSP/1.0\r\n", 400),                              # no CSeq
    (b"PLAY RTSP/1.0\r\nCSeq: x\r\n", 400),
    (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: fast\r\n", 400),
    (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: 0\r\n", 400),
    (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: nan\r\n", 400),
    (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: smpte=0-\r\n", 400),
    (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: npt=-5-\r\n", 400),
    (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: npt=abc-\r\n", 400),
    (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nno colon here\r\n", 400),
    (b"\xff\xfe\x00", 400),
    (b"PLAY RTSP/1.0\r\n" + b"X: y\r\n" * 1000, 400),
])
def test_malformed(body, status):
    with pytest.raises(MansrtspError) as info:
        parse_request(body)
    assert info.value.status_hint == status


def test_builder_refuses_nonsense():
    with pytest.raises(ValueError):
        MansrtspRequest.play(1, range_start=-1)
    with pytest.raises(ValueError):
        MansrtspRequest.play(1, scale=0)


def test_response_body():
    assert MansrtspResponse(200, "OK", 5).encode() == b"RTSP/1.0 200 OK\r\nCSeq: 5\r\n\r\n"
    parsed = parse_response(b"RTSP/1.0 200 OK\r\nCSeq: 5\r\nSession: 1\r\n")
    assert (parsed.status, parsed.reason, parsed.cseq, parsed.headers) == (200, "OK", 5, [("Session", "1")])
    with pytest.raises(MansrtspError):
        parse_response(b"SIP/2.0 200 OK\r\n")
