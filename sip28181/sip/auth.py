"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616 MD5, RFC 3261 §22), both roles.

Sans-IO: the caller passes ``now`` (seconds, any monotonic origin) and random bytes come from
``secrets``. The server side issues nonces with a lifetime, answers an expired nonce with
``stale=true``, refuses replays (a nonce without ``qop`` is single-use; with ``qop=auth`` the nonce
count must grow) and tells a wrong password (403) from a missing or outdated credential (401).
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from .headers import split_commas


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def digest_response(username: str, realm: str, password: str, method: str, uri: str, nonce: str,
                    qop: str | None = None, nc: str | None = None, cnonce: str | None = None) -> str:
    """The ``response`` value of RFC 2617 §3.2.2.1 (MD5; ``qop`` is ``auth`` or absent)."""
    ha1 = md5_hex(f"{username}:{realm}:{password}")
    ha2 = md5_hex(f"{method}:{uri}")
    if qop:
        return md5_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return md5_hex(f"{ha1}:{nonce}:{ha2}")


_AUTH_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))')


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """``Digest a="b", c=d`` → ``("digest", {"a": "b", "c": "d"})``; names lower-cased."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    for name, quoted, token in _AUTH_PARAM.findall(rest):
        params[name.lower()] = quoted if quoted or not token else token
    return scheme.lower(), params


class Verdict(enum.Enum):
    OK = "ok"
    CHALLENGE = "challenge"      # 401: no usable credentials yet
    STALE = "stale"              # 401 stale=true: right password, outdated nonce
    FORBIDDEN = "forbidden"      # 403: wrong password, or a credential that can never succeed


@dataclass(frozen=True, slots=True)
class AuthResult:
    verdict: Verdict
    reason: str = ""
    username: str | None = None


class _Nonce:
    __slots__ = ("issued", "last_nc", "used")

    def __init__(self, issued: float) -> None:
        self.issued = issued
        self.last_nc = 0
        self.used = False


class DigestServer:
    """The registrar's side of Digest: issue challenges, verify Authorization headers."""

    def __init__(self, realm: str, *, qop: bool = True, nonce_lifetime: float = 300.0,
                 max_nonces: int = 500_000) -> None:
        self.realm = realm
        self.qop = qop
        self.nonce_lifetime = nonce_lifetime
        self.max_nonces = max_nonces
        self._nonces: OrderedDict[str, _Nonce] = OrderedDict()

    def challenge(self, now: float, *, stale: bool = False) -> str:
        """A fresh ``WWW-Authenticate`` value."""
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = _Nonce(now)
        self._prune(now)
        value = f'Digest realm="{self.realm}", nonce="{nonce}", algorithm=MD5'
        if self.qop:
            value += ', qop="auth"'
        if stale:
            value += ", stale=true"
        return value

    def verify(self, authorization: str | None, method: str, expected_user: str,
               password_for: Callable[[str], str | None], now: float) -> AuthResult:
        """Check ``authorization`` (the header value) for a request by ``expected_user``."""
        if not authorization:
            return AuthResult(Verdict.CHALLENGE, "credentials required")
        scheme, p = parse_auth_header(authorization)
        if scheme != "digest":
            return AuthResult(Verdict.CHALLENGE, "Digest required")
        username, nonce, response, uri = p.get("username"), p.get("nonce"), p.get("response"), p.get("uri")
        if not (username and nonce and response and uri):
            return AuthResult(Verdict.CHALLENGE, "incomplete credentials")
        algorithm = p.get("algorithm", "MD5").upper()
        if algorithm != "MD5":
            return AuthResult(Verdict.CHALLENGE, f"unsupported algorithm {algorithm}")
        if username != expected_user:
            return AuthResult(Verdict.FORBIDDEN, "username does not match the device ID", username)
        if p.get("realm", self.realm) != self.realm:
            return AuthResult(Verdict.CHALLENGE, "wrong realm", username)
        password = password_for(username)
        if password is None:
            return AuthResult(Verdict.FORBIDDEN, "unknown device", username)
        qop, nc, cnonce = p.get("qop"), p.get("nc"), p.get("cnonce")
        realm = p.get("realm", self.realm)
        if qop and qop.lower() == "auth" and nc and cnonce:
            good = secrets.compare_digest(
                digest_response(username, realm, password, method, uri, nonce, "auth", nc, cnonce), response.lower())
        elif qop and qop.lower() != "auth":
            return AuthResult(Verdict.CHALLENGE, f"unsupported qop {qop}", username)
        else:
            # no qop, or qop without cnonce/nc from buggy firmware: the RFC 2069 formula
            qop = None
            good = secrets.compare_digest(
                digest_response(username, realm, password, method, uri, nonce), response.lower())
        state = self._nonces.get(nonce)
        if state is None:
            # not ours (or from before a restart): a correct digest only needs a fresh nonce
            return AuthResult(Verdict.STALE if good else Verdict.CHALLENGE, "unknown nonce", username)
        if now - state.issued > self.nonce_lifetime:
            del self._nonces[nonce]
            return AuthResult(Verdict.STALE if good else Verdict.FORBIDDEN, "nonce expired", username)
        if not good:
            return AuthResult(Verdict.FORBIDDEN, "wrong password", username)
        if qop:
            try:
                count = int(nc or "", 16)
            except ValueError:
                return AuthResult(Verdict.FORBIDDEN, "bad nonce count", username)
            if count <= state.last_nc:
                return AuthResult(Verdict.STALE, "replayed nonce count", username)
            state.last_nc = count
        else:
            if state.used:
                return AuthResult(Verdict.STALE, "nonce already used", username)
            state.used = True
        return AuthResult(Verdict.OK, "", username)

    def _prune(self, now: float) -> None:
        nonces = self._nonces
        while nonces:
            nonce, state = next(iter(nonces.items()))
            if len(nonces) > self.max_nonces or now - state.issued > self.nonce_lifetime:
                del nonces[nonce]
            else:
                break

    def __len__(self) -> int:
        return len(self._nonces)


class DigestClient:
    """The device's side: answer a ``WWW-Authenticate``/``Proxy-Authenticate`` challenge."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self._nonce: str | None = None
        self._params: dict[str, str] = {}
        self._nc = 0

    def set_challenge(self, header_value: str) -> None:
        scheme, params = parse_auth_header(header_value)
        if scheme != "digest" or "nonce" not in params:
            raise ValueError("not a Digest challenge")
        if params["nonce"] != self._nonce:
            self._nc = 0
        self._nonce = params["nonce"]
        self._params = params

    @property
    def ready(self) -> bool:
        return self._nonce is not None

    def authorization(self, method: str, uri: str, cnonce: str | None = None) -> str:
        p = self._params
        realm = p.get("realm", "")
        nonce = self._nonce or ""
        qops = [q.strip().lower() for q in p.get("qop", "").split(",") if q.strip()]
        fields = [f'username="{self.username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
        if "auth" in qops:
            self._nc += 1
            nc = f"{self._nc:08x}"
            cnonce = cnonce or secrets.token_hex(8)
            resp = digest_response(self.username, realm, self.password, method, uri, nonce, "auth", nc, cnonce)
            fields += [f'response="{resp}"', "algorithm=MD5", f'cnonce="{cnonce}"', "qop=auth", f"nc={nc}"]
        else:
            resp = digest_response(self.username, realm, self.password, method, uri, nonce)
            fields += [f'response="{resp}"', "algorithm=MD5"]
        if "opaque" in p:
            fields.append(f'opaque="{p["opaque"]}"')
        return "Digest " + ", ".join(fields)


class FailureThrottle:
    """Blocks a key (device ID or source address) after repeated failures within a window."""

    def __init__(self, max_failures: int = 5, window: float = 60.0, block: float = 300.0,
                 max_keys: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self.block = block
        self.max_keys = max_keys
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._blocked: dict[str, float] = {}

    def blocked_until(self, key: str, now: float) -> float | None:
        until = self._blocked.get(key)
        if until is None:
            return None
        if now >= until:
            del self._blocked[key]
            return None
        return until

    def failure(self, key: str, now: float) -> bool:
        """Record a failure; True when ``key`` is now blocked."""
        times = [t for t in self._failures.pop(key, []) if now - t < self.window]
        times.append(now)
        self._failures[key] = times
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)
        if len(times) >= self.max_failures:
            self._blocked[key] = now + self.block
            del self._failures[key]
            return True
        return False

    def success(self, key: str) -> None:
        self._failures.pop(key, None)

    def purge(self, now: float) -> None:
        for key in [k for k, until in self._blocked.items() if now >= until]:
            del self._blocked[key]
