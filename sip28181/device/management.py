"""Device management for the simulator: the MANSCDP side of a camera or NVR.

Answers queries the way NVRs do (Catalog and RecordInfo split into packets that share the query's
SN and SumNum, each the next only after the previous one's 200 OK unless a window is set; DeviceInfo,
DeviceStatus, PresetQuery, ConfigDownload, the 2022 HomePositionQuery), takes controls (PTZ commands decoded and kept in
:attr:`DeviceManagement.ptz_log`; RecordCmd, GuardCmd, AlarmCmd, HomePosition and DeviceConfig
answered ``Result OK``), sends alarms and catalog changes on command, and serves SUBSCRIBE for
Catalog, Alarm and MobilePosition with NOTIFYs in the subscription dialog (positions periodically).

Bodies go out in the simulator's charset (GB2312 by default). The asyncio edge of the simulator: it
reads the wall clock only for the times it reports (DeviceTime, AlarmTime, positions).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from ..errors import ManscdpError, RemoteProtocolError, Sip28181Error
from ..manscdp import messages as m
from ..manscdp.codec import CONTENT_TYPE as MANSCDP
from ..manscdp.ptz import PtzAction, PtzCommand, decode_ptz
from ..sip.dialog import Dialog, new_tag
from ..sip.message import Request, Response
from ..transport import Flow

if TYPE_CHECKING:  # pragma: no cover
    from .simulator import DeviceSimulator

log = logging.getLogger("sip28181.device")

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
CATALOG_EVENTS = ("ON", "OFF", "VLOST", "DEFECT", "ADD", "DEL", "UPDATE")


@dataclass(slots=True)
class PtzLogEntry:
    """One PTZCmd the simulator received: the raw string and its decoding (None if refused)."""

    channel_id: str
    raw: str
    command: PtzCommand | None
    error: str | None = None


@dataclass(slots=True)
class Subscription:
    """A SUBSCRIBE served by the simulator: its dialog, event header, body and expiry."""

    kind: str                       # "Catalog", "Alarm", "MobilePosition" (the body CmdType)
    dialog: Dialog
    event: str
    flow: Flow
    query: m.Message
    expires_at: float
    notifies_sent: int = 0
    task: asyncio.Task | None = None
    terminated: bool = False


def parse_gb_time(text: str | None) -> dt.datetime | None:
    """``yyyy-MM-ddTHH:mm:ss`` (also a space for ``T``, ``.SSS``, a trailing ``Z``) or None."""
    if not text:
        return None
    value = text.strip().replace(" ", "T").rstrip("Zz")
    if "." in value:
        value = value.split(".", 1)[0]
    try:
        return dt.datetime.strptime(value, TIME_FORMAT)
    except ValueError:
        return None


def gb_time(when: dt.datetime | None = None) -> str:
    return (when or dt.datetime.now()).strftime(TIME_FORMAT)


def _chunks(items: Sequence, size: int) -> list[Sequence]:
    size = max(1, size)
    return [items[i:i + size] for i in range(0, len(items), size)] or [items[:0]]


class DeviceManagement:
    """The MANSCDP behaviour of one :class:`~sip28181.device.simulator.DeviceSimulator`."""

    def __init__(self, sim: "DeviceSimulator", *, channels: int = 1, channel_type: str = "131",
                 groups: int = 0, items_per_message: int = 2, window: int = 1, pacing: float = 0.0,
                 presets: int = 3, record_segment: float = 1800.0, record_gap: float = 0.0,
                 max_records: int = 2000, records_per_message: int | None = None,
                 manufacturer: str = "sip28181", model: str = "SIM-NVR", firmware: str = "V1.0",
                 mobile_form: str = "2016", min_position_interval: float = 0.05) -> None:
        if channels < 0 or channels > 999_999:
            raise ValueError("channels must be in 0..999999")
        if channel_type not in ("131", "132"):
            raise ValueError("channel_type must be 131 or 132")
        self.sim = sim
        self.items_per_message = max(1, items_per_message)
        self.records_per_message = max(1, records_per_message or items_per_message)
        self.window = max(1, window)
        self.pacing = max(0.0, pacing)
        self.record_segment = max(1.0, record_segment)
        self.record_gap = max(0.0, record_gap)
        self.max_records = max_records
        self.manufacturer = manufacturer
        self.model = model
        self.firmware = firmware
        self.mobile_form = mobile_form
        self.min_position_interval = min_position_interval
        self.guard = "OFFDUTY"
        self.recording: dict[str, bool] = {}
        self.home_position: m.HomePosition | None = None
        #: Every PTZCmd received, decoded, in order.
        self.ptz_log: list[PtzLogEntry] = []
        #: Every DeviceControl / DeviceConfig received, in order.
        self.controls: list[m.Message] = []
        #: Every MANSCDP message the platform sent us (queries, controls, responses such as the
        #: acknowledgement of an alarm), in order.
        self.received: list[m.Message] = []
        self.subscriptions: dict[str, Subscription] = {}   # by Call-ID
        self.catalog: dict[str, m.CatalogItem] = {}
        self.presets: dict[str, dict[int, str]] = {}
        self._preset_count = presets
        self._channel_type = channel_type
        self._position_step = 0
        self._build_catalog(channels, groups)

    # -- the catalog ---------------------------------------------------------------------------
    @property
    def domain(self) -> str:
        return self.sim.device_id[:10]

    @property
    def channel_ids(self) -> list[str]:
        """IDs of the video channels (not the organisation items), in catalog order."""
        return [cid for cid, item in self.catalog.items() if cid[10:13] in ("131", "132")]

    def channel_id(self, index: int) -> str:
        """The ID of channel ``index`` (0-based): type 131/132 in the device's domain, with serials
        that do not collide between consecutive simulated devices of the same size."""
        device = self.sim.device_id
        net = device[13] if len(device) == 20 and device[13].isdigit() else "0"
        try:
            base = (int(device[14:20]) - 1) * self._channel_span
        except ValueError:
            base = 0
        serial = (base + index + 1) % 1_000_000
        return f"{self.domain}{self._channel_type}{net}{serial:06d}"

    def _build_catalog(self, channels: int, groups: int) -> None:
        self._channel_span = max(1, channels)
        device = self.sim.device_id
        parents = [device]
        group_id = None
        if groups > 0:
            group_id = f"{self.domain}215{device[13:14] or '0'}{int(device[14:20] or 0) % 1_000_000:06d}"
            self.catalog[group_id] = m.CatalogItem(device_id=group_id, name="业务分组", parental=1)
            parents = []
            for g in range(groups):
                vid = f"{self.domain}216{device[13:14] or '0'}{(int(device[14:20] or 0) * 100 + g + 1) % 1_000_000:06d}"
                self.catalog[vid] = m.CatalogItem(device_id=vid, name=f"虚拟组织{g + 1}", parental=1,
                                                  parent_id=group_id, business_group_id=group_id)
                parents.append(vid)
        for i in range(channels):
            cid = self.channel_id(i)
            parent = parents[i % len(parents)]
            self.catalog[cid] = self._channel_item(cid, i, parent, group_id)
            self.presets[cid] = {p: f"预置位{p}" for p in range(1, self._preset_count + 1)}

    def _channel_item(self, cid: str, index: int, parent: str, group_id: str | None) -> m.CatalogItem:
        return m.CatalogItem(
            device_id=cid, name=f"通道{index + 1}", manufacturer=self.manufacturer, model="IPC",
            owner="Owner", civil_code=self.domain[:6], address=f"模拟地址{index + 1}号", parental=0,
            parent_id=parent, business_group_id=group_id, safety_way=0, register_way=1, secrecy=0,
            status="ON", longitude=round(120.0 + (index % 1000) / 10000, 6),
            latitude=round(30.0 + (index // 1000) / 10000, 6),
            info=m.CatalogInfo(ptz_type="1" if index % 2 == 0 else "3", room_type="1", supply_light_type="2",
                               download_speed="1/2/4"))

    # -- dispatch ---------------------------------------------------------------------------------
    def on_message(self, request: Request, flow: Flow) -> Response:
        """MESSAGE from the platform: answered 200 at once, the business answer follows."""
        if request.content_type and request.content_type != MANSCDP.lower():
            return Response.for_request(request, 415, "Expected Application/MANSCDP+xml", to_tag=new_tag())
        try:
            msg = m.parse(request.body)
        except ManscdpError as exc:
            log.warning("bad MANSCDP body: %s", exc.reason,
                        extra={"device_id": self.sim.device_id, "call_id": request.call_id})
            return Response.for_request(request, exc.status_hint, exc.reason, to_tag=new_tag())
        self.received.append(msg)
        handler = _HANDLERS.get(type(msg))
        if handler is None:
            if msg.kind in (m.Kind.RESPONSE, m.Kind.NOTIFY):
                return Response.for_request(request, 200, to_tag=new_tag())
            return Response.for_request(request, 415, f"Unsupported {msg.kind.value} {msg.cmd_type}",
                                        to_tag=new_tag())
        work = handler(self, msg)
        if work is not None:
            self.sim._spawn(self._run(work, msg), f"{msg.cmd_type} {msg.sn}")
        return Response.for_request(request, 200, to_tag=new_tag())

    async def _run(self, work, msg: m.Message) -> None:
        try:
            await work
        except (Sip28181Error, OSError) as exc:
            log.warning("answering %s %s failed: %s", msg.cmd_type, msg.sn, exc,
                        extra={"device_id": self.sim.device_id})
        finally:
            work.close()        # a task cancelled before it ran (simulator stopping) never awaited it

    async def send(self, msg: m.Message) -> Response:
        """One out-of-dialog MESSAGE to the platform."""
        return await self.sim.send_manscdp(msg.to_xml())

    async def send_packets(self, messages: Iterable[m.Message]) -> int:
        """Send a multi-packet answer: at most ``window`` MESSAGEs awaiting their 200 at once
        (1: each after the previous one's 200, GB/T 28181-2022 Annex M), ``pacing`` seconds apart.
        Returns how many got a 2xx."""
        sem = asyncio.Semaphore(self.window)
        ok = 0

        async def one(msg: m.Message) -> None:
            nonlocal ok
            try:
                response = await self.send(msg)
                ok += 200 <= response.status < 300
            except (Sip28181Error, OSError) as exc:
                log.warning("packet %s of %s lost: %s", msg.sn, msg.cmd_type, exc,
                            extra={"device_id": self.sim.device_id})
            finally:
                sem.release()

        tasks: list[asyncio.Future] = []
        try:
            for msg in messages:
                await sem.acquire()
                tasks.append(asyncio.ensure_future(one(msg)))
                if self.pacing:
                    await asyncio.sleep(self.pacing)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        return ok

    # -- queries ----------------------------------------------------------------------------------
    def catalog_packets(self, sn: int, items: Sequence[m.CatalogItem] | None = None) -> list[m.CatalogResponse]:
        items = list(self.catalog.values()) if items is None else list(items)
        return [m.CatalogResponse(sn=sn, device_id=self.sim.device_id, sum_num=len(items), items=list(chunk))
                for chunk in _chunks(items, self.items_per_message)]

    def _catalog(self, q: m.CatalogQuery):
        return self.send_packets(self.catalog_packets(q.sn))

    def _device_info(self, q: m.DeviceInfoQuery):
        return self.send(m.DeviceInfoResponse(
            sn=q.sn, device_id=self.sim.device_id, device_name=self.sim.name, result="OK",
            manufacturer=self.manufacturer, model=self.model, firmware=self.firmware,
            channel=len(self.channel_ids)))

    def _device_status(self, q: m.DeviceStatusQuery):
        record = "ON" if any(self.recording.values()) else "OFF"
        return self.send(m.DeviceStatusResponse(
            sn=q.sn, device_id=q.device_id or self.sim.device_id, result="OK", online="ONLINE", status="OK",
            encode_status="ON", record=record, device_time=gb_time(),
            alarm_status=[m.AlarmStatusItem(device_id=self.sim.device_id, duty_status=self.guard)]))

    def records(self, q: m.RecordInfoQuery) -> list[m.RecordItem]:
        """Recordings of the asked channel over the asked range: ``record_segment``-long files
        separated by ``record_gap``, at most ``max_records``."""
        start, end = parse_gb_time(q.start_time), parse_gb_time(q.end_time)
        target = q.device_id
        known = target in self.catalog or target == self.sim.device_id
        if start is None or end is None or end <= start or not known:
            return []
        item = self.catalog.get(target)
        name = item.name if item is not None and item.name else self.sim.name
        kind = (q.type or "time").lower()
        kind = "time" if kind == "all" else kind
        out: list[m.RecordItem] = []
        at = start
        step = dt.timedelta(seconds=self.record_segment)
        gap = dt.timedelta(seconds=self.record_gap)
        while at < end and len(out) < self.max_records:
            stop = min(at + step, end)
            seconds = (stop - at).total_seconds()
            out.append(m.RecordItem(
                device_id=target, name=name, file_path=f"/rec/{target}/{at:%Y%m%d%H%M%S}.mp4",
                address=item.address if item is not None else None, start_time=gb_time(at), end_time=gb_time(stop),
                secrecy=0, type=kind, file_size=int(seconds * 256_000), stream_number=q.stream_number))
            at = stop + gap
        return out

    def _record_info(self, q: m.RecordInfoQuery):
        recs = self.records(q)
        name = self.catalog[q.device_id].name if q.device_id in self.catalog else self.sim.name
        packets = [m.RecordInfoResponse(sn=q.sn, device_id=q.device_id, name=name, sum_num=len(recs), items=list(c))
                   for c in _chunks(recs, self.records_per_message)]
        return self.send_packets(packets)

    def _preset_query(self, q: m.PresetQuery):
        presets = self.presets.get(q.device_id, {})
        return self.send(m.PresetQueryResponse(
            sn=q.sn, device_id=q.device_id, sum_num=len(presets),
            items=[m.PresetItem(preset_id=k, preset_name=v) for k, v in sorted(presets.items())]))

    def _config_download(self, q: m.ConfigDownloadQuery):
        types = {t.strip().lower() for t in (q.config_type or "").split("/") if t.strip()}
        resp = m.ConfigDownloadResponse(sn=q.sn, device_id=self.sim.device_id, result="OK")
        if "basicparam" in types:
            resp.basic_param = m.BasicParam(
                name=self.sim.name, expiration=self.sim.expires, heart_beat_interval=int(self.sim.keepalive_interval),
                heart_beat_count=self.sim.keepalive_failures, position_capability=0)
        if "videoparamopt" in types:
            resp.video_param_opt = m.VideoParamOpt(download_speed="1/2/4", resolution="5/6")
        if "alarmreport" in types:
            resp.alarm_report = m.AlarmReport(motion_detection=1, field_detection=0)
        return self.send(resp)

    def _mobile_position_query(self, q: m.MobilePositionQuery):
        return self.send(self.position(q.sn))

    def _home_position_query(self, q: m.HomePositionQuery):
        """2022: the home position last set by a HomePosition control (disabled until then)."""
        home = self.home_position or m.HomePosition(enabled=0)
        fields = [m.XmlNode(tag, str(value)) for tag, value in (
            ("Enabled", home.enabled), ("ResetTime", home.reset_time), ("PresetIndex", home.preset_index))
            if value is not None]
        return self.send(m.UnknownMessage(sn=q.sn, device_id=q.device_id, unknown_kind=m.Kind.RESPONSE,
                                          unknown_cmd_type=q.cmd_type,
                                          extra=[m.XmlNode("Result", "OK"), m.XmlNode("HomePosition", children=fields)]))

    def _alarm_query(self, q: m.AlarmQuery):
        return self.send(m.AlarmResponse(sn=q.sn, device_id=self.sim.device_id, result="OK"))

    # -- controls ---------------------------------------------------------------------------------
    def _device_control(self, c: m.DeviceControl):
        self.controls.append(c)
        answer = False
        if c.ptz_cmd is not None:
            self._ptz(c.device_id, c.ptz_cmd, c.ptz_cmd_params)
        if c.tele_boot is not None:
            log.info("TeleBoot %s received", c.tele_boot, extra={"device_id": self.sim.device_id})
        if c.record_cmd is not None:
            self.recording[c.device_id] = c.record_cmd.strip().lower() == "record"
            answer = True
        if c.guard_cmd is not None:
            self.guard = "ONDUTY" if c.guard_cmd.strip().lower() == "setguard" else "OFFDUTY"
            answer = True
        if c.alarm_cmd is not None:
            answer = True
        if c.home_position is not None:
            self.home_position = c.home_position
            answer = True
        if c.ptz_precise_ctrl is not None or c.format_sd_card is not None or c.target_track is not None:
            answer = True
        if not answer:
            return None                 # PTZ, TeleBoot, IFameCmd, DragZoom: no business response
        return self.send(m.DeviceControlResponse(sn=c.sn, device_id=c.device_id, result="OK"))

    def _ptz(self, channel_id: str, raw: str, params: m.PtzCmdParams | None) -> None:
        try:
            cmd = decode_ptz(raw)
        except ManscdpError as exc:
            self.ptz_log.append(PtzLogEntry(channel_id, raw, None, exc.reason))
            log.warning("bad PTZCmd %r: %s", raw, exc.reason, extra={"device_id": self.sim.device_id})
            return
        self.ptz_log.append(PtzLogEntry(channel_id, raw, cmd))
        log.info("PTZ %s on %s (%s)", cmd.action.value, channel_id, raw, extra={"device_id": self.sim.device_id})
        presets = self.presets.setdefault(channel_id, {})
        if cmd.action is PtzAction.PRESET_SET and cmd.preset:
            presets[cmd.preset] = (params.preset_name if params and params.preset_name else f"预置位{cmd.preset}")
        elif cmd.action is PtzAction.PRESET_DELETE:
            presets.pop(cmd.preset or 0, None)

    def _device_config(self, c: m.DeviceConfig):
        self.controls.append(c)
        if c.basic_param is not None:
            bp = c.basic_param
            if bp.name:
                self.sim.name = bp.name
            if bp.heart_beat_interval:
                self.sim.keepalive_interval = float(bp.heart_beat_interval)
            if bp.heart_beat_count:
                self.sim.keepalive_failures = bp.heart_beat_count
            if bp.expiration:
                self.sim.expires = bp.expiration
        return self.send(m.DeviceConfigResponse(sn=c.sn, device_id=c.device_id or self.sim.device_id, result="OK"))

    # -- things the device starts ---------------------------------------------------------------------
    async def send_alarm(self, channel_id: str | None = None, *, method: int = 5, alarm_type: int | None = None,
                         priority: int = 1, description: str | None = None, image_urls: Sequence[str] = (),
                         event_type: int | None = None, time: str | None = None, longitude: float | None = None,
                         latitude: float | None = None, via: str = "auto") -> m.AlarmNotify:
        """Raise an alarm: a MESSAGE ``Notify Alarm`` (or, with an alarm subscription and ``via``
        "auto" or "notify", a NOTIFY in each subscription dialog). HJ types (100001–100009) take
        their image URLs in ``Info/ImageURL``. Returns the notification sent (its SN is what the
        platform's ``Response Alarm`` echoes; that response lands in :attr:`received`)."""
        msg = m.AlarmNotify(sn=self.sim.next_sn(), device_id=channel_id or self.sim.device_id,
                            alarm_priority=priority, alarm_method=method, alarm_time=time or gb_time(),
                            alarm_description=description, longitude=longitude, latitude=latitude,
                            alarm_type=alarm_type, event_type=event_type, image_urls=list(image_urls))
        await self._publish("Alarm", msg, via)
        return msg

    async def notify_catalog(self, event: str, channel_ids: Sequence[str] | None = None, *,
                             via: str = "auto") -> list[m.CatalogNotify]:
        """A catalog change: update the simulated catalog and tell the platform (NOTIFY in each
        catalog subscription, or MESSAGE when there is none or ``via="message"``). ``ADD`` of an
        unknown ID creates a channel; ON/OFF set its status; DEL removes it. Items of ADD and UPDATE
        carry every field, the others only DeviceID and Event."""
        event = event.upper()
        if event not in CATALOG_EVENTS:
            raise ValueError(f"catalog event must be one of {', '.join(CATALOG_EVENTS)}")
        ids = list(channel_ids) if channel_ids is not None else self.channel_ids
        items = []
        for cid in ids:
            item = self.catalog.get(cid)
            if event == "ADD" and item is None:
                index = len(self.catalog)
                item = self.catalog[cid] = self._channel_item(cid, index, self.sim.device_id, None)
                self.presets.setdefault(cid, {})
            if event in ("ON", "OFF") and item is not None:
                item.status = event
            if event == "DEL":
                self.catalog.pop(cid, None)
            if event in ("ADD", "UPDATE") and item is not None:
                items.append(dataclasses.replace(item, event=event))
            else:
                items.append(m.CatalogItem(device_id=cid, event=event))
        sn = self.sim.next_sn()
        packets = [m.CatalogNotify(sn=sn, device_id=self.sim.device_id, sum_num=len(items), items=list(chunk))
                   for chunk in _chunks(items, self.items_per_message)]
        for packet in packets:
            await self._publish("Catalog", packet, via)
        return packets

    def position(self, sn: int | None = None) -> m.MobilePositionNotify:
        """The current (moving) position as a 2016 flat or 2022 list notification."""
        self._position_step += 1
        angle = self._position_step / 10
        lon, lat = round(120.15 + 0.001 * math.cos(angle), 6), round(30.28 + 0.001 * math.sin(angle), 6)
        now = gb_time()
        sn = self.sim.next_sn() if sn is None else sn
        if self.mobile_form == "2022":
            return m.MobilePositionNotify(sn=sn, device_id=self.sim.device_id, time=now, sum_num=1, items=[
                m.MobilePositionItem(device_id=self.sim.device_id, capture_time=now, longitude=lon, latitude=lat,
                                     speed=36.0, direction=90.0, altitude=10.0, height=2.0)])
        return m.MobilePositionNotify(sn=sn, device_id=self.sim.device_id, time=now, longitude=lon, latitude=lat,
                                      speed=36.0, direction=90.0, altitude=10.0)

    async def _publish(self, kind: str, msg: m.Message, via: str) -> None:
        if via not in ("auto", "notify", "message"):
            raise ValueError("via must be auto, notify or message")
        subs = [s for s in self.subscriptions.values() if s.kind == kind and not s.terminated]
        if via == "message" or (via == "auto" and not subs):
            await self.send(msg)
            return
        for sub in subs:
            await self.notify(sub, msg)

    # -- subscriptions ----------------------------------------------------------------------------------
    def on_subscribe(self, request: Request, flow: Flow) -> Response:
        """SUBSCRIBE, dispatched by the body's CmdType as device firmware does; refreshes and
        ``Expires: 0`` arrive in the dialog."""
        sub = self.subscriptions.get(request.call_id)
        try:
            expires = request.expires
        except RemoteProtocolError as exc:
            return Response.for_request(request, 400, exc.reason, to_tag=new_tag())
        if sub is not None and request.to.tag == sub.dialog.local_tag:
            try:
                sub.dialog.receive_request(request)
            except RemoteProtocolError as exc:
                return Response.for_request(request, exc.status_hint, exc.reason, to_tag=sub.dialog.local_tag)
            return self._refresh(sub, request, 3600 if expires is None else expires)
        if request.to.tag:
            return Response.for_request(request, 481)
        try:
            query = m.parse(request.body)
        except ManscdpError as exc:
            return Response.for_request(request, exc.status_hint, exc.reason, to_tag=new_tag())
        kind = query.cmd_type if isinstance(query, (m.CatalogQuery, m.AlarmQuery, m.MobilePositionQuery)) else None
        if kind is None:
            return Response.for_request(request, 489, f"Cannot subscribe to {query.cmd_type}", to_tag=new_tag())
        expires = 3600 if expires is None else expires
        tag = new_tag()
        response = Response.for_request(request, 200, to_tag=tag)
        contact = f"<sip:{self.sim.device_id}@{self.sim.endpoint.advertised_host}:{self.sim.endpoint.port}>"
        response.headers.add("Contact", contact)
        response.headers.add("Expires", expires)
        event = request.headers.get("Event") or kind
        response.headers.add("Event", event)
        try:
            dialog = self._dialog(request, response, flow, contact)
        except RemoteProtocolError as exc:
            return Response.for_request(request, exc.status_hint, exc.reason, to_tag=tag)
        loop = asyncio.get_running_loop()
        sub = Subscription(kind, dialog, event, flow, query, loop.time() + expires)
        self.subscriptions[request.call_id] = sub
        # WVP-style: the 200 carries a Response with Result OK (Expires 0 is a fetch: _serve sends
        # the one NOTIFY, terminated, at once)
        ack = m.UnknownMessage(sn=query.sn, device_id=self.sim.device_id, unknown_kind=m.Kind.RESPONSE,
                               unknown_cmd_type=kind, extra=[m.XmlNode("Result", "OK")])
        response.body = ack.encode(self.sim.charset)
        response.headers.add("Content-Type", MANSCDP)
        sub.task = self.sim._spawn(self._serve(sub), f"{kind} subscription")
        log.info("%s subscription from %s for %s s", kind, flow, expires,
                 extra={"device_id": self.sim.device_id, "call_id": request.call_id})
        return response

    def _dialog(self, request: Request, response: Response, flow: Flow, contact: str) -> Dialog:
        from_ = request.from_
        if from_.tag is None:
            raise RemoteProtocolError("SUBSCRIBE without a From tag")
        contacts = request.contacts
        target = str(contacts[0].uri) if contacts and contacts[0].uri is not None else str(from_.uri)
        remote = str(from_).split(";tag=")[0]
        local = response.headers.get("To").split(";tag=")[0]
        return Dialog(call_id=request.call_id, local_tag=response.to.tag, remote_tag=from_.tag,
                      local_uri=local, remote_uri=remote, remote_target=target,
                      route_set=list(request.headers.get_all("Record-Route")), local_cseq=0,
                      remote_cseq=request.cseq.number, invite_cseq=0, via_transport=flow.transport,
                      via_host=self.sim.endpoint.advertised_host, via_port=self.sim.endpoint.port,
                      local_contact=contact, role="uas")

    def _refresh(self, sub: Subscription, request: Request, expires: int) -> Response:
        response = sub.dialog.response_for(request, 200)
        response.headers.add("Expires", expires)
        response.headers.add("Event", sub.event)
        sub.expires_at = asyncio.get_running_loop().time() + expires
        if expires == 0:
            self.sim._spawn(self.terminate(sub, None), "unsubscribe")
        return response

    async def _serve(self, sub: Subscription) -> None:
        """Keep one subscription: periodic positions for MobilePosition, expiry for all."""
        loop = asyncio.get_running_loop()
        interval = None
        if sub.kind == "MobilePosition":
            asked = getattr(sub.query, "interval", None) or 5
            interval = max(self.min_position_interval, float(asked))
        while not sub.terminated:
            remaining = sub.expires_at - loop.time()
            if remaining <= 0:
                await self.terminate(sub, "timeout")
                return
            if interval is not None:
                try:
                    await self.notify(sub, self.position())
                except (Sip28181Error, OSError) as exc:
                    log.warning("position NOTIFY failed: %s", exc, extra={"device_id": self.sim.device_id})
                await asyncio.sleep(min(interval, max(0.0, sub.expires_at - loop.time())))
            else:
                await asyncio.sleep(min(remaining, 1.0))

    async def notify(self, sub: Subscription, msg: m.Message, *, state: str | None = None) -> Response:
        """A NOTIFY in the subscription's dialog with ``Subscription-State`` and the Event echoed."""
        if state is None:
            remaining = max(0, int(sub.expires_at - asyncio.get_running_loop().time()))
            state = f"active;expires={remaining}"
        body = msg.encode(self.sim.charset)
        request = sub.dialog.create_request("NOTIFY", body, MANSCDP,
                                            [("Event", sub.event), ("Subscription-State", state)])
        sub.notifies_sent += 1
        return await self.sim.endpoint.request(request, sub.flow, timeout=self.sim.request_timeout)

    async def terminate(self, sub: Subscription, reason: str | None = "noresource") -> None:
        """End a subscription with a final NOTIFY (``Subscription-State: terminated``)."""
        if sub.terminated:
            return
        sub.terminated = True
        self.subscriptions.pop(sub.dialog.call_id, None)
        if sub.task is not None and sub.task is not asyncio.current_task():
            sub.task.cancel()
        state = "terminated" + (f";reason={reason}" if reason else "")
        empty: m.Message
        if sub.kind == "Catalog":
            empty = m.CatalogNotify(sn=self.sim.next_sn(), device_id=self.sim.device_id, sum_num=0)
        elif sub.kind == "MobilePosition":
            empty = self.position()
        else:
            empty = m.KeepaliveNotify(sn=self.sim.next_sn(), device_id=self.sim.device_id, status="OK")
        try:
            await self.notify(sub, empty, state=state)
        except (Sip28181Error, OSError) as exc:
            log.info("final NOTIFY not answered: %s", exc, extra={"device_id": self.sim.device_id})


_HANDLERS = {
    m.CatalogQuery: DeviceManagement._catalog,
    m.DeviceInfoQuery: DeviceManagement._device_info,
    m.DeviceStatusQuery: DeviceManagement._device_status,
    m.RecordInfoQuery: DeviceManagement._record_info,
    m.PresetQuery: DeviceManagement._preset_query,
    m.ConfigDownloadQuery: DeviceManagement._config_download,
    m.MobilePositionQuery: DeviceManagement._mobile_position_query,
    m.AlarmQuery: DeviceManagement._alarm_query,
    m.HomePositionQuery: DeviceManagement._home_position_query,
    m.DeviceControl: DeviceManagement._device_control,
    m.DeviceConfig: DeviceManagement._device_config,
    m.AlarmResponse: lambda self, msg: None,
}
