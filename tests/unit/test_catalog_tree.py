"""Catalog items to records, and the tree under the 2016 and 2022 rules (PROTOCOL §5.4, §11.4)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sip28181.platform.catalog import build_tree, channel_from_item, kind_of, status_of
from sip28181.store.base import ChannelRecord

NVR = "44010600001180000001"
BG = "44010600002150000001"
VO1 = "44010600002160000001"
VO2 = "44010600002160000002"
CAM = "44010600001310000001"


@dataclass
class Info:
    ptz_type: str | None = None
    business_group_id: str | None = None


@dataclass
class Item:
    device_id: str | None
    name: str | None = None
    status: str | None = None
    parent_id: str | None = None
    business_group_id: str | None = None
    civil_code: str | None = None
    longitude: str | None = None
    parental: str | None = None
    info: Info | None = None
    extra: dict = field(default_factory=dict)


def rec(cid, **kw) -> ChannelRecord:
    return ChannelRecord(device_id=NVR, channel_id=cid, kind=kind_of(cid), **kw)


def test_kinds_and_status():
    assert [kind_of(x) for x in ("44", "440106", "44010600", BG, VO1, "44010600002000000001", CAM)] == [
        "region", "region", "region", "business_group", "virtual_org", "system", "channel"]
    assert [status_of(x) for x in ("ON", "OFF", "ONLINE", "OFFLINE", "OK", None, "off")] == [
        "ON", "OFF", "ON", "OFF", "ON", "ON", "OFF"]


def test_item_to_record_keeps_every_field():
    r = channel_from_item(NVR, Item(CAM, "大门", "ONLINE", NVR, None, "440106", "113.36", "0",
                                    Info("1", BG), {"Owner": "x"}))
    assert (r.channel_id, r.name, r.status, r.kind, r.parent_id, r.civil_code) == (CAM, "大门", "ON", "channel", NVR, "440106")
    assert r.business_group_id == BG           # 2016: from Info
    assert r.longitude == 113.36 and r.parental == 0
    assert r.fields == {"info": {"ptz_type": "1", "business_group_id": BG}, "extra": {"Owner": "x"}}
    assert channel_from_item(NVR, Item(None, "no id")) is None
    assert channel_from_item(NVR, Item("  ")) is None


def flat(nodes, depth=0):
    out = []
    for n in nodes:
        out.append((depth, n.id))
        out += flat(n.children, depth + 1)
    return out


def test_tree_2022_rules():
    """Regions → business group → VO (no ParentID, BusinessGroupID) → VO → channel with two parents."""
    records = [
        rec("44", name="Guangdong"), rec("4401"), rec("440106", name="Tianhe"),
        rec(BG, civil_code="440106", parent_id="44010600002000000001"),
        rec(VO1, civil_code="440106", business_group_id=BG),
        rec(VO2, civil_code="440106", parent_id=VO1, business_group_id=BG),
        rec(CAM, civil_code="440106", parent_id=f"{NVR}/{VO2}", status="ON"),
    ]
    tree = build_tree(records)
    assert flat(tree) == [(0, "44"), (1, "4401"), (2, "440106"), (3, BG), (4, VO1), (5, VO2), (6, CAM)]
    # BG under its civil code region: its ParentID (the platform) is not in the catalog


def test_tree_2016_rules_and_multi_parents():
    records = [
        rec(BG), rec(VO1, parent_id=BG), rec(VO2, parent_id=VO1),
        rec(CAM, parent_id=VO2, business_group_id=BG),
        rec("44010600001310000002", business_group_id=BG),            # only Info/BusinessGroupID
        rec("44010600001310000003", parent_id=f"{VO1}/{VO2}"),         # 2022 multi-valued
        rec("44010600001310000004", parent_id=NVR),                    # under the device itself: a root
    ]
    tree = build_tree(records)
    assert flat(tree) == [
        (0, BG), (1, VO1), (2, VO2), (3, CAM), (3, "44010600001310000003"),
        (2, "44010600001310000003"), (1, "44010600001310000002"), (0, "44010600001310000004")]


def test_tree_cycles_are_broken_and_nothing_is_lost():
    a, b = "44010600002160000010", "44010600002160000011"
    tree = build_tree([rec(a, parent_id=b), rec(b, parent_id=a), rec(CAM, parent_id=a)])
    ids = [i for _, i in flat(tree)]
    assert set(ids) == {a, b, CAM} and len(ids) == 3


def test_tree_of_10000_channels_and_deep_chain():
    records = [rec(VO1)] + [rec(f"440106000013100{i:05d}", parent_id=VO1) for i in range(10_000)]
    tree = build_tree(records)
    assert len(tree) == 1 and len(tree[0].children) == 10_000
    chain = [rec(f"440106000021600{i:05d}", parent_id=f"440106000021600{i - 1:05d}" if i else None)
             for i in range(3000)]
    d = build_tree(chain)[0].as_dict()
    depth = 0
    while d["children"]:
        d = d["children"][0]
        depth += 1
    assert depth == 2999
