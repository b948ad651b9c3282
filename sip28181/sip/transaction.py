"""SIP transactions (RFC 3261 §17, with the RFC 6026 "Accepted" state), sans-IO.

One :class:`TransactionLayer` serves one SIP endpoint. Like aioquic's ``QuicConnection`` it never
touches a socket or a clock: the transport hands it parsed messages with ``now`` and an opaque
``source``/``dest`` address, and collects what to transmit from :meth:`~TransactionLayer.
datagrams_to_send` and when to call back from :meth:`~TransactionLayer.get_timer`::

    layer = TransactionLayer()
    events = layer.receive(message, source, now, reliable)
    key = layer.send_request(request, dest, now, reliable)
    layer.send_response(response, now)
    for data, dest in layer.datagrams_to_send(): ...
    deadline = layer.get_timer();  events = layer.handle_timer(now)

The four machines (INVITE/non-INVITE × client/server) are transition tables
``{(state, input): (new_state, actions)}`` in this file (see :data:`TABLES` and
:func:`describe`); a pair missing from a table means the input is absorbed (ignored) in that state
when it comes from the network, and is an API error (:class:`LocalProtocolError`) when it comes
from the TU.

Decisions worth knowing:

* **100 Trying** for an INVITE is sent as soon as the INVITE arrives (RFC 3261 §17.2.1 allows it;
  our TUs answer in far less than 200 ms or not at all, and sending at once keeps the state
  machine free of a timer that would almost always be cancelled).
* **2xx to INVITE** (RFC 6026): the client transaction moves to *accepted* for Timer M and absorbs
  retransmitted 2xx, re-sending the ACK the TU registered with :meth:`TransactionLayer.send_ack`
  (a 2xx with a new To tag — a forked dialog — is delivered). The server transaction moves to
  *accepted*, retransmits the 2xx on Timer G over unreliable transports (the UAS-core duty of
  §13.3.1.4) until the ACK arrives (reported once as :class:`AckReceived`), and reports
  :class:`TransactionTimedOut` with timer ``"L"`` if none arrives within 64·T1.
* **Guards against a silent peer or TU** so that nothing lives forever: Timer C (default 180 s)
  ends an INVITE client transaction stuck after a provisional response (reported as a timeout)
  and an INVITE server transaction the TU never answered; Timer U (default 64·T1) ends a
  non-INVITE server transaction the TU never answered. Both server cases emit
  :class:`TransactionTerminated`.
* Over a reliable transport nothing is retransmitted and Timers D, I, J, K are zero: the
  transaction ends as soon as it completes.
* Transaction keys are strings: ``"<branch> <METHOD>"`` for client transactions and
  ``"<branch> <sent-by> <METHOD>"`` for server ones (ACK maps to INVITE). A request whose branch
  lacks the ``z9hG4bK`` cookie is matched by the RFC 2543 rules (Call-ID, From tag, CSeq, top Via).
* The server-transaction table is bounded: beyond ``max_server_transactions`` a new request is
  answered statelessly with ``503`` + ``Retry-After`` and no event.
"""

from __future__ import annotations

import heapq
import re
import secrets
from typing import Hashable

from ..errors import LocalProtocolError, RemoteProtocolError
from .events import (AckReceived, Event, RequestReceived, ResponseReceived, TransactionTerminated,
                     TransactionTimedOut)
from .headers import Via, split_commas
from .message import Headers, Request, Response

__all__ = [
    "TransactionLayer", "TABLES", "describe", "MAGIC_COOKIE", "new_branch",
    "INVITE_CLIENT", "NON_INVITE_CLIENT", "INVITE_SERVER", "NON_INVITE_SERVER",
]

MAGIC_COOKIE = "z9hG4bK"

# ------------------------------------------------------------------------------------------------
# States, inputs and actions (plain interned strings: they are hashed on every message)
# ------------------------------------------------------------------------------------------------
INIT = "init"
CALLING = "calling"
TRYING = "trying"
PROCEEDING = "proceeding"
COMPLETED = "completed"
CONFIRMED = "confirmed"
ACCEPTED = "accepted"
TERMINATED = "terminated"

# inputs
SEND = "TU sends request"          # client: the TU hands over the request
RECV_REQUEST = "request"           # server: the request (first copy or a retransmission)
RECV_ACK = "ACK"
RECV_1XX = "1xx"
RECV_2XX = "2xx"
RECV_FINAL = "300-699"
TU_1XX = "TU 1xx"
TU_2XX = "TU 2xx"
TU_FINAL = "TU 300-699"
TRANSPORT_ERROR = "transport error"


def _timer(name: str) -> str:
    return f"Timer {name}"


# actions: (operation, argument)
Action = tuple[str, str]
TRANSMIT: Action = ("transmit", "request")          # (re)send the client request
DELIVER: Action = ("deliver", "to TU")              # hand the message to the TU as an event
DELIVER_2XX_AGAIN: Action = ("deliver", "new 2xx or resend ACK")
SEND_100: Action = ("send", "100 Trying")
SEND_RESPONSE: Action = ("send", "TU response")
RESEND_RESPONSE: Action = ("resend", "last response")
SEND_ACK: Action = ("send", "ACK")                  # ACK for a non-2xx final, same branch
RESEND_ACK: Action = ("resend", "ACK")
REPORT_TIMEOUT: Action = ("report", "timeout")
REPORT_ABANDONED: Action = ("report", "TU never answered")


def start(timer: str) -> Action:
    return ("start", timer)


def stop(timer: str) -> Action:
    return ("stop", timer)


def backoff(timer: str) -> Action:
    """Restart a retransmission timer at twice its interval (capped at T2 except Timer A)."""
    return ("backoff", timer)


def at_t2(timer: str) -> Action:
    return ("at T2", timer)


Table = dict[tuple[str, str], tuple[str, tuple[Action, ...]]]

#: INVITE client transaction (RFC 3261 §17.1.1, Figure 5; RFC 6026 §7.2).
INVITE_CLIENT: Table = {
    (INIT, SEND): (CALLING, (TRANSMIT, start("A"), start("B"))),
    (CALLING, _timer("A")): (CALLING, (TRANSMIT, backoff("A"))),
    (CALLING, _timer("B")): (TERMINATED, (REPORT_TIMEOUT,)),
    (CALLING, RECV_1XX): (PROCEEDING, (stop("A"), stop("B"), DELIVER, start("C"))),
    (CALLING, RECV_2XX): (ACCEPTED, (stop("A"), stop("B"), DELIVER, start("M"))),
    (CALLING, RECV_FINAL): (COMPLETED, (stop("A"), stop("B"), SEND_ACK, DELIVER, start("D"))),
    (CALLING, TRANSPORT_ERROR): (TERMINATED, (REPORT_TIMEOUT,)),
    (PROCEEDING, RECV_1XX): (PROCEEDING, (DELIVER,)),
    (PROCEEDING, RECV_2XX): (ACCEPTED, (stop("C"), DELIVER, start("M"))),
    (PROCEEDING, RECV_FINAL): (COMPLETED, (stop("C"), SEND_ACK, DELIVER, start("D"))),
    (PROCEEDING, _timer("C")): (TERMINATED, (REPORT_TIMEOUT,)),
    (PROCEEDING, TRANSPORT_ERROR): (TERMINATED, (REPORT_TIMEOUT,)),
    (COMPLETED, RECV_FINAL): (COMPLETED, (RESEND_ACK,)),
    (COMPLETED, _timer("D")): (TERMINATED, ()),
    (COMPLETED, TRANSPORT_ERROR): (TERMINATED, ()),
    (ACCEPTED, RECV_2XX): (ACCEPTED, (DELIVER_2XX_AGAIN,)),
    (ACCEPTED, _timer("M")): (TERMINATED, ()),
    (ACCEPTED, TRANSPORT_ERROR): (TERMINATED, ()),
}

#: Non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6).
NON_INVITE_CLIENT: Table = {
    (INIT, SEND): (TRYING, (TRANSMIT, start("E"), start("F"))),
    (TRYING, _timer("E")): (TRYING, (TRANSMIT, backoff("E"))),
    (TRYING, _timer("F")): (TERMINATED, (REPORT_TIMEOUT,)),
    (TRYING, RECV_1XX): (PROCEEDING, (DELIVER,)),
    (TRYING, RECV_2XX): (COMPLETED, (stop("E"), stop("F"), DELIVER, start("K"))),
    (TRYING, RECV_FINAL): (COMPLETED, (stop("E"), stop("F"), DELIVER, start("K"))),
    (TRYING, TRANSPORT_ERROR): (TERMINATED, (REPORT_TIMEOUT,)),
    (PROCEEDING, _timer("E")): (PROCEEDING, (TRANSMIT, at_t2("E"))),
    (PROCEEDING, _timer("F")): (TERMINATED, (REPORT_TIMEOUT,)),
    (PROCEEDING, RECV_1XX): (PROCEEDING, (DELIVER,)),
    (PROCEEDING, RECV_2XX): (COMPLETED, (stop("E"), stop("F"), DELIVER, start("K"))),
    (PROCEEDING, RECV_FINAL): (COMPLETED, (stop("E"), stop("F"), DELIVER, start("K"))),
    (PROCEEDING, TRANSPORT_ERROR): (TERMINATED, (REPORT_TIMEOUT,)),
    (COMPLETED, _timer("K")): (TERMINATED, ()),
    (COMPLETED, TRANSPORT_ERROR): (TERMINATED, ()),
}

#: INVITE server transaction (RFC 3261 §17.2.1, Figure 7; RFC 6026 §7.1; 2xx retransmission of
#: §13.3.1.4 on Timer G in the accepted state).
INVITE_SERVER: Table = {
    (INIT, RECV_REQUEST): (PROCEEDING, (SEND_100, DELIVER, start("C"))),
    (PROCEEDING, RECV_REQUEST): (PROCEEDING, (RESEND_RESPONSE,)),
    (PROCEEDING, TU_1XX): (PROCEEDING, (SEND_RESPONSE,)),
    (PROCEEDING, TU_2XX): (ACCEPTED, (stop("C"), SEND_RESPONSE, start("G"), start("L"))),
    (PROCEEDING, TU_FINAL): (COMPLETED, (stop("C"), SEND_RESPONSE, start("G"), start("H"))),
    (PROCEEDING, _timer("C")): (TERMINATED, (REPORT_ABANDONED,)),
    (PROCEEDING, TRANSPORT_ERROR): (TERMINATED, ()),
    (COMPLETED, RECV_REQUEST): (COMPLETED, (RESEND_RESPONSE,)),
    (COMPLETED, _timer("G")): (COMPLETED, (RESEND_RESPONSE, backoff("G"))),
    (COMPLETED, _timer("H")): (TERMINATED, (REPORT_TIMEOUT,)),
    (COMPLETED, RECV_ACK): (CONFIRMED, (stop("G"), stop("H"), start("I"))),
    (COMPLETED, TRANSPORT_ERROR): (TERMINATED, ()),
    (CONFIRMED, _timer("I")): (TERMINATED, ()),
    (CONFIRMED, _timer("L")): (TERMINATED, ()),
    (CONFIRMED, TRANSPORT_ERROR): (TERMINATED, ()),
    (ACCEPTED, TU_2XX): (ACCEPTED, (SEND_RESPONSE,)),
    (ACCEPTED, _timer("G")): (ACCEPTED, (RESEND_RESPONSE, backoff("G"))),
    (ACCEPTED, RECV_ACK): (CONFIRMED, (stop("G"), DELIVER)),
    (ACCEPTED, _timer("L")): (TERMINATED, (REPORT_TIMEOUT,)),
    (ACCEPTED, TRANSPORT_ERROR): (TERMINATED, ()),
}

#: Non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).
NON_INVITE_SERVER: Table = {
    (INIT, RECV_REQUEST): (TRYING, (DELIVER, start("U"))),
    (TRYING, TU_1XX): (PROCEEDING, (SEND_RESPONSE,)),
    (TRYING, TU_2XX): (COMPLETED, (stop("U"), SEND_RESPONSE, start("J"))),
    (TRYING, TU_FINAL): (COMPLETED, (stop("U"), SEND_RESPONSE, start("J"))),
    (TRYING, _timer("U")): (TERMINATED, (REPORT_ABANDONED,)),
    (TRYING, TRANSPORT_ERROR): (TERMINATED, ()),
    (PROCEEDING, RECV_REQUEST): (PROCEEDING, (RESEND_RESPONSE,)),
    (PROCEEDING, TU_1XX): (PROCEEDING, (SEND_RESPONSE,)),
    (PROCEEDING, TU_2XX): (COMPLETED, (stop("U"), SEND_RESPONSE, start("J"))),
    (PROCEEDING, TU_FINAL): (COMPLETED, (stop("U"), SEND_RESPONSE, start("J"))),
    (PROCEEDING, _timer("U")): (TERMINATED, (REPORT_ABANDONED,)),
    (PROCEEDING, TRANSPORT_ERROR): (TERMINATED, ()),
    (COMPLETED, RECV_REQUEST): (COMPLETED, (RESEND_RESPONSE,)),
    (COMPLETED, _timer("J")): (TERMINATED, ()),
    (COMPLETED, TRANSPORT_ERROR): (TERMINATED, ()),
}

TABLES: dict[str, Table] = {
    "INVITE client": INVITE_CLIENT,
    "non-INVITE client": NON_INVITE_CLIENT,
    "INVITE server": INVITE_SERVER,
    "non-INVITE server": NON_INVITE_SERVER,
}

#: Timers that retransmit (never started over a reliable transport).
_RETRANSMIT_TIMERS = frozenset({"A", "E", "G"})
_TIMER_INPUT = {name: _timer(name) for name in "ABCDEFGHIJKLMU"}


def describe(table: Table) -> str:
    """A Markdown table of one state machine (for the docs)."""
    rows = ["| state | input | next state | actions |", "|---|---|---|---|"]
    for (state, inp), (new, actions) in table.items():
        acts = ", ".join(f"{op} {arg}" for op, arg in actions) or "—"
        rows.append(f"| {state} | {inp} | {new} | {acts} |")
    return "\n".join(rows)


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie plus 64 random bits."""
    return MAGIC_COOKIE + secrets.token_hex(8)


# ------------------------------------------------------------------------------------------------
# Matching keys
# ------------------------------------------------------------------------------------------------
_BRANCH_RE = re.compile(r";\s*branch\s*=\s*([^\s;,]+)", re.I)


def _top_via(headers: Headers) -> str:
    raw = headers.get("Via")
    if raw is None:
        raise RemoteProtocolError("missing Via")
    if "," in raw:
        raw = split_commas(raw)[0]
    return raw


def _branch_and_sent_by(raw_via: str) -> tuple[str | None, str]:
    """Magic-cookie branch (or None) and normalised sent-by of a top Via value.

    The tidy form every device sends (``SIP/2.0/UDP host:port;...;branch=z9hG4bK...``) is read
    with a few string operations: this runs for every request. Anything else goes to
    :meth:`Via.parse`, which allows LWS and folding.
    """
    semi = raw_via.find(";")
    start = raw_via.find(";branch=", semi) if semi >= 0 else -1
    parts = (raw_via if semi < 0 else raw_via[:semi]).split()
    if start >= 0 and len(parts) == 2 and parts[0][:8].upper() == "SIP/2.0/" and len(parts[0]) > 8:
        sent_by = parts[1].lower()
        start += 8
        end = raw_via.find(";", start)
        branch: str | None = (raw_via[start:] if end < 0 else raw_via[start:end]).rstrip()
    else:
        via = Via.parse(raw_via)
        host = f"[{via.host}]" if ":" in via.host else via.host
        sent_by = (f"{host}:{via.port}" if via.port else host).lower()
        branch = via.branch
    if branch is not None and (not branch.startswith(MAGIC_COOKIE) or len(branch) == len(MAGIC_COOKIE)):
        branch = None
    return branch, sent_by


def _server_key(msg: Request | Response, method: str) -> str:
    """RFC 3261 §17.2.3 (and the RFC 2543 fallback) for a request or the TU's response to it."""
    raw = _top_via(msg.headers)
    branch, sent_by = _branch_and_sent_by(raw)
    if method == "ACK":
        method = "INVITE"
    if branch is not None:
        return f"{branch} {sent_by} {method}"
    cseq = (msg.headers.get("CSeq") or "").split()
    number = cseq[0] if cseq else ""
    via = "".join(raw.split()).lower()
    return f"2543 {msg.call_id} {msg.from_.tag} {number} {via} {method}"


def _client_key(response: Response) -> str | None:
    """RFC 3261 §17.1.3: top Via branch and CSeq method."""
    try:
        branch = _BRANCH_RE.search(_top_via(response.headers))
    except RemoteProtocolError:
        return None
    if branch is None:
        return None
    cseq = (response.headers.get("CSeq") or "").split()
    if len(cseq) != 2:
        return None
    return f"{branch.group(1)} {cseq[1].upper()}"


# ------------------------------------------------------------------------------------------------
# The layer
# ------------------------------------------------------------------------------------------------
class _Transaction:
    __slots__ = ("key", "table", "state", "request", "request_bytes", "peer", "reliable",
                 "response_bytes", "ack_bytes", "timers", "interval", "to_tags",
                 "ack_index")

    def __init__(self, key: str, table: Table, request: Request, peer: Hashable, reliable: bool) -> None:
        self.key = key
        self.table = table
        self.state = INIT
        self.request: Request | None = request
        self.request_bytes = b""
        self.peer = peer
        self.reliable = reliable
        self.response_bytes = b""
        self.ack_bytes = b""
        self.timers: dict[str, list] = {}
        self.interval = 0.0
        self.to_tags: set[str] | None = None
        self.ack_index: tuple[str, str] | None = None


class TransactionLayer:
    """All client and server transactions of one SIP endpoint (see the module docstring)."""

    def __init__(self, t1: float = 0.5, t2: float = 4.0, t4: float = 5.0, *,
                 timer_c: float = 180.0, tu_timeout: float | None = None,
                 max_server_transactions: int = 1_000_000, max_client_transactions: int = 100_000,
                 retry_after: int = 5) -> None:
        if not 0 < t1 <= t2:
            raise ValueError("need 0 < T1 <= T2")
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.timer_c = timer_c
        self.tu_timeout = 64 * t1 if tu_timeout is None else tu_timeout
        self.max_server_transactions = max_server_transactions
        self.max_client_transactions = max_client_transactions
        self.retry_after = retry_after
        self._delay = {True: self._durations(True), False: self._durations(False)}
        self._client: dict[str, _Transaction] = {}
        self._server: dict[str, _Transaction] = {}
        self._ack_index: dict[tuple[str, str], _Transaction] = {}   # (Call-ID, CSeq no.) → 2xx'd IST
        self._out: list[tuple[bytes, Hashable]] = []
        self._heap: list[list] = []
        self._seq = 0
        self._live_timers = 0
        self._events: list[Event] = []
        self._source: Hashable = None      # source of the message being received
        #: Counters of what was absorbed or refused (for metrics).
        self.stats = {"retransmissions_absorbed": 0, "stray_responses": 0, "stray_acks": 0,
                      "rejected_overload": 0}

    # -- durations --------------------------------------------------------------------------
    def _durations(self, reliable: bool) -> dict[str, float]:
        """Timer lengths per RFC 3261 Table 4 (A, E, G: the first interval)."""
        t1, t4 = self.t1, self.t4
        unreliable = not reliable
        return {
            "A": t1, "E": t1, "G": t1,
            "B": 64 * t1, "F": 64 * t1, "H": 64 * t1, "L": 64 * t1, "M": 64 * t1,
            "D": max(32.0, 64 * t1) if unreliable else 0.0,
            "I": t4 if unreliable else 0.0,
            "J": 64 * t1 if unreliable else 0.0,
            "K": t4 if unreliable else 0.0,
            "C": self.timer_c,
            "U": self.tu_timeout,
        }

    # -- public API -------------------------------------------------------------------------
    def receive(self, message: Request | Response, source: Hashable, now: float,
                reliable: bool = False) -> list[Event]:
        """Feed one parsed message from ``source``; returns the events for the TU.

        Raises :class:`RemoteProtocolError` for a request whose top Via cannot be read (the
        transport answers it statelessly with the status hint).
        """
        self._events = events = []
        self._source = source
        if isinstance(message, Response):
            self._receive_response(message, now)
            return events
        method = message.method
        key = _server_key(message, method)
        tx = self._server.get(key)
        if tx is not None:
            if method == "ACK":
                if tx.table is INVITE_SERVER:
                    self._step(tx, RECV_ACK, message, now)
            else:
                self.stats["retransmissions_absorbed"] += 1
                self._step(tx, RECV_REQUEST, message, now)
            return events
        if method == "ACK":
            self._receive_2xx_ack(message, source, now)
            return events
        if len(self._server) >= self.max_server_transactions:
            self.stats["rejected_overload"] += 1
            reply = Response.for_request(message, 503)
            reply.headers.add("Retry-After", self.retry_after)
            self._out.append((reply.encode(), source))
            return events
        tx = _Transaction(key, INVITE_SERVER if method == "INVITE" else NON_INVITE_SERVER,
                          message, source, reliable)
        self._server[key] = tx
        self._step(tx, RECV_REQUEST, message, now)
        return events

    def send_request(self, request: Request, dest: Hashable, now: float, reliable: bool = False) -> str:
        """Start a client transaction for ``request`` towards ``dest``; returns its key.

        A top Via without a ``branch`` gets a fresh one. ACK is not a transaction: use
        :meth:`send_ack`.
        """
        method = request.method
        if method == "ACK":
            raise LocalProtocolError("an ACK is not sent in a client transaction; use send_ack()")
        if len(self._client) >= self.max_client_transactions:
            raise LocalProtocolError("too many client transactions")
        branch = _ensure_branch(request)
        key = f"{branch} {method}"
        if key in self._client:
            raise LocalProtocolError(f"a client transaction {key!r} already exists")
        tx = _Transaction(key, INVITE_CLIENT if method == "INVITE" else NON_INVITE_CLIENT,
                          request, dest, reliable)
        tx.request_bytes = request.encode()
        self._client[key] = tx
        self._events = []
        self._step(tx, SEND, None, now)
        return key

    def send_response(self, response: Response, now: float, transaction_key: str | None = None) -> None:
        """Send the TU's response through its server transaction (back to the request's source).

        ``transaction_key`` (from :class:`RequestReceived`) saves recomputing the key from the
        response's Via and CSeq. Raises :class:`LocalProtocolError` when no server transaction
        can take this response (unknown, terminated, or already answered finally).
        """
        key = transaction_key
        if key is None:
            cseq = (response.headers.get("CSeq") or "").split()
            if len(cseq) != 2:
                raise LocalProtocolError("response without a CSeq method")
            try:
                key = _server_key(response, cseq[1].upper())
            except RemoteProtocolError as exc:
                raise LocalProtocolError(f"cannot match the response: {exc.reason}") from None
        tx = self._server.get(key)
        if tx is None:
            raise LocalProtocolError(f"no server transaction {key!r}")
        status = response.status
        inp = TU_1XX if status < 200 else TU_2XX if status < 300 else TU_FINAL
        self._events = []
        if not self._step(tx, inp, response, now):
            raise LocalProtocolError(f"cannot send {status} in state {tx.state} of {key!r}")

    def send_ack(self, ack: Request, dest: Hashable, transaction_key: str | None = None) -> None:
        """Send the ACK for a 2xx (built by the dialog). With the INVITE's ``transaction_key`` the
        ACK is remembered and re-sent for each retransmitted 2xx until Timer M."""
        if ack.method != "ACK":
            raise LocalProtocolError("send_ack() sends ACK requests only")
        data = ack.encode()
        self._out.append((data, dest))
        if transaction_key is not None:
            tx = self._client.get(transaction_key)
            if tx is not None and tx.state == ACCEPTED:
                tx.ack_bytes = data
                tx.peer = dest

    def connection_lost(self, peer: Hashable, now: float) -> list[Event]:
        """A reliable connection to ``peer`` closed: its transactions end (clients time out)."""
        self._events = events = []
        for table in (self._client, self._server):
            for tx in [t for t in table.values() if t.peer == peer]:
                self._step(tx, TRANSPORT_ERROR, None, now)
        return events

    def datagrams_to_send(self) -> list[tuple[bytes, Hashable]]:
        """Everything queued for transmission since the last call, as ``(data, dest)``."""
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        """The earliest pending deadline, or ``None``."""
        heap = self._heap
        while heap:
            entry = heap[0]
            tx = entry[2]
            if tx.timers.get(entry[3]) is entry:
                return entry[0]
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer whose deadline is ``<= now``."""
        self._events = events = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            tx, name = entry[2], entry[3]
            if tx.timers.get(name) is not entry:
                continue          # stopped or superseded (lazy deletion)
            del tx.timers[name]
            self._live_timers -= 1
            self._step(tx, _TIMER_INPUT[name], None, now)
        return events

    # -- helpers for the TU -------------------------------------------------------------------
    def request_for(self, transaction_key: str) -> Request | None:
        """The request of a live transaction (``None`` once a non-INVITE server transaction has
        answered finally: it keeps only the response bytes)."""
        tx = self._client.get(transaction_key) or self._server.get(transaction_key)
        return tx.request if tx is not None else None

    def state_of(self, transaction_key: str) -> str | None:
        tx = self._client.get(transaction_key) or self._server.get(transaction_key)
        return tx.state if tx is not None else None

    def cancel_target(self, cancel: Request) -> str | None:
        """The key of the INVITE server transaction a received CANCEL refers to (§9.2)."""
        try:
            key = _server_key(cancel, "INVITE")
        except RemoteProtocolError:
            return None
        tx = self._server.get(key)
        return key if tx is not None and tx.table is INVITE_SERVER else None

    def create_cancel(self, transaction_key: str) -> Request:
        """A CANCEL for our pending INVITE (RFC 3261 §9.1); send it with :meth:`send_request`.

        Per §9.1 it should only be sent once a provisional response has arrived.
        """
        tx = self._client.get(transaction_key)
        if tx is None or tx.table is not INVITE_CLIENT or tx.request is None:
            raise LocalProtocolError(f"no INVITE client transaction {transaction_key!r}")
        if tx.state not in (CALLING, PROCEEDING):
            raise LocalProtocolError(f"cannot cancel an INVITE in state {tx.state}")
        return _derived_request(tx.request, "CANCEL", tx.request.headers.get("To") or "")

    def __len__(self) -> int:
        return len(self._client) + len(self._server)

    @property
    def client_count(self) -> int:
        return len(self._client)

    @property
    def server_count(self) -> int:
        return len(self._server)

    # -- internals ----------------------------------------------------------------------------
    def _receive_response(self, response: Response, now: float) -> None:
        key = _client_key(response)
        tx = self._client.get(key) if key is not None else None
        if tx is None:
            self.stats["stray_responses"] += 1
            return
        status = response.status
        inp = RECV_1XX if status < 200 else RECV_2XX if status < 300 else RECV_FINAL
        if not self._step(tx, inp, response, now):
            self.stats["retransmissions_absorbed"] += 1

    def _receive_2xx_ack(self, ack: Request, source: Hashable, now: float) -> None:
        cseq = (ack.headers.get("CSeq") or "").split()
        tx = self._ack_index.get((ack.call_id, cseq[0] if cseq else ""))
        if tx is None:
            self.stats["stray_acks"] += 1
            self._events.append(AckReceived(ack, source, None))
            return
        if not self._step(tx, RECV_ACK, ack, now):
            self.stats["retransmissions_absorbed"] += 1

    def _step(self, tx: _Transaction, inp: str, msg: Request | Response | None, now: float) -> bool:
        """Apply one input; False when the table has no row for it (input absorbed)."""
        row = tx.table.get((tx.state, inp))
        if row is None:
            return False
        new_state, actions = row
        tx.state = new_state
        due: list[str] | None = None
        for op, arg in actions:
            if op == "start":
                if self._start(tx, arg, now):
                    due = [arg] if due is None else due + [arg]
            elif op == "send" or op == "resend":
                self._send(tx, op, arg, msg)
            elif op == "deliver":
                self._deliver(tx, arg, msg)
            elif op == "transmit":
                self._out.append((tx.request_bytes, tx.peer))
            elif op == "stop":
                entry = tx.timers.pop(arg, None)
                if entry is not None:
                    self._live_timers -= 1
            elif op == "backoff" or op == "at T2":
                if op == "at T2":
                    tx.interval = self.t2
                elif arg == "A":
                    tx.interval *= 2
                else:
                    tx.interval = min(tx.interval * 2, self.t2)
                self._arm(tx, arg, now + tx.interval)
            elif op == "report":
                self._report(tx, arg, inp)
        if new_state == TERMINATED:
            self._remove(tx)
        elif due is not None:
            for name in due:          # zero-length timers (reliable transport) fire at once
                if tx.timers.pop(name, None) is not None:
                    self._live_timers -= 1
                self._step(tx, _TIMER_INPUT[name], None, now)
        return True

    def _start(self, tx: _Transaction, name: str, now: float) -> bool:
        """Arm a timer; True if it is zero-length and must fire right after the actions."""
        if name in _RETRANSMIT_TIMERS:
            if tx.reliable:
                return False
            tx.interval = self.t1
        delay = self._delay[tx.reliable][name]
        if delay <= 0:
            return True
        self._arm(tx, name, now + delay)
        return False

    def _arm(self, tx: _Transaction, name: str, deadline: float) -> None:
        self._seq += 1
        entry = [deadline, self._seq, tx, name]
        if tx.timers.get(name) is None:
            self._live_timers += 1
        tx.timers[name] = entry
        heap = self._heap
        heapq.heappush(heap, entry)
        if len(heap) > 1024 and len(heap) > 3 * self._live_timers:
            # compact: drop the stale entries of stopped timers and ended transactions
            self._heap = [e for e in heap if e[2].timers.get(e[3]) is e]
            heapq.heapify(self._heap)

    def _send(self, tx: _Transaction, op: str, what: str, msg: Request | Response | None) -> None:
        out = self._out
        if what == "TU response":
            assert isinstance(msg, Response)
            data = msg.encode()
            tx.response_bytes = data        # all a retransmission needs: no Response object kept
            if tx.table is NON_INVITE_SERVER and msg.status >= 200:
                tx.request = None           # keep only what a retransmission needs
            elif tx.table is INVITE_SERVER and 200 <= msg.status < 300 and tx.request is not None:
                self._index_2xx(tx, tx.request)
            out.append((data, tx.peer))
        elif what == "last response":
            if tx.response_bytes:
                out.append((tx.response_bytes, tx.peer))
        elif what == "100 Trying":
            assert isinstance(msg, Request)
            trying = Response.for_request(msg, 100)
            tx.response_bytes = trying.encode()
            out.append((tx.response_bytes, tx.peer))
        elif what == "ACK":
            if op == "send":
                assert isinstance(msg, Response)
                assert tx.request is not None
                tx.ack_bytes = _derived_request(tx.request, "ACK", msg.headers.get("To") or "").encode()
            if tx.ack_bytes:
                out.append((tx.ack_bytes, tx.peer))

    def _deliver(self, tx: _Transaction, how: str, msg: Request | Response | None) -> None:
        events = self._events
        if isinstance(msg, Response):
            assert tx.request is not None
            if tx.table is INVITE_CLIENT and msg.status >= 200:
                tag = msg.to.tag or ""
                if how == "new 2xx or resend ACK":
                    if tx.to_tags is not None and tag in tx.to_tags:
                        if tx.ack_bytes:
                            self._out.append((tx.ack_bytes, tx.peer))
                        self.stats["retransmissions_absorbed"] += 1
                        return
                if msg.status < 300:
                    if tx.to_tags is None:
                        tx.to_tags = set()
                    tx.to_tags.add(tag)
            events.append(ResponseReceived(msg, tx.key, tx.request))
        elif isinstance(msg, Request):
            if msg.method == "ACK":
                events.append(AckReceived(msg, self._source, tx.key))
            else:
                events.append(RequestReceived(msg, tx.peer, tx.key))

    def _report(self, tx: _Transaction, what: str, inp: str) -> None:
        if what == "timeout":
            timer = "transport" if inp == TRANSPORT_ERROR else inp.rsplit(" ", 1)[-1]
            request = tx.request
            if request is None:       # cannot happen for the reporting states; stay defensive
                return
            self._events.append(TransactionTimedOut(tx.key, request, timer))
        else:
            self._events.append(TransactionTerminated(tx.key, "no final response from the TU"))

    def _index_2xx(self, tx: _Transaction, invite: Request) -> None:
        cseq = (invite.headers.get("CSeq") or "").split()
        index = (invite.call_id, cseq[0] if cseq else "")
        tx.ack_index = index
        self._ack_index[index] = tx

    def _remove(self, tx: _Transaction) -> None:
        table = self._client if tx.table is INVITE_CLIENT or tx.table is NON_INVITE_CLIENT else self._server
        if table.get(tx.key) is tx:
            del table[tx.key]
        if tx.timers:
            self._live_timers -= len(tx.timers)
            tx.timers.clear()
        if tx.ack_index is not None and self._ack_index.get(tx.ack_index) is tx:
            del self._ack_index[tx.ack_index]


def _ensure_branch(request: Request) -> str:
    items = list(request.headers)
    for i, (name, value) in enumerate(items):
        if name != "Via":
            continue
        top = split_commas(value)[0] if "," in value else value
        m = _BRANCH_RE.search(top)
        if m is not None:
            return m.group(1)
        branch = new_branch()
        items[i] = (name, value.replace(top, f"{top};branch={branch}", 1))
        request.headers = Headers(items)
        return branch
    raise LocalProtocolError("request without a Via header")


def _derived_request(invite: Request, method: str, to: str) -> Request:
    """CANCEL (§9.1) or ACK for a non-2xx (§17.1.1.3): the INVITE's Request-URI, top Via, Route,
    From, Call-ID and CSeq number, with ``method`` and the given To."""
    items: list[tuple[str, str]] = [("Via", _top_via(invite.headers))]
    items += [("Route", r) for r in invite.headers.get_all("Route")]
    items += [("From", invite.headers.get("From") or ""),
              ("To", to),
              ("Call-ID", invite.call_id),
              ("CSeq", f"{invite.cseq.number} {method}"),
              ("Max-Forwards", "70")]
    return Request(method, invite.uri, Headers(items))
