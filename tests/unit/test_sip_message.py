"""SIP message parsing: everyday GB/T 28181 traffic, header forms, and the RFC 4475 torture cases
that matter to a registrar/UAS (valid ones parse; invalid ones raise RemoteProtocolError with the
status to answer)."""

from __future__ import annotations

import pytest

from sip28181.errors import RemoteProtocolError
from sip28181.sip.message import Request, Response, parse_message


def msg(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def full_parse(data: bytes) -> Request | Response:
    """Parse and read every structured header a registrar touches (Via, From, To, CSeq, Contact,
    Expires), as the server does before acting on a message."""
    m = parse_message(data)
    m.vias, m.from_, m.to, m.cseq, m.contacts, m.expires  # noqa: B018 - parse on access
    return m


REGISTER = msg(
    "REGISTER sip:44010600002000000001@4401060000 SIP/2.0",
    "Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK-reg-0001",
    "From: <sip:44010600001320000010@4401060000>;tag=81726354",
    "To: <sip:44010600001320000010@4401060000>",
    "Call-ID: 7731209@192.168.1.64",
    "CSeq: 1 REGISTER",
    "Contact: <sip:44010600001320000010@192.168.1.64:5060>",
    "Max-Forwards: 70",
    "User-Agent: ExampleIPC/1.0",
    "Expires: 3600",
    "X-GB-Ver: 3.0",
    "Content-Length: 0",
)


# ------------------------------------------------------------------------------------------------
# everyday messages and header forms
# ------------------------------------------------------------------------------------------------
def test_register_from_protocol_md() -> None:
    m = full_parse(REGISTER)
    assert isinstance(m, Request)
    assert m.method == "REGISTER" and m.uri == "sip:44010600002000000001@4401060000"
    assert m.via.branch == "z9hG4bK-reg-0001" and m.via.params["rport"] is None
    assert (m.via.transport, m.via.host, m.via.port) == ("UDP", "192.168.1.64", 5060)
    assert m.from_.tag == "81726354" and m.from_.user == "44010600001320000010"
    assert m.to.tag is None
    assert (m.cseq.number, m.cseq.method) == (1, "REGISTER")
    assert m.expires == 3600 and m.headers.get("x-gb-ver") == "3.0"
    assert m.contacts[0].uri.port == 5060
    assert parse_message(m.encode()).encode() == m.encode()


def test_compact_forms_and_case_insensitive_names() -> None:
    m = full_parse(msg(
        "MESSAGE sip:44010600002000000001@4401060000 SIP/2.0",
        "v: SIP/2.0/TCP 10.1.1.1:5060;branch=z9hG4bKc1",
        "f: <sip:a@4401060000>;tag=1",
        "t: <sip:b@4401060000>",
        "i: compact-1",
        "cSeQ: 3 MESSAGE",
        "m: <sip:a@10.1.1.1>",
        "c: Application/MANSCDP+xml",
        "MAX-FORWARDS: 70",
        "l: 7",
        body=b"<x/>\r\n\r\n"))
    assert m.call_id == "compact-1" and m.cseq.number == 3
    assert m.via.transport == "TCP" and m.from_.tag == "1"
    assert m.content_type == "application/manscdp+xml"
    assert m.body == b"<x/>\r\n\r" and m.headers.get("Content-Length") == "7"
    assert [k for k, _ in m.headers][:3] == ["Via", "From", "To"]


def test_comma_separated_and_repeated_via_and_contact() -> None:
    m = full_parse(msg(
        "REGISTER sip:4401060000 SIP/2.0",
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com:5070;branch=z9hG4bK2",
        "Via: SIP/2.0/TCP c.example.com;branch=z9hG4bK3",
        "From: <sip:x@4401060000>;tag=1", "To: <sip:x@4401060000>", "Call-ID: cv", "CSeq: 1 REGISTER",
        'Contact: "A, B" <sip:x@1.1.1.1>;expires=60, <sip:x@2.2.2.2>;q=0.5',
        "Contact: sip:x@3.3.3.3;expires=10",
        "Content-Length: 0"))
    assert [v.host for v in m.vias] == ["a.example.com", "b.example.com", "c.example.com"]
    assert m.via.host == "a.example.com" and m.vias[1].port == 5070
    assert [c.uri.host for c in m.contacts] == ["1.1.1.1", "2.2.2.2", "3.3.3.3"]
    assert m.contacts[0].display == "A, B" and m.contacts[0].params["expires"] == "60"
    assert m.contacts[2].params == {"expires": "10"}          # unbracketed: header parameter


def test_folded_lines_join_with_a_space() -> None:
    m = full_parse(msg(
        "OPTIONS sip:x@4401060000 SIP/2.0",
        "Via: SIP/2.0/UDP 1.2.3.4;",
        "  branch=z9hG4bKfold",
        "From: <sip:y@4401060000>", "\t;tag=9",
        "To: <sip:x@4401060000>", "Call-ID: fold", "CSeq: 1", " OPTIONS",
        "Subject: one", "  two", "Content-Length: 0"))
    assert m.via.branch == "z9hG4bKfold" and m.from_.tag == "9"
    assert m.headers.get("Subject") == "one two" and m.cseq.method == "OPTIONS"


def test_content_length_truncates_datagram_and_short_body_is_rejected() -> None:
    base = REGISTER.replace(b"Content-Length: 0", b"Content-Length: 4")
    assert parse_message(base + b"abcdEXTRA").body == b"abcd"
    with pytest.raises(RemoteProtocolError) as exc:
        parse_message(base + b"ab")
    assert exc.value.status_hint == 400


def test_missing_content_length_on_udp_takes_the_rest() -> None:
    data = REGISTER.replace(b"Content-Length: 0\r\n", b"") + b"body"
    assert parse_message(data).body == b"body"


def test_utf8_display_names_and_reason() -> None:
    m = full_parse(msg(
        "MESSAGE sip:x@4401060000 SIP/2.0",
        "Via: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1",
        'From: "大门摄像机" <sip:44010600001320000010@4401060000>;tag=u8',
        "To: 前台 <sip:x@4401060000>", "Call-ID: u8", "CSeq: 1 MESSAGE", "Content-Length: 0"))
    assert m.from_.display == "大门摄像机" and m.to.display == "前台"
    r = parse_message("SIP/2.0 403 密码错误\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
                      "To: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\n\r\n".encode())
    assert isinstance(r, Response) and r.status == 403 and r.reason == "密码错误"


def test_non_utf8_header_is_rejected_but_binary_body_is_kept() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_message(REGISTER.replace(b"ExampleIPC", b"\xc9\xe3\xcf\xf1"))
    body = "<Name>大门</Name>".encode("gb2312")
    m = parse_message(REGISTER.replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode()) + body)
    assert m.body == body


def test_ipv6_hosts() -> None:
    m = full_parse(msg(
        "REGISTER sip:[2001:db8::10]:5060 SIP/2.0",
        "Via: SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKv6;rport",
        "From: <sip:user@[2001:db8::9:1]>;tag=v6", "To: <sip:user@[2001:db8::9:1]>",
        "Call-ID: v6", "CSeq: 1 REGISTER", "Contact: <sip:user@[2001:db8::9:1]:5070;transport=udp>",
        "Content-Length: 0"))
    assert (m.via.host, m.via.port) == ("2001:db8::9:1", 5070)
    assert str(m.via).startswith("SIP/2.0/UDP [2001:db8::9:1]:5070")
    c = m.contacts[0].uri
    assert (c.host, c.port, c.param("transport")) == ("2001:db8::9:1", 5070, "udp")
    assert str(c) == "sip:user@[2001:db8::9:1]:5070;transport=udp"


def test_leading_crlf_and_bare_lf() -> None:
    assert parse_message(b"\r\n\r\n" + REGISTER).method == "REGISTER"
    assert parse_message(REGISTER.replace(b"\r\n", b"\n")).call_id == "7731209@192.168.1.64"


@pytest.mark.parametrize("data, status", [
    (b"", 400),
    (b"REGISTER sip:x SIP/2.0\r\n", 400),
    (REGISTER + b"x" * 70_000, 413),
    (REGISTER.replace(b"User-Agent: ExampleIPC/1.0", b"X: " + b"a" * 17_000), 413),
    (REGISTER.replace(b"Max-Forwards: 70", "\r\n".join(f"X-{i}: 1" for i in range(200)).encode()), 413),
    (REGISTER.replace(b"CSeq: 1 REGISTER", b"CSeq: 1 REGISTER\r\nCSeq: 2 REGISTER"), 400),
    (REGISTER.replace(b"Expires: 3600", b"Expires: soon"), 400),
    (REGISTER.replace(b"Content-Length: 0", b"Content-Length: 0x10"), 400),
])
def test_rejections(data: bytes, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        full_parse(data)
    assert exc.value.status_hint == status


# ------------------------------------------------------------------------------------------------
# RFC 4475 valid messages
# ------------------------------------------------------------------------------------------------
SDP = b"v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n"

WSINV = msg(
    "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0",
    "TO :",
    " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
    'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>',
    "  ;",
    "  tag = 98asjd8",
    "MaX-fOrWaRdS: 0068",
    "Call-ID: wsinv.ndaksdj@192.0.2.1",
    "Content-Length   : 150",
    "cseq: 0009",
    "  INVITE",
    "Via  : SIP  /   2.0",
    " /UDP",
    "    192.0.2.2;branch=390skdjuw",
    "s :",
    "NewFangledHeader:   newfangled value",
    " continued newfangled value",
    "UnknownHeaderWithUnusualValue: ;;,,;;,;",
    "Content-Type: application/sdp",
    "Route:",
    " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>",
    "v:  SIP  / 2.0  / TCP     spindle.example.com   ;",
    "  branch  =   z9hG4bK9ikj8  ,",
    " SIP  /    2.0   / UDP  192.168.255.111   ; branch=",
    " z9hG4bK30239",
    'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =',
    "      newvalue ;",
    "  secondparam ; q = 0.33",
    body=SDP + b"x" * (150 - len(SDP)))


def test_wsinv_short_tortuous_invite() -> None:
    m = full_parse(WSINV)
    assert isinstance(m, Request) and m.method == "INVITE"
    assert m.to.tag == "1918181833n" and m.from_.tag == "98asjd8"
    assert (m.cseq.number, m.cseq.method) == (9, "INVITE")
    assert [v.transport for v in m.vias] == ["UDP", "TCP", "UDP"]
    assert [v.host for v in m.vias] == ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    assert m.vias[1].branch == "z9hG4bK9ikj8" and m.vias[2].branch == "z9hG4bK30239"
    assert m.contacts[0].params["q"] == "0.33" and m.contacts[0].params["newparam"] == "newvalue"
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert len(m.body) == 150


def test_intmeth_unusual_method_and_uri() -> None:
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    m = full_parse(msg(
        f"{method} sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0",
        "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
        'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn\'t+it$/crazy?,/;;*@example.com>',
        "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\\\"\";tag=_token~1'+`*%!-.",
        "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        f"CSeq: 139122385 {method}",
        "Max-Forwards: 255",
        "extensionHeader-!.%*+_`'~: \ufeff\u5927\u5099",
        "Content-Length: 0"))
    assert isinstance(m, Request)
    assert m.method.upper() == method.upper() and m.cseq.number == 139122385
    assert m.via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.from_.tag == "_token~1'+`*%!-."


def test_esc01_escaped_uris() -> None:
    m = full_parse(msg(
        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0",
        "To: sip:%75se%72@example.com",
        "From: <sip:I%20have%20spaces@example.net>;tag=938",
        "Max-Forwards: 87",
        "i: esc01.239409asdfakjkn23onasd0-3234",
        "CSeq: 234234 INVITE",
        "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw",
        "C: application/sdp",
        "Contact:",
        "  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>",
        "Content-Length: 150", body=SDP + b"x" * (150 - len(SDP))))
    assert m.to.user == "%75se%72" and m.from_.user == "I%20have%20spaces"
    assert m.contacts[0].uri.user == "cal%6Cer"


def test_escnull_and_esc02() -> None:
    m = full_parse(msg(
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:null-%00-null@example.com",
        "From: sip:null-%00-null@example.com;tag=839923423",
        "Max-Forwards: 70", "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
        "CSeq: 14398234 REGISTER",
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw",
        "Contact: <sip:%00@host5.example.com>",
        "Contact: <sip:%00%00@host5.example.com>",
        "L:0"))
    assert m.to.user == "null-%00-null" and m.from_.tag == "839923423"
    assert [c.uri.user for c in m.contacts] == ["%00", "%00%00"]
    esc02 = full_parse(msg(
        "RE%47IST%45R sip:registrar.example.com SIP/2.0",
        'To: "%Z%45" <sip:resource@example.com>',
        'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23',
        "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
        "Via: SIP/2.0/TCP host.example.com;rport;branch=z9hG4bK209793",
        "Max-Forwards: 70",
        "CSeq: 29344 RE%47IST%45R",
        "Content-Length: 0"))
    assert esc02.method == "RE%47IST%45R" and esc02.to.display == "%Z%45"


def test_lwsdisp_semiuri_transports_noreason_unreason() -> None:
    m = full_parse(msg(
        "OPTIONS sip:user@example.com SIP/2.0", "To: sip:user@example.com",
        "From: caller<sip:caller@example.com>;tag=323", "Max-Forwards: 70",
        "Call-ID: lwsdisp.1234abcd@funky.example.com", "CSeq: 60 OPTIONS",
        "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw", "l: 0"))
    assert m.from_.display == "caller" and m.from_.uri.user == "caller"
    semi = full_parse(msg(
        "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0", "To: sip:j_user@example.com",
        "From: sip:caller@example.org;tag=33242", "Max-Forwards: 3",
        "Call-ID: semiuri.0ha0isndaksdj", "CSeq: 8 OPTIONS", "Accept: application/sdp, application/pkcs7-mime,",
        " multipart/mixed, multipart/signed,", " message/sip, message/sipfrag",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw", "l: 0"))
    assert semi.uri == "sip:user;par=u%40example.net@example.com"
    tr = full_parse(msg(
        "OPTIONS sip:user@example.com SIP/2.0", "To: sip:user@example.com",
        "From: <sip:caller@example.com>;tag=323", "Max-Forwards: 70",
        "Call-ID: transports.kijh4akdnaqjkwendsasfdj", "Accept: application/sdp", "CSeq: 60 OPTIONS",
        "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw",
        "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf",
        "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj",
        "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
        "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee", "l: 0"))
    assert [v.transport for v in tr.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    resp_head = ("Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\r\n"
                 "Call-ID: noreason.asndj203insdf99223ndf\r\nCSeq: 35 INVITE\r\n"
                 "From: <sip:user@example.com>;tag=39ansfi3\r\n"
                 "To: <sip:user@example.edu>;tag=902jndnke3\r\nContent-Length: 0\r\n"
                 "Contact: <sip:user@host.example.edu>\r\n\r\n")
    noreason = full_parse(b"SIP/2.0 100 \r\n" + resp_head.encode())
    assert isinstance(noreason, Response) and noreason.status == 100 and noreason.reason == ""
    unreason = full_parse("SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое\r\n"
                          .encode() + resp_head.encode())
    assert unreason.status == 200 and unreason.reason.endswith("простое")


def test_longreq() -> None:
    long = "x" * 1000
    vias = [f"Via: SIP/2.0/TCP sip{i}.example.com;branch=z9hG4bK{i}{long[:50]}" for i in range(30)]
    m = full_parse(msg(
        f"INVITE sip:user@example.com;{long[:300]}=1 SIP/2.0",
        f'To: "I have a user name of {long} proportion" <sip:user@example.com:6000;unknownparam1=verylonguri{long[:400]}>',
        f"From: sip:{long[:500]}@example.com;tag=12982982982",
        f"Call-ID: longreq.{long}",
        "CSeq: 3882340 INVITE",
        "Unknown-LongName" + long[:100] + ": unknown-longvalue-" + long,
        *vias,
        "Max-Forwards: 70",
        f"Contact: <sip:amazinglylongcallername{long[:100]}@host5.example.net>",
        "Content-Type: application/sdp", f"l: {len(SDP)}", body=SDP))
    assert len(m.vias) == 30 and m.from_.tag == "12982982982" and m.body == SDP


def test_dblreq_only_first_message_of_the_datagram_is_parsed() -> None:
    first = REGISTER
    second = REGISTER.replace(b"CSeq: 1 REGISTER", b"CSeq: 2 REGISTER")
    m = full_parse(first + second)
    assert m.cseq.number == 1 and m.body == b""


def test_mpart01_binary_multipart_body() -> None:
    body = (b"--boundary42\r\nContent-Type: text/plain\r\n\r\nhello\r\n--boundary42\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n\x00\xff\xfe\x80\r\n\r\n--boundary42--\r\n")
    m = full_parse(msg(
        "MESSAGE sip:kumiko@example.org SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bK",
        "Max-Forwards: 70", "From: <sip:a@example.com>;tag=1", "To: <sip:kumiko@example.org>",
        "Call-ID: mpart01", "CSeq: 1 MESSAGE",
        'Content-Type: multipart/signed;protocol="application/pkcs7-signature";boundary=boundary42',
        f"Content-Length: {len(body)}", body=body))
    assert m.body == body


def test_registrar_level_valid_cases() -> None:
    """regescrt, cparam01/02, zeromf, bext01, bcast, baddate, unkscm, novelsc parse; acting on
    them (416, 420, 483...) is the TU's business."""
    common = ["From: <sip:user@example.com>;tag=1", "To: <sip:user@example.com>",
              "Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKreg", "Max-Forwards: 70", "l: 0"]
    reg = full_parse(msg("REGISTER sip:example.com SIP/2.0", "Call-ID: regescrt", "CSeq: 1 REGISTER",
                         "Contact: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>", *common))
    assert reg.contacts[0].uri.headers == "Route=%3Csip:sip.example.com%3E"
    c1 = full_parse(msg("REGISTER sip:example.com SIP/2.0", "Call-ID: cparam01", "CSeq: 1 REGISTER",
                        "Contact: sip:+19725552222@gw1.example.net;unknownparam", *common))
    assert c1.contacts[0].params == {"unknownparam": None} and c1.contacts[0].uri.params == ()
    c2 = full_parse(msg("REGISTER sip:example.com SIP/2.0", "Call-ID: cparam02", "CSeq: 1 REGISTER",
                        "Contact: <sip:+19725552222@gw1.example.net;unknownparam>", *common))
    assert c2.contacts[0].params == {} and c2.contacts[0].uri.param("unknownparam") == ""
    zeromf = full_parse(msg("OPTIONS sip:user@example.com SIP/2.0", "Call-ID: zeromf", "CSeq: 1 OPTIONS",
                            *[h.replace("70", "0") for h in common]))
    assert zeromf.headers.get("Max-Forwards") == "0"
    bext = full_parse(msg("OPTIONS sip:user@example.com SIP/2.0", "Call-ID: bext01", "CSeq: 1 OPTIONS",
                          "Require: nothingSupportedHere", "Proxy-Require: noProxiesSupportThis, nor-here",
                          "Date: Fri, 01 Jan 2010 16:00:00 EST", *common))
    assert bext.headers.get_all("Require") == ["nothingSupportedHere"]
    assert bext.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"        # baddate: accepted
    for uri in ("nobodyKnowsThisScheme:totallyopaquecontent", "soap.beep://192.0.2.103:3002",
                "sips:user@example.com", "tel:+1-972-555-2222"):
        m = full_parse(msg(f"OPTIONS {uri} SIP/2.0", "Call-ID: unkscm", "CSeq: 1 OPTIONS", *common))
        assert m.uri == uri
    bcast = full_parse(msg("SIP/2.0 200 OK", "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
                           "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23",
                           "Call-ID: bcast", "CSeq: 1 OPTIONS", "From: <sip:a@b>;tag=1",
                           "To: <sip:a@b>;tag=2", "l: 0"))
    assert bcast.vias[1].host == "255.255.255.255"


# ------------------------------------------------------------------------------------------------
# RFC 4475 invalid messages
# ------------------------------------------------------------------------------------------------
def _options(*lines: str, first: str = "OPTIONS sip:user@example.com SIP/2.0", cseq: str = "CSeq: 8 OPTIONS",
             body: bytes = b"", length: str | None = "Content-Length: 0") -> bytes:
    base = ["To: sip:user@example.com", "From: sip:caller@example.net;tag=134161461246",
            "Max-Forwards: 7", "Call-ID: bad.0ha0isndaksdjasdf3234nas", cseq,
            "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw"]
    overridden = {line.split(":", 1)[0].lower() for line in lines}
    base = [b for b in base if b.split(":", 1)[0].lower() not in overridden]
    return msg(first, *base, *lines, *([length] if length else []), body=body)


INVALID = {
    "badinv01": _options("Via: SIP/2.0/UDP 192.0.2.15;;,;,,", 'Contact: "Joe" <sip:joe@example.org>;;;;'),
    "clerr": _options(length="Content-Length: 9999", body=b"v=0\r\n"),
    "scalar02": _options("CSeq: 36893488147419103232 OPTIONS", "Max-Forwards: 300", "Expires: 1" + "0" * 100),
    "ncl": _options(length="Content-Length: -999"),
    "quotbal": _options('To: "Mr. J. User <sip:j.user@example.com>'),
    "ltgtruri": _options(first="OPTIONS <sip:user@example.com> SIP/2.0"),
    "lwsruri": _options(first="OPTIONS sip:user@example.com; lr SIP/2.0"),
    "lwsstart": _options(first="OPTIONS  sip:user@example.com  SIP/2.0"),
    "trws": _options(first="OPTIONS sip:user@example.com SIP/2.0 "),
    "escruri": _options(first="OPTIONS sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0"),
    "regbadct": _options("Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E",
                         first="REGISTER sip:example.com SIP/2.0", cseq="CSeq: 1 REGISTER"),
    "badaspec": _options('To: "Watson, Thomas" < sip:t.watson@example.org >'),
    "baddn": _options("From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43"),
    "mismatch01": _options(cseq="CSeq: 8 INVITE"),
    "mismatch02": _options(first="NEWMETHOD sip:user@example.com SIP/2.0", cseq="CSeq: 8 INVITE"),
    "insuf": msg("OPTIONS sip:user@example.com SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bK",
                 "Max-Forwards: 70", "l: 0"),
    "multi01": _options("To: sip:other@example.net", "To: sip:user@example.com",
                        "Call-ID: one", "Call-ID: two"),
    "mcl01": _options("Content-Length: 0", "Content-Length: 4", length=None, body=b"abcd"),
    "bigcode": msg("SIP/2.0 4294967301 better not break the receiver",
                   "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe", "Call-ID: bigcode",
                   "CSeq: 353494 INVITE", "From: <sip:user@example.com>;tag=39ansfi3",
                   "To: <sip:user@example.edu>;tag=902jndnke3", "Content-Length: 0"),
    "unkheadsyntax": _options("From: <sip:caller@example.net"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_rfc4475_invalid_rejected_with_400(name: str) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        full_parse(INVALID[name])
    assert exc.value.status_hint == 400, name


def test_badvers_is_505() -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        full_parse(_options(first="OPTIONS sip:t.watson@example.org SIP/7.0"))
    assert exc.value.status_hint == 505
    with pytest.raises(RemoteProtocolError) as exc:
        full_parse(msg("SIP/7.0 200 OK", "Via: SIP/2.0/UDP h;branch=z9hG4bK1", "From: <sip:a@b>;tag=1",
                       "To: <sip:a@b>", "Call-ID: x", "CSeq: 1 OPTIONS"))
    assert exc.value.status_hint == 505


def test_badbranch_is_valid_message() -> None:
    """A branch of just the magic cookie parses; the transaction layer matches it the RFC 2543 way."""
    m = full_parse(_options("Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK"))
    assert m.via.branch == "z9hG4bK"
