"""MANSCDP queries as awaitables: send a Query/Control MESSAGE, await the device's Response.

The business answer is a separate MESSAGE from the device, correlated by (device, CmdType, SN)
(PROTOCOL §5.1, §14.3). The query is registered *before* its MESSAGE is sent, so answers that
overtake the 200 OK of the query (devices that send their Response first) are matched too.

What we accept from devices, in order (:class:`Correlator`):

1. exact ``(device, CmdType, SN)``, where *device* is the registered device that sent the
   Response (its From user), never the ``DeviceID`` of the body: NVRs echo the channel ID or
   their own ID inconsistently;
2. an answer with another SN, or none, when exactly one query of that CmdType is open for that
   device (devices that answer with SN 0, their own counter, or drop the element). The SN it
   used is remembered, so the later packets of a multi-packet answer match exactly;
3. anything else is unsolicited: late packets of a query that already ended, or a device
   pushing answers nobody asked for. The caller decides (the catalog merges them).

Multi-packet answers (Catalog, RecordInfo, PresetQuery) are gathered by :class:`Gather`: items
keyed for de-duplication (retransmitted or repeated packets), any order, complete when the
number of distinct items reaches ``SumNum`` (``SumNum`` 0: empty; no ``SumNum`` in any packet:
the packet is the whole answer, as devices that omit it send everything at once). A
query times out ``timeout`` seconds after it was sent when nothing came, and ``idle_timeout``
seconds after the last packet once packets flow: a timeout with items keeps them and marks the
result ``partial`` (devices announce a SumNum they never reach); without any it raises
:class:`QueryTimeout`. Each packet costs O(items in it), whatever the size of the answer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import NotFoundError, RemoteProtocolError, TransactionError
from ..manscdp.codec import CONTENT_TYPE as MANSCDP_CONTENT_TYPE
from ..sip.message import Response

if TYPE_CHECKING:
    from ..transport import Flow
    from .core import Platform
    from .registry import DeviceState

log = logging.getLogger("sip28181.manscdp")

__all__ = ["Correlator", "DeviceRefused", "Gather", "Gathered", "Pending", "QueryTimeout", "Queries"]

T = TypeVar("T")



class QueryTimeout(TransactionError):
    """The device did not answer a query (or control) in time (HTTP 504)."""


class DeviceRefused(RemoteProtocolError):
    """The device refused a request: a SIP error to the MESSAGE, or ``Result ERROR`` (HTTP 502)."""

    def __init__(self, reason: str, sip_status: int | None = None) -> None:
        super().__init__(reason, 502)
        self.sip_status = sip_status


class Gather(Generic[T]):
    """Items of a multi-packet answer, de-duplicated by ``key(item)``."""

    __slots__ = ("key", "items", "sum_num", "packets", "duplicates")

    def __init__(self, key: Callable[[T], Hashable]) -> None:
        self.key = key
        self.items: dict[Hashable, T] = {}
        self.sum_num: int | None = None
        self.packets = 0
        self.duplicates = 0

    def add(self, sum_num: int | None, items: Iterable[T]) -> bool:
        """Take one packet; True when the answer is complete."""
        self.packets += 1
        if sum_num is not None and sum_num >= 0:
            self.sum_num = sum_num
        store = self.items
        key = self.key
        for item in items:
            k = key(item)
            if k is None:
                continue
            if k in store:
                self.duplicates += 1
            store[k] = item     # a repeated item: the later copy wins (UPDATE semantics)
        return self.complete

    @property
    def complete(self) -> bool:
        if self.sum_num is None:
            return self.packets > 0     # no SumNum at all: the one packet is the whole answer
        return len(self.items) >= self.sum_num


@dataclass(slots=True)
class Gathered(Generic[T]):
    """The outcome of a multi-packet query."""

    items: list[T]
    sum_num: int | None
    partial: bool
    """True when the query timed out before ``sum_num`` distinct items arrived."""
    packets: int
    duplicates: int
    first: Any = None
    """The first Response packet (for its header fields: DeviceID, Name, ...)."""


@dataclass(slots=True, eq=False)
class Pending:
    device_id: str
    cmd_type: str
    sn: int
    future: asyncio.Future
    gather: Gather | None = None
    items_of: Callable[[Any], Iterable[Any]] | None = None
    first: Any = None
    aliases: set[int] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None
    idle_timeout: float = 0.0

    def resolve(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)

    def gathered(self, partial: bool) -> Gathered:
        g = self.gather
        assert g is not None
        return Gathered(list(g.items.values()), g.sum_num, partial, g.packets, g.duplicates, self.first)


class Correlator:
    """Open queries by (device, CmdType, SN), with the fallbacks of the module docstring. Sans-IO."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, int], Pending] = {}
        self._by_cmd: dict[tuple[str, str], list[Pending]] = {}

    def open(self, pending: Pending) -> None:
        key = (pending.device_id, pending.cmd_type, pending.sn)
        if key in self._by_key:
            raise ValueError(f"query {key} is already open")
        self._by_key[key] = pending
        self._by_cmd.setdefault(key[:2], []).append(pending)

    def close(self, pending: Pending) -> None:
        for sn in (pending.sn, *pending.aliases):
            if self._by_key.get((pending.device_id, pending.cmd_type, sn)) is pending:
                del self._by_key[(pending.device_id, pending.cmd_type, sn)]
        group = self._by_cmd.get((pending.device_id, pending.cmd_type))
        if group is not None:
            if pending in group:
                group.remove(pending)
            if not group:
                del self._by_cmd[(pending.device_id, pending.cmd_type)]

    def match(self, device_id: str, cmd_type: str, sn: int | None) -> Pending | None:
        if sn is not None:
            pending = self._by_key.get((device_id, cmd_type, sn))
            if pending is not None:
                return pending
        group = self._by_cmd.get((device_id, cmd_type))
        if group is not None and len(group) == 1:
            pending = group[0]
            if sn is not None and (device_id, cmd_type, sn) not in self._by_key:
                pending.aliases.add(sn)
                self._by_key[(device_id, cmd_type, sn)] = pending
            return pending
        return None

    def __len__(self) -> int:
        return sum(len(g) for g in self._by_cmd.values())


class Queries:
    """Sends MANSCDP requests to registered devices and matches their Responses."""

    def __init__(self, platform: "Platform", timeout: float = 10.0) -> None:
        self.platform = platform
        self.timeout = timeout
        self.correlator = Correlator()
        # unique per peer for the lifetime of a request (PROTOCOL §5.1); random start so a restart
        # does not reuse the SNs of answers still in flight
        self._sn = itertools.count(random.randint(1, 1_000_000))

    def next_sn(self) -> int:
        sn = next(self._sn)
        if sn >= 2**31:
            self._sn = itertools.count(1)
            sn = next(self._sn)
        return sn

    # -- devices --------------------------------------------------------------------------------
    def reachable(self, device_id: str) -> "DeviceState":
        """The device's state if it can be asked now; NotFoundError when unknown or offline."""
        state = self.platform.registry.get(device_id)
        if state is None:
            raise NotFoundError(f"device {device_id} not found")
        if state.status != "online" or state.flow is None:
            raise NotFoundError(f"device {device_id} is offline")
        return state

    async def send(self, state: "DeviceState", body: bytes, *, timeout: float | None = None,
                   what: str = "MESSAGE", level: int = logging.DEBUG) -> Response:
        """One out-of-dialog MESSAGE with a MANSCDP body; its final SIP response."""
        platform = self.platform
        flow: Flow = state.flow  # type: ignore[assignment]
        request = platform.endpoint.build_request(
            "MESSAGE", f"sip:{state.device_id}@{flow.host}:{flow.port}",
            from_uri=f"sip:{platform.sip_id}@{platform.domain}",
            to_uri=f"sip:{state.device_id}@{platform.domain}", flow=flow, body=body,
            content_type=MANSCDP_CONTENT_TYPE)
        log.log(level, "sending %s", what, extra={"device_id": state.device_id, "call_id": request.call_id})
        platform._count("sip_messages", "out", "MESSAGE")
        response = await platform.endpoint.request(request, flow, timeout=timeout or self.timeout)
        if response.status >= 300:
            log.log(max(level, logging.INFO), "%s answered %d %s", what, response.status, response.reason,
                    extra={"device_id": state.device_id, "call_id": request.call_id})
        return response

    # -- queries --------------------------------------------------------------------------------
    async def request(self, device_id: str, message: Any, *, cmd_type: str | None = None,
                      gather: Gather | None = None, items_of: Callable[[Any], Iterable[Any]] | None = None,
                      timeout: float | None = None, idle_timeout: float | None = None,
                      state: "DeviceState | None" = None, level: int = logging.DEBUG,
                      what: str | None = None) -> Any:
        """Send ``message`` (a codec message with ``sn``) and await its Response.

        Returns the Response message, or a :class:`Gathered` when ``gather`` is given. Raises
        :class:`NotFoundError` (unknown/offline device), :class:`QueryTimeout`,
        :class:`DeviceRefused` (SIP error to the MESSAGE before any answer).
        """
        state = state or self.reachable(device_id)
        timeout = timeout or self.timeout
        cmd_type = cmd_type or message.CMD_TYPE
        loop = asyncio.get_running_loop()
        pending = Pending(state.device_id, cmd_type, message.sn, loop.create_future(), gather, items_of,
                          idle_timeout=idle_timeout or timeout)
        self.correlator.open(pending)
        pending.timer = loop.call_later(timeout, self._expire, pending, timeout)
        what = what or f"{cmd_type} query SN {message.sn}"
        sender = loop.create_task(self._send_query(state, message, pending, timeout, what, level),
                                  name=f"{device_id} {cmd_type} {message.sn}")
        try:
            return await pending.future
        finally:
            self.correlator.close(pending)
            if pending.timer is not None:
                pending.timer.cancel()
            if not sender.done():
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)

    async def _send_query(self, state: "DeviceState", message: Any, pending: Pending, timeout: float,
                          what: str, level: int) -> None:
        try:
            response = await self.send(state, self.encode(state, message), timeout=timeout, what=what, level=level)
        except TransactionError:
            # the 200 may be lost while the answer still comes: the query's own timer decides
            log.debug("no SIP answer to %s query SN %d", pending.cmd_type, pending.sn,
                      extra={"device_id": state.device_id})
            return
        if response.status >= 300 and pending.first is None:
            pending.fail(DeviceRefused(f"device answered {response.status} {response.reason} to {what}",
                                       response.status))

    def encode(self, state: "DeviceState", message: Any) -> bytes:
        charset = state.extra.get("charset") if isinstance(state.extra.get("charset"), str) else None
        return message.encode(charset=charset) if charset else bytes(message)

    def _expire(self, pending: Pending, timeout: float) -> None:
        pending.timer = None
        if pending.gather is not None and pending.gather.packets:
            log.info("%s answer partial: %d of %s items after a timeout", pending.cmd_type,
                     len(pending.gather.items), pending.gather.sum_num, extra={"device_id": pending.device_id})
            pending.resolve(pending.gathered(partial=True))
        else:
            pending.fail(QueryTimeout(f"device {pending.device_id} did not answer {pending.cmd_type} "
                                      f"(SN {pending.sn}) within {timeout:g} s"))

    def on_response(self, device_id: str, message: Any) -> bool:
        """A Response from ``device_id``; False when no open query wants it (unsolicited)."""
        pending = self.correlator.match(device_id, message.cmd_type, getattr(message, "sn", None))
        if pending is None or pending.future.done():
            return False
        if message.sn != pending.sn and pending.first is None:
            log.debug("%s answered with SN %s for query SN %d", pending.cmd_type, message.sn, pending.sn,
                      extra={"device_id": device_id})
        if pending.first is None:
            pending.first = message
        if pending.gather is None:
            pending.resolve(message)
            return True
        items = pending.items_of(message) if pending.items_of is not None else getattr(message, "items", ())
        if pending.gather.add(getattr(message, "sum_num", None), items or ()):
            pending.resolve(pending.gathered(partial=False))
        else:
            if pending.timer is not None:
                pending.timer.cancel()
            loop = asyncio.get_running_loop()
            pending.timer = loop.call_later(pending.idle_timeout, self._expire, pending, pending.idle_timeout)
        return True
