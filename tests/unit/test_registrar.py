"""The registrar and presence, socket-free with a fake clock."""

from __future__ import annotations

import itertools

from sip28181.platform.events import DeviceOffline, DeviceOnline, DeviceRegistered
from sip28181.platform.presence import Presence
from sip28181.platform.registrar import Registrar, RegistrarSettings, gb_date
from sip28181.platform.registry import Registry
from sip28181.sip.auth import DigestClient
from sip28181.sip.message import parse_message
from sip28181.transport import Flow

DEV = "34020000001320000001"
FLOW = Flow("UDP", "192.0.2.7", 5060)
_branch = itertools.count()


def register(expires_header: str | None = "3600", contact_params: str = "", auth: str | None = None,
             cseq: int = 1, user: str = DEV) -> bytes:
    lines = [
        "REGISTER sip:34020000002000000001@3402000000 SIP/2.0",
        f"Via: SIP/2.0/UDP 10.0.0.2:5060;rport;branch=z9hG4bK{next(_branch)}",
        f"From: <sip:{user}@3402000000>;tag=abc",
        f"To: <sip:{user}@3402000000>",
        "Call-ID: reg-1@10.0.0.2",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@10.0.0.2:5060>{contact_params}",
    ]
    if expires_header is not None:
        lines.append(f"Expires: {expires_header}")
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def make(**settings):
    registry = Registry()
    presence = Presence(registry, 60, 3)
    reg = Registrar(RegistrarSettings(realm="3402000000", **settings), registry, presence, lambda: "t1")
    return reg, registry, presence


def login(reg, now=0.0, password="12345678", **kw):
    first = reg.handle(parse_message(register(**kw)), FLOW, now, 1_700_000_000.0)
    assert first.response.status == 401
    client = DigestClient(kw.get("user", DEV), password)
    client.set_challenge(first.response.headers.get("WWW-Authenticate"))
    auth = client.authorization("REGISTER", "sip:34020000002000000001@3402000000")
    return reg.handle(parse_message(register(auth=auth, cseq=2, **kw)), FLOW, now, 1_700_000_000.0), client


def test_challenge_then_ok_with_date_and_nat_address():
    reg, registry, _ = make()
    outcome, _ = login(reg)
    assert outcome.result == "ok" and outcome.response.status == 200
    challenge = reg.handle(parse_message(register()), FLOW, 0, 0).response.headers.get("WWW-Authenticate")
    assert 'realm="3402000000"' in challenge and "algorithm=MD5" in challenge and 'qop="auth"' in challenge
    assert outcome.response.headers.get("Date") == gb_date(1_700_000_000.0)
    assert any(isinstance(e, DeviceRegistered) for e in outcome.events)
    assert any(isinstance(e, DeviceOnline) for e in outcome.events)
    state = registry.get(DEV)
    assert state.flow == FLOW            # the observed source, not the Contact's private address
    assert state.contact == f"<sip:{DEV}@10.0.0.2:5060>"


def test_no_qop_challenge():
    reg, _, _ = make(qop=False)
    outcome, _ = login(reg)
    challenge = reg.handle(parse_message(register()), FLOW, 0, 0).response.headers.get("WWW-Authenticate")
    assert "qop" not in challenge
    assert outcome.response.status == 200


def test_replayed_authorization_is_challenged_again():
    reg, _, _ = make()
    outcome, client = login(reg)
    assert outcome.response.status == 200
    last = register(auth=None)
    # replay the exact same Authorization (same nonce and nc)
    first = reg.handle(parse_message(register()), FLOW, 1, 0)
    client.set_challenge(first.response.headers.get("WWW-Authenticate"))
    auth = client.authorization("REGISTER", "sip:34020000002000000001@3402000000")
    assert reg.handle(parse_message(register(auth=auth)), FLOW, 1, 0).response.status == 200
    replay = reg.handle(parse_message(register(auth=auth)), FLOW, 2, 0)
    assert replay.response.status == 401 and "stale=true" in replay.response.headers.get("WWW-Authenticate")
    assert last


def test_expired_nonce_is_stale():
    reg, _, _ = make(nonce_lifetime=10)
    first = reg.handle(parse_message(register()), FLOW, 0, 0)
    client = DigestClient(DEV, "12345678")
    client.set_challenge(first.response.headers.get("WWW-Authenticate"))
    auth = client.authorization("REGISTER", "sip:34020000002000000001@3402000000")
    late = reg.handle(parse_message(register(auth=auth)), FLOW, 11, 0)
    assert late.response.status == 401 and "stale=true" in late.response.headers.get("WWW-Authenticate")


def test_expires_from_contact_param_default_and_bounds():
    reg, registry, _ = make()
    outcome, _ = login(reg, expires_header=None, contact_params=";expires=600")
    assert outcome.response.headers.get("Expires") == "600"
    outcome, _ = login(reg, expires_header=None)
    assert outcome.response.headers.get("Expires") == "3600"
    outcome, _ = login(reg, expires_header="999999")
    assert outcome.response.headers.get("Expires") == "86400"
    short = reg.handle(parse_message(register(expires_header="5")), FLOW, 0, 0)
    assert short.response.status == 423 and short.response.headers.get("Min-Expires") == "60"


def test_unregister_and_bad_ids():
    reg, registry, _ = make()
    login(reg)
    outcome, _ = login(reg, expires_header="0")
    assert outcome.result == "unregistered"
    assert any(isinstance(e, DeviceOffline) and e.reason == "unregistered" for e in outcome.events)
    assert registry.get(DEV).registered is False
    bad = reg.handle(parse_message(register(user="camera-1")), FLOW, 0, 0)
    assert bad.response.status == 400 and "20-digit" in bad.response.reason


def test_wrong_password_403_then_throttled_per_device_and_address():
    reg, _, _ = make(max_failures=2, block_seconds=100)
    for _ in range(2):
        outcome, _ = login(reg, password="nope")
        assert outcome.response.status == 403 and outcome.response.reason == "Wrong password"
    blocked = reg.handle(parse_message(register()), FLOW, 1, 0)
    assert blocked.result == "throttled" and blocked.response.headers.get("Retry-After") == "100"
    # another device from the same address is blocked as well; after the block it may try again
    other = reg.handle(parse_message(register(user="34020000001320000002")), FLOW, 1, 0)
    assert other.result == "throttled"
    assert reg.handle(parse_message(register()), FLOW, 101, 0).response.status == 401


def test_presence_keepalive_timeout_and_expiry():
    reg, registry, presence = make()
    login(reg, now=0.0)
    state = registry.get(DEV)
    presence.heard(state, 100.0)                                 # a keepalive at t=100
    assert presence.check(179.0, 0) == []                        # first deadline re-armed lazily
    events = presence.check(281.0, 0)
    assert [(type(e), e.reason) for e in events] == [(DeviceOffline, "keepalive timeout")]
    login(reg, now=300.0, expires_header="60")
    for t in (330.0, 350.0):
        presence.heard(state, t)
        assert presence.check(t, 0) == []
    events = presence.check(361.0, 0)
    assert [e.reason for e in events] == ["registration expired"]
    assert state.registered is False


def test_gb_date_matches_datetime_formatting():
    import datetime as dt
    import random

    rng = random.Random(7)
    stamps = [rng.uniform(1.6e9, 1.9e9) for _ in range(2000)] + [1_700_000_000 + i * 0.0004999 for i in range(4000)]
    for wall in stamps:
        t = dt.datetime.fromtimestamp(wall)
        assert gb_date(wall) == t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}"
