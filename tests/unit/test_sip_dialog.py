"""Dialogs (RFC 3261 §12) in both roles, and the out-of-dialog request builder."""

from __future__ import annotations

import pytest

from sip28181.errors import LocalProtocolError, RemoteProtocolError
from sip28181.sip.dialog import Dialog, build_request, new_branch, new_call_id, new_tag
from sip28181.sip.headers import NameAddr
from sip28181.sip.message import Request, Response, parse_message
from sip28181.sip.uri import SipUri

PLATFORM = "sip:44010600002000000001@4401060000"
CAMERA = "sip:44010600001310000001@4401060000"


def roundtrip(msg: Request | Response) -> Request | Response:
    return parse_message(msg.encode())


def make_invite() -> Request:
    return build_request(
        "INVITE", CAMERA, PLATFORM, CAMERA, "UDP", "10.0.0.10", 5060, cseq=1,
        body=b"v=0\r\n", content_type="application/sdp",
        extra_headers=[("Contact", "<sip:44010600002000000001@10.0.0.10:5060>"),
                       ("Subject", "44010600001310000001:0106000001,44010600002000000001:0")])


def make_ok(invite: Request, record_route: list[str] = ()) -> Response:
    ok = Response.for_request(invite, 200, to_tag="dev-5521")
    ok.headers.add("Contact", "<sip:44010600001310000001@192.168.1.20:5060>")
    for rr in record_route:
        ok.headers.add("Record-Route", rr)
    ok.headers.add("Content-Type", "application/sdp")
    ok.body = b"v=0\r\n"
    return roundtrip(ok)


def test_helpers_are_random_and_well_formed() -> None:
    assert new_branch().startswith("z9hG4bK") and new_branch() != new_branch()
    assert new_tag() != new_tag() and len(new_tag()) == 16
    assert new_call_id("10.0.0.10").endswith("@10.0.0.10")
    assert "@" not in new_call_id()


def test_build_request_out_of_dialog_message() -> None:
    req = build_request("MESSAGE", PLATFORM.replace("2000", "1320"), SipUri.parse(PLATFORM),
                        CAMERA, "tcp", "10.0.0.10", 5060, cseq=7,
                        body=b"<Query/>", content_type="Application/MANSCDP+xml",
                        extra_headers=[("X-GB-Ver", "3.0")])
    msg = roundtrip(req)
    assert isinstance(msg, Request)
    assert msg.method == "MESSAGE" and msg.cseq.number == 7 and msg.cseq.method == "MESSAGE"
    via = msg.via
    assert (via.transport, via.host, via.port) == ("TCP", "10.0.0.10", 5060)
    assert via.branch.startswith("z9hG4bK") and "rport" in via.params
    assert msg.from_.tag and msg.to.tag is None
    assert msg.headers.get("Max-Forwards") == "70"
    assert msg.content_type == "application/manscdp+xml" and msg.body == b"<Query/>"
    assert msg.headers.get("X-GB-Ver") == "3.0"
    other = build_request("MESSAGE", CAMERA, PLATFORM, CAMERA, "UDP", "10.0.0.10", 5060, cseq=8)
    assert other.call_id != msg.call_id and other.from_.tag != msg.from_.tag


def test_build_request_keeps_given_call_id_tag_and_ipv6() -> None:
    req = roundtrip(build_request("REGISTER", "sip:4401060000@[2001:db8::1]:5060",
                                  NameAddr(SipUri.parse(CAMERA), "cam"), CAMERA, "UDP",
                                  "2001:db8::2", 5070, cseq=2, call_id="reg-1", from_tag="ft"))
    assert req.call_id == "reg-1" and req.from_.tag == "ft" and req.from_.display == "cam"
    assert (req.via.host, req.via.port) == ("2001:db8::2", 5070)
    with pytest.raises(LocalProtocolError):
        build_request("ACK", CAMERA, PLATFORM, CAMERA, "UDP", "h", None, cseq=1)


def test_uac_dialog_ack_bye_info() -> None:
    invite = make_invite()
    ok = make_ok(invite)
    d = Dialog.from_uac(invite, ok)
    assert d.id == (invite.call_id, invite.from_.tag, "dev-5521")
    assert d.remote_target == "sip:44010600001310000001@192.168.1.20:5060"
    ack = roundtrip(d.create_ack())
    assert ack.method == "ACK" and ack.cseq.number == 1 and ack.cseq.method == "ACK"
    assert ack.uri == d.remote_target and ack.to.tag == "dev-5521"
    assert ack.from_.tag == invite.from_.tag and ack.call_id == invite.call_id
    assert ack.via.branch != invite.via.branch                 # ACK for 2xx: new transaction id
    info = roundtrip(d.create_request("INFO", b"PLAY RTSP/1.0\r\nCSeq: 5\r\nScale: 2.0\r\n\r\n",
                                      "Application/MANSRTSP"))
    assert info.cseq.number == 2 and info.content_type == "application/mansrtsp"
    assert info.headers.get("Contact") == "<sip:44010600002000000001@10.0.0.10:5060>"
    bye = roundtrip(d.create_request("BYE"))
    assert bye.cseq.number == 3 and bye.cseq.method == "BYE"
    assert (bye.call_id, bye.from_.tag, bye.to.tag) == d.id
    assert bye.via.host == "10.0.0.10" and bye.via.transport == "UDP"
    assert d.matches(Response.for_request(bye, 200))


def test_uac_dialog_route_set_loose_and_strict() -> None:
    invite = make_invite()
    loose = Dialog.from_uac(invite, make_ok(invite, ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]))
    bye = loose.create_request("BYE")
    assert bye.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert bye.uri == loose.remote_target
    strict = Dialog.from_uac(invite, make_ok(invite, ["<sip:strict.example.com>"]))
    bye = strict.create_request("BYE")
    assert bye.uri == "sip:strict.example.com"
    assert bye.headers.get_all("Route") == [f"<{strict.remote_target}>"]


def test_uas_dialog_checks_cseq_and_builds_bye() -> None:
    invite = make_invite()
    ok = make_ok(invite)
    d = Dialog.from_uas(invite, ok)
    assert d.id == (invite.call_id, "dev-5521", invite.from_.tag)
    assert d.remote_target == "sip:44010600002000000001@10.0.0.10:5060"
    assert (d.via_host, d.via_port) == ("192.168.1.20", 5060)
    # the platform's ACK and INFO arrive in order
    uac = Dialog.from_uac(invite, ok)
    d.receive_request(roundtrip(uac.create_ack()))
    info = roundtrip(uac.create_request("INFO"))
    d.receive_request(info)
    assert d.remote_cseq == 2
    old = roundtrip(info)
    old.headers.set("CSeq", "1 INFO")
    with pytest.raises(RemoteProtocolError) as exc:
        d.receive_request(old)
    assert exc.value.status_hint == 500
    foreign = roundtrip(info)
    foreign.headers.set("Call-ID", "other")
    with pytest.raises(RemoteProtocolError) as exc:
        d.receive_request(foreign)
    assert exc.value.status_hint == 481
    bye = roundtrip(d.create_request("BYE"))
    assert bye.cseq.number == 1 and bye.uri == d.remote_target
    assert bye.from_.tag == "dev-5521" and bye.to.tag == invite.from_.tag
    assert uac.matches(bye)
    uac.receive_request(bye)
    with pytest.raises(LocalProtocolError):
        d.create_ack()
    resp = d.response_for(bye, 200)
    assert resp.to.tag == invite.from_.tag       # To of a request we received carries their tag


def test_reinvite_refreshes_target() -> None:
    invite = make_invite()
    d = Dialog.from_uas(invite, make_ok(invite))
    uac = Dialog.from_uac(invite, make_ok(invite))
    re = uac.create_request("INVITE")
    re.headers.set("Contact", "<sip:44010600002000000001@10.0.0.99:5060>")
    d.receive_request(roundtrip(re))
    assert d.remote_target == "sip:44010600002000000001@10.0.0.99:5060"


def test_dialog_needs_tags_and_contact() -> None:
    invite = make_invite()
    no_tag = roundtrip(Response.for_request(invite, 200))
    with pytest.raises(RemoteProtocolError):
        Dialog.from_uac(invite, no_tag)
    no_contact = roundtrip(Response.for_request(invite, 200, to_tag="x"))
    with pytest.raises(RemoteProtocolError):
        Dialog.from_uac(invite, no_contact)
    with pytest.raises(LocalProtocolError):
        Dialog.from_uac(invite, roundtrip(Response.for_request(invite, 486, to_tag="x")))
