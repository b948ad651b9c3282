"""Digest authentication: PROTOCOL.md §3.3 and RFC 2617 §3.5 vectors, server verdicts, throttle."""

from __future__ import annotations

import pytest

from sip28181.sip.auth import (DigestClient, DigestServer, FailureThrottle, Verdict, digest_response,
                               md5_hex, parse_auth_header)

USER = "44010600001320000010"
REALM = "4401060000"
PASSWORD = "Gb28181!demo"
NONCE = "b64c7a3e5f0d4e1c9a2b8d7f6e5c4b3a"
URI = "sip:44010600002000000001@4401060000"


def passwords(user: str) -> str | None:
    return PASSWORD if user == USER else None


def test_protocol_md_worked_values() -> None:
    assert md5_hex(f"{USER}:{REALM}:{PASSWORD}") == "d065450648670b1cd941a8dff40767af"
    assert md5_hex(f"REGISTER:{URI}") == "cbf3fb6951948bb1c8a72819ab6fa568"
    assert digest_response(USER, REALM, PASSWORD, "REGISTER", URI, NONCE, "auth", "00000001",
                           "0b1c2d3e") == "97b9ea571efe253ef2c79932235b3966"
    assert digest_response(USER, REALM, PASSWORD, "REGISTER", URI, NONCE) == "6a85dbfd380c3b77dd17239e6c05d1b8"


def test_rfc2617_example() -> None:
    assert digest_response("Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
                           "dcd98b7102dd2f0e8b11d0f600bfb0c093", "auth", "00000001",
                           "0a4f113b") == "6629fae49393a05397450978507c4ef1"


def authorization(nonce: str, *, password: str = PASSWORD, nc: str = "00000001", qop: bool = True,
                  cnonce: str = "0b1c2d3e", user: str = USER) -> str:
    if qop:
        resp = digest_response(user, REALM, password, "REGISTER", URI, nonce, "auth", nc, cnonce)
        return (f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{URI}", '
                f'response="{resp}", algorithm=MD5, cnonce="{cnonce}", qop=auth, nc={nc}')
    resp = digest_response(user, REALM, password, "REGISTER", URI, nonce)
    return f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{URI}", response="{resp}"'


def issue(server: DigestServer, now: float = 0.0) -> str:
    return parse_auth_header(server.challenge(now))[1]["nonce"]


def test_challenge_header_shape() -> None:
    scheme, params = parse_auth_header(DigestServer(REALM).challenge(0.0))
    assert scheme == "digest" and params["realm"] == REALM and params["qop"] == "auth"
    assert params["algorithm"] == "MD5" and len(params["nonce"]) == 32
    _, params = parse_auth_header(DigestServer(REALM, qop=False).challenge(0.0, stale=True))
    assert "qop" not in params and params["stale"] == "true"


def test_server_ok_then_replayed_nc_is_stale_then_next_nc_ok() -> None:
    server = DigestServer(REALM)
    nonce = issue(server)
    result = server.verify(authorization(nonce), "REGISTER", USER, passwords, 1.0)
    assert result.verdict is Verdict.OK and result.username == USER
    assert server.verify(authorization(nonce), "REGISTER", USER, passwords, 2.0).verdict is Verdict.STALE
    assert server.verify(authorization(nonce, nc="00000002"), "REGISTER", USER, passwords, 3.0).verdict is Verdict.OK


def test_wrong_password_is_forbidden() -> None:
    server = DigestServer(REALM)
    nonce = issue(server)
    result = server.verify(authorization(nonce, password="wrong"), "REGISTER", USER, passwords, 1.0)
    assert result.verdict is Verdict.FORBIDDEN and result.reason == "wrong password"


def test_expired_nonce_is_stale_for_right_password() -> None:
    server = DigestServer(REALM, nonce_lifetime=300.0)
    nonce = issue(server, now=0.0)
    result = server.verify(authorization(nonce), "REGISTER", USER, passwords, 301.0)
    assert result.verdict is Verdict.STALE and result.reason == "nonce expired"


def test_nonce_without_qop_is_single_use() -> None:
    server = DigestServer(REALM, qop=False)
    nonce = issue(server)
    header = authorization(nonce, qop=False)
    assert server.verify(header, "REGISTER", USER, passwords, 1.0).verdict is Verdict.OK
    assert server.verify(header, "REGISTER", USER, passwords, 2.0).verdict is Verdict.STALE


def test_unknown_nonce() -> None:
    server = DigestServer(REALM)
    good = server.verify(authorization("f" * 32), "REGISTER", USER, passwords, 0.0)
    assert good.verdict is Verdict.STALE and good.reason == "unknown nonce"
    bad = server.verify(authorization("f" * 32, password="x"), "REGISTER", USER, passwords, 0.0)
    assert bad.verdict is Verdict.CHALLENGE


def test_fallback_to_no_qop_formula_when_cnonce_or_nc_missing() -> None:
    server = DigestServer(REALM)
    nonce = issue(server)
    header = authorization(nonce, qop=False) + ", qop=auth"        # buggy firmware: qop but no cnonce/nc
    assert server.verify(header, "REGISTER", USER, passwords, 1.0).verdict is Verdict.OK


def test_missing_or_foreign_credentials() -> None:
    server = DigestServer(REALM)
    nonce = issue(server)
    assert server.verify(None, "REGISTER", USER, passwords, 0.0).verdict is Verdict.CHALLENGE
    assert server.verify("Basic Zm9vOmJhcg==", "REGISTER", USER, passwords, 0.0).verdict is Verdict.CHALLENGE
    other = "44010600001320000099"
    assert server.verify(authorization(nonce, user=other), "REGISTER", USER, passwords,
                         0.0).verdict is Verdict.FORBIDDEN
    assert server.verify(authorization(nonce, user=other), "REGISTER", other, passwords,
                         0.0).reason == "unknown device"


def test_protocol_md_authorization_header_verifies() -> None:
    server = DigestServer(REALM)
    server._nonces.clear()
    from sip28181.sip.auth import _Nonce
    server._nonces[NONCE] = _Nonce(0.0)
    header = ('Digest username="44010600001320000010", realm="4401060000", '
              'nonce="b64c7a3e5f0d4e1c9a2b8d7f6e5c4b3a", uri="sip:44010600002000000001@4401060000", '
              'response="97b9ea571efe253ef2c79932235b3966", algorithm=MD5, cnonce="0b1c2d3e", qop=auth, '
              'nc=00000001')
    assert server.verify(header, "REGISTER", USER, passwords, 1.0).verdict is Verdict.OK


@pytest.mark.parametrize("qop", [True, False])
def test_client_server_round_trip(qop: bool) -> None:
    server = DigestServer(REALM, qop=qop)
    client = DigestClient(USER, PASSWORD)
    assert not client.ready
    client.set_challenge(server.challenge(0.0))
    assert client.ready
    for i in range(3 if qop else 1):
        header = client.authorization("REGISTER", URI)
        assert server.verify(header, "REGISTER", USER, passwords, 1.0 + i).verdict is Verdict.OK
    if qop:
        assert "nc=00000003" in header
    with pytest.raises(ValueError):
        client.set_challenge('Basic realm="x"')


def test_failure_throttle_blocks_and_recovers() -> None:
    throttle = FailureThrottle(max_failures=3, window=60.0, block=300.0)
    assert not throttle.failure("dev", 0.0)
    assert not throttle.failure("dev", 10.0)
    assert throttle.blocked_until("dev", 10.0) is None
    assert throttle.failure("dev", 20.0)
    assert throttle.blocked_until("dev", 21.0) == 320.0
    assert throttle.blocked_until("dev", 320.0) is None
    # failures outside the window do not add up; success resets
    assert not throttle.failure("cam", 0.0)
    assert not throttle.failure("cam", 100.0)
    assert not throttle.failure("cam", 101.0)
    throttle.success("cam")
    assert not throttle.failure("cam", 102.0)
    throttle.failure("x", 0.0), throttle.failure("x", 0.0), throttle.failure("x", 0.0)
    throttle.purge(1000.0)
    assert throttle.blocked_until("x", 1.0) is None


def test_failure_throttle_bounded_keys() -> None:
    throttle = FailureThrottle(max_keys=10)
    for i in range(100):
        throttle.failure(f"k{i}", 0.0)
    assert len(throttle._failures) == 10
