"""Queries and controls from an upper, forwarded to the device that owns the channel (PROTOCOL §11.3).

RecordInfo, PresetQuery and ConfigDownload go to the device with the channel's own ID and an SN
of ours; the device's answer (gathered across packets) goes back to the upper with the upper's SN
and the IDs it knows, in packets of ``catalog_group`` items sent one after another's 200 OK.
The 2022 queries (HomePositionQuery, CruiseTrackListQuery, CruiseTrackQuery, PTZPosition,
SDCardStatus; PROTOCOL §5.13) go down the same way and their one-packet answer is relayed
whatever it holds: only the SN and the DeviceID are the upper's.
DeviceControl (PTZCmd verbatim, and the other commands) and DeviceConfig go down the same way
when the upper is allowed to control (``allow_control``); commands with a business Response
(§5.3) get the device's ``Result`` relayed, the others end with the device's SIP 200.

Local control comes first: a control through our own API holds its channel for
``[cascade] local_control_hold`` seconds (:mod:`.arbiter`), during which the upper's commands on
it are refused (``Result ERROR`` where the command has a Response). Every control, local or from
an upper, is written to the control log (:mod:`.controllog`).

What cannot be forwarded is answered, never dropped: an unknown or unshared ID, an offline device
or a device that does not answer gives an empty list (RecordInfo, PresetQuery) or ``Result
ERROR`` (ConfigDownload, the 2022 queries, controls with a Response).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import Sip28181Error
from ..manscdp import messages as m
from ..platform.queries import Gather
from .arbiter import ControlArbiter
from .controllog import LOCAL, ControlLog, upper_source

if TYPE_CHECKING:
    from ..manscdp.codec import Envelope
    from ..sip.message import Request
    from .link import UpperLink
    from .service import Cascade

log = logging.getLogger("sip28181.cascade")

__all__ = ["Forwarder", "LOCAL_COMMANDS", "control_command", "has_response", "split_packets"]

T = TypeVar("T")

#: ``Platform.ptz``/``device_control`` command -> the element it sends (the control log's names).
LOCAL_COMMANDS = {"ptz": "PTZCmd", "tele_boot": "TeleBoot", "record": "RecordCmd", "guard": "GuardCmd",
                  "reset_alarm": "AlarmCmd", "iframe": "IFameCmd", "drag_zoom": "DragZoom",
                  "home_position": "HomePosition", "config": "DeviceConfig"}

#: DeviceControl fields -> element names, in the order a command is named by.
_CONTROL_FIELDS = (("ptz_cmd", "PTZCmd"), ("tele_boot", "TeleBoot"), ("record_cmd", "RecordCmd"),
                   ("guard_cmd", "GuardCmd"), ("alarm_cmd", "AlarmCmd"), ("iframe_cmd", "IFameCmd"),
                   ("drag_zoom_in", "DragZoomIn"), ("drag_zoom_out", "DragZoomOut"),
                   ("home_position", "HomePosition"), ("ptz_precise_ctrl", "PTZPreciseCtrl"),
                   ("format_sd_card", "FormatSDCard"), ("target_track", "TargetTrack"),
                   ("device_upgrade", "DeviceUpgrade"))
#: Commands answered by a ``Response DeviceControl`` (PROTOCOL §5.3, §5.10).
_ANSWERED = frozenset({"record_cmd", "guard_cmd", "alarm_cmd", "home_position", "ptz_precise_ctrl",
                       "format_sd_card", "target_track", "device_upgrade"})


def control_command(control: m.DeviceControl) -> str:
    """The element names of the commands in a DeviceControl (``PTZCmd``, ``RecordCmd``...)."""
    names = [name for attr, name in _CONTROL_FIELDS if getattr(control, attr) is not None]
    if control.iframe_cmd is not None and control.iframe_tag == "IFrameCmd":
        names[names.index("IFameCmd")] = "IFrameCmd"
    return "+".join(names) or "none"


def has_response(control: m.DeviceControl) -> bool:
    """Whether the device answers the control with a business Response (else only SIP 200)."""
    return any(getattr(control, attr) is not None for attr in _ANSWERED)


def _control_detail(control: m.DeviceControl) -> str:
    parts = []
    for attr, name in _CONTROL_FIELDS:
        value = getattr(control, attr)
        if value is None:
            continue
        parts.append(f"{name} {value}" if isinstance(value, (str, int)) else name)
    return ", ".join(parts)


def split_packets(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """Items in packets of ``size`` (one empty packet when there are none: SumNum 0)."""
    size = max(1, size)
    return [items[i:i + size] for i in range(0, len(items), size)] or [items[:0]]


def _record_key(item: m.RecordItem) -> tuple:
    return (item.device_id, item.start_time, item.end_time, item.file_path, item.type, item.stream_number)


def _ok(result: str | None) -> bool:
    return (result or "OK").strip().upper() == "OK"


class Forwarder:
    """The upper's RecordInfo, PresetQuery, ConfigDownload, DeviceControl and DeviceConfig."""

    #: 2022 queries relayed as they are answered (no typed Response: any content goes up)
    RELAYED = (m.HomePositionQuery, m.CruiseTrackListQuery, m.CruiseTrackQuery, m.PtzPositionQuery,
               m.SdCardStatusQuery)
    HANDLED = ("RecordInfo", "PresetQuery", "ConfigDownload", "DeviceControl", "DeviceConfig",
               *(cls.CMD_TYPE for cls in RELAYED))

    def __init__(self, cascade: "Cascade") -> None:
        self.cascade = cascade
        self.platform = cascade.platform
        self.arbiter = ControlArbiter(self.platform.config.cascade_local_control_hold)
        self.log = ControlLog(self.platform)
        self._work = {m.RecordInfoQuery: self._record_info, m.PresetQuery: self._presets,
                      m.ConfigDownloadQuery: self._config_download, m.DeviceControl: self._device_control,
                      m.DeviceConfig: self._device_config}
        self._work.update({cls: self._relay for cls in self.RELAYED})
        for cmd_type in self.HANDLED:
            cascade.message_handlers[cmd_type] = self._on_message

    @property
    def _queries(self) -> Any:
        return self.platform.management.queries

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- local control ---------------------------------------------------------------------------
    async def local(self, device_id: str, channel_id: str | None, command: str, params: dict[str, Any],
                    call: Awaitable[T]) -> T:
        """Run a control of our own (``command`` as named by ``Platform.ptz``/``device_control``,
        ``call`` sending it): it holds its target against the uppers' controls, and it is logged
        with its outcome."""
        self.arbiter.local(device_id, channel_id, self._now())
        detail = " ".join(f"{k}={v.value if isinstance(v, enum.Enum) else v}"
                          for k, v in params.items() if v is not None)
        command = LOCAL_COMMANDS.get(command, command)
        try:
            result = await call
        except (Sip28181Error, OSError) as exc:
            self.log.record(LOCAL, device_id, channel_id, command, f"{detail}: {exc}", "failed")
            raise
        shown = f" -> {result}" if isinstance(result, str) else ""
        self.log.record(LOCAL, device_id, channel_id, command, f"{detail}{shown}", "ok")
        return result

    # -- from the upper ----------------------------------------------------------------------------
    def _on_message(self, link: "UpperLink", envelope: "Envelope", request: "Request") -> None:
        message = m.from_envelope(envelope)
        work = self._work.get(type(message))
        if work is None:
            log.debug("ignored %s %s from upper", message.kind.value, message.cmd_type,
                      extra={"device_id": link.upper_id, "call_id": request.call_id})
            return
        self.platform._count("upper_requests", message.cmd_type)
        self.platform._spawn(work(link, message, request.call_id),
                             f"upper {link.upper_id} {message.cmd_type} {message.sn}")

    async def _send(self, link: "UpperLink", message: m.Message, call_id: str) -> bool:
        """One MESSAGE to the upper; False (logged) when it is not accepted."""
        try:
            response = await link.send_manscdp(message.to_xml())
        except (Sip28181Error, OSError) as exc:
            log.warning("%s %s to upper not delivered: %s", message.kind.value, message.cmd_type, exc,
                        extra={"device_id": link.upper_id, "call_id": call_id})
            return False
        if response.status >= 300:
            log.warning("upper answered %d %s to %s %s", response.status, response.reason, message.kind.value,
                        message.cmd_type, extra={"device_id": link.upper_id, "call_id": call_id})
            return False
        return True

    async def _send_parts(self, link: "UpperLink", packets: Sequence[m.Message], call_id: str) -> None:
        for packet in packets:          # the next part after the previous one's 200 OK
            if not await self._send(link, packet, call_id):
                return

    def _target(self, link: "UpperLink", upper_side_id: str) -> tuple[str, str] | None:
        if not upper_side_id or upper_side_id == link.local_id:
            return None
        return self.cascade.resolve(link, upper_side_id)

    def _upper_id(self, link: "UpperLink", device_id: str, local_id: str, asked: str, channel_id: str) -> str:
        """The upper's ID for an ID in a device's answer (``asked`` for the channel it was asked)."""
        if local_id == channel_id or not local_id:
            return asked
        return self.cascade.upper_side_id(link, device_id, local_id) or asked

    # -- queries -----------------------------------------------------------------------------------
    async def _record_info(self, link: "UpperLink", query: m.RecordInfoQuery, call_id: str) -> None:
        asked = query.device_id
        items: list[m.RecordItem] = []
        name = None
        target = self._target(link, asked)
        if target is None:
            log.info("RecordInfo from upper for %s: not shared", asked, extra={"device_id": link.upper_id,
                                                                              "call_id": call_id})
        else:
            device_id, channel_id = target
            down = dataclasses.replace(query, sn=self._queries.next_sn(), device_id=channel_id)
            try:
                gathered = await self._queries.request(device_id, down, gather=Gather(key=_record_key))
            except (Sip28181Error, OSError) as exc:
                log.info("RecordInfo for upper %s: %s", link.upper_id, exc, extra={"device_id": device_id})
            else:
                name = getattr(gathered.first, "name", None)
                items = sorted((dataclasses.replace(
                    i, device_id=self._upper_id(link, device_id, i.device_id, asked, channel_id))
                    for i in gathered.items), key=lambda i: (i.start_time or "", i.device_id))
        packets = [m.RecordInfoResponse(sn=query.sn, device_id=asked, name=name, sum_num=len(items), items=list(part))
                   for part in split_packets(items, link.settings.catalog_group)]
        await self._send_parts(link, packets, call_id)

    async def _presets(self, link: "UpperLink", query: m.PresetQuery, call_id: str) -> None:
        asked = query.device_id
        items: list[m.PresetItem] = []
        target = self._target(link, asked)
        if target is not None:
            device_id, channel_id = target
            down = m.PresetQuery(sn=self._queries.next_sn(), device_id=channel_id, extra=query.extra)
            try:
                gathered = await self._queries.request(device_id, down, gather=Gather(key=lambda p: p.preset_id))
                items = sorted(gathered.items, key=lambda p: p.preset_id or 0)
            except (Sip28181Error, OSError) as exc:
                log.info("PresetQuery for upper %s: %s", link.upper_id, exc, extra={"device_id": device_id})
        packets = [m.PresetQueryResponse(sn=query.sn, device_id=asked, sum_num=len(items), items=list(part))
                   for part in split_packets(items, max(link.settings.catalog_group, 16))]
        await self._send_parts(link, packets, call_id)

    async def _config_download(self, link: "UpperLink", query: m.ConfigDownloadQuery, call_id: str) -> None:
        asked = query.device_id
        if asked == link.local_id:
            await self._send(link, self._own_config(link, query), call_id)
            return
        target = self._target(link, asked)
        answer = await self._ask(link, query, target) if target is not None else None
        if answer is None:
            answer = m.ConfigDownloadResponse(sn=query.sn, device_id=asked, result="ERROR")
        await self._send(link, answer, call_id)

    async def _ask(self, link: "UpperLink", query: m.Message, target: tuple[str, str]) -> m.Message | None:
        """``query`` sent down to the device with the channel's own ID and our SN; its answer with
        the upper's SN and ID, or None when the device refused or did not answer."""
        device_id, channel_id = target
        down = dataclasses.replace(query, sn=self._queries.next_sn(), device_id=channel_id)
        try:
            response = await self._queries.request(device_id, down)
        except (Sip28181Error, OSError) as exc:
            log.info("%s for upper %s: %s", query.cmd_type, link.upper_id, exc, extra={"device_id": device_id})
            return None
        return dataclasses.replace(response, sn=query.sn, device_id=query.device_id)

    async def _relay(self, link: "UpperLink", query: m.Message, call_id: str) -> None:
        """A 2022 query: down with the channel's ID, the device's answer up with the upper's SN
        and ID; ``Result ERROR`` when it cannot be asked or does not answer."""
        asked = query.device_id
        target = self._target(link, asked)
        answer = None
        if target is None:
            log.info("%s from upper for %s: not shared", query.cmd_type, asked,
                     extra={"device_id": link.upper_id, "call_id": call_id})
        else:
            answer = await self._ask(link, query, target)
        if answer is None:
            answer = m.UnknownMessage(sn=query.sn, device_id=asked, unknown_kind=m.Kind.RESPONSE,
                                      unknown_cmd_type=query.cmd_type, extra=[m.XmlNode("Result", "ERROR")])
        await self._send(link, answer, call_id)

    def _own_config(self, link: "UpperLink", query: m.ConfigDownloadQuery) -> m.ConfigDownloadResponse:
        """ConfigDownload of our own ID: our registration with this upper, as BasicParam."""
        types = {t.strip().lower() for t in (query.config_type or "").split("/")}
        answer = m.ConfigDownloadResponse(sn=query.sn, device_id=link.local_id, result="OK")
        if "basicparam" in types:
            s = link.settings
            answer.basic_param = m.BasicParam(name=s.name or None, expiration=s.register_interval,
                                              heart_beat_interval=s.keepalive_interval,
                                              heart_beat_count=s.keepalive_timeout_count)
        return answer

    # -- controls ----------------------------------------------------------------------------------
    def _refusal(self, link: "UpperLink", target: tuple[str, str] | None, asked: str) -> str | None:
        """Why an upper's control is not forwarded, or None."""
        if not link.settings.allow_control:
            return "control from this upper is not allowed"
        if target is None:
            return f"{asked} is not shared with this upper"
        hold = self.arbiter.held(target[0], target[1], self._now())
        if hold is not None:
            return f"local control holds {hold.target} for {hold.until - self._now():.0f} s more"
        return None

    async def _device_control(self, link: "UpperLink", control: m.DeviceControl, call_id: str) -> None:
        answered = has_response(control)
        await self._control(link, control, call_id, control_command(control), _control_detail(control),
                            answered, m.DeviceControlResponse)

    async def _device_config(self, link: "UpperLink", config: m.DeviceConfig, call_id: str) -> None:
        await self._control(link, config, call_id, "DeviceConfig", "DeviceConfig", True, m.DeviceConfigResponse)

    async def _control(self, link: "UpperLink", message: Any, call_id: str, command: str, detail: str,
                       answered: bool, response_cls: type) -> None:
        asked = message.device_id
        source = upper_source(link.upper_id)
        target = self._target(link, asked)
        device_id, channel_id = target if target is not None else (asked, None)
        detail = f"{detail} (upper SN {message.sn}, {asked})"
        reason = self._refusal(link, target, asked)
        if reason is not None:
            self.log.record(source, device_id, channel_id, command, f"{detail}: {reason}", "refused", call_id=call_id)
            if answered:
                await self._send(link, response_cls(sn=message.sn, device_id=asked, result="ERROR"), call_id)
            return
        queries = self._queries
        # the channel's own ID: a channel behind an NVR is configured, not the NVR (a device shared
        # as itself has its device ID as the channel ID)
        down = dataclasses.replace(message, sn=queries.next_sn(), device_id=channel_id)
        result, outcome = "OK", "ok"
        try:
            state = queries.reachable(device_id)
            if isinstance(down, m.DeviceControl) and down.iframe_cmd is not None:
                version = (state.gb_version or "").strip()
                down.iframe_tag = "IFrameCmd" if version.startswith("3") else "IFameCmd"
            if answered:
                response = await queries.request(device_id, down, state=state, level=logging.INFO,
                                                 what=f"{command} from upper {link.upper_id}")
                result = (getattr(response, "result", None) or "OK").strip().upper()
            else:
                sip = await queries.send(state, queries.encode(state, down), level=logging.INFO,
                                         what=f"{command} from upper {link.upper_id}")
                if sip.status >= 300:
                    raise Sip28181Error(f"device answered {sip.status} {sip.reason}")
        except (Sip28181Error, OSError) as exc:
            result, outcome, detail = "ERROR", "failed", f"{detail}: {exc}"
        else:
            if not _ok(result):
                outcome, detail = "failed", f"{detail}: device answered {result}"
        self.log.record(source, device_id, channel_id, command, detail, outcome, call_id=call_id)
        if answered:
            await self._send(link, response_cls(sn=message.sn, device_id=asked, result=result), call_id)
