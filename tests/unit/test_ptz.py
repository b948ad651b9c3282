"""PTZCmd: the worked examples of PROTOCOL §6.3, a round trip of every action, and refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from sip28181.errors import ManscdpError, Sip28181Error
from sip28181.manscdp.ptz import PtzAction as A, PtzCommand, PtzError, decode_ptz, encode_ptz

VECTORS = [  # (description, encode_ptz arguments, expected string) — PROTOCOL §6.3
    ("stop", (A.STOP,), {}, "A50F0100000000B5"),
    ("pan right 0x80", (A.RIGHT, 0x80), {}, "A50F010180000036"),
    ("up-left 0x40", (A.UP_LEFT, 0x40), {}, "A50F010A4040003F"),
    ("zoom in speed 5", (A.ZOOM_IN,), {"zoom_speed": 5}, "A50F011000005015"),
    ("focus far 0x20", (A.FOCUS_FAR, 0x20), {}, "A50F014120000016"),
    ("iris open 0x20", (A.IRIS_OPEN, 0x20), {}, "A50F014400200019"),
    ("set preset 5", (A.PRESET_SET,), {"preset": 5}, "A50F01810005003B"),
    ("call preset 5", (A.PRESET_CALL,), {"preset": 5}, "A50F01820005003C"),
    ("delete preset 5", (A.PRESET_DELETE,), {"preset": 5}, "A50F01830005003D"),
    ("cruise 1 add preset 5", (A.CRUISE_ADD,), {"group": 1, "preset": 5}, "A50F01840105003F"),
    ("cruise 1 speed 300", (A.CRUISE_SPEED, 300), {"group": 1}, "A50F0186012C1078"),
    ("start cruise 1", (A.CRUISE_START,), {"group": 1}, "A50F01880100003E"),
    ("start scan 1", (A.SCAN_START,), {"group": 1}, "A50F01890100003F"),
    ("scan 1 left bound", (A.SCAN_LEFT,), {"group": 1}, "A50F018901010040"),
    ("wiper on", (A.AUX_ON,), {"switch": 1}, "A50F018C01000042"),
    ("pan right 0x10 address 0x123", (A.RIGHT, 0x10), {"address": 0x123}, "A50F2301100001E9"),
]


@pytest.mark.parametrize("name, args, kwargs, expected", VECTORS, ids=[v[0] for v in VECTORS])
def test_protocol_vectors(name, args, kwargs, expected):
    assert encode_ptz(*args, **kwargs) == expected
    cmd = decode_ptz(expected)
    assert cmd.action is args[0] and cmd.checksum_ok and cmd.encode() == expected
    assert decode_ptz(expected.lower()) == cmd


def test_decoded_fields_of_the_vectors():
    right = decode_ptz("A50F010180000036")
    assert (right.pan, right.tilt, right.zoom, right.pan_speed, right.address) == (1, 0, 0, 0x80, 1)
    up_left = decode_ptz("A50F010A4040003F")
    assert (up_left.pan, up_left.tilt, up_left.pan_speed, up_left.tilt_speed) == (-1, 1, 0x40, 0x40)
    zoom = decode_ptz("A50F011000005015")
    assert (zoom.zoom, zoom.zoom_speed) == (1, 5)
    assert decode_ptz("A50F0186012C1078").value == 300 and decode_ptz("A50F0186012C1078").group == 1
    assert decode_ptz("A50F01820005003C").preset == 5
    assert decode_ptz("A50F2301100001E9").address == 0x123
    assert decode_ptz("A50F018C01000042").switch == 1
    iris = decode_ptz("A50F014400200019")
    assert (iris.iris, iris.iris_speed, iris.focus) == (1, 0x20, 0)


ROUND_TRIP = [
    (A.STOP, {}), (A.RIGHT, {"speed": 1}), (A.LEFT, {"speed": 255}), (A.UP, {"speed": 7}), (A.DOWN, {}),
    (A.UP_RIGHT, {"pan_speed": 10, "tilt_speed": 20}), (A.UP_LEFT, {}), (A.DOWN_RIGHT, {"speed": 99}),
    (A.DOWN_LEFT, {"speed": 0}), (A.ZOOM_IN, {"speed": 255}), (A.ZOOM_OUT, {"zoom_speed": 15}),
    (A.FOCUS_FAR, {"speed": 3}), (A.FOCUS_NEAR, {}), (A.IRIS_OPEN, {}), (A.IRIS_CLOSE, {"speed": 200}),
    (A.FI_STOP, {}), (A.PRESET_SET, {"preset": 1}), (A.PRESET_CALL, {"preset": 255}),
    (A.PRESET_DELETE, {"preset": 17}), (A.CRUISE_ADD, {"group": 2, "preset": 9}),
    (A.CRUISE_DELETE, {"group": 2, "preset": 0}), (A.CRUISE_SPEED, {"group": 3, "speed": 4095}),
    (A.CRUISE_DWELL, {"group": 3, "dwell": 30}), (A.CRUISE_START, {"group": 0}), (A.SCAN_START, {"group": 4}),
    (A.SCAN_LEFT, {"group": 4}), (A.SCAN_RIGHT, {"group": 4}), (A.SCAN_SPEED, {"group": 4, "speed": 1}),
    (A.AUX_ON, {"switch": 2}), (A.AUX_OFF, {}),
]


def test_round_trip_covers_every_action():
    assert {a for a, _ in ROUND_TRIP} == set(A)


@pytest.mark.parametrize("action, kwargs", ROUND_TRIP, ids=[a.value for a, _ in ROUND_TRIP])
@pytest.mark.parametrize("address", [0, 1, 0xFFF])
def test_round_trip_every_action(action, kwargs, address):
    text = encode_ptz(action, address=address, **kwargs)
    assert len(text) == 16 and text == text.upper() and int(text, 16) >= 0
    cmd = decode_ptz(text)
    assert cmd.action is action and cmd.address == address and cmd.checksum_ok
    assert cmd.encode() == text
    if "preset" in kwargs:
        assert cmd.preset == kwargs["preset"]
    if "group" in kwargs:
        assert cmd.group == kwargs["group"]
    if action in (A.CRUISE_SPEED, A.SCAN_SPEED):
        assert cmd.value == kwargs["speed"]
    if action is A.CRUISE_DWELL:
        assert cmd.value == kwargs["dwell"]
    if "switch" in kwargs:
        assert cmd.switch == kwargs["switch"]
    if action in (A.RIGHT, A.LEFT) and "speed" in kwargs:
        assert cmd.pan_speed == kwargs["speed"] and cmd.tilt_speed == 0
    if action is A.UP_RIGHT:
        assert (cmd.pan_speed, cmd.tilt_speed) == (10, 20)


def test_string_actions_and_zoom_speed_scaling():
    assert encode_ptz("right", 0x80) == "A50F010180000036"
    assert decode_ptz(encode_ptz(A.ZOOM_IN, 0x50)).zoom_speed == 5
    assert decode_ptz(encode_ptz(A.ZOOM_IN, 3)).zoom_speed == 1        # slow, but still moving
    assert decode_ptz(encode_ptz(A.ZOOM_IN, 0)).zoom_speed == 0
    assert decode_ptz(encode_ptz(A.ZOOM_OUT)).zoom_speed == 8


def test_combined_codes_decode_every_direction():
    pan_zoom = decode_ptz(_pack_raw(0x19, 0x40, 0x00, 0x3))         # up-right + zoom in
    assert (pan_zoom.action, pan_zoom.pan, pan_zoom.tilt, pan_zoom.zoom, pan_zoom.zoom_speed) == (A.UP_RIGHT, 1, 1, 1, 3)
    focus_iris = decode_ptz(_pack_raw(0x46, 0x10, 0x20, 0))
    assert (focus_iris.action, focus_iris.focus, focus_iris.iris) == (A.FOCUS_NEAR, -1, 1)


def _pack_raw(ins, d1, d2, d3, address=1):
    b = [0xA5, 0x0F, address & 0xFF, ins, d1, d2, (d3 << 4) | (address >> 8)]
    return bytes(b + [sum(b) % 256]).hex().upper()


def test_bad_checksum_is_reported_not_refused():
    cmd = decode_ptz("A50F010180000037")
    assert cmd.action is A.RIGHT and not cmd.checksum_ok and cmd.encode() == "A50F010180000036"


@pytest.mark.parametrize("text, words", [
    ("A50F01018000003", "16 hex"),
    ("A50F01018000003600", "16 hex"),
    ("A50F0101800000ZZ", "hexadecimal"),
    ("B50F010180000036", "A5"),
    ("A50E010180000036", "check nibble"),
    (_pack_raw(0x03, 1, 0, 0), "opposite"),
    (_pack_raw(0x0C, 0, 1, 0), "opposite"),
    (_pack_raw(0x30, 0, 0, 1), "opposite"),
    (_pack_raw(0x43, 1, 0, 0), "opposite"),
    (_pack_raw(0x8B, 0, 0, 0), "unknown"),
    (_pack_raw(0xFF, 0, 0, 0), "unknown"),
    (_pack_raw(0x89, 1, 3, 0), "scan mode"),
])
def test_invalid_commands_are_refused_clearly(text, words):
    with pytest.raises(ManscdpError) as info:
        decode_ptz(text)
    assert words in str(info.value) and info.value.status_hint == 400


@pytest.mark.parametrize("args, kwargs", [
    (("spin",), {}), ((A.RIGHT, 256), {}), ((A.RIGHT, -1), {}), ((A.RIGHT, 1.5), {}),
    ((A.PRESET_CALL,), {}), ((A.PRESET_CALL,), {"preset": 0}), ((A.PRESET_SET,), {"preset": 256}),
    ((A.CRUISE_SPEED,), {}), ((A.CRUISE_SPEED, 4096), {}), ((A.CRUISE_DWELL,), {"dwell": 0}),
    ((A.CRUISE_ADD,), {}), ((A.ZOOM_IN,), {"zoom_speed": 16}), ((A.STOP,), {"address": 4096}),
    ((A.AUX_ON,), {"switch": 300}), ((A.RIGHT,), {"speed": True}),
])
def test_invalid_arguments_raise_ptz_error(args, kwargs):
    with pytest.raises(PtzError) as info:
        encode_ptz(*args, **kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, Sip28181Error) and str(info.value)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=20) | st.binary(min_size=8, max_size=8).map(lambda b: b.hex()))
def test_fuzz_decode_never_raises_anything_else(text):
    try:
        cmd = decode_ptz(text)
    except ManscdpError:
        return
    assert isinstance(cmd, PtzCommand) and decode_ptz(cmd.encode()).action is cmd.action
