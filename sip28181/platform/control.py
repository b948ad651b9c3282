"""Device control: PTZ, TeleBoot, RecordCmd, GuardCmd, AlarmCmd, IFameCmd, DragZoom, HomePosition,
DeviceConfig (PROTOCOL §5.10, §5.11).

One command per ``Control`` MESSAGE. Commands the standard answers with a business Response
(RecordCmd, GuardCmd, AlarmCmd, HomePosition, DeviceConfig: §5.3) await it and raise
:class:`~.queries.DeviceRefused` on ``Result ERROR``; the others (PTZCmd, TeleBoot, IFameCmd,
DragZoomIn/Out) end with the SIP 200, as devices send nothing more. Every command is logged at
INFO with the device ID and the Call-ID of its MESSAGE.

Quirks: ``IFameCmd`` (the 2016 schema's spelling) is sent to 2016 devices and ``IFrameCmd`` to
2022 ones (``X-GB-Ver`` 3.x); DeviceConfig always targets the device ID, never a channel (Dahua
requires it, Uniview may reboot otherwise).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import LocalProtocolError
from .queries import DeviceRefused

if TYPE_CHECKING:
    from .core import Platform
    from .queries import Queries
    from .registry import DeviceState

log = logging.getLogger("sip28181.control")

__all__ = ["Control", "RECORD", "GUARD"]

RECORD = {"start": "Record", "stop": "StopRecord"}
GUARD = {"set": "SetGuard", "reset": "ResetGuard"}


def _is_2022(state: "DeviceState") -> bool:
    return bool(state.gb_version and state.gb_version.strip().startswith("3"))


class Control:
    def __init__(self, platform: "Platform", queries: "Queries") -> None:
        self.platform = platform
        self.queries = queries

    async def _fire(self, device_id: str, message: Any, what: str) -> None:
        """Send a command without a business Response: done when the device answers 2xx."""
        state = self.queries.reachable(device_id)
        response = await self.queries.send(state, self.queries.encode(state, message), what=what, level=logging.INFO)
        if response.status >= 300:
            raise DeviceRefused(f"device answered {response.status} {response.reason} to {what}", response.status)

    async def _confirmed(self, device_id: str, message: Any, what: str, timeout: float | None) -> str:
        """Send a command and await its ``Response … Result``; ``OK`` or DeviceRefused."""
        response = await self.queries.request(device_id, message, timeout=timeout, level=logging.INFO, what=what)
        result = (getattr(response, "result", None) or "").strip().upper()
        if result and result != "OK":
            raise DeviceRefused(f"device answered {result} to {what}")
        return "OK"

    def _control(self, device_id: str, target: str | None, **fields: Any) -> Any:
        from ..manscdp import messages as m

        return m.DeviceControl(sn=self.queries.next_sn(), device_id=target or device_id, **fields)

    # -- PTZ -----------------------------------------------------------------------------------------
    async def ptz(self, device_id: str, channel_id: str | None, action: Any, speed: int | None = None,
                  **params: Any) -> str:
        """One PTZ command (``action`` a :class:`~sip28181.manscdp.ptz.PtzAction` or its value);
        returns the 16-hex PTZCmd sent. Devices keep moving until ``stop``."""
        from ..manscdp.ptz import PtzAction, encode_ptz

        try:
            action = PtzAction(action)
        except ValueError:
            raise LocalProtocolError(f"unknown PTZ action {action!r}") from None
        kwargs = {k: v for k, v in params.items() if v is not None}
        if speed is not None:
            kwargs["speed"] = speed
        try:
            cmd = encode_ptz(action, **kwargs)
        except (ValueError, TypeError) as exc:
            raise LocalProtocolError(f"bad PTZ parameters: {exc}") from None
        await self._fire(device_id, self._control(device_id, channel_id, ptz_cmd=cmd),
                         f"PTZ {action.value} {cmd} to {channel_id or device_id}")
        return cmd

    # -- DeviceControl -------------------------------------------------------------------------------
    async def tele_boot(self, device_id: str) -> None:
        await self._fire(device_id, self._control(device_id, None, tele_boot="Boot"), "TeleBoot")

    async def record(self, device_id: str, channel_id: str | None, start: bool, *,
                     stream_number: int | None = None, timeout: float | None = None) -> str:
        cmd = RECORD["start" if start else "stop"]
        return await self._confirmed(device_id, self._control(device_id, channel_id, record_cmd=cmd,
                                                              stream_number=stream_number),
                                     f"RecordCmd {cmd} to {channel_id or device_id}", timeout)

    async def guard(self, device_id: str, channel_id: str | None, arm: bool, *, timeout: float | None = None) -> str:
        cmd = GUARD["set" if arm else "reset"]
        return await self._confirmed(device_id, self._control(device_id, channel_id, guard_cmd=cmd),
                                     f"GuardCmd {cmd} to {channel_id or device_id}", timeout)

    async def reset_alarm(self, device_id: str, channel_id: str | None, *, alarm_method: str | None = None,
                          alarm_type: str | None = None, timeout: float | None = None) -> str:
        from ..manscdp import messages as m

        info = m.ControlInfo(alarm_method=alarm_method, alarm_type=alarm_type) if (alarm_method or alarm_type) else None
        return await self._confirmed(device_id, self._control(device_id, channel_id, alarm_cmd="ResetAlarm", info=info),
                                     f"AlarmCmd ResetAlarm to {channel_id or device_id}", timeout)

    async def iframe(self, device_id: str, channel_id: str | None) -> None:
        state = self.queries.reachable(device_id)
        message = self._control(device_id, channel_id, iframe_cmd="Send")
        if _is_2022(state):
            message.iframe_tag = "IFrameCmd"
        await self._fire(device_id, message, f"{message.iframe_tag} to {channel_id or device_id}")

    async def drag_zoom(self, device_id: str, channel_id: str | None, zoom_in: bool, *, length: int, width: int,
                        mid_point_x: int, mid_point_y: int, length_x: int, length_y: int) -> None:
        from ..manscdp import messages as m

        box = m.DragZoom(length=length, width=width, mid_point_x=mid_point_x, mid_point_y=mid_point_y,
                         length_x=length_x, length_y=length_y)
        name = "DragZoomIn" if zoom_in else "DragZoomOut"
        fields = {"drag_zoom_in": box} if zoom_in else {"drag_zoom_out": box}
        await self._fire(device_id, self._control(device_id, channel_id, **fields), f"{name} to {channel_id or device_id}")

    async def home_position(self, device_id: str, channel_id: str | None, *, enabled: bool, reset_time: int | None = None,
                            preset_index: int | None = None, timeout: float | None = None) -> str:
        from ..manscdp import messages as m

        home = m.HomePosition(enabled=1 if enabled else 0, reset_time=reset_time, preset_index=preset_index)
        return await self._confirmed(device_id, self._control(device_id, channel_id, home_position=home),
                                     f"HomePosition to {channel_id or device_id}", timeout)

    # -- DeviceConfig --------------------------------------------------------------------------------
    async def config(self, device_id: str, *, name: str | None = None, expiration: int | None = None,
                     heart_beat_interval: int | None = None, heart_beat_count: int | None = None,
                     timeout: float | None = None) -> str:
        """DeviceConfig BasicParam (to the device ID: PROTOCOL §5.11 vendor quirks)."""
        from ..manscdp import messages as m

        if all(v is None for v in (name, expiration, heart_beat_interval, heart_beat_count)):
            raise LocalProtocolError("DeviceConfig needs at least one BasicParam field")
        basic = m.BasicParam(name=name, expiration=expiration, heart_beat_interval=heart_beat_interval,
                             heart_beat_count=heart_beat_count)
        message = m.DeviceConfig(sn=self.queries.next_sn(), device_id=device_id, basic_param=basic)
        return await self._confirmed(device_id, message, "DeviceConfig BasicParam", timeout)
