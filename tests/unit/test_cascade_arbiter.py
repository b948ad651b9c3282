"""Local control priority (sans-IO: time is passed in) and the forwarding helpers."""

from __future__ import annotations

import pytest

from sip28181.cascade.arbiter import ControlArbiter
from sip28181.cascade.forward import control_command, has_response, split_packets
from sip28181.manscdp import messages as m

DEV = "44010000001180000001"
CH1 = "44010000001310000001"
CH2 = "44010000001310000002"


def test_a_local_control_holds_its_channel_for_the_hold():
    arbiter = ControlArbiter(30)
    assert arbiter.held(DEV, CH1, 100.0) is None
    arbiter.local(DEV, CH1, 100.0)
    hold = arbiter.held(DEV, CH1, 129.9)
    assert hold is not None and (hold.device_id, hold.target, hold.until) == (DEV, CH1, 130.0)
    assert arbiter.held(DEV, CH1, 130.0) is None         # the hold has ended
    assert arbiter.held(DEV, CH2, 110.0) is None         # other channels are free


def test_each_local_command_extends_the_hold():
    arbiter = ControlArbiter(10)
    arbiter.local(DEV, CH1, 0.0)
    arbiter.local(DEV, CH1, 8.0)
    assert arbiter.held(DEV, CH1, 17.0) is not None
    assert arbiter.held(DEV, CH1, 18.0) is None


def test_a_device_level_control_holds_every_channel():
    arbiter = ControlArbiter(5)
    arbiter.local(DEV, None, 0.0)
    assert arbiter.held(DEV, CH1, 1.0).target == DEV
    assert arbiter.held(DEV, None, 1.0).target == DEV
    assert arbiter.held("44010000001180000002", CH1, 1.0) is None


def test_zero_hold_never_refuses_and_release_ends_a_hold():
    assert ControlArbiter(0).held(DEV, CH1, 0.0) is None
    none = ControlArbiter(0)
    none.local(DEV, CH1, 0.0)
    assert none.held(DEV, CH1, 0.0) is None
    arbiter = ControlArbiter(60)
    arbiter.local(DEV, CH1, 0.0)
    arbiter.release(DEV, CH1)
    assert arbiter.held(DEV, CH1, 1.0) is None
    with pytest.raises(ValueError):
        ControlArbiter(-1)


def test_old_holds_are_pruned():
    arbiter = ControlArbiter(1)
    for i in range(300):
        arbiter.local(DEV, f"4401000000131{i:07d}", float(i))
    assert len(arbiter._until) < 300
    assert arbiter.held(DEV, f"4401000000131{299:07d}", 299.5) is not None


@pytest.mark.parametrize(("body", "name", "answered"), [
    ("<PTZCmd>A50F010800FA00B7</PTZCmd>", "PTZCmd", False),
    ("<TeleBoot>Boot</TeleBoot>", "TeleBoot", False),
    ("<IFrameCmd>Send</IFrameCmd>", "IFrameCmd", False),
    ("<IFameCmd>Send</IFameCmd>", "IFameCmd", False),
    ("<RecordCmd>Record</RecordCmd>", "RecordCmd", True),
    ("<GuardCmd>SetGuard</GuardCmd>", "GuardCmd", True),
    ("<HomePosition><Enabled>1</Enabled></HomePosition>", "HomePosition", True),
    ("<DragZoomIn><Length>1</Length></DragZoomIn>", "DragZoomIn", False),
])
def test_commands_are_named_and_known_to_be_answered_or_not(body, name, answered):
    control = m.parse(f"<Control><CmdType>DeviceControl</CmdType><SN>1</SN><DeviceID>{CH1}</DeviceID>"
                      f"{body}</Control>")
    assert control_command(control) == name
    assert has_response(control) is answered


def test_split_packets():
    assert split_packets([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert split_packets([], 4) == [[]]               # SumNum 0 is still one answer
    assert split_packets([1], 0) == [[1]]


def test_local_control_hold_is_configured(tmp_path):
    from sip28181.config import Config
    from sip28181.errors import ConfigError

    assert Config.load([], {}).cascade_local_control_hold == 30.0
    path = tmp_path / "c.toml"
    path.write_text("[cascade]\nlocal_control_hold = 12.5\n")
    assert Config.load(["--config", str(path)], {}).cascade_local_control_hold == 12.5
    assert Config.load([], {"SIP28181_CASCADE_LOCAL_CONTROL_HOLD": "0"}).cascade_local_control_hold == 0.0
    path.write_text("[cascade]\nlocal_control_hold = -1\n")
    with pytest.raises(ConfigError, match="cascade.local_control_hold"):
        Config.load(["--config", str(path)], {})
