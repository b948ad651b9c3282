"""A device for device-management tests: the simulator over real sockets, answering MANSCDP
queries with scripted packets (whatever a test wants a field device to do)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Callable

import aiohttp

from sip28181.config import Config
from sip28181.device import DeviceSimulator
from sip28181.manscdp import messages as m
from sip28181.sip.dialog import new_tag
from sip28181.sip.message import Request, Response
from sip28181.server import Server

from .conftest import SERVER_ID, Api

NVR = "34020000001180000001"


def channel_id(i: int) -> str:
    return f"340200000013100{i:05d}"


def catalog_items(n: int, *, start: int = 0, **fields: Any) -> list[m.CatalogItem]:
    def item(i: int) -> m.CatalogItem:
        values: dict[str, Any] = dict(name=f"Camera {i}", manufacturer="Example", model="IPC", parent_id=NVR,
                                      status="ON", civil_code="340200")
        values.update(fields)
        return m.CatalogItem(device_id=channel_id(i), **values)
    return [item(i) for i in range(start, start + n)]


def catalog_packets(sn: int, device_id: str, items: list, per_packet: int = 4, sum_num: int | None = None) -> list[m.Message]:
    total = len(items) if sum_num is None else sum_num
    if not items:
        return [m.CatalogResponse(sn=sn, device_id=device_id, sum_num=total, items=[])]
    return [m.CatalogResponse(sn=sn, device_id=device_id, sum_num=total, items=items[i:i + per_packet])
            for i in range(0, len(items), per_packet)]


class ScriptedDevice:
    """``answers[CmdType] = fn(query) -> list of Message | str (raw XML)`` sent back in order, each
    after the platform's 200 to the previous one (as 2022 Annex M devices pace them).

    ``early``: the answers go out *before* the 200 OK of the query (a 100 Trying holds it).
    ``status``: the SIP status to answer queries with (a failing device)."""

    def __init__(self, server, device_id: str = NVR, **kw: Any) -> None:
        kw.setdefault("keepalive_interval", 30)
        self.sim = DeviceSimulator(device_id, server_id=SERVER_ID, server_port=server.sip_port, **kw)
        self.device_id = device_id
        self.sim.request_handlers["MESSAGE"] = self._on_message
        self.sim.request_handlers["SUBSCRIBE"] = self._on_subscribe
        self.received: list[m.Message] = []
        self.requests: list[Request] = []
        self.subscribes: list[Request] = []
        self.answers: dict[str, Callable[[m.Message], list]] = {}
        self.early = False
        self.status = 200
        self.subscribe_status = 200
        self.subscribe_expires: int | None = None
        self.forget_dialogs = False       # answer in-dialog SUBSCRIBEs 481 (a rebooted device)
        self.sent: list[Response] = []
        self._tasks: set[asyncio.Task] = set()
        self._tags: dict[str, str] = {}

    async def __aenter__(self) -> "ScriptedDevice":
        await self.sim.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sim.stop()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_message(self, request: Request, flow) -> Response | None:
        message = m.parse(request.body)
        self.received.append(message)
        self.requests.append(request)
        if self.status != 200:
            return Response.for_request(request, self.status, to_tag=new_tag())
        answer = self.answers.get(message.cmd_type)
        packets = answer(message) if answer is not None else []
        if self.early and packets:
            self.spawn(self._send_then_ok(packets, request))
            return Response.for_request(request, 100)
        if packets:
            self.spawn(self.send(packets))
        return None

    async def _send_then_ok(self, packets: list, request: Request) -> None:
        await self.send(packets)
        self.sim.endpoint.respond(Response.for_request(request, 200, to_tag=new_tag()))

    async def send(self, packets: list) -> None:
        for packet in packets:
            xml = packet if isinstance(packet, str) else packet.to_xml()
            self.sent.append(await self.sim.send_manscdp(xml))

    def _on_subscribe(self, request: Request, flow) -> Response:
        self.subscribes.append(request)
        if self.forget_dialogs and request.to.tag:
            return Response.for_request(request, 481)
        response = Response.for_request(request, self.subscribe_status, to_tag=self.sub_tag(request))
        if self.subscribe_status == 200:
            expires = request.expires if self.subscribe_expires is None else self.subscribe_expires
            response.headers.add("Expires", expires)
            response.headers.add("Contact", f"<sip:{self.device_id}@127.0.0.1:{self.sim.endpoint.port}>")
        return response

    def sub_tag(self, request: Request) -> str:
        """One To tag per subscription dialog (in-dialog refreshes carry it already)."""
        tag = request.to.tag
        if tag:
            return tag
        return self._tags.setdefault(request.call_id, new_tag())

    async def notify(self, subscribe: Request, message: m.Message | str, state: str = "active;expires=3000",
                     cseq: int = 1) -> Response:
        """A NOTIFY in the dialog of ``subscribe`` (what the device sends for a subscription)."""
        flow = await self.sim.server_flow()
        xml = message if isinstance(message, str) else message.to_xml()
        from sip28181.manscdp.charset import encode_body

        request = self.sim.endpoint.build_request(
            "NOTIFY", f"sip:{SERVER_ID}@127.0.0.1:{self.sim.server_port}",
            from_uri=f"sip:{self.device_id}@{SERVER_ID[:10]}", to_uri=subscribe.headers.get("From"),
            flow=flow, call_id=subscribe.call_id, from_tag=self.sub_tag(subscribe), cseq=cseq,
            body=encode_body(xml, self.sim.charset), content_type="Application/MANSCDP+xml",
            extra=[("Event", subscribe.headers.get("Event")), ("Subscription-State", state)])
        return await self.sim.endpoint.request(request, flow, timeout=5)


@contextlib.asynccontextmanager
async def scripted_server(config: Config):
    """A running server with a scripted NVR registered and online, and an API client:
    ``(server, api, device)``; everything is stopped on exit."""
    srv = Server(config)
    await srv.start()
    try:
        async with aiohttp.ClientSession() as session, ScriptedDevice(srv) as dev:
            yield srv, Api(session, f"http://127.0.0.1:{srv.http_port}"), dev
    finally:
        await srv.stop()
