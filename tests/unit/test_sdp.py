"""GB/T 28181 SDP: the composed examples of PROTOCOL §8.4/§8.4.1, device answers as seen in the
field, tolerance and errors."""

from __future__ import annotations

from pathlib import Path

import dpkt
import pytest

from sip28181.errors import RemoteProtocolError
from sip28181.platform.sessions import MediaOffer, MediaTransport, SessionKind
from sip28181.sdp import (DEFAULT_RTPMAPS, MediaDescription, Rtpmap, SdpError, SessionDescription,
                          normalize_ssrc, parse, ssrc_value)
from sip28181.sip.message import parse_message

PLATFORM = "44010600002000000001"
CAMERA = "44010600001310000001"

LIVE_OFFER = """v=0
o=44010600002000000001 0 0 IN IP4 10.0.0.11
s=Play
c=IN IP4 10.0.0.11
t=0 0
m=video 30000 RTP/AVP 96 97 98 99
a=recvonly
a=rtpmap:96 PS/90000
a=rtpmap:97 MPEG4/90000
a=rtpmap:98 H264/90000
a=rtpmap:99 H265/90000
y=0106000001
"""

LIVE_ANSWER = """v=0
o=44010600001310000001 0 0 IN IP4 192.168.1.20
s=Play
c=IN IP4 192.168.1.20
t=0 0
m=video 15060 RTP/AVP 96
a=sendonly
a=rtpmap:96 PS/90000
y=0106000001
f=
"""

PLAYBACK_OFFER = """v=0
o=44010600002000000001 0 0 IN IP4 10.0.0.11
s=Playback
u=44010600001310000001:0
c=IN IP4 10.0.0.11
t=1716163200 1716165000
m=video 30002 RTP/AVP 96 97 98
a=recvonly
a=rtpmap:96 PS/90000
a=rtpmap:97 MPEG4/90000
a=rtpmap:98 H264/90000
y=1106000023
"""

TCP_PASSIVE_OFFER = """v=0
o=44010600002000000001 0 0 IN IP4 10.0.0.11
s=Play
c=IN IP4 10.0.0.11
t=0 0
m=video 30010 TCP/RTP/AVP 96 98 97
a=recvonly
a=rtpmap:96 PS/90000
a=rtpmap:98 H264/90000
a=rtpmap:97 MPEG4/90000
a=setup:passive
a=connection:new
y=0106000002
"""

TCP_ACTIVE_ANSWER = """v=0
o=44010600001310000001 0 0 IN IP4 192.168.1.20
s=Play
c=IN IP4 192.168.1.20
t=0 0
m=video 9 TCP/RTP/AVP 96
a=sendonly
a=rtpmap:96 PS/90000
a=setup:active
a=connection:new
y=0106000002
f=
"""

TALK_OFFER = """v=0
o=44010600002000000001 0 0 IN IP4 10.0.0.11
s=Talk
c=IN IP4 10.0.0.11
t=0 0
m=audio 30004 TCP/RTP/AVP 8
a=setup:passive
a=connection:new
a=sendrecv
a=rtpmap:8 PCMA/8000
y=0106000044
f=v/////a/1/8/1
"""


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# -- the composed examples --------------------------------------------------------------------------
def test_live_offer_and_answer():
    offer = parse(crlf(LIVE_OFFER))
    assert offer.session_name == "Play" and offer.origin_user == PLATFORM
    assert offer.connection == "10.0.0.11" and (offer.start, offer.stop) == (0, 0)
    media = offer.video
    assert media.port == 30000 and media.proto == "RTP/AVP" and not media.tcp
    assert media.payload_types == [96, 97, 98, 99] and media.direction == "recvonly"
    assert [str(r) for r in media.rtpmaps] == ["96 PS/90000", "97 MPEG4/90000", "98 H264/90000", "99 H265/90000"]
    assert offer.ssrc == "0106000001" and offer.ssrc_value == 106000001 == 0x06516E81
    assert offer.media_format is None

    answer = parse(crlf(LIVE_ANSWER))
    assert answer.origin_user == CAMERA and answer.connection_for() == "192.168.1.20"
    assert answer.video.port == 15060 and answer.video.direction == "sendonly"
    assert answer.video.rtpmap(96) == Rtpmap(96, "PS", 90000)
    assert answer.normalized_ssrc == "0106000001"
    assert answer.media_format == ""                 # f= present and empty


def test_our_live_offer_is_the_protocol_example():
    offer = MediaOffer("10.0.0.11", 30000, MediaTransport.UDP, "0106000001").sdp(PLATFORM, CAMERA, "0106000001")
    assert offer.encode() == crlf(LIVE_OFFER)


def test_playback_offer():
    offer = parse(crlf(PLAYBACK_OFFER))
    assert offer.session_name == "Playback" and offer.uri == f"{CAMERA}:0"
    assert (offer.start, offer.stop) == (1716163200, 1716165000)   # Unix seconds, not NTP
    assert offer.ssrc_value == 1106000023 == 0x41EC3897
    ours = MediaOffer("10.0.0.11", 30002, "udp", "1106000023", kind=SessionKind.PLAYBACK,
                      start=1716163200, end=1716165000).sdp(PLATFORM, CAMERA, "1106000023")
    again = parse(ours.encode())
    assert (again.session_name, again.uri, again.start, again.stop, again.ssrc) == (
        "Playback", f"{CAMERA}:0", 1716163200, 1716165000, "1106000023")
    assert again.video.payload_types == [96, 97, 98, 99]


def test_download_offer_has_speed():
    sdp = MediaOffer("10.0.0.11", 30002, "tcp-passive", "1106000024", kind="Download", start=1, end=2,
                     speed=4).sdp(PLATFORM, CAMERA, "1106000024")
    text = sdp.encode().decode()
    assert "s=Download\r\n" in text and "a=downloadspeed:4\r\n" in text
    assert parse(text).video.download_speed == 4
    default = MediaOffer("10.0.0.11", 1, kind="Download", start=1, end=2).sdp(PLATFORM, CAMERA, "1106000025")
    assert default.video.download_speed == 1


def test_tcp_passive_offer_and_active_answer():
    offer = parse(crlf(TCP_PASSIVE_OFFER))
    media = offer.video
    assert media.tcp and media.proto == "TCP/RTP/AVP" and media.setup == "passive"
    assert media.connection_mode == "new" and media.payload_types == [96, 98, 97]
    answer = parse(crlf(TCP_ACTIVE_ANSWER))
    assert answer.video.setup == "active" and answer.video.port == 9
    ours = MediaOffer("10.0.0.11", 30010, MediaTransport.TCP_PASSIVE, "0106000002").sdp(PLATFORM, CAMERA, "0106000002")
    text = ours.encode().decode()
    assert "m=video 30010 TCP/RTP/AVP 96 97 98 99\r\n" in text
    assert "a=setup:passive\r\na=connection:new\r\n" in text
    assert text.endswith("y=0106000002\r\n")           # y= last: some devices insist (415 otherwise)
    active = MediaOffer("10.0.0.11", 30010, "tcp-active").sdp(PLATFORM, CAMERA, "0106000003")
    assert active.video.setup == "active"


def test_talk_offer_audio_only():
    talk = parse(crlf(TALK_OFFER))
    assert talk.session_name == "Talk" and talk.video.media == "audio"     # no video: the first section
    assert talk.video.rtpmap(8) == Rtpmap(8, "PCMA", 8000)
    assert talk.video.direction == "sendrecv" and talk.media_format == "v/////a/1/8/1"


def test_round_trip_keeps_unknown_attributes_and_lines():
    text = crlf(LIVE_ANSWER.replace("a=sendonly\n", "a=sendonly\na=streamprofile:0\na=x-flag\n")
                .replace("t=0 0\n", "b=AS:4096\nt=0 0\n"))
    sdp = parse(text)
    assert sdp.video.attribute("streamprofile") == "0" and sdp.video.attribute("x-flag") == ""
    again = parse(sdp.encode())
    assert sorted(again.video.attributes, key=str) == sorted(sdp.video.attributes, key=str)
    assert again.extra_lines == ["b=AS:4096"]
    assert again.encode() == sdp.encode()


def test_offer_attributes_for_stream_selection():
    sdp = MediaOffer("10.0.0.11", 1, attributes=(("streamnumber", "1"),)).sdp(PLATFORM, CAMERA, "0106000009")
    assert "a=streamnumber:1\r\n" in sdp.encode().decode()


# -- answers devices send ---------------------------------------------------------------------------
def test_real_answer_from_a_device_capture():
    """The 200 OK of an open-source device simulator captured on loopback (shared data)."""
    path = Path(__file__).parents[1] / "data" / "ps" / "device_sim_udp_digest_h264.pcapng"
    with path.open("rb") as f:
        for _ts, buf in dpkt.pcapng.Reader(f):
            payload = bytes(dpkt.ethernet.Ethernet(buf).data.data.data)
            if payload.startswith(b"SIP/2.0 200") and b"INVITE" in payload:
                break
        else:
            pytest.fail("no 200 OK to INVITE in the capture")
    response = parse_message(payload)
    answer = parse(response.body)
    assert answer.session_name == "Play" and answer.origin_user == "34020000001320000004"
    assert answer.video.port == 9000 and answer.video.direction == "sendonly"
    assert answer.video.filesize == 0 and answer.normalized_ssrc == "0100000001"


def test_hikvision_style_answer_own_ssrc_negative_filesize_no_f():
    """An NVR answer as reported in the field: rtpmap before the direction, a=filesize:-1 on a live
    answer, its own SSRC, no f= line, LF line ends."""
    text = ("v=0\no=34020000001320000001 0 0 IN IP4 10.1.2.3\ns=Play\nc=IN IP4 10.1.2.3\nt=0 0\n"
            "m=video 5490 RTP/AVP 96\na=rtpmap:96 PS/90000\na=sendonly\na=filesize:-1\ny=0703001718\n")
    sdp = parse(text.encode())
    assert sdp.video.direction == "sendonly" and sdp.video.filesize is None
    assert sdp.video.attribute("filesize") == "-1"
    assert sdp.normalized_ssrc == "0703001718" and sdp.media_format is None


@pytest.mark.parametrize("y, normal, value", [
    ("0106000001", "0106000001", 106000001),
    ("106000001", "0106000001", 106000001),          # leading zero dropped (seen in talk answers)
    ("00106000001", "0106000001", 106000001),        # eleven digits with leading zeros
    ("4294967295", "4294967295", 4294967295),
    ("4294967296", None, None),                      # above 32 bits
    ("0x1234", None, None),
    ("", None, None),
    (" 0106000001 ", "0106000001", 106000001),
])
def test_ssrc_forms(y, normal, value):
    assert normalize_ssrc(y) == normal and ssrc_value(y) == value


def test_answer_without_y_and_connection_only_in_media():
    text = ("v=0\r\no=cam 0 0 IN IP4 0.0.0.0\r\ns=Play\r\nt=0 0\r\nm=video 6000 RTP/AVP 96\r\n"
            "c=IN IP4 192.168.1.20\r\na=sendonly\r\na=rtpmap:96 PS/90000\r\n")
    sdp = parse(text)
    assert sdp.ssrc is None and sdp.ssrc_value is None
    assert sdp.connection is None and sdp.video.connection == "192.168.1.20"
    assert sdp.connection_for(sdp.video) == "192.168.1.20"


def test_tolerated_sloppiness():
    text = ("\r\nv=0\r\no=34020000001320000001 0 0 IN IP4 10.0.0.2\r\n\r\ns=Play\r\n"
            "c=IN IP4 10.0.0.2/127\r\nt=0 0\r\nm=video 6000/2 RTP/AVP 96\r\na=rtpmap:96 PS\r\n"
            "a=SENDONLY\r\nz=ignored\r\n   \r\ny=0106000001\r\nf=v/2/6/25/1/4096a///")
    sdp = parse(text)
    assert sdp.connection == "10.0.0.2" and sdp.video.port == 6000
    assert sdp.video.rtpmap(96).clock_rate == 90000
    assert sdp.extra_lines == ["z=ignored"] and sdp.media_format == "v/2/6/25/1/4096a///"
    assert sdp.video.attribute("sendonly") == ""


def test_gb18030_body_is_read():
    body = "v=0\r\no=摄像机 0 0 IN IP4 10.0.0.2\r\ns=Play\r\nt=0 0\r\nm=video 1 RTP/AVP 96\r\n".encode("gb18030")
    assert parse(body).origin_user == "摄像机"


# -- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, fragment", [
    (b"", "empty"),
    (b"\r\n\r\n", "empty"),
    (b"hello world", "not <type>=<value>"),
    (b"o=x 0 0 IN IP4 1.2.3.4\r\nv=0\r\n", "does not start with v="),
    (b"v=1\r\n", "unsupported SDP version"),
    (b"v=0\r\nm=video\r\n", "bad m= line"),
    (b"v=0\r\nm=video abc RTP/AVP 96\r\n", "bad port"),
    (b"v=0\r\nm=video 70000 RTP/AVP 96\r\n", "bad port"),
    (b"v=0\r\nc=IN IP4\r\n", "bad c= line"),
    (b"v=0\r\nc=XX IP4 1.2.3.4\r\n", "bad c= line"),
    (b"v=0\r\nt=now later\r\n", "bad t= line"),
    (b"v=0\r\nt=1\r\n", "bad t= line"),
    (b"v=0\r\nv=0\r\n", "second v="),
    (b"v=0\r\n" + b"a=x\r\n" * 20000, "too large"),
])
def test_malformed_sdp(body, fragment):
    with pytest.raises(SdpError) as info:
        parse(body)
    assert fragment in info.value.reason
    assert isinstance(info.value, RemoteProtocolError) and info.value.status_hint == 400


def test_builders():
    md = MediaDescription(media="video", port=1, formats=["96"], direction="sendonly",
                          rtpmaps=[Rtpmap(96, "PS", 90000)], filesize=1234)
    sdp = SessionDescription(session_name="Download", origin_user=CAMERA, origin_address="1.2.3.4",
                             connection="1.2.3.4", start=5, stop=6, media=[md], ssrc="1106000023", media_format="")
    text = sdp.encode().decode()
    assert text.endswith("y=1106000023\r\nf=\r\n") and "a=filesize:1234\r\n" in text
    assert str(sdp) == text
    assert [r.payload_type for r in DEFAULT_RTPMAPS] == [96, 97, 98, 99]
