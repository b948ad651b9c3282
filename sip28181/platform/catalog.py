"""Device catalogs: query, gather, apply, persist, subscribe; and the tree of a catalog.

A catalog is queried after registration (``[catalog] query_on_register``, after ``query_delay``:
:mod:`.management`) and on demand; one query per device runs at a time (a second caller joins it). Answers are
gathered by :class:`~.queries.Queries` (SN, SumNum, duplicates, any order, partial on timeout).

Applying an answer: every item becomes a :class:`~sip28181.store.base.ChannelRecord` (items
without ``DeviceID`` are skipped); a *complete* answer also removes the channels it no longer
lists, a *partial* one never removes anything. Late packets that arrive after a query ended, and
Catalog Responses nobody asked for, are merged the same way (add/update only). Catalog NOTIFYs
(``ADD``, ``DEL``, ``UPDATE``, ``ON``, ``OFF``, ``VLOST``, ``DEFECT``) change the list one item at a
time; status events can be ignored with ``[catalog] notify_status = false`` (platforms that send
bogus ones, PROTOCOL §7.3).

Channels live in memory (per device, by channel ID) and reach the store in batches with the
platform's flush: changed records and deletions are queued and written by :meth:`Catalog.flush`,
and put back in the queue when the write fails. They are loaded from the store at start.

The tree (:func:`build_tree`) follows PROTOCOL §5.4.3 and §11.4, both editions: a node's parents
are the entries of its ``ParentID`` (2022 allows ``a/b/c``: the node appears under each) that are
in the catalog; else, for a virtual organisation or a channel, its ``BusinessGroupID`` (2022 VOs
under a business group carry no ParentID; 2016 puts BusinessGroupID in ``Info``); else its
``CivilCode`` region; else, for a region, the nearest enclosing region (``440106`` under ``4401``
under ``44``); else it is a root. A ``ParentID`` naming the device itself or the platform makes a
root. Cycles are broken where they are found.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..store.base import ChannelRecord
from .events import CatalogUpdated, ChannelStatusChanged
from .queries import Gather, Gathered

if TYPE_CHECKING:
    from .core import Platform
    from .queries import Queries

log = logging.getLogger("sip28181.catalog")

__all__ = ["Catalog", "CatalogResult", "TreeNode", "build_tree", "channel_from_item", "kind_of"]

#: Catalog item attributes read into columns of :class:`ChannelRecord`; the rest go to ``fields``.
_COLUMNS = ("device_id", "name", "status", "parent_id", "business_group_id", "civil_code", "manufacturer",
            "model", "address", "parental", "longitude", "latitude", "event")
_OFF = frozenset({"OFF", "OFFLINE", "0", "FALSE"})
KIND_ORDER = {"system": 0, "region": 1, "business_group": 2, "virtual_org": 3, "channel": 4}


def kind_of(node_id: str) -> str:
    """PROTOCOL §5.4.3: ≤ 8 digits region; type 215 business group, 216 VO, 200 system."""
    if len(node_id) <= 8:
        return "region"
    if len(node_id) == 20:
        type_code = node_id[10:13]
        if type_code == "215":
            return "business_group"
        if type_code == "216":
            return "virtual_org"
        if type_code == "200":
            return "system"
    return "channel"


def status_of(value: Any) -> str:
    """ON/OFF from what devices send: ON, OFF, ONLINE, OFFLINE (Hikvision NVRs), OK, missing."""
    if value is None:
        return "ON"
    return "OFF" if str(value).strip().upper() in _OFF else "ON"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: v for f in dataclasses.fields(value)
                if (v := _jsonable(getattr(value, f.name))) not in (None, {}, [])}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "value"):        # enums
        return _jsonable(value.value)
    return str(value)


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return dict(item)
    if dataclasses.is_dataclass(item):
        return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    return {k: v for k, v in vars(item).items() if not k.startswith("_")}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _info_value(fields: dict[str, Any], name: str) -> Any:
    info = fields.get("info")
    if info is None:
        return None
    if isinstance(info, dict):
        for key, value in info.items():
            if key.lower().replace("_", "") == name.replace("_", ""):
                return value
        return None
    return getattr(info, name, None)


def channel_from_item(device_id: str, item: Any, now: float | None = None) -> ChannelRecord | None:
    """A catalog item (codec ``CatalogItem``) as a record; None for an item without DeviceID."""
    raw = _as_dict(item)
    channel_id = _text(raw.get("device_id"))
    if channel_id is None:
        return None
    business_group = _text(raw.get("business_group_id")) or _text(_info_value(raw, "business_group_id"))
    fields = {k: j for k, v in raw.items() if k not in _COLUMNS and (j := _jsonable(v)) not in (None, {}, [])}
    return ChannelRecord(
        device_id=device_id, channel_id=channel_id, name=_text(raw.get("name")), kind=kind_of(channel_id),
        status=status_of(raw.get("status")), parent_id=_text(raw.get("parent_id")),
        business_group_id=business_group, civil_code=_text(raw.get("civil_code")),
        manufacturer=_text(raw.get("manufacturer")), model=_text(raw.get("model")),
        address=_text(raw.get("address")), parental=_int(raw.get("parental")),
        longitude=_float(raw.get("longitude")), latitude=_float(raw.get("latitude")), fields=fields,
        updated_at=now)


def _same(a: ChannelRecord, b: ChannelRecord) -> bool:
    """Equal except for the times."""
    return dataclasses.replace(a, created_at=None, updated_at=None) == dataclasses.replace(
        b, created_at=None, updated_at=None)


@dataclass(frozen=True, slots=True)
class CatalogResult:
    device_id: str
    sum_num: int | None
    """What the device announced."""
    received: int
    """Distinct items received."""
    partial: bool
    added: int
    updated: int
    removed: int
    packets: int
    duplicates: int


# -- tree ---------------------------------------------------------------------------------------

@dataclass(slots=True)
class TreeNode:
    id: str
    name: str | None
    kind: str
    status: str | None
    children: list["TreeNode"]

    def as_dict(self) -> dict[str, Any]:
        """Nested dicts, built without recursion (deep trees do not hit the recursion limit)."""
        root: dict[str, Any] = {}
        stack: list[tuple[TreeNode, dict[str, Any]]] = [(self, root)]
        while stack:
            node, out = stack.pop()
            out.update(id=node.id, name=node.name, kind=node.kind, status=node.status, children=[])
            for child in node.children:
                d: dict[str, Any] = {}
                out["children"].append(d)
                stack.append((child, d))
        return root


def _parents(c: ChannelRecord, nodes: dict[str, ChannelRecord]) -> list[str]:
    found = []
    if c.parent_id:
        for part in c.parent_id.replace(",", "/").split("/"):
            part = part.strip()
            if part and part != c.channel_id and part in nodes and part not in found:
                found.append(part)
    if found:
        return found
    if c.kind in ("virtual_org", "channel") and c.business_group_id in nodes and c.business_group_id != c.channel_id:
        return [c.business_group_id]  # type: ignore[list-item]
    if c.kind != "region" and c.civil_code and c.civil_code in nodes and nodes[c.civil_code].kind == "region":
        return [c.civil_code]
    if c.kind == "region":
        code = c.channel_id
        while len(code) > 2:
            code = code[:-2]
            if code in nodes:
                return [code]
    return []


def build_tree(channels: Iterable[ChannelRecord]) -> list[TreeNode]:
    """The catalog's tree (module docstring): the roots, children ordered by kind then ID."""
    records = {c.channel_id: c for c in channels}
    made = {cid: TreeNode(cid, c.name, c.kind, c.status if c.kind == "channel" else None, [])
            for cid, c in records.items()}
    children: dict[str, list[str]] = {}
    has_parent: set[str] = set()
    for cid, c in records.items():
        for parent in _parents(c, records):
            children.setdefault(parent, []).append(cid)
            has_parent.add(cid)

    def order(cid: str) -> tuple[int, str]:
        return (KIND_ORDER.get(records[cid].kind, 9), cid)

    roots = sorted((cid for cid in records if cid not in has_parent), key=order)
    placed: set[str] = set()
    # iterative depth-first walk; an edge back into the current path (a cycle) is dropped
    for start in [*roots, *sorted(records, key=order)]:
        if start in placed:
            continue
        if start not in roots:
            roots.append(start)          # only reachable through a cycle: make it a root
        placed.add(start)
        stack: list[tuple[str, frozenset[str]]] = [(start, frozenset((start,)))]
        while stack:
            cid, path = stack.pop()
            node = made[cid]
            for child in sorted(children.get(cid, ()), key=order):
                if child in path:
                    continue
                node.children.append(made[child])
                if child not in placed:
                    placed.add(child)
                    stack.append((child, path | {child}))
    return [made[r] for r in roots]


# -- the service --------------------------------------------------------------------------------

class Catalog:
    """The channel lists of every device, kept current by queries, NOTIFYs and late answers."""

    def __init__(self, platform: "Platform", queries: "Queries") -> None:
        self.platform = platform
        self.queries = queries
        cfg = platform.config
        self.timeout: float = cfg.catalog_timeout
        self.idle_timeout: float = cfg.catalog_idle_timeout
        self.notify_status: bool = cfg.catalog_notify_status
        self._channels: dict[str, dict[str, ChannelRecord]] = {}
        self._dirty: dict[tuple[str, str], ChannelRecord] = {}
        self._deleted: dict[tuple[str, str], None] = {}
        self._running: dict[str, asyncio.Future] = {}

    # -- lifecycle --------------------------------------------------------------------------------
    async def load(self) -> None:
        store = self.platform.store
        if store is None:
            return
        for record in await store.list_channels():
            self._channels.setdefault(record.device_id, {})[record.channel_id] = record

    async def flush(self) -> None:
        """Write queued changes (one batch each); on failure they stay queued."""
        store = self.platform.store
        if store is None:
            self._dirty.clear()
            self._deleted.clear()
            return
        dirty, self._dirty = self._dirty, {}
        deleted, self._deleted = self._deleted, {}
        try:
            if deleted:
                by_device: dict[str, list[str]] = {}
                for device_id, channel_id in deleted:
                    by_device.setdefault(device_id, []).append(channel_id)
                for device_id, ids in by_device.items():
                    await store.delete_channels(device_id, ids)
            if dirty:
                await store.upsert_channels(list(dirty.values()))
        except BaseException:
            for key, value in deleted.items():
                if key not in self._dirty:
                    self._deleted.setdefault(key, value)
            for key, record in dirty.items():
                if key not in self._deleted:
                    self._dirty.setdefault(key, record)
            raise

    def forget(self, device_id: str) -> None:
        """A deleted device: its channels go with it (the store drops them with the device)."""
        self._channels.pop(device_id, None)
        for key in [k for k in self._dirty if k[0] == device_id]:
            del self._dirty[key]
        for key in [k for k in self._deleted if k[0] == device_id]:
            del self._deleted[key]

    # -- reading ----------------------------------------------------------------------------------
    def channels(self, device_id: str) -> list[ChannelRecord]:
        return sorted(self._channels.get(device_id, {}).values(), key=lambda c: c.channel_id)

    def channel(self, device_id: str, channel_id: str) -> ChannelRecord | None:
        return self._channels.get(device_id, {}).get(channel_id)

    def find_channel(self, channel_id: str) -> ChannelRecord | None:
        """The channel wherever it is (alarms name a channel, not the NVR)."""
        for channels in self._channels.values():
            record = channels.get(channel_id)
            if record is not None:
                return record
        return None

    def tree(self, device_id: str) -> list[TreeNode]:
        return build_tree(self._channels.get(device_id, {}).values())

    # -- changes ----------------------------------------------------------------------------------
    def _put(self, record: ChannelRecord) -> str:
        """Add or update one record; ``added``, ``updated`` or ``same``."""
        channels = self._channels.setdefault(record.device_id, {})
        old = channels.get(record.channel_id)
        if old is not None:
            if _same(old, record):
                return "same"
            record.created_at = old.created_at
        key = (record.device_id, record.channel_id)
        channels[record.channel_id] = record
        self._dirty[key] = record
        self._deleted.pop(key, None)
        return "updated" if old is not None else "added"

    def _remove(self, device_id: str, channel_id: str) -> bool:
        channels = self._channels.get(device_id)
        if channels is None or channels.pop(channel_id, None) is None:
            return False
        key = (device_id, channel_id)
        self._dirty.pop(key, None)
        self._deleted[key] = None
        return True

    def apply(self, device_id: str, items: Sequence[Any], *, complete: bool) -> tuple[int, int, int]:
        """Apply catalog items; with ``complete`` the channels not listed are removed.
        Returns ``(added, updated, removed)``."""
        now = time.time()
        added = updated = removed = 0
        seen: set[str] = set()
        for item in items:
            record = item if isinstance(item, ChannelRecord) else channel_from_item(device_id, item, now)
            if record is None:
                continue
            seen.add(record.channel_id)
            outcome = self._put(record)
            added += outcome == "added"
            updated += outcome == "updated"
        if complete:
            for channel_id in [c for c in self._channels.get(device_id, {}) if c not in seen]:
                removed += self._remove(device_id, channel_id)
        return added, updated, removed

    # -- queries ----------------------------------------------------------------------------------
    async def query(self, device_id: str, *, timeout: float | None = None) -> CatalogResult:
        """Query the catalog of ``device_id`` and apply it; joins a query already running."""
        running = self._running.get(device_id)
        if running is not None:
            return await asyncio.shield(running)
        self.queries.reachable(device_id)
        future = asyncio.get_running_loop().create_future()
        self._running[device_id] = future
        try:
            result = await self._query(device_id, timeout)
        except BaseException as exc:
            if not future.done():
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
                    future.exception()      # retrieved here: joiners re-raise it themselves
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._running[device_id]

    async def _query(self, device_id: str, timeout: float | None) -> CatalogResult:
        from ..manscdp import messages as m

        now = time.time()
        message = m.CatalogQuery(sn=self.queries.next_sn(), device_id=device_id)
        gathered: Gathered = await self.queries.request(
            device_id, message, gather=Gather(key=_item_key), timeout=timeout or self.timeout,
            idle_timeout=self.idle_timeout)
        records = [r for item in gathered.items if (r := channel_from_item(device_id, item, now)) is not None]
        added, updated, removed = self.apply(device_id, records, complete=not gathered.partial)
        result = CatalogResult(device_id, gathered.sum_num, len(records), gathered.partial, added, updated,
                               removed, gathered.packets, gathered.duplicates)
        log.info("catalog: %d of %s items in %d packets%s; %d added, %d updated, %d removed", len(records),
                 gathered.sum_num, gathered.packets, " (partial)" if gathered.partial else "", added, updated,
                 removed, extra={"device_id": device_id})
        self.platform.events.publish(CatalogUpdated(device_id, added, updated, removed, gathered.partial, now))
        return result

    # -- device messages --------------------------------------------------------------------------
    def on_unsolicited(self, device_id: str, message: Any) -> None:
        """A Catalog Response no query is waiting for: merge it (never remove)."""
        added, updated, _ = self.apply(device_id, getattr(message, "items", ()) or (), complete=False)
        log.debug("unsolicited catalog answer SN %s: %d added, %d updated", getattr(message, "sn", None),
                  added, updated, extra={"device_id": device_id})
        if added or updated:
            self.platform.events.publish(CatalogUpdated(device_id, added, updated, 0, True, time.time()))

    def on_notify(self, device_id: str, message: Any) -> None:
        """A Catalog Notify (NOTIFY in a subscription, or MESSAGE): apply each item's Event."""
        now = time.time()
        added = updated = removed = 0
        for item in getattr(message, "items", ()) or ():
            record = channel_from_item(device_id, item, now)
            if record is None:
                continue
            event = (_text(getattr(item, "event", None)) or "UPDATE").upper()
            if event in ("ADD", "UPDATE"):
                old = self.channel(device_id, record.channel_id)
                if old is not None and not _has_details(item):
                    continue        # an UPDATE without fields says nothing new
                outcome = self._put(record)
                added += outcome == "added"
                updated += outcome == "updated"
            elif event == "DEL":
                removed += self._remove(device_id, record.channel_id)
            elif event in ("ON", "OFF", "VLOST", "DEFECT"):
                if not self.notify_status:
                    continue
                old = self.channel(device_id, record.channel_id)
                if old is None:
                    log.debug("catalog %s for unknown channel %s", event, record.channel_id,
                              extra={"device_id": device_id})
                    continue
                new = dataclasses.replace(old, fields=dict(old.fields), status="ON" if event == "ON" else "OFF",
                                          fault=None if event in ("ON", "OFF") else event, updated_at=now)
                if self._put(new) != "same":
                    updated += 1
                    self.platform.events.publish(ChannelStatusChanged(device_id, record.channel_id, new.status,
                                                                      event, now))
            else:
                log.debug("unknown catalog event %r", event, extra={"device_id": device_id})
        if added or updated or removed:
            self.platform.events.publish(CatalogUpdated(device_id, added, updated, removed, True, now))


def _item_key(item: Any) -> str | None:
    return _text(getattr(item, "device_id", None) if not isinstance(item, dict) else item.get("device_id"))


def _has_details(item: Any) -> bool:
    raw = _as_dict(item)
    return any(v not in (None, "", {}, []) for k, v in raw.items() if k not in ("device_id", "event", "extra"))
