"""SIP dialogs (RFC 3261 §12) and builders for out-of-dialog requests, sans-IO.

A :class:`Dialog` is created from an INVITE and its 2xx, in either role, and builds the in-dialog
requests GB/T 28181 needs (ACK for the 2xx, BYE, INFO with MANSRTSP, MESSAGE): same Call-ID and
tags, CSeq incremented (the ACK reuses the INVITE's number), Request-URI = the remote target, Route
= the route set (RFC 3261 §12.2.1.1, loose and strict routing). Received in-dialog requests are
checked with :meth:`Dialog.receive_request` (481 for another dialog, 500 for a CSeq out of order).
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from typing import Iterable

from ..errors import LocalProtocolError, RemoteProtocolError
from .headers import NameAddr, Via
from .message import Headers, Request, Response
from .transaction import new_branch
from .uri import SipUri

__all__ = ["Dialog", "new_call_id", "new_tag", "new_branch", "build_request", "format_address"]

MAX_FORWARDS = "70"
_TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})


def new_call_id(host: str | None = None) -> str:
    """A fresh Call-ID (128 random bits, ``@host`` appended when given)."""
    token = secrets.token_hex(16)
    return f"{token}@{host}" if host else token


#: Tags need uniqueness, not secrecy (RFC 3261 §19.3): a seeded PRNG gives them without a system
#: call per response. Call-IDs and branches keep cryptographic randomness.
_tags = random.Random(secrets.randbits(128))


def new_tag() -> str:
    """A fresh From/To tag (64 random bits)."""
    return f"{_tags.getrandbits(64):016x}"


def format_address(address: str | SipUri | NameAddr, tag: str | None = None) -> str:
    """A From/To/Contact value: ``<uri>`` (or a NameAddr as is) with ``;tag=`` added if given."""
    if isinstance(address, NameAddr):
        text = str(address)
        if tag and address.tag is None:
            text += f";tag={tag}"
        return text
    text = str(address).strip()
    if not text.startswith(("<", '"')) and "<" not in text:
        text = f"<{text}>"
    return f"{text};tag={tag}" if tag else text


def _via(transport: str, host: str, port: int | None) -> str:
    """A top Via for a new request: fresh branch, ``rport`` (RFC 3581) so replies follow NAT."""
    return str(Via(transport.upper(), host.strip("[]"), port, {"rport": None, "branch": new_branch()}))


def build_request(method: str, uri: str | SipUri, from_uri: str | SipUri | NameAddr,
                  to_uri: str | SipUri | NameAddr, via_transport: str, via_host: str,
                  via_port: int | None, cseq: int, call_id: str | None = None,
                  from_tag: str | None = None, body: bytes = b"", content_type: str | None = None,
                  extra_headers: Iterable[tuple[str, object]] = ()) -> Request:
    """An out-of-dialog request: new branch, Call-ID (unless given) and From tag (unless given),
    no To tag, ``Max-Forwards: 70``; ``extra_headers`` (Contact, Expires, Subject...) follow."""
    method = method.upper()
    if method in ("ACK", "CANCEL"):
        raise LocalProtocolError(f"{method} is built from its INVITE, not from scratch")
    if not 0 <= cseq < 2**31:
        raise LocalProtocolError("CSeq number out of range")
    items: list[tuple[str, str]] = [
        ("Via", _via(via_transport, via_host, via_port)),
        ("From", format_address(from_uri, from_tag or new_tag())),
        ("To", format_address(to_uri)),
        ("Call-ID", call_id or new_call_id()),
        ("CSeq", f"{cseq} {method}"),
        ("Max-Forwards", MAX_FORWARDS),
    ]
    if content_type:
        items.append(("Content-Type", content_type))
    request = Request(method, str(uri), Headers(items), body)
    for name, value in extra_headers:
        request.headers.add(name, value)
    return request


@dataclass(slots=True)
class Dialog:
    """State of one dialog (RFC 3261 §12.1): build with :meth:`from_uac` or :meth:`from_uas`."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str                 # our From value without tag in requests we send (the address)
    remote_uri: str
    remote_target: str             # Request-URI of in-dialog requests (the peer's Contact)
    route_set: list[str]
    local_cseq: int
    remote_cseq: int | None
    invite_cseq: int
    via_transport: str
    via_host: str
    via_port: int | None
    local_contact: str | None = None
    role: str = "uac"
    extra: dict[str, str] = field(default_factory=dict)

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def from_uac(cls, invite: Request, response: Response) -> "Dialog":
        """Our INVITE and the 2xx it got. Our Via (transport, sent-by) is reused for requests."""
        if invite.method != "INVITE" or not 200 <= response.status < 300:
            raise LocalProtocolError("a UAC dialog needs an INVITE and a 2xx")
        from_, to = invite.from_, response.to
        if from_.tag is None:
            raise LocalProtocolError("our INVITE has no From tag")
        if to.tag is None:
            raise RemoteProtocolError("2xx without a To tag")
        contacts = response.contacts
        if not contacts or contacts[0].uri is None:
            raise RemoteProtocolError("2xx to INVITE without a Contact")
        via = invite.via
        return cls(
            call_id=invite.call_id, local_tag=from_.tag, remote_tag=to.tag,
            local_uri=_without_tag(from_), remote_uri=_without_tag(to),
            remote_target=str(contacts[0].uri),
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_cseq=invite.cseq.number, remote_cseq=None, invite_cseq=invite.cseq.number,
            via_transport=via.transport, via_host=via.host, via_port=via.port,
            local_contact=invite.headers.get("Contact"), role="uac")

    @classmethod
    def from_uas(cls, invite: Request, response: Response, *, via_transport: str | None = None,
                 via_host: str | None = None, via_port: int | None = None) -> "Dialog":
        """A received INVITE and our 2xx (with its To tag and Contact).

        Requests we send in this dialog carry a Via built from our Contact unless
        ``via_transport``/``via_host``/``via_port`` say otherwise.
        """
        if invite.method != "INVITE" or not 200 <= response.status < 300:
            raise LocalProtocolError("a UAS dialog needs an INVITE and a 2xx")
        from_, to = invite.from_, response.to
        if to.tag is None:
            raise LocalProtocolError("our 2xx has no To tag")
        if from_.tag is None:
            raise RemoteProtocolError("INVITE without a From tag")
        contacts = invite.contacts
        if not contacts or contacts[0].uri is None:
            raise RemoteProtocolError("INVITE without a Contact")
        ours = response.contacts
        our_uri = ours[0].uri if ours and ours[0].uri is not None else None
        transport = via_transport or invite.via.transport
        host = via_host or (our_uri.host if our_uri else None)
        if host is None:
            raise LocalProtocolError("no Via host: pass via_host or put a Contact in the 2xx")
        if via_port is not None or via_host:
            port = via_port
        else:
            port = our_uri.port if our_uri else None
        return cls(
            call_id=invite.call_id, local_tag=to.tag, remote_tag=from_.tag,
            local_uri=_without_tag(to), remote_uri=_without_tag(from_),
            remote_target=str(contacts[0].uri),
            route_set=list(invite.headers.get_all("Record-Route")),
            local_cseq=0, remote_cseq=invite.cseq.number, invite_cseq=invite.cseq.number,
            via_transport=transport, via_host=host, via_port=port,
            local_contact=response.headers.get("Contact"), role="uas")

    @property
    def id(self) -> tuple[str, str, str]:
        """``(Call-ID, local tag, remote tag)``."""
        return (self.call_id, self.local_tag, self.remote_tag)

    # -- requests we send -------------------------------------------------------------------
    def create_request(self, method: str, body: bytes = b"", content_type: str | None = None,
                       headers: Iterable[tuple[str, object]] = ()) -> Request:
        """An in-dialog request; its CSeq is the next local number (ACK: use :meth:`create_ack`)."""
        method = method.upper()
        if method == "ACK":
            return self.create_ack(body, content_type, headers)
        if method == "CANCEL":
            raise LocalProtocolError("CANCEL is built by the transaction layer (create_cancel)")
        self.local_cseq += 1
        if self.local_cseq >= 2**31:
            raise LocalProtocolError("local CSeq exhausted")
        return self._request(method, self.local_cseq, body, content_type, headers)

    def create_ack(self, body: bytes = b"", content_type: str | None = None,
                   headers: Iterable[tuple[str, object]] = ()) -> Request:
        """The ACK for the 2xx to our INVITE: CSeq number of the INVITE, a new branch."""
        if self.role != "uac":
            raise LocalProtocolError("only the UAC acknowledges a 2xx")
        return self._request("ACK", self.invite_cseq, body, content_type, headers)

    def _request(self, method: str, number: int, body: bytes, content_type: str | None,
                 extra: Iterable[tuple[str, object]]) -> Request:
        uri, routes = self.remote_target, self.route_set
        first = _route_uri(routes[0]) if routes else None
        if first is not None and first.param("lr") is None:
            # strict routing (RFC 3261 §12.2.1.1): first route becomes the Request-URI
            uri = str(first)
            routes = routes[1:] + [f"<{self.remote_target}>"]
        items: list[tuple[str, str]] = [("Via", _via(self.via_transport, self.via_host, self.via_port))]
        items += [("Route", r) for r in routes]
        items += [
            ("From", f"{self.local_uri};tag={self.local_tag}"),
            ("To", f"{self.remote_uri};tag={self.remote_tag}"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{number} {method}"),
            ("Max-Forwards", MAX_FORWARDS),
        ]
        if self.local_contact and method not in ("ACK", "BYE", "CANCEL"):
            items.append(("Contact", self.local_contact))
        if content_type:
            items.append(("Content-Type", content_type))
        request = Request(method, uri, Headers(items), body)
        for name, value in extra:
            request.headers.add(name, value)
        return request

    # -- requests we receive ----------------------------------------------------------------
    def matches(self, message: Request | Response) -> bool:
        """Whether a received request (or a response to our request) belongs to this dialog."""
        if message.call_id != self.call_id:
            return False
        if isinstance(message, Request):
            local, remote = message.to.tag, message.from_.tag
        else:
            local, remote = message.from_.tag, message.to.tag
        return local == self.local_tag and remote == self.remote_tag

    def receive_request(self, request: Request) -> None:
        """Check an in-dialog request and update the remote CSeq (and the target on re-INVITE).

        Raises :class:`RemoteProtocolError` with 481 for a request of another dialog and 500 for a
        CSeq lower than the last one (RFC 3261 §12.2.2); ACK and CANCEL carry the number of the
        request they refer to and are not counted.
        """
        if not self.matches(request):
            raise RemoteProtocolError("Call/Transaction Does Not Exist", 481)
        number = request.cseq.number
        if request.method in ("ACK", "CANCEL"):
            return
        if self.remote_cseq is not None and number < self.remote_cseq:
            raise RemoteProtocolError("CSeq out of order", 500)
        self.remote_cseq = number
        if request.method in _TARGET_REFRESH:
            contacts = request.contacts
            if contacts and contacts[0].uri is not None:
                self.remote_target = str(contacts[0].uri)

    def response_for(self, request: Request, status: int, reason: str | None = None) -> Response:
        """A response to an in-dialog request with our tag in To."""
        return Response.for_request(request, status, reason, to_tag=self.local_tag)


def _without_tag(addr: NameAddr) -> str:
    params = {k: v for k, v in addr.params.items() if k != "tag"}
    return str(NameAddr(addr.uri, addr.display, params))


def _route_uri(route: str) -> SipUri | None:
    """The URI of a Route/Record-Route value, or None when it cannot be read (treated as loose)."""
    try:
        return NameAddr.parse(route).uri
    except RemoteProtocolError:
        return None
