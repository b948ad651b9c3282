"""RFC 3261 §17 transactions stepped with a fake clock: no sockets, no sleeping."""

from __future__ import annotations

import pytest

from sip28181.errors import LocalProtocolError, RemoteProtocolError
from sip28181.sip import transaction as tx_mod
from sip28181.sip.events import (AckReceived, RequestReceived, ResponseReceived, TransactionTerminated,
                                 TransactionTimedOut)
from sip28181.sip.message import Request, Response, parse_message
from sip28181.sip.transaction import TransactionLayer, describe

DEVICE = ("udp", "192.168.1.64", 5060)
SERVER = ("udp", "10.0.0.10", 5060)


def request(method: str = "MESSAGE", branch: str | None = "z9hG4bK-t-1", cseq: int = 20,
            call_id: str = "c-1@192.168.1.64", via_host: str = "192.168.1.64:5060",
            transport: str = "UDP") -> Request:
    via = f"SIP/2.0/{transport} {via_host};rport" + (f";branch={branch}" if branch else "")
    data = (f"{method} sip:44010600002000000001@4401060000 SIP/2.0\r\n"
            f"Via: {via}\r\n"
            "From: <sip:44010600001320000010@4401060000>;tag=f-1\r\n"
            "To: <sip:44010600002000000001@4401060000>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def wire(layer: TransactionLayer) -> list[tuple[Request | Response, object]]:
    """Parse everything the layer queued, as a peer would see it."""
    return [(parse_message(data), dest) for data, dest in layer.datagrams_to_send()]


def reply(req: Request, status: int, tag: str = "to-1") -> Response:
    """A peer's response to a request it received (parsed back, as on the wire)."""
    resp = parse_message(Response.for_request(req, status, to_tag=tag).encode())
    assert isinstance(resp, Response)
    return resp


def run_until(layer: TransactionLayer, end: float) -> tuple[list[float], list]:
    """Fire timers up to ``end``; returns the times something was sent and all events."""
    sent_at, events = [], []
    while (deadline := layer.get_timer()) is not None and deadline <= end:
        events += layer.handle_timer(deadline)
        sent_at += [deadline] * len(layer.datagrams_to_send())
    return sent_at, events


# ------------------------------------------------------------------------------------------------
# non-INVITE client
# ------------------------------------------------------------------------------------------------
def test_non_invite_client_udp_retransmits_with_backoff_then_timer_f() -> None:
    layer = TransactionLayer(t1=0.5, t2=4.0)
    key = layer.send_request(request(), DEVICE, now=0.0)
    assert [d for _, d in layer.datagrams_to_send()] == [DEVICE]
    sent_at, events = run_until(layer, 40.0)
    intervals = [round(b - a, 6) for a, b in zip([0.0] + sent_at, sent_at)]
    assert intervals[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(i == 4.0 for i in intervals[3:])
    assert sent_at[-1] < 32.0
    assert len(events) == 1
    ev = events[0]
    assert isinstance(ev, TransactionTimedOut)
    assert (ev.transaction_key, ev.timer, ev.request.method) == (key, "F", "MESSAGE")
    assert len(layer) == 0 and layer.get_timer() is None


def test_timer_f_fires_at_64_t1() -> None:
    layer = TransactionLayer(t1=0.5)
    layer.send_request(request(), DEVICE, now=100.0)
    layer.datagrams_to_send()
    assert layer.handle_timer(131.9) == []
    events = layer.handle_timer(132.0)
    assert [type(e) for e in events] == [TransactionTimedOut]


def test_non_invite_client_tcp_never_retransmits() -> None:
    layer = TransactionLayer()
    layer.send_request(request(transport="TCP"), "conn-1", now=0.0, reliable=True)
    assert len(layer.datagrams_to_send()) == 1
    sent_at, events = run_until(layer, 40.0)
    assert sent_at == []
    assert [e.timer for e in events] == ["F"]


def test_non_invite_client_response_then_timer_k() -> None:
    layer = TransactionLayer(t4=5.0)
    req = request(branch=None)
    key = layer.send_request(req, DEVICE, now=0.0)
    (sent, _), = wire(layer)
    assert sent.via.branch.startswith("z9hG4bK") and key.startswith(sent.via.branch)
    events = layer.receive(reply(sent, 100), DEVICE, 0.1)
    assert [e.response.status for e in events] == [100]
    assert layer.state_of(key) == "proceeding"
    # in Proceeding, Timer E fires at T2
    events = layer.handle_timer(0.5)
    assert events == [] and len(layer.datagrams_to_send()) == 1
    assert layer.get_timer() == pytest.approx(4.5)
    ok = reply(sent, 200)
    events = layer.receive(ok, DEVICE, 1.0)
    assert len(events) == 1 and isinstance(events[0], ResponseReceived)
    assert events[0].request is req and events[0].transaction_key == key
    assert layer.receive(ok, DEVICE, 1.5) == []             # retransmitted final absorbed
    assert layer.stats["retransmissions_absorbed"] == 1
    assert layer.state_of(key) == "completed"
    assert layer.handle_timer(5.9) == []
    assert layer.state_of(key) == "completed"
    layer.handle_timer(6.0)                                  # Timer K = T4
    assert layer.state_of(key) is None and len(layer) == 0
    assert layer.datagrams_to_send() == []


def test_non_invite_client_tcp_final_ends_at_once() -> None:
    layer = TransactionLayer()
    key = layer.send_request(request(transport="TCP"), "conn", 0.0, reliable=True)
    (sent, _), = wire(layer)
    layer.receive(reply(sent, 200), "conn", 0.1, reliable=True)
    assert layer.state_of(key) is None and layer.get_timer() is None


def test_stray_response_counted() -> None:
    layer = TransactionLayer()
    assert layer.receive(reply(request(branch="z9hG4bKnobody"), 200), DEVICE, 0.0) == []
    assert layer.stats["stray_responses"] == 1


def test_duplicate_client_branch_and_ack_refused() -> None:
    layer = TransactionLayer()
    layer.send_request(request(), DEVICE, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(request(), DEVICE, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("ACK"), DEVICE, 0.0)


# ------------------------------------------------------------------------------------------------
# non-INVITE server
# ------------------------------------------------------------------------------------------------
def test_non_invite_server_absorbs_retransmission_and_resends_last_response() -> None:
    layer = TransactionLayer()
    req = request()
    events = layer.receive(req, DEVICE, 0.0)
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    key = events[0].transaction_key
    assert events[0].source == DEVICE and events[0].request is req
    # retransmission before the TU answered: absorbed, nothing to resend
    assert layer.receive(request(), DEVICE, 0.4) == []
    assert layer.datagrams_to_send() == []
    layer.send_response(Response.for_request(req, 200, to_tag="s-1"), 0.5)
    first = layer.datagrams_to_send()
    assert len(first) == 1 and first[0][1] == DEVICE
    assert parse_message(first[0][0]).status == 200
    assert layer.receive(request(), ("udp", "192.168.1.64", 5999), 1.0) == []
    again = layer.datagrams_to_send()
    assert again == first                                   # same bytes, to the original source
    assert layer.stats["retransmissions_absorbed"] == 2
    # Timer J = 64*T1
    assert layer.state_of(key) == "completed"
    assert layer.request_for(key) is None                    # only response bytes are kept
    layer.handle_timer(32.4)
    assert layer.state_of(key) == "completed"
    layer.handle_timer(32.5)
    assert layer.state_of(key) is None and len(layer) == 0


def test_non_invite_server_provisional_then_final() -> None:
    layer = TransactionLayer()
    req = request("SUBSCRIBE")
    (ev,) = layer.receive(req, DEVICE, 0.0)
    layer.send_response(Response.for_request(req, 100), 0.1, ev.transaction_key)
    layer.datagrams_to_send()
    layer.receive(request("SUBSCRIBE"), DEVICE, 0.2)
    assert [parse_message(d).status for d, _ in layer.datagrams_to_send()] == [100]
    layer.send_response(Response.for_request(req, 200, to_tag="x"), 0.3)
    with pytest.raises(LocalProtocolError):                   # a second final is an API error
        layer.send_response(Response.for_request(req, 200, to_tag="x"), 0.4)


def test_non_invite_server_tcp_terminates_immediately() -> None:
    layer = TransactionLayer()
    req = request(transport="TCP")
    (ev,) = layer.receive(req, "conn-7", 0.0, reliable=True)
    layer.send_response(Response.for_request(req, 200, to_tag="t"), 0.0)
    assert layer.datagrams_to_send()[0][1] == "conn-7"
    assert len(layer) == 0 and layer.get_timer() is None      # Timer J is zero


def test_server_tu_silence_is_cleaned_up() -> None:
    layer = TransactionLayer(t1=0.5)
    (ev,) = layer.receive(request(), DEVICE, 0.0)
    events = layer.handle_timer(32.0)
    assert events == [TransactionTerminated(ev.transaction_key, "no final response from the TU")]
    assert len(layer) == 0
    with pytest.raises(LocalProtocolError):
        layer.send_response(Response.for_request(ev.request, 200), 33.0)


def test_server_key_depends_on_sent_by_and_method() -> None:
    layer = TransactionLayer()
    a = layer.receive(request(), DEVICE, 0.0)
    b = layer.receive(request(via_host="192.168.1.65:5060"), DEVICE, 0.0)
    c = layer.receive(request("INFO", cseq=21), DEVICE, 0.0)
    keys = {e.transaction_key for e in a + b + c}
    assert len(keys) == 3


def test_rfc2543_branchless_requests_are_matched() -> None:
    layer = TransactionLayer()
    (ev,) = layer.receive(request(branch=None), DEVICE, 0.0)
    assert ev.transaction_key.startswith("2543 ")
    assert layer.receive(request(branch=None), DEVICE, 0.1) == []
    layer.send_response(Response.for_request(ev.request, 200, to_tag="a"), 0.2)
    assert len(layer.datagrams_to_send()) == 1
    (other,) = layer.receive(request(branch=None, cseq=21), DEVICE, 0.3)
    assert other.transaction_key != ev.transaction_key
    # a branch that is only the magic cookie is treated the same way
    (cookie,) = layer.receive(request(branch="z9hG4bK"), DEVICE, 0.4)
    assert cookie.transaction_key.startswith("2543 ")


def test_overload_refused_with_503() -> None:
    layer = TransactionLayer(max_server_transactions=2, retry_after=7)
    for i in range(2):
        assert len(layer.receive(request(branch=f"z9hG4bK{i}"), DEVICE, 0.0)) == 1
    assert layer.receive(request(branch="z9hG4bKx"), DEVICE, 0.0) == []
    ((data, dest),) = layer.datagrams_to_send()
    refusal = parse_message(data)
    assert dest == DEVICE and refusal.status == 503
    assert refusal.headers.get("Retry-After") == "7"
    assert layer.stats["rejected_overload"] == 1 and layer.server_count == 2


def test_malformed_via_raises_remote_error() -> None:
    req = request()
    req.headers.set("Via", "garbage")
    with pytest.raises(RemoteProtocolError):
        TransactionLayer().receive(req, DEVICE, 0.0)


def test_folded_via_matches_same_transaction() -> None:
    layer = TransactionLayer()
    raw = request().encode().replace(
        b"Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK-t-1",
        b"v: SIP / 2.0 / UDP 192.168.1.64:5060 ;rport;\r\n  branch = z9hG4bK-t-1")
    (ev,) = layer.receive(request(), DEVICE, 0.0)
    assert layer.receive(parse_message(raw), DEVICE, 0.1) == []


# ------------------------------------------------------------------------------------------------
# INVITE client
# ------------------------------------------------------------------------------------------------
def test_invite_client_timer_a_doubles_until_timer_b() -> None:
    layer = TransactionLayer(t1=0.5)
    key = layer.send_request(request("INVITE", cseq=1), DEVICE, 0.0)
    layer.datagrams_to_send()
    sent_at, events = run_until(layer, 40.0)
    assert sent_at == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]       # A: 0.5, 1, 2, 4, 8, 16 (no T2 cap)
    assert [(e.transaction_key, e.timer) for e in events] == [(key, "B")]


def test_invite_client_non_2xx_gets_ack_and_timer_d() -> None:
    layer = TransactionLayer()
    invite = request("INVITE", cseq=1)
    key = layer.send_request(invite, DEVICE, 0.0)
    (sent, _), = wire(layer)
    events = layer.receive(reply(sent, 100), DEVICE, 0.1)
    assert [e.response.status for e in events] == [100]
    assert layer.handle_timer(1.0) == [] and layer.datagrams_to_send() == []   # A stopped
    busy = reply(sent, 486, tag="dev-9")
    events = layer.receive(busy, DEVICE, 0.2)
    assert [e.response.status for e in events] == [486]
    ((ack, dest),) = wire(layer)
    assert dest == DEVICE and ack.method == "ACK"
    assert ack.via.branch == sent.via.branch                 # same branch as the INVITE
    assert ack.cseq.number == 1 and ack.cseq.method == "ACK"
    assert ack.to.tag == "dev-9" and ack.uri == invite.uri and ack.call_id == invite.call_id
    # a retransmitted 486 is absorbed and the ACK re-sent
    assert layer.receive(busy, DEVICE, 0.5) == []
    assert [m.method for m, _ in wire(layer)] == ["ACK"]
    assert layer.state_of(key) == "completed"
    layer.handle_timer(32.1)
    assert layer.state_of(key) == "completed"
    layer.handle_timer(32.2)                                   # Timer D = 32 s from 0.2
    assert layer.state_of(key) is None


def test_invite_client_2xx_accepted_state_resends_registered_ack() -> None:
    layer = TransactionLayer(t1=0.5)
    key = layer.send_request(request("INVITE", cseq=1), DEVICE, 0.0)
    (sent, _), = wire(layer)
    ok = reply(sent, 200, tag="dev-1")
    (ev,) = layer.receive(ok, DEVICE, 0.3)
    assert ev.response.status == 200
    assert layer.datagrams_to_send() == []                    # the 2xx ACK is the dialog's job
    ack = request("ACK", branch="z9hG4bKack", cseq=1)
    layer.send_ack(ack, DEVICE, key)
    assert [m.method for m, _ in wire(layer)] == ["ACK"]
    assert layer.receive(ok, DEVICE, 0.8) == []              # retransmitted 2xx: ACK again
    assert [m.method for m, _ in wire(layer)] == ["ACK"]
    forked = layer.receive(reply(sent, 200, tag="dev-2"), DEVICE, 0.9)
    assert len(forked) == 1                                   # a new dialog is news
    assert layer.state_of(key) == "accepted"
    layer.handle_timer(32.3)                                  # Timer M = 64*T1
    assert layer.state_of(key) is None


def test_invite_client_timer_c_after_provisional() -> None:
    layer = TransactionLayer(timer_c=60.0)
    key = layer.send_request(request("INVITE", cseq=1), DEVICE, 0.0)
    (sent, _), = wire(layer)
    layer.receive(reply(sent, 180), DEVICE, 1.0)
    events = layer.handle_timer(61.0)
    assert [(type(e), e.timer) for e in events] == [(TransactionTimedOut, "C")]
    assert layer.state_of(key) is None


def test_create_cancel_and_cancel_matching_on_the_server() -> None:
    uac, uas = TransactionLayer(), TransactionLayer()
    invite = request("INVITE", cseq=1, branch=None)
    key = uac.send_request(invite, SERVER, 0.0)
    ((data, _),) = uac.datagrams_to_send()
    (got,) = [e for e in uas.receive(parse_message(data), DEVICE, 0.0) if isinstance(e, RequestReceived)]
    ((trying, _),) = uas.datagrams_to_send()
    assert parse_message(trying).status == 100                # 100 Trying sent immediately
    uac.receive(parse_message(trying), SERVER, 0.01)
    cancel = uac.create_cancel(key)
    assert cancel.method == "CANCEL" and cancel.cseq.number == 1
    assert cancel.via.branch == invite.via.branch and cancel.uri == invite.uri
    cancel_key = uac.send_request(cancel, SERVER, 0.02)
    assert cancel_key != key
    ((data, _),) = uac.datagrams_to_send()
    (cancel_ev,) = uas.receive(parse_message(data), DEVICE, 0.03)
    assert isinstance(cancel_ev, RequestReceived) and cancel_ev.request.method == "CANCEL"
    assert cancel_ev.transaction_key != got.transaction_key
    assert uas.cancel_target(cancel_ev.request) == got.transaction_key
    uas.send_response(Response.for_request(cancel_ev.request, 200, to_tag="u"), 0.04)
    uas.send_response(Response.for_request(got.request, 487, to_tag="u"), 0.04)
    statuses = {}
    for data, _ in uas.datagrams_to_send():
        for e in uac.receive(parse_message(data), SERVER, 0.05):
            statuses[e.transaction_key] = e.response.status
    assert statuses == {cancel_key: 200, key: 487}
    ((ack, _),) = [(parse_message(d), x) for d, x in uac.datagrams_to_send()]
    assert ack.method == "ACK"
    assert uas.receive(ack, DEVICE, 0.06) == []               # ACK for non-2xx: absorbed
    assert uas.state_of(got.transaction_key) == "confirmed"


# ------------------------------------------------------------------------------------------------
# INVITE server
# ------------------------------------------------------------------------------------------------
def test_invite_server_timer_g_until_ack_then_timer_i() -> None:
    layer = TransactionLayer(t1=0.5, t2=4.0, t4=5.0)
    invite = request("INVITE", cseq=1)
    events = layer.receive(invite, DEVICE, 0.0)
    assert [type(e) for e in events] == [RequestReceived]
    key = events[0].transaction_key
    assert [parse_message(d).status for d, _ in layer.datagrams_to_send()] == [100]
    layer.send_response(Response.for_request(invite, 404, to_tag="s"), 0.0)
    layer.datagrams_to_send()
    sent_at, events = run_until(layer, 8.0)
    assert sent_at == [0.5, 1.5, 3.5, 7.5]                   # G: 0.5, 1, 2, 4 (capped at T2)
    assert events == []
    assert layer.receive(request("INVITE", cseq=1), DEVICE, 8.0) == []   # retransmitted INVITE
    assert [parse_message(d).status for d, _ in layer.datagrams_to_send()] == [404]
    ack = request("ACK", cseq=1)                             # same branch as the INVITE
    assert layer.receive(ack, DEVICE, 9.0) == []
    assert layer.state_of(key) == "confirmed"
    assert layer.handle_timer(13.9) == [] and layer.datagrams_to_send() == []
    layer.handle_timer(14.0)                                  # Timer I = T4
    assert layer.state_of(key) is None and len(layer) == 0


def test_invite_server_timer_h_without_ack() -> None:
    layer = TransactionLayer(t1=0.5)
    invite = request("INVITE", cseq=1)
    (ev,) = layer.receive(invite, DEVICE, 0.0)
    layer.send_response(Response.for_request(invite, 486, to_tag="s"), 1.0)
    _, events = run_until(layer, 40.0)
    assert [(e.transaction_key, e.timer) for e in events] == [(ev.transaction_key, "H")]
    assert events[0].request is invite
    assert len(layer) == 0


def test_invite_server_tcp_no_retransmission_and_zero_timer_i() -> None:
    layer = TransactionLayer()
    invite = request("INVITE", cseq=1, transport="TCP")
    (ev,) = layer.receive(invite, "c1", 0.0, reliable=True)
    layer.send_response(Response.for_request(invite, 486, to_tag="s"), 0.0)
    layer.datagrams_to_send()
    assert layer.handle_timer(20.0) == [] and layer.datagrams_to_send() == []
    layer.receive(request("ACK", cseq=1, transport="TCP"), "c1", 1.0, reliable=True)
    assert len(layer) == 0


def test_invite_server_2xx_retransmitted_until_ack() -> None:
    layer = TransactionLayer(t1=0.5)
    invite = request("INVITE", cseq=1)
    (ev,) = layer.receive(invite, DEVICE, 0.0)
    layer.send_response(Response.for_request(invite, 200, to_tag="s"), 0.0)
    layer.datagrams_to_send()
    sent_at, _ = run_until(layer, 2.0)
    assert sent_at == [0.5, 1.5]
    assert layer.receive(request("INVITE", cseq=1), DEVICE, 2.0) == []   # absorbed (RFC 6026)
    assert layer.datagrams_to_send() == []
    ack = request("ACK", branch="z9hG4bK-ack-2xx", cseq=1)            # new branch: end to end
    events = layer.receive(ack, DEVICE, 2.1)
    assert events == [AckReceived(ack, DEVICE, ev.transaction_key)]
    assert layer.receive(ack, DEVICE, 2.2) == []                        # duplicate ACK absorbed
    sent_at, events = run_until(layer, 40.0)
    assert sent_at == [] and events == []
    assert len(layer) == 0


def test_invite_server_2xx_without_ack_times_out_with_timer_l() -> None:
    layer = TransactionLayer(t1=0.5)
    invite = request("INVITE", cseq=1)
    (ev,) = layer.receive(invite, DEVICE, 0.0)
    layer.send_response(Response.for_request(invite, 200, to_tag="s"), 0.0)
    _, events = run_until(layer, 40.0)
    assert [(e.transaction_key, e.timer) for e in events] == [(ev.transaction_key, "L")]


def test_stray_ack_is_reported_without_transaction() -> None:
    layer = TransactionLayer()
    ack = request("ACK", cseq=5)
    assert layer.receive(ack, DEVICE, 0.0) == [AckReceived(ack, DEVICE, None)]
    assert layer.stats["stray_acks"] == 1


def test_connection_lost_times_out_client_transactions() -> None:
    layer = TransactionLayer()
    key = layer.send_request(request(transport="TCP"), "conn-1", 0.0, reliable=True)
    layer.send_request(request(branch="z9hG4bKother", transport="TCP"), "conn-2", 0.0, reliable=True)
    layer.receive(request(branch="z9hG4bKsrv", transport="TCP"), "conn-1", 0.0, reliable=True)
    events = layer.connection_lost("conn-1", 1.0)
    assert [(e.transaction_key, e.timer) for e in events] == [(key, "transport")]
    assert len(layer) == 1


# ------------------------------------------------------------------------------------------------
# bookkeeping
# ------------------------------------------------------------------------------------------------
def test_heap_stays_bounded_under_keepalive_load() -> None:
    layer = TransactionLayer()
    now = 0.0
    for i in range(5000):
        now = i * 0.01
        (ev,) = layer.receive(request(branch=f"z9hG4bK{i}", transport="TCP"), "c", now, reliable=True)
        layer.send_response(Response.for_request(ev.request, 200, to_tag="t"), now, ev.transaction_key)
        layer.datagrams_to_send()
    assert len(layer) == 0
    assert len(layer._heap) <= 1024 + 1                       # stale U entries compacted
    assert layer.get_timer() is None


def test_udp_keepalives_expire_after_timer_j() -> None:
    layer = TransactionLayer(t1=0.5)
    for i in range(1000):
        (ev,) = layer.receive(request(branch=f"z9hG4bK{i}"), DEVICE, i * 0.01)
        layer.send_response(Response.for_request(ev.request, 200, to_tag="t"), i * 0.01)
    assert layer.server_count == 1000
    layer.handle_timer(10.0 + 32.0)
    assert layer.server_count == 0 and layer.get_timer() is None


def test_tables_are_consistent_and_documentable() -> None:
    for name, table in tx_mod.TABLES.items():
        states = {s for s, _ in table} | {n for n, _ in table.values()}
        assert "terminated" in states, name
        assert all(s != "terminated" for s, _ in table), name      # nothing leaves Terminated
        for (state, inp), (new, actions) in table.items():
            for op, arg in actions:
                assert op in {"transmit", "deliver", "send", "resend", "report", "start", "stop",
                              "backoff", "at T2"}, (name, state, inp, op)
                if op in ("start", "stop", "backoff", "at T2"):
                    assert arg in "ABCDEFGHIJKLMU"
        assert describe(table).count("\n") == len(table) + 1
