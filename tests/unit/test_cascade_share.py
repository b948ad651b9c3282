"""The shared catalog an upper sees: selection, ID mapping, 2016/2022 tree rules, diffs, packets."""

from __future__ import annotations

import dataclasses

import pytest

from sip28181.cascade.settings import parse_upper
from sip28181.cascade.share import IdCollisionError, IdMapper, LocalDevice, build_shared, diff, packets
from sip28181.manscdp import messages as m
from sip28181.platform.catalog import channel_from_item

UPPER = "44000000002000000001"
ROOT = "44010000002000000001"
NVR = "44010600001180000001"
BG = "44010600002150000001"
VO1 = "44010600002160000001"
VO2 = "44010600002160000002"
CH1 = "44010600001310000001"
CH2 = "44010600001310000002"
CH3 = "44010600001310000003"
IPC = "44010600001320000009"


def settings(**kw):
    return parse_upper({"sip_id": UPPER, "host": "127.0.0.1", **kw})


def nvr(online: bool = True, ch2_status: str = "ON") -> LocalDevice:
    items = [
        m.CatalogItem(device_id="440106", name="Tianhe"),
        m.CatalogItem(device_id=BG, name="Environment", parental=1, civil_code="440106"),
        m.CatalogItem(device_id=VO1, name="Plant A", parent_id=BG, business_group_id=BG, parental=1),
        m.CatalogItem(device_id=VO2, name="Plant A / Outfalls", parent_id=VO1, business_group_id=BG, parental=1),
        m.CatalogItem(device_id=CH1, name="Outfall 1", manufacturer="Acme", model="IPC", owner="Owner",
                      civil_code="440106", address="Outfall 1", parental=0, parent_id=VO2, status="ON",
                      safety_way=0, register_way=1, secrecy=0, password="secret", longitude=113.5,
                      latitude=23.1, info=m.CatalogInfo(ptz_type="1", position_type="3", business_group_id=BG)),
        m.CatalogItem(device_id=CH2, name="Gate", parent_id=NVR, civil_code="440106", status=ch2_status),
        m.CatalogItem(device_id=CH3, name="Yard", parent_id=f"{NVR}/{VO1}", business_group_id=BG, status="ON"),
    ]
    records = [channel_from_item(NVR, i) for i in items]
    return LocalDevice(NVR, "NVR", online, records, "Acme", "NVR-16")


def ipc() -> LocalDevice:
    return LocalDevice(IPC, "Lone IPC", True, [], "Acme", "IPC-1")


def build(devices, **kw):
    return build_shared(devices, settings(**kw), root_id=ROOT, root_name="City")


def by_id(shared):
    return {n.upper_id: n for n in shared.nodes}


def test_share_all_2016_tree_and_fields():
    shared = build([nvr(), ipc()])
    nodes = by_id(shared)
    assert [n.kind for n in shared.nodes[:1]] == ["system"]
    assert set(nodes) == {ROOT, "440106", BG, VO1, VO2, CH1, CH2, CH3, IPC}
    root = nodes[ROOT].item
    assert root.parental == 1 and root.civil_code == "440100" and root.status == "ON"
    assert nodes["440106"].item.parent_id is None and nodes["440106"].item.name == "Tianhe"
    assert nodes[BG].item.parent_id == ROOT
    # 2016: a VO under the group names the group as parent; under a VO, that VO
    assert nodes[VO1].item.parent_id == BG and nodes[VO1].item.info.business_group_id == BG
    assert nodes[VO2].item.parent_id == VO1
    ch1 = nodes[CH1].item
    assert ch1.parent_id == VO2 and ch1.info.business_group_id == BG and ch1.business_group_id is None
    assert ch1.owner == "Owner" and ch1.info.position_type == "3" and ch1.password is None
    assert (ch1.manufacturer, ch1.longitude, ch1.status) == ("Acme", 113.5, "ON")
    # a channel mounted under its NVR only hangs under its region (as in the local tree)
    assert nodes[CH2].item.parent_id == "440106"
    assert nodes[CH3].item.parent_id == VO1
    # a device without catalog channels is shared as a channel
    assert nodes[IPC].item.parent_id == ROOT and nodes[IPC].item.name == "Lone IPC"
    assert shared.resolve(IPC) == (IPC, IPC)
    assert shared.resolve(CH1) == (NVR, CH1) and shared.resolve(BG) is None and shared.resolve("x") is None
    body = m.CatalogResponse(sn=1, device_id=ROOT, items=[ch1]).encode()
    assert b"secret" not in body


def test_2022_tree_rules():
    nodes = by_id(build([nvr()], tree="2022"))
    vo1 = nodes[VO1].item
    assert vo1.parent_id is None and vo1.business_group_id == BG and vo1.info is None
    assert nodes[VO2].item.parent_id == VO1 and nodes[VO2].item.business_group_id == BG
    ch1 = nodes[CH1].item
    assert ch1.business_group_id == BG and ch1.info.business_group_id is None
    assert ch1.owner is None and ch1.safety_way is None and ch1.info.position_type is None
    assert ch1.info.ptz_type == "1"
    assert nodes[CH3].item.parent_id == VO1
    assert nodes[CH2].item.parent_id == "440106"


def test_share_list_and_offline_device():
    shared = build([nvr(online=False), ipc()], share=[CH1])
    nodes = by_id(shared)
    assert set(nodes) == {ROOT, BG, VO1, VO2, "440106", CH1}
    assert nodes[CH1].item.status == "OFF" and nodes[CH1].status == "OFF"
    shared = build([nvr(), ipc()], share=[IPC], platform_node=False)
    assert [n.upper_id for n in shared.nodes] == [IPC]
    assert shared.nodes[0].item.parent_id is None


def test_upper_and_self_never_shared_and_empty_platform_skipped():
    lower = LocalDevice("44010600002000000005", "lower platform", True, [])
    me = LocalDevice(ROOT, "me", True, [])
    upper = LocalDevice(UPPER, "upper", True, [])
    shared = build([lower, me, upper])
    assert [n.upper_id for n in shared.nodes] == [ROOT]
    assert shared.nodes[0].item.parental == 0


def test_prefix_and_explicit_mapping():
    mapped = "45000000001310000077"
    shared = build([nvr(), ipc()], ids="map", id_prefix="4500", id_map={CH1: mapped})
    nodes = by_id(shared)
    assert ROOT in nodes and "440106" in nodes           # our ID and regions are never mapped
    assert mapped in nodes and CH1 not in nodes
    bg, vo1, vo2 = ("4500" + x[4:] for x in (BG, VO1, VO2))
    assert nodes[mapped].item.parent_id == vo2 and nodes[mapped].item.info.business_group_id == bg
    assert nodes[vo2].item.parent_id == vo1 and nodes[vo1].item.parent_id == bg
    assert shared.resolve(mapped) == (NVR, CH1)
    assert shared.upper_side_id(NVR, CH1) == mapped
    assert shared.upper_side_id(NVR, CH2) == "4500" + CH2[4:]
    assert shared.resolve("4500" + CH2[4:]) == (NVR, CH2)
    assert shared.resolve(CH2) is None
    assert shared.upper_side_id(NVR, "44010600001319999999") is None
    assert not shared.conflicts


def test_collision_is_refused_and_reported():
    mapper = IdMapper(settings(ids="map", id_map={CH1: CH2}))
    assert mapper.claim(CH1) == CH2
    with pytest.raises(IdCollisionError, match=f"{CH1} and {CH2} would both appear as {CH2}"):
        mapper.claim(CH2)
    shared = build([nvr()], ids="map", id_map={CH1: CH2})
    assert len(shared.conflicts) == 1 and CH2 in shared.conflicts[0]
    assert shared.resolve(CH2) == (NVR, CH1)           # the first holder keeps the ID
    assert len(shared.channels) == 2


def test_subtree_query():
    shared = build([nvr(), ipc()])
    assert {n.upper_id for n in shared.subtree(VO2)} == {VO2, CH1}
    assert {n.upper_id for n in shared.subtree(VO1)} == {VO1, VO2, CH1, CH3}
    assert len(shared.subtree(ROOT)) == len(shared.nodes)
    assert shared.subtree("44999999992160000001") is None


def test_diff_events():
    old = build([nvr(), ipc()])
    assert diff(old, old) == []
    new = build([nvr(ch2_status="OFF")])
    events = {i.device_id: i for i in diff(old, new)}
    assert events[CH2].event == "OFF" and events[CH2].name is None
    assert events[IPC].event == "DEL"
    assert set(events) == {CH2, IPC}
    back = {i.device_id: i for i in diff(new, old)}
    assert back[IPC].event == "ADD" and back[IPC].name == "Lone IPC"
    assert back[CH2].event == "ON"
    device = nvr()
    renamed = dataclasses.replace(device, channels=[
        dataclasses.replace(r, name="Renamed") if r.channel_id == CH1 else r for r in device.channels])
    events = diff(build([device]), build([renamed]))
    assert [(i.device_id, i.event, i.name) for i in events] == [(CH1, "UPDATE", "Renamed")]
    faulty = dataclasses.replace(device, channels=[
        dataclasses.replace(r, status="OFF", fault="VLOST") if r.channel_id == CH1 else r for r in device.channels])
    events = diff(build([device]), build([faulty]))
    assert [(i.device_id, i.event) for i in events] == [(CH1, "VLOST")]
    added = diff(None, build([ipc()]))
    assert {i.event for i in added} == {"ADD"}


def test_packets():
    items = [m.CatalogItem(device_id=str(i)) for i in range(9)]
    assert [len(p) for p in packets(items, 4)] == [4, 4, 1]
    assert packets([], 4) == [[]]
