"""SIP URIs (RFC 3261 §19.1) as GB/T 28181 uses them: ``sip:<20-digit-id>@<domain-or-host[:port]>``.

Entities are matched on the user part only (PROTOCOL §1.3): the host may be the 10-digit domain or an
address, and a domain must never be resolved as a host name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import RemoteProtocolError


@dataclass(frozen=True, slots=True)
class SipUri:
    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = field(default=())
    headers: str = ""
    password: str | None = None

    @classmethod
    def parse(cls, text: str) -> "SipUri":
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        scheme_l = scheme.lower()
        if not sep or scheme_l not in ("sip", "sips"):
            raise RemoteProtocolError(f"unsupported URI {text[:80]!r}")
        # the last "@" ends the userinfo ("?" and ";" are legal in a user part, RFC 3261 §25.1;
        # "@" is not legal in URI parameters or headers)
        user = password = None
        if "@" in rest:
            userinfo, _, rest = rest.rpartition("@")
            user, _, pw = userinfo.partition(":")
            password = pw or None
        rest, _, headers = rest.partition("?")
        hostport, *param_parts = rest.split(";")
        host, port = split_hostport(hostport)
        params = []
        for part in param_parts:
            if not part:
                continue
            k, eq, v = part.partition("=")
            params.append((k.strip().lower(), v.strip() if eq else None))
        return cls(scheme_l, user or None, host, port, tuple(params), headers, password)

    def param(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name:
                return v if v is not None else ""
        return None

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password:
                out += [":", self.password]
            out.append("@")
        out.append(f"[{self.host}]" if ":" in self.host else self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        for k, v in self.params:
            out.append(f";{k}" if v is None else f";{k}={v}")
        if self.headers:
            out.append("?" + self.headers)
        return "".join(out)


def split_hostport(hostport: str) -> tuple[str, int | None]:
    hostport = hostport.strip()
    if not hostport:
        raise RemoteProtocolError("empty host")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise RemoteProtocolError(f"bad IPv6 reference {hostport[:60]!r}")
        host, rest = hostport[1:end], hostport[end + 1:]
        port_s = rest[1:] if rest.startswith(":") else None
    else:
        host, sep, port_s = hostport.partition(":")
        if not sep:
            port_s = None
    port = None
    if port_s is not None:
        if not (port_s.isascii() and port_s.isdigit()) or not 0 < int(port_s) < 65536:
            raise RemoteProtocolError(f"bad port in {hostport[:60]!r}")
        port = int(port_s)
    if not host or any(c in host for c in " \t<>\"") :
        raise RemoteProtocolError(f"bad host {hostport[:60]!r}")
    return host, port
