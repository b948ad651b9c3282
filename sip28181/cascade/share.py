"""What one upper platform sees of our catalog: shared channels, their IDs, the tree (sans-IO).

PROTOCOL §11.2 and §11.4. Given the devices we know (each with the catalog it reported) and one
upper's settings, :func:`build_shared` returns the :class:`SharedCatalog` the upper is shown:

* **What is shared.** ``share = "all"``: every device. Otherwise the listed IDs: a device ID shares
  all of its channels, a channel ID that channel. A device whose catalog holds no channel is
  shared as a channel itself (an IPC), except platforms (type 200) whose catalog has not arrived.
  The regions, business groups (215) and virtual organisations (216) the shared channels hang
  under in their device's catalog come along, so the upper gets the same tree.
* **IDs.** ``ids = "keep"`` shows our IDs. ``ids = "map"`` translates 20-digit IDs: an ``id_map``
  entry wins, else ``id_prefix`` replaces the leading digits. Regions (civil codes) and our own
  platform ID are never translated. Two local nodes that would appear under one upper-side ID
  are a collision (:class:`IdCollisionError`): the second one is left out and reported in
  :attr:`SharedCatalog.conflicts`, so one bad mapping does not hide the whole catalog. A wholly
  shared device (an NVR) gets an upper-side ID by the same rules even when it is no catalog node
  (:meth:`SharedCatalog.device_upper_id`): its own alarms go up under it.
* **Tree rules.** Our platform is the type-200 root (when ``platform_node``). Business groups
  have ``ParentID`` = the root; a virtual organisation under another VO has that VO as parent; a
  VO directly under a business group has ``ParentID`` = the group in the 2016 form and no
  ``ParentID`` (item-level ``BusinessGroupID`` only) in the 2022 form. A channel's parent is the
  VO (or region, or group) it is mounted under, else our platform; 2016 gives one ``ParentID`` and
  ``Info/BusinessGroupID``, 2022 every parent ``a/b`` and an item-level ``BusinessGroupID``.
  Fields an edition dropped (2022: Owner, SafetyWay, certificates, PositionType, UseType) are not
  sent to an upper of that edition, and a device's password is never sent at all.
* **Status.** A channel is ``ON`` when its catalog says so and its device is online.

:func:`diff` turns two snapshots into the catalog events (ADD, DEL, UPDATE, ON, OFF) to notify, and
:func:`packets` splits items into ``catalog_group``-sized messages.

**Incremental updates.** A rebuild costs about 20 µs per channel, too much to pay for every status
change on a large platform. A :class:`SharedCatalog` is never changed in place; two functions derive
the next one from it, sharing every node that did not change, and give exactly what
:func:`build_shared` would give from the same devices:

* :func:`update_status` re-reads the status (and fault) of one device's shared channels: a channel
  status event, the device going on- or offline. Nothing else of the channels is re-read.
* :func:`update_devices` rebuilds the part of some devices (their channels and the organisation
  nodes they hang under) and splices it in place of their old part.

Both return None when the change is not isolatable and the catalog must be rebuilt whole: the
catalog (or the rebuilt part) holds an ID collision (:attr:`SharedCatalog.conflicts`) or the same
upper-side ID twice (one channel ID under two devices); a changed device's part depends on another
device's (the same region, group or organisation ID in both catalogs, a ``BusinessGroupID`` naming
the other device's group), or would now (it names a group only another device shows, or shows a
group another device's nodes name); the part would take an ID another device's node or wholly
shared device holds; :func:`update_status` for a channel its device no longer lists or a device
whose channels appeared or vanished. A change of the settings (or of our ID or name) always needs a
rebuild.
Derived catalogs remember which nodes each step touched, so :func:`diff` between two of them only
compares those nodes (in the order a full diff gives).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import Sip28181Error
from ..ids import is_gb_id
from ..manscdp import messages as m
from ..store.base import ChannelRecord
from .settings import UpperSettings

__all__ = ["ShareError", "IdCollisionError", "IdMapper", "LocalDevice", "SharedNode", "SharedCatalog",
           "build_shared", "update_status", "update_devices", "diff", "packets"]

ORG_KINDS = ("region", "business_group", "virtual_org")
_ITEM_FIELDS = {f.name: f for f in dataclasses.fields(m.CatalogItem)}
_INFO_FIELDS = {f.name for f in dataclasses.fields(m.CatalogInfo)} - {"extra"}
_INT_FIELDS = {"parental", "safety_way", "register_way", "certifiable", "err_code", "secrecy", "port"}
#: Item fields the 2022 edition removed (PROTOCOL §5.4.3, §11.4), and the one it added.
_ONLY_2016 = {"owner", "safety_way", "cert_num", "certifiable", "err_code", "end_time"}
_ONLY_2016_INFO = {"position_type", "use_type"}
_ONLY_2022 = {"security_level_code"}
#: Never sent up: our bookkeeping, the device's password, the event of the last NOTIFY.
_NEVER = {"password", "event", "extra", "info", "device_id", "business_group_id", "parent_id", "status",
          "name", "civil_code", "manufacturer", "model", "address", "parental", "longitude", "latitude"}
_KIND_ORDER = {"system": 0, "region": 1, "business_group": 2, "virtual_org": 3, "channel": 4}


class ShareError(Sip28181Error):
    """The shared catalog cannot be built as configured."""


class IdCollisionError(ShareError):
    """Two local nodes would be shown to an upper under the same ID."""

    def __init__(self, upper_id: str, first: str, second: str) -> None:
        super().__init__(f"ID collision: {first} and {second} would both appear as {upper_id}")
        self.upper_id = upper_id
        self.first = first
        self.second = second


class IdMapper:
    """Local ID <-> upper-side ID for one upper (``ids``, ``id_prefix``, ``id_map``)."""

    def __init__(self, settings: UpperSettings, fixed: Iterable[str] = ()) -> None:
        self.mode = settings.ids
        self.prefix = settings.id_prefix if settings.ids == "map" else None
        self.id_map = dict(settings.id_map) if settings.ids == "map" else {}
        self.fixed = frozenset(fixed)
        self._up: dict[str, str] = {}
        self._down: dict[str, str] = {}

    def translate(self, local_id: str) -> str:
        """The upper-side form of ``local_id`` (no bookkeeping, no collision check)."""
        if self.mode != "map" or local_id in self.fixed or not is_gb_id(local_id):
            return local_id
        mapped = self.id_map.get(local_id)
        if mapped is not None:
            return mapped
        if self.prefix:
            return self.prefix + local_id[len(self.prefix):]
        return local_id

    def claim(self, local_id: str) -> str:
        """Translate and remember ``local_id``; :class:`IdCollisionError` when another local node
        already holds that upper-side ID."""
        known = self._up.get(local_id)
        if known is not None:
            return known
        upper = self.translate(local_id)
        holder = self._down.get(upper)
        if holder is not None and holder != local_id:
            raise IdCollisionError(upper, holder, local_id)
        self._up[local_id] = upper
        self._down[upper] = local_id
        return upper

    def to_local(self, upper_id: str) -> str | None:
        return self._down.get(upper_id)

    def to_upper(self, local_id: str) -> str | None:
        return self._up.get(local_id)


@dataclass(frozen=True, slots=True)
class LocalDevice:
    """A device as the share builder needs it: identity, presence and its catalog."""

    device_id: str
    name: str | None = None
    online: bool = True
    channels: Sequence[ChannelRecord] = ()
    manufacturer: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class SharedNode:
    """One catalog entry as the upper sees it."""

    upper_id: str
    kind: str
    """``system``, ``region``, ``business_group``, ``virtual_org`` or ``channel``."""
    device_id: str
    """The local device it comes from (our platform ID for the root)."""
    local_id: str
    """Its local ID (the channel ID; the device ID for a device shared as a channel)."""
    parents: tuple[str, ...]
    """Upper-side parent IDs in the shared tree (empty for roots)."""
    item: m.CatalogItem
    status: str = "ON"
    fault: str | None = None
    """``VLOST`` or ``DEFECT`` when the channel's last catalog event said so."""


@dataclass(slots=True)
class SharedCatalog:
    """Everything one upper sees, and the ID mapping for its later requests."""

    upper_id: str
    root_id: str
    tree: str
    nodes: list[SharedNode] = field(default_factory=list)
    by_upper: dict[str, SharedNode] = field(default_factory=dict)
    by_local: dict[tuple[str, str], str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    devices: dict[str, str] = field(default_factory=dict)
    """Local ID -> upper-side ID of each wholly shared device (share all, or its ID listed), by the
    same mapping as its channels: what the device's own reports (an NVR's alarms) go up as."""
    # bookkeeping for the incremental updates (never compared)
    _params: "_Params | None" = field(default=None, repr=False, compare=False)
    _dupes: bool = field(default=False, repr=False, compare=False)
    """Two nodes share an upper-side ID (the same channel ID under two devices)."""
    _involved: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    """Devices whose part depends on another device's: an organisation node in both catalogs (the
    first device's is shown), a group ID resolved to another device's group node."""
    _unresolved: dict[str, frozenset[str]] = field(default_factory=dict, repr=False, compare=False)
    """Business group IDs shown nodes name that no shown node has -> the devices naming them."""
    _root_children: int = field(default=0, repr=False, compare=False)
    _journal: "_Journal | None" = field(default=None, repr=False, compare=False)
    _version: int = field(default=0, repr=False, compare=False)

    @property
    def channels(self) -> list[SharedNode]:
        return [n for n in self.nodes if n.kind == "channel"]

    def resolve(self, upper_side_id: str) -> tuple[str, str] | None:
        """The local (device ID, channel ID) of a shared channel the upper names."""
        node = self.by_upper.get(upper_side_id)
        if node is None or node.kind != "channel":
            return None
        return node.device_id, node.local_id

    def upper_side_id(self, device_id: str, channel_id: str) -> str | None:
        node = self.by_upper.get(self.by_local.get((device_id, channel_id), ""))
        return node.upper_id if node is not None and node.kind == "channel" else None

    def device_upper_id(self, device_id: str) -> str | None:
        """The ID the upper knows a wholly shared device by (None when it is not shared whole)."""
        return self.devices.get(device_id)

    def node(self, upper_side_id: str) -> SharedNode | None:
        return self.by_upper.get(upper_side_id)

    def subtree(self, upper_side_id: str) -> list[SharedNode] | None:
        """What a Catalog query for ``upper_side_id`` answers (2022 Annex J organisation-level
        query): everything for our platform ID, the node and all below it for a group,
        organisation, region or channel; None for an ID the upper was never shown."""
        if upper_side_id == self.root_id:
            return list(self.nodes)
        start = self.by_upper.get(upper_side_id)
        if start is None:
            return None
        children: dict[str, list[str]] = {}
        for n in self.nodes:
            for p in n.parents:
                children.setdefault(p, []).append(n.upper_id)
        wanted = {start.upper_id}
        stack = [start.upper_id]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in wanted:
                    wanted.add(child)
                    stack.append(child)
        return [n for n in self.nodes if n.upper_id in wanted]


# -- building -----------------------------------------------------------------------------------------

def _local_parents(rec: ChannelRecord, nodes: dict[str, ChannelRecord]) -> list[str]:
    """The org nodes of the same catalog ``rec`` hangs under (ParentID parts, then its group,
    then its region), local IDs."""
    found: list[str] = []
    for part in (rec.parent_id or "").replace(",", "/").split("/"):
        part = part.strip()
        if part and part != rec.channel_id and part in nodes and part not in found:
            found.append(part)
    if not found and rec.business_group_id in nodes and rec.business_group_id != rec.channel_id:
        found.append(rec.business_group_id)  # type: ignore[arg-type]
    if not found and rec.kind != "region" and rec.civil_code in nodes:
        found.append(rec.civil_code)  # type: ignore[arg-type]
    if not found and rec.kind == "region":
        code = rec.channel_id
        while len(code) > 2:
            code = code[:-2]
            if code in nodes:
                found.append(code)
                break
    return found


def _info(fields: dict[str, Any], edition: str, business_group: str | None) -> m.CatalogInfo | None:
    raw = fields.get("info")
    values: dict[str, str] = {}
    if isinstance(raw, dict):
        for key, value in raw.items():
            if key in _INFO_FIELDS and value not in (None, "") and not isinstance(value, (dict, list)):
                values[key] = str(value)
    values.pop("business_group_id", None)
    if edition == "2022":
        for key in _ONLY_2016_INFO:
            values.pop(key, None)
    if business_group and edition == "2016":
        values["business_group_id"] = business_group
    return m.CatalogInfo(**values) if values else None


def _extras(fields: dict[str, Any], edition: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _NEVER or key not in _ITEM_FIELDS or value in (None, "") or isinstance(value, (dict, list)):
            continue
        if (edition == "2022" and key in _ONLY_2016) or (edition == "2016" and key in _ONLY_2022):
            continue
        if key in _INT_FIELDS:
            try:
                value = int(value)
            except (TypeError, ValueError):
                continue
        else:
            value = str(value)
        out[key] = value
    return out


class _Builder:
    def __init__(self, settings: UpperSettings, root_id: str, civil_code: str) -> None:
        self.s = settings
        self.edition = settings.tree
        self.root_id = root_id
        self.civil = civil_code
        self.ids = IdMapper(settings, fixed=(root_id,))
        self.out = SharedCatalog(settings.sip_id, root_id, settings.tree)
        self.dupes = False

    def wanted(self, device: LocalDevice) -> tuple[bool, set[str]]:
        """(whole device, explicitly listed channel IDs)."""
        share = self.s.share
        if share == "all" or device.device_id in share:
            return True, set()
        return False, {c.channel_id for c in device.channels if c.channel_id in share}

    def add(self, node: SharedNode) -> None:
        if node.upper_id in self.out.by_upper:
            self.dupes = True
        self.out.nodes.append(node)
        self.out.by_upper[node.upper_id] = node
        self.out.by_local[(node.device_id, node.local_id)] = node.upper_id

    def claim(self, local_id: str, device_id: str) -> str | None:
        try:
            return self.ids.claim(local_id)
        except IdCollisionError as exc:
            self.out.conflicts.append(f"{device_id}: {exc}")
            return None

    def share_device(self, device_id: str) -> None:
        """Map a wholly shared device's own ID (it is no catalog node unless shared as a channel);
        an ID another node already holds is left out."""
        upper = self.out.by_local.get((device_id, device_id))
        if upper is None:
            upper = self.ids.translate(device_id)
            holder = self.ids.to_local(upper)
            if (holder is not None and holder != device_id) or upper in self.out.by_upper:
                self.out.conflicts.append(
                    f"{device_id}: {IdCollisionError(upper, holder or self.out.by_upper[upper].local_id, device_id)}")
                return
        self.out.devices[device_id] = upper


def build_shared(devices: Iterable[LocalDevice], settings: UpperSettings, *, root_id: str,
                 root_name: str = "", civil_code: str | None = None, manufacturer: str = "sip28181",
                 model: str = "sip28181", address: str = "") -> SharedCatalog:
    """The catalog ``settings``' upper sees (module docstring); ``root_id`` is the ID we present
    to it (never mapped)."""
    civil = settings.civil_code or civil_code or root_id[:6]
    b = _Builder(settings, root_id, civil)
    edition = settings.tree
    # per shared org node: (device, record); per channel: (device, record | None for a device)
    org: dict[str, tuple[LocalDevice, ChannelRecord]] = {}
    orgs_by_device: dict[str, dict[str, ChannelRecord]] = {}
    chans: list[tuple[LocalDevice, ChannelRecord | None, list[str]]] = []
    whole_devices: list[str] = []
    involved: set[str] = set()          # devices whose part depends on another's
    unresolved: dict[str, set[str]] = {}

    def group_ref(rec: ChannelRecord, device_id: str) -> None:
        """Note a business group reference that crosses devices or finds nothing."""
        if not rec.business_group_id:
            return
        owner = org.get(rec.business_group_id)
        if owner is None or rec.business_group_id not in org_upper:
            unresolved.setdefault(rec.business_group_id, set()).add(device_id)
        elif owner[0].device_id != device_id:
            involved.update((owner[0].device_id, device_id))
    for device in sorted(devices, key=lambda d: d.device_id):
        if device.device_id in (settings.sip_id, root_id):
            continue            # never show an upper itself, or ourselves, as a device
        whole, listed = b.wanted(device)
        if not whole and not listed:
            continue
        if whole:
            whole_devices.append(device.device_id)
        records = {c.channel_id: c for c in device.channels}
        video = [c for c in device.channels if c.kind == "channel" and c.channel_id != device.device_id]
        if not video:
            if whole and device.device_id[10:13] != "200":
                chans.append((device, None, []))
            continue
        orgs = orgs_by_device[device.device_id] = {cid: c for cid, c in records.items() if c.kind in ORG_KINDS}
        for rec in video:
            if not whole and rec.channel_id not in listed:
                continue
            parents = _local_parents(rec, orgs)
            chans.append((device, rec, parents))
            stack = list(parents)
            seen: set[str] = set()
            while stack:
                pid = stack.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                owner = org.setdefault(pid, (device, orgs[pid]))[0]
                if owner is not device:
                    involved.update((owner.device_id, device.device_id))
                stack.extend(_local_parents(orgs[pid], orgs))

    org_upper: dict[str, str] = {}
    for pid in sorted(org, key=lambda i: (_KIND_ORDER[org[i][1].kind], i)):
        device, rec = org[pid]
        upper = pid if rec.kind == "region" else b.claim(pid, device.device_id)
        if upper is not None:
            org_upper[pid] = upper

    org_local = {upper: pid for pid, upper in org_upper.items()}

    def kind(upper: str) -> str:
        return org[org_local[upper]][1].kind

    children: dict[str, int] = {}
    org_nodes: list[tuple[str, ChannelRecord, LocalDevice, list[str], str | None]] = []
    for pid, upper in org_upper.items():
        device, rec = org[pid]
        parents = [org_upper[p] for p in _local_parents(rec, orgs_by_device[device.device_id]) if p in org_upper]
        group = org_upper.get(rec.business_group_id or "")
        if rec.kind != "business_group":
            group_ref(rec, device.device_id)
        if rec.kind == "business_group":
            parents = [root_id] if settings.platform_node else []
        elif rec.kind == "region":
            parents = [p for p in parents if kind(p) == "region"]
        elif rec.kind == "virtual_org":
            vo_parents = [p for p in parents if kind(p) == "virtual_org"]
            if group is None:
                group = next((p for p in parents if kind(p) == "business_group"), None)
            if vo_parents:
                parents = vo_parents[:1]
            elif group is not None:
                parents = [group] if edition == "2016" else []
            else:
                parents = [p for p in parents if kind(p) == "region"][:1]
        org_nodes.append((upper, rec, device, parents, group))
        for p in parents:
            children[p] = children.get(p, 0) + 1

    chan_nodes: list[tuple[str, LocalDevice, ChannelRecord | None, list[str], str | None]] = []
    for device, rec, local_parents in chans:
        local_id = rec.channel_id if rec is not None else device.device_id
        upper = b.claim(local_id, device.device_id)
        if upper is None:
            continue
        parents = [org_upper[p] for p in local_parents if p in org_upper]
        group = None
        if rec is not None:
            group_ref(rec, device.device_id)
        if rec is not None and rec.business_group_id in org_upper:
            group = org_upper[rec.business_group_id]  # type: ignore[index]
        if not parents:
            parents = [root_id] if settings.platform_node else []
        elif edition == "2016":
            parents = parents[:1]
        chan_nodes.append((upper, device, rec, parents, group))
        for p in parents:
            children[p] = children.get(p, 0) + 1

    if settings.platform_node:
        b.add(SharedNode(root_id, "system", root_id, root_id, (), m.CatalogItem(
            device_id=root_id, name=root_name or root_id, manufacturer=manufacturer, model=model,
            civil_code=civil, address=address or None, parental=1 if children.get(root_id) else 0,
            register_way=1, secrecy=0, status="ON")))
    for upper, rec, device, parents, group in org_nodes:
        b.add(SharedNode(upper, rec.kind, device.device_id, rec.channel_id, tuple(parents),
                         _org_item(upper, rec, parents, group, civil, edition, children.get(upper, 0))))
    for upper, device, rec, parents, group in chan_nodes:
        status = "ON" if device.online and (rec is None or rec.status == "ON") else "OFF"
        item = _channel_item(upper, device, rec, parents, group, civil, edition, status)
        fault = rec.fault if rec is not None and device.online else None
        b.add(SharedNode(upper, "channel", device.device_id, rec.channel_id if rec else device.device_id,
                         tuple(parents), item, status, fault))
    for device_id in whole_devices:
        b.share_device(device_id)
    out = b.out
    out._params = _Params(settings, root_id, root_name, civil, manufacturer, model, address)
    out._dupes = b.dupes
    out._involved = frozenset(involved)
    out._unresolved = {k: frozenset(v) for k, v in unresolved.items()}
    out._root_children = children.get(root_id, 0)
    out._journal = _Journal()
    return out


def _org_item(upper: str, rec: ChannelRecord, parents: list[str], group: str | None, civil: str,
              edition: str, children: int) -> m.CatalogItem:
    if rec.kind == "region":
        return m.CatalogItem(device_id=upper, name=rec.name or upper)
    item = m.CatalogItem(device_id=upper, name=rec.name or upper, civil_code=rec.civil_code or civil,
                         parental=1 if children else 0, parent_id="/".join(parents) or None)
    if rec.kind == "virtual_org" and group:
        if edition == "2022":
            item.business_group_id = group
        else:
            item.info = m.CatalogInfo(business_group_id=group)
    return item


def _channel_item(upper: str, device: LocalDevice, rec: ChannelRecord | None, parents: list[str],
                  group: str | None, civil: str, edition: str, status: str) -> m.CatalogItem:
    parent_id = "/".join(parents) or None
    if rec is None:
        return m.CatalogItem(
            device_id=upper, name=device.name or upper, manufacturer=device.manufacturer or "unknown",
            model=device.model or "unknown", civil_code=civil, address=device.name or upper, parental=0,
            parent_id=parent_id, register_way=1, secrecy=0, status=status,
            **({"owner": "unknown", "safety_way": 0} if edition == "2016" else {}))
    extras = _extras(rec.fields, edition)
    item = m.CatalogItem(
        device_id=upper, name=rec.name or upper, manufacturer=rec.manufacturer or device.manufacturer or "unknown",
        model=rec.model or device.model or "unknown", civil_code=rec.civil_code or civil,
        address=rec.address or rec.name or upper, parental=0, parent_id=parent_id, status=status,
        longitude=rec.longitude, latitude=rec.latitude, info=_info(rec.fields, edition, group), **extras)
    item.register_way = item.register_way or 1
    item.secrecy = item.secrecy or 0
    if edition == "2022" and group:
        item.business_group_id = group
    return item


# -- incremental updates ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Params:
    """What :func:`build_shared` was called with, to build a part the same way."""

    settings: UpperSettings
    root_id: str
    root_name: str
    civil: str
    manufacturer: str
    model: str
    address: str


class _Journal:
    """The upper-side IDs each step of one line of derived catalogs touched (step ``i`` turns
    version ``i`` into ``i + 1``); old steps are dropped, :func:`diff` then compares everything."""

    __slots__ = ("base", "steps")
    LIMIT = 1024

    def __init__(self) -> None:
        self.base = 0
        self.steps: list[frozenset[str]] = []

    @property
    def head(self) -> int:
        return self.base + len(self.steps)

    def record(self, touched: Iterable[str]) -> int:
        self.steps.append(frozenset(touched))
        if len(self.steps) > self.LIMIT:
            drop = len(self.steps) // 2
            del self.steps[:drop]
            self.base += drop
        return self.head

    def since(self, old: int, new: int) -> set[str] | None:
        if not self.base <= old <= new <= self.head:
            return None
        out: set[str] = set()
        for step in self.steps[old - self.base:new - self.base]:
            out |= step
        return out


def _rank(node: SharedNode) -> tuple[int, str]:
    """What :func:`build_shared` orders nodes by: the root, regions, groups, organisations (each by
    local ID), then channels by device (a device's channels keep their catalog order)."""
    order = _KIND_ORDER[node.kind]
    return (order, node.device_id) if order == 4 else (order, node.local_id)


def _derive(old: SharedCatalog, nodes: list[SharedNode], by_upper: dict[str, SharedNode],
            by_local: dict[tuple[str, str], str], devices: dict[str, str], root_children: int,
            touched: Iterable[str], unresolved: dict[str, frozenset[str]] | None = None) -> SharedCatalog:
    journal = old._journal
    if journal is None or journal.head != old._version:
        journal = _Journal()            # ``old`` is not the newest of its line: start another
        journal.base = old._version
    version = journal.record(touched)
    return SharedCatalog(old.upper_id, old.root_id, old.tree, nodes, by_upper, by_local, list(old.conflicts),
                         devices, _params=old._params, _dupes=old._dupes, _involved=old._involved,
                         _unresolved=old._unresolved if unresolved is None else unresolved, _root_children=root_children,
                         _journal=journal, _version=version)


def _device_range(nodes: list[SharedNode], device_id: str) -> tuple[int, int]:
    """Where ``device_id``'s channels are in ``nodes`` (they are contiguous)."""
    lo = bisect.bisect_left(nodes, (4, device_id), key=_rank)
    return lo, bisect.bisect_right(nodes, (4, device_id), lo, key=_rank)


def update_status(catalog: SharedCatalog, device: LocalDevice,
                  channel_ids: Iterable[str] | None = None) -> SharedCatalog | None:
    """``catalog`` with the status of ``device``'s shared channels re-read from ``device`` (its
    presence and each channel's status and fault): those in ``channel_ids``, or all of them. Returns
    ``catalog`` itself when nothing changed, None when a rebuild is needed (module docstring)."""
    params = catalog._params
    if params is None or catalog._dupes:
        return None
    device_id = device.device_id
    lo, hi = _device_range(catalog.nodes, device_id)
    video = {c.channel_id: c for c in device.channels if c.kind == "channel" and c.channel_id != device_id}
    if channel_ids is None:
        if lo == hi:
            return None         # nothing of it shown: whether it should be is the builder's question
        wanted = None
    else:
        wanted = {catalog.by_local.get((device_id, c)) for c in channel_ids} - {None}
    changed: dict[int, SharedNode] = {}
    for index in range(lo, hi):
        node = catalog.nodes[index]
        if wanted is not None and node.upper_id not in wanted:
            continue
        if node.local_id == device_id:          # the device shown as a channel: it has none
            if video:
                return None
            status = "ON" if device.online else "OFF"
            item = _channel_item(node.upper_id, device, None, list(node.parents), None, params.civil,
                                 catalog.tree, status)
            fault = None
        else:
            rec = video.get(node.local_id)
            if rec is None:
                return None
            status = "ON" if device.online and rec.status == "ON" else "OFF"
            fault = rec.fault if device.online else None
            item = node.item if node.item.status == status else dataclasses.replace(node.item, status=status)
        if item != node.item or status != node.status or fault != node.fault:
            changed[index] = dataclasses.replace(node, item=item, status=status, fault=fault)
    if not changed:
        return catalog
    nodes = list(catalog.nodes)
    by_upper = dict(catalog.by_upper)
    for index, node in changed.items():
        nodes[index] = by_upper[node.upper_id] = node
    return _derive(catalog, nodes, by_upper, catalog.by_local, catalog.devices, catalog._root_children,
                   (n.upper_id for n in changed.values()))


def update_devices(catalog: SharedCatalog, devices: Mapping[str, LocalDevice | None]) -> SharedCatalog | None:
    """``catalog`` with the part of each device in ``devices`` rebuilt from it (None: the device is
    gone): its channels and the organisation nodes they hang under. None when a rebuild is needed
    (module docstring)."""
    params = catalog._params
    ids = set(devices)
    if params is None or catalog._dupes or catalog.conflicts or not ids.isdisjoint(catalog._involved):
        return None
    part = build_shared([d for d in devices.values() if d is not None], params.settings, root_id=params.root_id,
                        root_name=params.root_name, civil_code=params.civil, manufacturer=params.manufacturer,
                        model=params.model, address=params.address)
    if part._dupes or part._involved or part.conflicts:
        return None
    root_id = catalog.root_id
    added = [n for n in part.nodes if n.kind != "system"]
    # their old part: organisation nodes (before every channel) and each device's block of channels
    old_nodes = catalog.nodes
    orgs_end = bisect.bisect_left(old_nodes, (4, ""), key=_rank)
    drop = [i for i in range(orgs_end) if old_nodes[i].device_id in ids and old_nodes[i].kind != "system"]
    blocks = sorted(_device_range(old_nodes, device_id) for device_id in ids)
    gone = [old_nodes[i] for i in drop] + [n for lo, hi in blocks for n in old_nodes[lo:hi]]
    gone_ids = {n.upper_id for n in gone}
    others = {u for d, u in catalog.devices.items() if d not in ids}
    for node in added:
        holder = catalog.by_upper.get(node.upper_id)
        if (holder is not None and node.upper_id not in gone_ids) or node.upper_id in others:
            return None         # another device's node or device holds that ID
    for device_id, upper in part.devices.items():
        if upper in catalog.by_upper and upper not in gone_ids and part.by_local.get((device_id, device_id)) != upper:
            return None
    # business group IDs resolve across devices: neither side may now find the other's group
    for node in added:
        if node.kind != "channel" and not catalog._unresolved.get(node.local_id, frozenset()) <= ids:
            return None
    if part._unresolved:
        orgs_end = bisect.bisect_left(catalog.nodes, (4, ""), key=_rank)
        if any(n.local_id in part._unresolved and n.device_id not in ids for n in catalog.nodes[:orgs_end]):
            return None
    unresolved = None
    if part._unresolved or catalog._unresolved:
        unresolved = {k: v - ids for k, v in catalog._unresolved.items() if not v <= ids}
        for k, v in part._unresolved.items():
            unresolved[k] = unresolved.get(k, frozenset()) | v
    shared_devices = {d: u for d, u in catalog.devices.items() if d not in ids}
    shared_devices.update(part.devices)
    if not gone and not added and shared_devices == catalog.devices:
        return catalog          # nothing of these devices is, or was, shown
    nodes = list(old_nodes)
    for lo, hi in reversed(blocks):     # channels first: the organisation indices stay valid
        del nodes[lo:hi]
    for i in reversed(drop):
        del nodes[i]
    touched = gone_ids | {n.upper_id for n in added}
    root_children = (catalog._root_children - sum(root_id in n.parents for n in gone)
                     + sum(root_id in n.parents for n in added))
    by_upper = dict(catalog.by_upper)
    if nodes and nodes[0].kind == "system" and bool(root_children) != bool(catalog._root_children):
        root = nodes[0]
        nodes[0] = by_upper[root_id] = dataclasses.replace(
            root, item=dataclasses.replace(root.item, parental=1 if root_children else 0))
        touched.add(root_id)
    # splice: organisation nodes one by one, each device's channels as a block
    i = 0
    while i < len(added):
        node = added[i]
        if node.kind != "channel":
            bisect.insort_left(nodes, node, key=_rank)
            i += 1
            continue
        j = i
        while j < len(added) and added[j].kind == "channel" and added[j].device_id == node.device_id:
            j += 1
        at = bisect.bisect_left(nodes, (4, node.device_id), key=_rank)
        nodes[at:at] = added[i:j]
        i = j
    by_local = dict(catalog.by_local)
    for node in gone:
        by_upper.pop(node.upper_id, None)
        by_local.pop((node.device_id, node.local_id), None)
    for node in added:
        by_upper[node.upper_id] = node
        by_local[(node.device_id, node.local_id)] = node.upper_id
    return _derive(catalog, nodes, by_upper, by_local, shared_devices, root_children, touched, unresolved)


# -- changes and packets ------------------------------------------------------------------------------

def _same_fields(a: SharedNode, b: SharedNode) -> bool:
    """Equal items apart from their status."""
    if a.item.status == b.item.status:
        return a.item == b.item
    return a.item == dataclasses.replace(b.item, status=a.item.status)


def diff(old: SharedCatalog | None, new: SharedCatalog) -> list[m.CatalogItem]:
    """Catalog events that turn what the upper was shown (``old``) into ``new``: ``ADD`` and
    ``UPDATE`` with every field, ``DEL``, and ``ON``/``OFF`` (``VLOST``/``DEFECT`` when the
    device reported that) for a status change alone. When ``new`` was derived from ``old`` by
    :func:`update_status`/:func:`update_devices`, only the nodes those steps touched are compared."""
    touched = _touched(old, new)
    if touched is not None:
        return _diff_touched(old, new, touched)  # type: ignore[arg-type]
    before = {n.upper_id: n for n in old.nodes} if old is not None else {}
    events: list[m.CatalogItem] = []
    for node in new.nodes:
        _event(events, before.pop(node.upper_id, None), node)
    for gone in before:
        events.append(m.CatalogItem(device_id=gone, event="DEL"))
    return events


def _event(events: list[m.CatalogItem], prev: SharedNode | None, node: SharedNode) -> None:
    if prev is None:
        events.append(dataclasses.replace(node.item, event="ADD"))
    elif prev is node:
        return
    elif not _same_fields(prev, node):
        events.append(dataclasses.replace(node.item, event="UPDATE"))
    elif prev.status != node.status or prev.fault != node.fault:
        event = node.fault if node.status == "OFF" and node.fault else node.status
        events.append(m.CatalogItem(device_id=node.upper_id, event=event))


def _touched(old: SharedCatalog | None, new: SharedCatalog) -> set[str] | None:
    """The upper-side IDs that may differ between ``old`` and ``new`` (None: unknown)."""
    if old is None or old._dupes or new._dupes:
        return None
    if old is new:
        return set()
    journal = new._journal
    if journal is None or old._journal is not journal:
        return None
    return journal.since(old._version, new._version)


def _positions(catalog: SharedCatalog, upper_ids: Iterable[str]) -> list[tuple[int, str]]:
    """(index in ``catalog.nodes``, ID) of each of ``upper_ids`` (all in the catalog)."""
    out: list[tuple[int, str]] = []
    channels: dict[str, set[str]] = {}
    nodes = catalog.nodes
    for upper in upper_ids:
        node = catalog.by_upper[upper]
        if node.kind == "channel":
            channels.setdefault(node.device_id, set()).add(upper)
        else:
            out.append((bisect.bisect_left(nodes, _rank(node), key=_rank), upper))
    for device_id, wanted in channels.items():
        lo, hi = _device_range(nodes, device_id)
        out.extend((i, nodes[i].upper_id) for i in range(lo, hi) if nodes[i].upper_id in wanted)
    out.sort()
    return out


def _diff_touched(old: SharedCatalog, new: SharedCatalog, touched: set[str]) -> list[m.CatalogItem]:
    """:func:`diff` for catalogs that differ at most in ``touched`` (no upper-side ID twice in either)."""
    events: list[m.CatalogItem] = []
    for _, upper in _positions(new, (u for u in touched if u in new.by_upper)):
        _event(events, old.by_upper.get(upper), new.by_upper[upper])
    for _, upper in _positions(old, (u for u in touched if u in old.by_upper and u not in new.by_upper)):
        events.append(m.CatalogItem(device_id=upper, event="DEL"))
    return events


def packets(items: Sequence[m.CatalogItem], size: int) -> list[list[m.CatalogItem]]:
    """``items`` in messages of at most ``size`` (one empty message for no items: SumNum 0)."""
    size = max(1, size)
    return [list(items[i:i + size]) for i in range(0, len(items), size)] or [[]]
