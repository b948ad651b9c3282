"""The 8-byte front-end control code carried in ``<PTZCmd>`` (PROTOCOL §6), sans-IO.

Layout: ``A5``, version/check nibble byte, address low 8 bits, instruction, data 1, data 2,
data 3 (high nibble) with the address high 4 bits (low nibble), checksum (sum of bytes 1–7 mod 256).

Speeds: ``speed`` is 0–255 for pan/tilt, focus and iris; zoom speed is a 4-bit value, so for zoom
``speed`` 0–255 is scaled to its high nibble (1–15 count as 1, so a slow zoom still moves, as WVP
does) — pass ``zoom_speed=`` for the raw 0–15 value. Cruise and scan speeds and the cruise dwell
time are 12-bit values (1–4095) split over data 2 and data 3.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import LocalProtocolError, ManscdpError

__all__ = ["PtzAction", "PtzCommand", "PtzError", "encode_ptz", "decode_ptz"]


class PtzError(LocalProtocolError, ValueError):
    """A PTZ command cannot be built from these arguments."""


class PtzAction(str, enum.Enum):
    STOP = "stop"
    RIGHT = "right"
    LEFT = "left"
    UP = "up"
    DOWN = "down"
    UP_RIGHT = "up_right"
    UP_LEFT = "up_left"
    DOWN_RIGHT = "down_right"
    DOWN_LEFT = "down_left"
    ZOOM_IN = "zoom_in"
    ZOOM_OUT = "zoom_out"
    FOCUS_FAR = "focus_far"
    FOCUS_NEAR = "focus_near"
    IRIS_OPEN = "iris_open"
    IRIS_CLOSE = "iris_close"
    FI_STOP = "fi_stop"
    PRESET_SET = "preset_set"
    PRESET_CALL = "preset_call"
    PRESET_DELETE = "preset_delete"
    CRUISE_ADD = "cruise_add"
    CRUISE_DELETE = "cruise_delete"
    CRUISE_SPEED = "cruise_speed"
    CRUISE_DWELL = "cruise_dwell"
    CRUISE_START = "cruise_start"
    SCAN_START = "scan_start"
    SCAN_LEFT = "scan_left"
    SCAN_RIGHT = "scan_right"
    SCAN_SPEED = "scan_speed"
    AUX_ON = "aux_on"
    AUX_OFF = "aux_off"


A = PtzAction

#: Pan/tilt/zoom bits of the PTZ instruction (bits 5–0: zoom out, zoom in, up, down, left, right).
_MOVE_BITS = {
    A.RIGHT: 0x01, A.LEFT: 0x02, A.DOWN: 0x04, A.UP: 0x08, A.DOWN_RIGHT: 0x05, A.DOWN_LEFT: 0x06,
    A.UP_RIGHT: 0x09, A.UP_LEFT: 0x0A, A.ZOOM_IN: 0x10, A.ZOOM_OUT: 0x20,
}
_DIRECTIONS = {bits & 0x0F: action for action, bits in _MOVE_BITS.items() if bits & 0x0F}
_FI_BITS = {A.FOCUS_FAR: 0x41, A.FOCUS_NEAR: 0x42, A.IRIS_OPEN: 0x44, A.IRIS_CLOSE: 0x48, A.FI_STOP: 0x40}
_CODES = {
    A.PRESET_SET: 0x81, A.PRESET_CALL: 0x82, A.PRESET_DELETE: 0x83, A.CRUISE_ADD: 0x84, A.CRUISE_DELETE: 0x85,
    A.CRUISE_SPEED: 0x86, A.CRUISE_DWELL: 0x87, A.CRUISE_START: 0x88, A.SCAN_START: 0x89, A.SCAN_LEFT: 0x89,
    A.SCAN_RIGHT: 0x89, A.SCAN_SPEED: 0x8A, A.AUX_ON: 0x8C, A.AUX_OFF: 0x8D,
}
_SCAN_MODE = {A.SCAN_START: 0, A.SCAN_LEFT: 1, A.SCAN_RIGHT: 2}
_BY_CODE = {code: action for action, code in _CODES.items() if code != 0x89}


@dataclass(frozen=True, slots=True)
class PtzCommand:
    """A decoded PTZCmd.

    ``pan``/``tilt``/``zoom``/``focus``/``iris`` are the directions (-1, 0, +1: left/right,
    down/up, out/in, near/far, close/open) so combined codes (pan + zoom, focus + iris) lose nothing;
    ``action`` names the primary one. ``preset`` is set for preset and cruise-point commands,
    ``group`` for cruise/scan, ``value`` for cruise speed/dwell and scan speed, ``switch`` for the
    auxiliary switch.
    """

    action: PtzAction
    instruction: int
    data1: int
    data2: int
    data3: int
    address: int = 1
    pan: int = 0
    tilt: int = 0
    zoom: int = 0
    focus: int = 0
    iris: int = 0
    pan_speed: int = 0
    tilt_speed: int = 0
    zoom_speed: int = 0
    focus_speed: int = 0
    iris_speed: int = 0
    preset: int | None = None
    group: int | None = None
    value: int | None = None
    switch: int | None = None
    checksum_ok: bool = True

    def encode(self) -> str:
        """The 16 hex characters of this command (with a correct checksum)."""
        return _pack(self.instruction, self.data1, self.data2, self.data3, self.address)


def _pack(instruction: int, d1: int, d2: int, d3: int, address: int) -> str:
    b = [0xA5, 0, address & 0xFF, instruction & 0xFF, d1 & 0xFF, d2 & 0xFF,
         ((d3 & 0x0F) << 4) | ((address >> 8) & 0x0F), 0]
    b[1] = ((b[0] >> 4) + (b[0] & 0x0F)) % 16          # version 0 in the high nibble
    b[7] = sum(b[:7]) % 256
    return bytes(b).hex().upper()


def _byte(name: str, value: int | None, low: int = 0, high: int = 255) -> int:
    if value is None:
        raise PtzError(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PtzError(f"{name} must be an integer in {low}..{high}, not {value!r}")
    return value


def encode_ptz(action: PtzAction | str, speed: int | None = None, *, address: int = 1, preset: int | None = None,
               group: int = 1, dwell: int | None = None, switch: int = 1, zoom_speed: int | None = None,
               pan_speed: int | None = None, tilt_speed: int | None = None) -> str:
    """The PTZCmd (16 upper-case hex characters) for one action.

    ``speed``: pan/tilt, focus, iris 0–255 (default 128); zoom 0–255 scaled to 0–15 (or
    ``zoom_speed`` 0–15, default 8); cruise/scan speed 1–4095 (required). ``preset`` 1–255 for
    preset commands and cruise points (``CRUISE_DELETE`` with preset 0 deletes the whole cruise);
    ``group`` 0–255 the cruise/scan group; ``dwell`` 1–4095 s; ``switch`` 0–255 the auxiliary
    switch (1 = wiper by common practice); ``address`` 0–4095.
    """
    try:
        action = PtzAction(action)
    except ValueError:
        raise PtzError(f"unknown PTZ action {action!r}") from None
    address = _byte("address", address, 0, 0xFFF)
    if action is A.STOP:
        return _pack(0, 0, 0, 0, address)
    if action in _MOVE_BITS:
        bits = _MOVE_BITS[action]
        d1 = d2 = d3 = 0
        if bits & 0x0F:
            default = 0x80 if speed is None else _byte("speed", speed)
            if bits & 0x03:
                d1 = default if pan_speed is None else _byte("pan_speed", pan_speed)
            if bits & 0x0C:
                d2 = default if tilt_speed is None else _byte("tilt_speed", tilt_speed)
        else:
            if zoom_speed is not None:
                d3 = _byte("zoom_speed", zoom_speed, 0, 15)
            elif speed is not None:
                d3 = _byte("speed", speed) >> 4 or (1 if speed else 0)
            else:
                d3 = 8
        return _pack(bits, d1, d2, d3, address)
    if action in _FI_BITS:
        value = 0x80 if speed is None else _byte("speed", speed)
        code = _FI_BITS[action]
        d1 = value if code & 0x03 else 0
        d2 = value if code & 0x0C else 0
        return _pack(code, d1, d2, 0, address)
    code = _CODES[action]
    if action in (A.PRESET_SET, A.PRESET_CALL, A.PRESET_DELETE):
        return _pack(code, 0, _byte("preset", preset, 1, 255), 0, address)
    if action is A.CRUISE_ADD:
        return _pack(code, _byte("group", group), _byte("preset", preset, 1, 255), 0, address)
    if action is A.CRUISE_DELETE:
        return _pack(code, _byte("group", group), _byte("preset", preset, 0, 255), 0, address)
    if action in (A.CRUISE_SPEED, A.CRUISE_DWELL, A.SCAN_SPEED):
        name = "dwell" if action is A.CRUISE_DWELL else "speed"
        value = _byte(name, dwell if action is A.CRUISE_DWELL else speed, 1, 0xFFF)
        return _pack(code, _byte("group", group), value & 0xFF, value >> 8, address)
    if action is A.CRUISE_START:
        return _pack(code, _byte("group", group), 0, 0, address)
    if action in _SCAN_MODE:
        return _pack(code, _byte("group", group), _SCAN_MODE[action], 0, address)
    # AUX_ON / AUX_OFF
    return _pack(code, _byte("switch", switch), 0, 0, address)


def decode_ptz(text: str) -> PtzCommand:
    """A PTZCmd string → :class:`PtzCommand`; :class:`ManscdpError` when it is not one.

    Lower-case hex and surrounding whitespace are accepted; a wrong checksum (byte 8) is reported
    in ``checksum_ok`` rather than refused, as devices do; a wrong header or check nibble, an
    unknown instruction or opposite directions at once are refused.
    """
    if not isinstance(text, str):
        raise ManscdpError("PTZCmd must be text")
    text = text.strip()
    if len(text) != 16:
        raise ManscdpError(f"PTZCmd must be 16 hex characters, got {len(text)}")
    try:
        b = bytes.fromhex(text)
    except ValueError:
        raise ManscdpError(f"PTZCmd is not hexadecimal: {text[:16]!r}") from None
    if b[0] != 0xA5:
        raise ManscdpError(f"PTZCmd must start with A5, not {b[0]:02X}")
    if (b[1] & 0x0F) != ((b[0] >> 4) + (b[0] & 0x0F) + (b[1] >> 4)) % 16:
        raise ManscdpError(f"PTZCmd check nibble wrong in byte 2 ({b[1]:02X})")
    ins, d1, d2, d3 = b[3], b[4], b[5], b[6] >> 4
    address = ((b[6] & 0x0F) << 8) | b[2]
    checksum_ok = sum(b[:7]) % 256 == b[7]
    common = dict(instruction=ins, data1=d1, data2=d2, data3=d3, address=address, checksum_ok=checksum_ok)
    if ins & 0xC0 == 0:                                        # PTZ: bits 5..0
        if ins & 0x03 == 0x03 or ins & 0x0C == 0x0C or ins & 0x30 == 0x30:
            raise ManscdpError(f"PTZCmd instruction {ins:02X} sets opposite directions")
        pan = 1 if ins & 0x01 else -1 if ins & 0x02 else 0
        tilt = 1 if ins & 0x08 else -1 if ins & 0x04 else 0
        zoom = 1 if ins & 0x10 else -1 if ins & 0x20 else 0
        if ins & 0x0F:
            action = _DIRECTIONS[ins & 0x0F]
        elif zoom:
            action = A.ZOOM_IN if zoom > 0 else A.ZOOM_OUT
        else:
            action = A.STOP
        return PtzCommand(action, pan=pan, tilt=tilt, zoom=zoom, pan_speed=d1 if pan else 0,
                          tilt_speed=d2 if tilt else 0, zoom_speed=d3 if zoom else 0, **common)
    if ins & 0xF0 == 0x40:                                     # focus / iris
        if ins & 0x03 == 0x03 or ins & 0x0C == 0x0C:
            raise ManscdpError(f"PTZCmd instruction {ins:02X} sets opposite directions")
        focus = 1 if ins & 0x01 else -1 if ins & 0x02 else 0
        iris = 1 if ins & 0x04 else -1 if ins & 0x08 else 0
        if focus:
            action = A.FOCUS_FAR if focus > 0 else A.FOCUS_NEAR
        elif iris:
            action = A.IRIS_OPEN if iris > 0 else A.IRIS_CLOSE
        else:
            action = A.FI_STOP
        return PtzCommand(action, focus=focus, iris=iris, focus_speed=d1 if focus else 0,
                          iris_speed=d2 if iris else 0, **common)
    if ins == 0x89:
        modes = {v: k for k, v in _SCAN_MODE.items()}
        if d2 not in modes:
            raise ManscdpError(f"PTZCmd scan mode {d2:02X} unknown")
        return PtzCommand(modes[d2], group=d1, **common)
    action = _BY_CODE.get(ins)
    if action is None:
        raise ManscdpError(f"PTZCmd instruction {ins:02X} unknown")
    if action in (A.PRESET_SET, A.PRESET_CALL, A.PRESET_DELETE):
        return PtzCommand(action, preset=d2, **common)
    if action in (A.CRUISE_ADD, A.CRUISE_DELETE):
        return PtzCommand(action, group=d1, preset=d2, **common)
    if action in (A.CRUISE_SPEED, A.CRUISE_DWELL, A.SCAN_SPEED):
        return PtzCommand(action, group=d1, value=d2 | (d3 << 8), **common)
    if action is A.CRUISE_START:
        return PtzCommand(action, group=d1, **common)
    return PtzCommand(action, switch=d1, **common)
