"""Incremental updates of the shared catalog equal a rebuild: random changes applied by
``update_status``/``update_devices`` (falling back to ``build_shared`` as the northbound does)
against the catalog built from scratch after each change, node by node, and their diffs event by
event."""

from __future__ import annotations

import dataclasses
import random

import pytest

from sip28181.cascade.settings import parse_upper
from sip28181.cascade.share import LocalDevice, SharedCatalog, build_shared, diff, update_devices, update_status
from sip28181.store.base import ChannelRecord

UPPER = "44000000002000000001"
ROOT = "44010000002000000001"
REGIONS = ("44", "4401", "440106", "440107")


def device_id(n: int, kind: str = "118") -> str:
    return f"4401060000{kind}{n:07d}"


class World:
    """Devices and their catalogs, changed at random."""

    def __init__(self, rng: random.Random, *, shared_orgs: bool, duplicates: bool) -> None:
        self.rng = rng
        self.shared_orgs = shared_orgs      # the same region/group IDs in several devices
        self.duplicates = duplicates        # the same channel ID under two devices
        self.serial = 0
        self.devices: dict[str, LocalDevice] = {}
        for n in range(rng.randint(2, 6)):
            self.add_device(n)

    def new_id(self, kind: str, d: int) -> str:
        self.serial += 1
        return f"4401060000{kind}{d:02d}{self.serial:05d}"

    def orgs(self, dev: str, d: int) -> list[ChannelRecord]:
        rng = self.rng
        out: list[ChannelRecord] = []
        if rng.random() < 0.5:
            codes = REGIONS if self.shared_orgs else (f"4401{d:02d}", f"4401{d:02d}01")
            out += [ChannelRecord(dev, c, name=f"region {c}", kind="region") for c in codes[:rng.randint(1, 2)]]
        if rng.random() < 0.7:
            bg = "44010600002150000001" if self.shared_orgs and rng.random() < 0.5 else self.new_id("215", d)
            out.append(ChannelRecord(dev, bg, name=f"group {d}", kind="business_group", civil_code="440106"))
            vos: list[str] = []
            for _ in range(rng.randint(0, 3)):
                vo = self.new_id("216", d)
                parent = rng.choice(vos + [bg, bg])
                out.append(ChannelRecord(dev, vo, name=f"vo {vo[-3:]}", kind="virtual_org", parent_id=parent,
                                         business_group_id=bg, civil_code="440106"))
                vos.append(vo)
        return out

    def channel(self, dev: str, d: int, orgs: list[ChannelRecord]) -> ChannelRecord:
        rng = self.rng
        parent = rng.choice([o.channel_id for o in orgs] + [dev, None]) if orgs else rng.choice([dev, None])
        groups = [o.channel_id for o in orgs if o.kind == "business_group"]
        cid = self.new_id("131", d)
        if self.duplicates and rng.random() < 0.1 and self.devices:
            other = rng.choice(list(self.devices.values()))
            ids = [c.channel_id for c in other.channels if c.kind == "channel"]
            cid = rng.choice(ids) if ids else cid
        status = rng.choice(("ON", "ON", "OFF"))
        return ChannelRecord(
            dev, cid, name=f"camera {cid[-4:]}", status=status, fault=rng.choice((None, None, "VLOST")) if status == "OFF" else None,
            parent_id=parent, business_group_id=rng.choice(groups + [None]), civil_code=rng.choice(("440106", None)),
            manufacturer=rng.choice(("Acme", None)), address=f"road {cid[-3:]}", longitude=113.25,
            fields={"owner": "o", "safety_way": "0", "secrecy": "0", "info": {"ptz_type": "1", "position_type": "2"}})

    def add_device(self, n: int) -> str:
        rng = self.rng
        kind = rng.choice(("118", "118", "132", "200"))
        dev = device_id(n, kind)
        recs = self.orgs(dev, n)
        if kind != "132" or rng.random() < 0.3:
            recs += [self.channel(dev, n, recs) for _ in range(rng.randint(0 if kind != "118" else 1, 6))]
        self.devices[dev] = LocalDevice(dev, f"device {n}", rng.random() < 0.8, recs, rng.choice(("Acme", None)), "M1")
        return dev

    # -- changes: each returns what it changed, as the platform's events would tell ----------------
    def status_change(self) -> tuple[str, str, str] | None:
        candidates = [(d, c) for d in self.devices.values() for c in d.channels if c.kind == "channel"]
        if not candidates:
            return None
        dev, rec = self.rng.choice(candidates)
        status = "OFF" if rec.status == "ON" else "ON"
        fault = self.rng.choice((None, "VLOST", "DEFECT")) if status == "OFF" else None
        self.replace(dev.device_id, [dataclasses.replace(c, status=status, fault=fault) if c is rec else c
                                     for c in dev.channels])
        return "status", dev.device_id, rec.channel_id

    def presence_change(self) -> tuple[str, str]:
        dev = self.rng.choice(list(self.devices.values()))
        self.devices[dev.device_id] = dataclasses.replace(dev, online=not dev.online)
        return "presence", dev.device_id

    def catalog_change(self) -> tuple[str, str]:
        rng = self.rng
        dev = rng.choice(list(self.devices.values()))
        d = int(dev.device_id[-2:])
        recs = list(dev.channels)
        orgs = [c for c in recs if c.kind != "channel"]
        what = rng.choice(("add", "add", "remove", "rename", "move", "orgs"))
        chans = [i for i, c in enumerate(recs) if c.kind == "channel"]
        if what == "add" or not chans:
            recs.append(self.channel(dev.device_id, d, orgs))
        elif what == "remove":
            del recs[rng.choice(chans)]
        elif what == "rename":
            i = rng.choice(chans)
            recs[i] = dataclasses.replace(recs[i], name=f"renamed {rng.randint(0, 99)}")
        elif what == "move":
            i = rng.choice(chans)
            recs[i] = dataclasses.replace(recs[i], parent_id=rng.choice([o.channel_id for o in orgs] + [None]))
        else:
            kept = [c for c in recs if c.kind == "channel"]
            new_orgs = self.orgs(dev.device_id, d)
            recs = new_orgs + [dataclasses.replace(c, parent_id=rng.choice([o.channel_id for o in new_orgs] + [None]))
                               for c in kept]
        self.replace(dev.device_id, recs)
        return "device", dev.device_id

    def device_added_or_removed(self) -> tuple[str, str]:
        if len(self.devices) > 1 and self.rng.random() < 0.4:
            dev = self.rng.choice(list(self.devices))
            del self.devices[dev]
            return "device", dev
        return "device", self.add_device(max(int(d[-7:]) for d in self.devices) + 1)

    def replace(self, dev: str, recs: list[ChannelRecord]) -> None:
        self.devices[dev] = dataclasses.replace(self.devices[dev], channels=recs)

    def change(self):
        pick = self.rng.random()
        if pick < 0.4:
            return self.status_change()
        if pick < 0.6:
            return self.presence_change()
        if pick < 0.9:
            return self.catalog_change()
        return self.device_added_or_removed()


def build(world: World, s) -> SharedCatalog:
    return build_shared(world.devices.values(), s, root_id=ROOT, root_name="city", civil_code="440100")


def apply(world: World, s, catalog: SharedCatalog, changes: list[tuple], stats: dict[str, int]) -> SharedCatalog:
    """What the northbound does with the changes noted since ``catalog``."""
    status: dict[str, set[str] | None] = {}
    devices: set[str] = set()
    for change in changes:
        if change[0] == "status":
            if status.get(change[1], set()) is not None:
                status.setdefault(change[1], set()).add(change[2])
        elif change[0] == "presence":
            status[change[1]] = None
        else:
            devices.add(change[1])
    for dev, channels in status.items():
        if dev in devices:
            continue
        updated = update_status(catalog, world.devices[dev], channels) if dev in world.devices else None
        if updated is None:
            devices.add(dev)
        else:
            stats["status"] += 1
            catalog = updated
    if devices:
        updated = update_devices(catalog, {d: world.devices.get(d) for d in devices})
        if updated is None:
            stats["rebuilt"] += 1
            return build(world, s)
        stats["devices"] += 1
        catalog = updated
    return catalog


def rows(catalog: SharedCatalog) -> list[tuple]:
    return [(n.upper_id, n.kind, n.device_id, n.local_id, n.parents, n.item, n.status, n.fault) for n in catalog.nodes]


def same(incremental: SharedCatalog, full: SharedCatalog) -> None:
    assert len(incremental.nodes) == len(full.nodes)
    for got, want in zip(rows(incremental), rows(full)):
        assert got == want
    assert incremental.by_upper == full.by_upper
    assert incremental.by_local == full.by_local
    assert incremental.devices == full.devices
    assert incremental.conflicts == full.conflicts


SETTINGS = [
    {},
    {"tree": "2022"},
    {"platform_node": False},
    {"ids": "map", "id_prefix": "4402"},
    {"ids": "map", "id_prefix": "4402", "tree": "2022"},
    {"share": "sel"},
]


@pytest.mark.parametrize("seed", range(24))
def test_random_changes_applied_incrementally_equal_a_rebuild(seed):
    rng = random.Random(seed)
    world = World(rng, shared_orgs=seed % 4 == 3, duplicates=seed % 6 == 5)
    raw = dict(SETTINGS[seed % len(SETTINGS)])
    if raw.get("share") == "sel":
        chans = [c.channel_id for d in world.devices.values() for c in d.channels if c.kind == "channel"]
        raw["share"] = [*rng.sample(list(world.devices), 1), *rng.sample(chans, min(3, len(chans)))]
    s = parse_upper({"sip_id": UPPER, "host": "127.0.0.1", **raw})
    stats = {"status": 0, "devices": 0, "rebuilt": 0, "compared": 0}
    catalog = build(world, s)
    history: list[tuple[SharedCatalog, SharedCatalog]] = [(catalog, catalog)]     # (incremental, rebuilt)
    for _ in range(60):
        changes = [c for c in (world.change() for _ in range(rng.choice((1, 1, 1, 2, 4)))) if c is not None]
        catalog = apply(world, s, catalog, changes, stats)
        full = build(world, s)
        same(catalog, full)
        # what an upper shown an earlier catalog is sent: the same events, in the same order
        for shown, shown_full in (history[-1], rng.choice(history)):
            assert diff(shown, catalog) == diff(shown_full, full)
            stats["compared"] += 1
        history.append((catalog, full))
    if not world.shared_orgs and not world.duplicates:
        assert stats["status"] > 0 and stats["devices"] > 0, stats     # the incremental paths ran


def test_status_and_device_updates_share_untouched_nodes_and_diff_only_what_changed():
    rng = random.Random(7)
    world = World(rng, shared_orgs=False, duplicates=False)
    s = parse_upper({"sip_id": UPPER, "host": "127.0.0.1"})
    before = build(world, s)
    dev = next(d for d in world.devices.values() if any(c.kind == "channel" for c in d.channels))
    rec = next(c for c in dev.channels if c.kind == "channel")
    world.replace(dev.device_id, [dataclasses.replace(c, status="OFF" if c.status == "ON" else "ON") if c is rec else c
                                  for c in dev.channels])
    world.devices[dev.device_id] = dataclasses.replace(world.devices[dev.device_id], online=True)
    after = update_status(before, world.devices[dev.device_id], [rec.channel_id])
    assert after is not None and after is not before
    changed = [i for i, (a, b) in enumerate(zip(before.nodes, after.nodes)) if a is not b]
    assert [after.nodes[i].local_id for i in changed] == [rec.channel_id]
    events = diff(before, after)
    assert [(e.device_id, e.event) for e in events] == [(rec.channel_id, after.nodes[changed[0]].status)]
    assert before.nodes[changed[0]].status != after.nodes[changed[0]].status       # the old one kept as it was
    # nothing changed: the same catalog back
    assert update_status(after, world.devices[dev.device_id], [rec.channel_id]) is after
    # a device removed: its part goes, the rest is the same objects
    gone = update_devices(after, {dev.device_id: None})
    assert gone is not None
    assert all(n.device_id != dev.device_id for n in gone.nodes)
    kept = {id(n) for n in after.nodes}
    assert all(id(n) in kept for n in gone.nodes if n.kind != "system")
    del world.devices[dev.device_id]
    same(gone, build(world, s))
    assert {e.event for e in diff(after, gone)} == {"DEL"}
