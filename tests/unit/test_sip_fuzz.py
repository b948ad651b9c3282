"""Fuzz invariant (h11's afl-server idea): hostile bytes only ever produce RemoteProtocolError.

``parse_message`` either returns a message or raises :class:`RemoteProtocolError`; so do the
structured header accessors a server reads. ``StreamFramer.feed`` returns messages or error
instances, or raises :class:`RemoteProtocolError` when the stream cannot be resynchronised.
"""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sip28181.errors import RemoteProtocolError
from sip28181.sip.framing import StreamFramer
from sip28181.sip.message import Request, Response, parse_message
from sip28181.sip.transaction import TransactionLayer

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "sip"
SEEDS = [p.read_bytes() for p in sorted(DATA.glob("*.sip"))]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = [b"\r\n", b"\r\n\r\n", b"\n", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\", b"@",
          b"[", b"]", b"=", b"%", b"\x00", b"\xff", b"\xe4\xb8\xad", b"SIP/2.0", b"Via: ", b"CSeq: ",
          b"Content-Length: ", b"l: 99999999", b"-1", b"4294967296", b"branch=", b"z9hG4bK",
          b"sip:", b"tag=", b"INVITE", b"ACK"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.integers(0, 3))
        if kind == 0:                                  # delete a span
            del data[pos:pos + draw(st.integers(1, 40))]
        elif kind == 1:                                # insert a token
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif kind == 2:                                # flip a byte
            if data:
                data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
        else:                                          # duplicate a span
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 60))]
    return bytes(data)


def touch(msg: Request | Response) -> None:
    """Everything a registrar reads from a message."""
    msg.vias, msg.via, msg.from_, msg.to, msg.cseq, msg.contacts, msg.expires, msg.content_type  # noqa: B018
    bytes(msg)


def check_parse(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except RemoteProtocolError as exc:
        assert exc.status_hint in (400, 413, 505)
        return
    try:
        touch(msg)
    except RemoteProtocolError:
        pass


def test_seeds_parse_cleanly() -> None:
    assert len(SEEDS) >= 4
    for seed in SEEDS:
        touch(parse_message(seed))


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_parse(data: bytes) -> None:
    check_parse(data)


@FUZZ
@given(mutated())
def test_mutated_messages_parse(data: bytes) -> None:
    check_parse(data)


@FUZZ
@given(mutated(), st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_framer_only_yields_messages_or_remote_errors(data: bytes, cuts: list[int]) -> None:
    framer = StreamFramer()
    stream = data + SEEDS[0]
    pos = 0
    try:
        for size in cuts + [len(stream)]:
            for item in framer.feed(stream[pos:pos + size]):
                assert isinstance(item, (Request, Response, RemoteProtocolError))
                if not isinstance(item, RemoteProtocolError):
                    check_parse(bytes(item))
            pos += size
    except RemoteProtocolError:
        pass


@FUZZ
@given(mutated())
def test_transaction_layer_only_raises_remote_errors(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except RemoteProtocolError:
        return
    layer = TransactionLayer()
    try:
        layer.receive(msg, ("udp", "192.0.2.1", 5060), 0.0)
    except RemoteProtocolError:
        return
    layer.handle_timer(1000.0)
    assert len(layer) == 0 or layer.get_timer() is not None


@pytest.mark.parametrize("seed", range(4))
def test_every_truncation_of_a_seed(seed: int) -> None:
    data = SEEDS[seed]
    for end in range(len(data)):
        check_parse(data[:end])
