"""The upper-side ID of a wholly shared device (what its own alarms go up as)."""

from __future__ import annotations

from sip28181.cascade.settings import parse_upper
from sip28181.cascade.share import LocalDevice, build_shared
from sip28181.manscdp import messages as m
from sip28181.platform.catalog import channel_from_item

UPPER = "44000000002000000001"
ROOT = "44010000002000000001"
NVR = "44010600001180000001"
CH1 = "44010600001310000001"
CH2 = "44010600001310000002"
IPC = "44010600001320000009"


def devices() -> list[LocalDevice]:
    items = [m.CatalogItem(device_id=c, name=c[-1], parent_id=NVR, status="ON") for c in (CH1, CH2)]
    return [LocalDevice(NVR, "NVR", True, [channel_from_item(NVR, i) for i in items]),
            LocalDevice(IPC, "Lone IPC", True, [])]


def build(**kw):
    return build_shared(devices(), parse_upper({"sip_id": UPPER, "host": "127.0.0.1", **kw}), root_id=ROOT)


def test_device_ids_follow_the_channel_mapping():
    shared = build(ids="map", id_prefix="4488")
    assert shared.device_upper_id(NVR) == "4488" + NVR[4:]
    assert shared.device_upper_id(IPC) == "4488" + IPC[4:]        # shared as a channel: that node's ID
    assert shared.node("4488" + IPC[4:]).local_id == IPC
    assert shared.node("4488" + NVR[4:]) is None                   # the NVR is no catalog node
    assert shared.resolve("4488" + NVR[4:]) is None
    assert not shared.conflicts


def test_only_wholly_shared_devices_get_one():
    shared = build(share=[CH1, IPC])
    assert shared.device_upper_id(NVR) is None and shared.device_upper_id(IPC) == IPC
    assert build(share=[NVR]).device_upper_id(NVR) == NVR


def test_device_id_colliding_with_a_node_is_left_out():
    shared = build(ids="map", id_map={NVR: CH2})
    assert shared.device_upper_id(NVR) is None
    assert any(NVR in c and CH2 in c for c in shared.conflicts)
    assert shared.resolve(CH2) == (NVR, CH2)                       # the channel keeps its ID
