"""Events the SIP transaction layer hands to its user (the transaction user, TU).

Frozen, slotted values that check themselves when built (h11's ``_events.py`` is the model). The
``source`` of a received request is whatever hashable address the transport passed to
:meth:`~sip28181.sip.transaction.TransactionLayer.receive` (``("udp", host, port)``, a connection
id...); the layer never looks inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

from .message import Request, Response

__all__ = [
    "Event", "RequestReceived", "ResponseReceived", "AckReceived", "TransactionTimedOut",
    "TransactionTerminated",
]


class Event:
    """Base class of every transaction-layer event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class RequestReceived(Event):
    """A new request opened a server transaction; answer it with ``send_response``.

    Retransmissions of the request never produce a second event. A CANCEL arrives as its own
    request (and transaction); :meth:`TransactionLayer.cancel_target` names the INVITE it cancels.
    """

    request: Request
    source: Hashable
    transaction_key: str

    def __post_init__(self) -> None:
        if not isinstance(self.request, Request):
            raise TypeError(f"request must be a Request, not {type(self.request).__name__}")
        if self.request.method == "ACK":
            raise ValueError("an ACK is reported as AckReceived")


@dataclass(frozen=True, slots=True)
class ResponseReceived(Event):
    """A response to one of our client transactions (each provisional and the final once)."""

    response: Response
    transaction_key: str
    request: Request

    def __post_init__(self) -> None:
        if not isinstance(self.response, Response):
            raise TypeError(f"response must be a Response, not {type(self.response).__name__}")
        if not isinstance(self.request, Request):
            raise TypeError(f"request must be a Request, not {type(self.request).__name__}")


@dataclass(frozen=True, slots=True)
class AckReceived(Event):
    """An ACK for a 2xx to INVITE (end to end, outside the INVITE transaction: the dialog's job).

    ``transaction_key`` names the INVITE server transaction whose 2xx it acknowledges, or is
    ``None`` when no such transaction is known any more (a late or stray ACK).
    """

    request: Request
    source: Hashable
    transaction_key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.request, Request) or self.request.method != "ACK":
            raise TypeError("AckReceived needs an ACK request")


#: Timers after which a transaction reports :class:`TransactionTimedOut`.
TIMEOUT_TIMERS = frozenset({"B", "F", "H", "L", "C", "transport"})


@dataclass(frozen=True, slots=True)
class TransactionTimedOut(Event):
    """A transaction gave up: no final response (client, Timer B/F, or C after a provisional), no
    ACK for our final response (server, Timer H; Timer L for a 2xx), or a transport error.

    ``request`` is the transaction's request (for a server transaction: the request we answered).
    """

    transaction_key: str
    request: Request
    timer: str

    def __post_init__(self) -> None:
        if self.timer not in TIMEOUT_TIMERS:
            raise ValueError(f"unknown timeout timer {self.timer!r}")
        if not isinstance(self.request, Request):
            raise TypeError(f"request must be a Request, not {type(self.request).__name__}")


@dataclass(frozen=True, slots=True)
class TransactionTerminated(Event):
    """A server transaction was dropped because the TU never sent a final response in time.

    Normal ends (Timers D, I, J, K, M) are silent: they carry no news for the TU.
    """

    transaction_key: str
    reason: str
