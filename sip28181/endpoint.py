"""The asyncio adapter around the sans-IO SIP core: transport + transaction layer + timers.

Like aioquic's ``QuicConnectionProtocol``: the only place that reads the loop clock and arms a
timer for the transaction layer. Requests that open a server transaction go to ``on_request``;
``request()`` sends one through a client transaction and awaits its final response;
``invite()`` does the same for an INVITE and also owns the UAC duties around it: the ACK for a 2xx
(re-sent for each retransmitted 2xx), CANCEL when the caller gives up while the INVITE is pending,
and ACK + BYE for a 2xx that arrives after the caller gave up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Iterable

from .errors import LocalProtocolError, RemoteProtocolError, TransactionError
from .sip.events import AckReceived, RequestReceived, ResponseReceived, TransactionTimedOut
from .sip.dialog import Dialog, build_request, new_call_id
from .sip.message import Request, Response
from .sip.transaction import TransactionLayer
from .transport import Flow, SipTransport

log = logging.getLogger("sip28181.sip")

RequestHandler = Callable[[Request, Flow], None]

#: Seconds between two wake-ups for transaction timers, at most.
TIMER_RESOLUTION = 0.01


class _Invite:
    """An INVITE client transaction the endpoint follows for its caller (see ``invite()``)."""

    __slots__ = ("key", "request", "flow", "future", "on_provisional", "provisional", "abandoned",
                 "cancel_sent")

    def __init__(self, key: str, request: Request, flow: Flow, future: asyncio.Future,
                 on_provisional: Callable[[Response], None] | None) -> None:
        self.key = key
        self.request = request
        self.flow = flow
        self.future = future
        self.on_provisional = on_provisional
        self.provisional = False
        self.abandoned = False
        self.cancel_sent = False


class SipEndpoint:
    def __init__(self, on_request: RequestHandler, *, user_agent: str = "sip28181",
                 on_connection_lost: Callable[[Flow], None] | None = None,
                 on_parse_error: Callable[[Flow, RemoteProtocolError], None] | None = None,
                 max_transactions: int = 500_000) -> None:
        self.on_request = on_request
        self.user_agent = user_agent
        self.on_parse_error = on_parse_error
        self.layer = TransactionLayer(max_server_transactions=max_transactions)
        self._connection_lost_cb = on_connection_lost
        self.transport = SipTransport(self._on_message, on_error=self._on_error,
                                      on_connection_lost=self._on_connection_lost)
        self._pending: dict[str, asyncio.Future] = {}
        self._invites: dict[str, _Invite] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._last_fire = float("-inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self.advertised_host = "127.0.0.1"
        self.port = 0
        self.on_ack: Callable[[Request, Flow], None] | None = None
        self._dispatching = False
        self._current: tuple[Request, str] | None = None
        #: Consulted before the transaction layer: returns True when it answered the request
        #: statelessly (:meth:`respond_stateless`), as a registrar does with digest challenges.
        self.stateless: Callable[[Request, Flow], bool] | None = None

    async def start(self, host: str = "0.0.0.0", port: int = 5060, *, advertised_host: str | None = None,
                    udp: bool = True, tcp: bool = True) -> int:
        self._loop = asyncio.get_running_loop()
        self.port = await self.transport.listen(host, port, udp=udp, tcp=tcp)
        if advertised_host:
            self.advertised_host = advertised_host
        elif host not in ("0.0.0.0", "::", ""):
            self.advertised_host = host
        return self.port

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(TransactionError("endpoint closed"))
        self._pending.clear()
        for inv in self._invites.values():
            if not inv.future.done() and not inv.abandoned:
                inv.future.set_exception(TransactionError("endpoint closed"))
        self._invites.clear()
        await self.transport.close()

    # -- incoming -------------------------------------------------------------------------------
    def _on_message(self, message: Request | Response, flow: Flow) -> None:
        if self.stateless is not None and isinstance(message, Request) and self.stateless(message, flow):
            return
        now = self._now()
        events = self.layer.receive(message, flow, now, flow.transport != "UDP")
        self._dispatching = True      # answers given during dispatch are flushed once, below
        try:
            for event in events:
                self._dispatch(event)
        finally:
            self._dispatching = False
            self._current = None
            self._flush()
            self._arm()

    def _dispatch(self, event: object) -> None:
        if isinstance(event, RequestReceived):
            self._current = (event.request, event.transaction_key)
            self.on_request(event.request, event.source)
        elif isinstance(event, ResponseReceived):
            inv = self._invites.get(event.transaction_key)
            if inv is not None:
                self._invite_response(inv, event.response)
            elif event.response.status >= 200:
                fut = self._pending.pop(event.transaction_key, None)
                if fut is not None and not fut.done():
                    fut.set_result(event.response)
        elif isinstance(event, TransactionTimedOut):
            inv = self._invites.pop(event.transaction_key, None)
            if inv is not None:
                if not inv.future.done() and not inv.abandoned:
                    inv.future.set_exception(TransactionError(f"no answer to INVITE ({event.timer})"))
                return
            fut = self._pending.pop(event.transaction_key, None)
            if fut is not None and not fut.done():
                fut.set_exception(TransactionError(f"no answer to {event.request.method} (timeout)"))
        elif isinstance(event, AckReceived):
            if self.on_ack is not None:
                self.on_ack(event.request, event.source)

    def _on_connection_lost(self, flow: Flow) -> None:
        events = self.layer.connection_lost(flow, self._now())
        self._flush()
        for event in events:
            self._dispatch(event)
        self._flush()
        self._arm()
        if self._connection_lost_cb is not None:
            self._connection_lost_cb(flow)

    def _on_error(self, flow: Flow, exc: RemoteProtocolError, data: bytes) -> None:
        if self.on_parse_error is not None:
            self.on_parse_error(flow, exc)

    # -- outgoing -------------------------------------------------------------------------------
    def respond(self, response: Response) -> None:
        """Answer a request received through ``on_request`` (matched by Via branch)."""
        self._add_server(response)
        key = None
        current = self._current
        if current is not None:
            # the request being dispatched: its transaction key is known, no need to recompute it
            req_h, resp_h = current[0].headers, response.headers
            if req_h.get("Call-ID") == resp_h.get("Call-ID") and req_h.get("CSeq") == resp_h.get("CSeq"):
                key = current[1]
        self.layer.send_response(response, self._now(), key)
        if not self._dispatching:
            self._flush()
            self._arm()

    def _add_server(self, response: Response) -> None:
        if not any(k == "Server" or k == "User-Agent" for k, _ in response.headers):
            response.headers.add("Server", self.user_agent)

    def respond_stateless(self, response: Response, flow: Flow) -> None:
        """Answer outside any transaction (RFC 3261 §8.2.7): a retransmitted request is simply
        answered again. Only for answers that change no state, such as a digest challenge."""
        self._add_server(response)
        self.transport.send(response.encode(), flow)

    async def request(self, request: Request, flow: Flow, timeout: float | None = None) -> Response:
        """Send ``request`` on ``flow`` through a client transaction; the final response."""
        loop = self._loop or asyncio.get_running_loop()
        key = self.layer.send_request(request, flow, self._now(), flow.transport != "UDP")
        fut = loop.create_future()
        self._pending[key] = fut
        self._flush()
        self._arm()
        try:
            if timeout is None:
                return await fut
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise TransactionError(f"no answer to {request.method} within {timeout} s") from None
        finally:
            self._pending.pop(key, None)

    def send_nowait(self, request: Request, flow: Flow) -> str:
        """Send ``request`` through a client transaction nobody awaits (its answer is dropped):
        a BYE for a call we give up, a CANCEL. Returns the transaction key."""
        key = self.layer.send_request(request, flow, self._now(), flow.transport != "UDP")
        if not self._dispatching:
            self._flush()
            self._arm()
        return key

    async def invite(self, request: Request, flow: Flow, timeout: float | None = None, *,
                     on_provisional: Callable[[Response], None] | None = None
                     ) -> tuple[Response, Dialog | None]:
        """Send an INVITE; its final response and, for a 2xx, the dialog it created.

        The ACK for a 2xx is built by :meth:`Dialog.create_ack` and sent at once, and again for
        each retransmission of that 2xx (RFC 3261 §13.2.2.4). When the caller stops waiting (the
        awaitable is cancelled, or ``timeout`` passes: :class:`TransactionError`), a CANCEL is sent
        once a provisional response has come (§9.1); a 2xx arriving anyway is ACKed and ended
        with BYE. Non-2xx finals are ACKed by the transaction layer.
        """
        if request.method != "INVITE":
            raise LocalProtocolError("invite() sends INVITE requests only")
        loop = self._loop or asyncio.get_running_loop()
        key = self.layer.send_request(request, flow, self._now(), flow.transport != "UDP")
        inv = _Invite(key, request, flow, loop.create_future(), on_provisional)
        self._invites[key] = inv
        self._flush()
        self._arm()
        try:
            if timeout is None:
                return await asyncio.shield(inv.future)
            return await asyncio.wait_for(asyncio.shield(inv.future), timeout)
        except asyncio.TimeoutError:
            self._abandon(inv)
            raise TransactionError(f"no final answer to INVITE within {timeout} s") from None
        except asyncio.CancelledError:
            self._abandon(inv)
            raise

    def _abandon(self, inv: _Invite) -> None:
        """The caller gave up on ``inv``: CANCEL it, or end the call it already got."""
        inv.abandoned = True
        if inv.future.done():
            if not inv.future.cancelled() and inv.future.exception() is None:
                _response, dialog = inv.future.result()
                if dialog is not None:
                    self._bye_nowait(dialog, inv.flow)
            return
        if inv.provisional:
            self._cancel(inv)

    def _cancel(self, inv: _Invite) -> None:
        if inv.cancel_sent:
            return
        inv.cancel_sent = True
        try:
            cancel = self.layer.create_cancel(inv.key)
        except LocalProtocolError:
            return          # already answered finally: the final response path ends it
        cancel.headers.add("User-Agent", self.user_agent)
        self.send_nowait(cancel, inv.flow)

    def _bye_nowait(self, dialog: Dialog, flow: Flow) -> None:
        bye = dialog.create_request("BYE", headers=[("User-Agent", self.user_agent)])
        self.send_nowait(bye, flow)

    def _invite_response(self, inv: _Invite, response: Response) -> None:
        status = response.status
        if status < 200:
            inv.provisional = True
            if inv.abandoned:
                self._cancel(inv)
            elif inv.on_provisional is not None:
                try:
                    inv.on_provisional(response)
                except Exception:
                    log.exception("provisional-response callback failed")
            return
        del self._invites[inv.key]
        dialog: Dialog | None = None
        if status < 300:
            dialog = self._ack_2xx(inv, response)
            if inv.abandoned and dialog is not None:
                self._bye_nowait(dialog, inv.flow)
        if not inv.future.done() and not inv.abandoned:
            inv.future.set_result((response, dialog))

    def _ack_2xx(self, inv: _Invite, response: Response) -> Dialog | None:
        """The dialog of a 2xx and its ACK (sent now, re-sent for retransmissions), or None when
        the 2xx cannot form a dialog (no To tag)."""
        try:
            dialog = Dialog.from_uac(inv.request, response)
        except RemoteProtocolError:
            if response.to.tag is None:
                log.warning("2xx to INVITE without a To tag: cannot acknowledge it",
                            extra={"call_id": response.call_id})
                return None
            # a 2xx without Contact (seen in the field): keep the Request-URI as the target
            patched = Response(response.status, response.reason, response.headers.copy(), response.body)
            patched.headers.add("Contact", f"<{inv.request.uri}>")
            dialog = Dialog.from_uac(inv.request, patched)
        ack = dialog.create_ack(headers=[("User-Agent", self.user_agent)])
        self.layer.send_ack(ack, inv.flow, inv.key)
        if not self._dispatching:
            self._flush()
        return dialog

    def build_request(self, method: str, uri: str, *, from_uri: str, to_uri: str, flow: Flow,
                      call_id: str | None = None, from_tag: str | None = None, cseq: int = 1,
                      body: bytes = b"", content_type: str | None = None,
                      extra: Iterable[tuple[str, object]] = ()) -> Request:
        """An out-of-dialog request from this endpoint: :func:`~sip28181.sip.dialog.build_request`
        with our advertised address in the Via, on ``flow``'s transport, and our User-Agent."""
        return build_request(method, uri, from_uri, to_uri, flow.transport, self.advertised_host, self.port,
                             cseq, call_id=call_id or new_call_id(self.advertised_host), from_tag=from_tag,
                             body=body, content_type=content_type,
                             extra_headers=[("User-Agent", self.user_agent), *extra])

    # -- timers ---------------------------------------------------------------------------------
    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def _flush(self) -> None:
        for data, dest in self.layer.datagrams_to_send():
            self.transport.send(data, dest)

    def _arm(self) -> None:
        """Keep one loop timer at the layer's earliest deadline, at most every TIMER_RESOLUTION.

        Deadlines are coarsened: thousands of transactions a second end on Timer J/K, and one
        wake-up per ending would cost more than the transactions themselves. A retransmission
        late by a few milliseconds is harmless (T1 is 500 ms).
        """
        current = self._timer_at
        if current is not None and current <= self._now() + self.layer.t1:
            return      # every deadline a message can add is at least T1 away: none can be earlier
        deadline = self.layer.get_timer()
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_at = None
            return
        if current is not None and current <= deadline + TIMER_RESOLUTION:
            return                      # the armed wake-up comes early enough
        if self._timer is not None:
            self._timer.cancel()
        loop = self._loop or asyncio.get_running_loop()
        at = max(deadline, self._last_fire + TIMER_RESOLUTION)
        self._timer_at = at
        self._timer = loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self._last_fire = self._now()
        events = self.layer.handle_timer(now)
        self._flush()
        for event in events:
            self._dispatch(event)
        self._flush()
        self._arm()
