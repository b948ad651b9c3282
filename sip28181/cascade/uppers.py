"""Upper platforms managed at run time: created, replaced and deleted through the API, kept in the
store and loaded at start.

The configuration file lists the uppers an installation starts with; the API changes them while it
runs. So that such a change survives a restart, every change is written to the store first (a
failed write changes nothing) and applied to the running links after. At start, saved uppers
override configured ones with the same SIP ID. Deleting a configured upper saves a tombstone
(``{"sip_id": ..., "deleted": true}``) so that it does not come back from the file at the next
start; deleting an upper that only the API created just forgets it.

Changes are applied one at a time (a lock per cascade around check, save and apply): two
concurrent creations of the same upper must not leave the loser's settings in the store.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, NotFoundError, Sip28181Error
from .link import UpperLink
from .settings import UpperSettings, parse_upper

if TYPE_CHECKING:
    from .service import Cascade

__all__ = ["UpperExists", "create_upper", "delete_upper", "load_saved", "replace_upper"]

log = logging.getLogger("sip28181.cascade")

DELETED = "deleted"

_locks: "weakref.WeakKeyDictionary[Cascade, asyncio.Lock]" = weakref.WeakKeyDictionary()


def _lock(cascade: "Cascade") -> asyncio.Lock:
    """The lock serialising the API's changes of ``cascade``'s uppers."""
    lock = _locks.get(cascade)
    if lock is None:
        lock = _locks[cascade] = asyncio.Lock()
    return lock


class UpperExists(Sip28181Error):
    """An upper with this SIP ID is already configured."""


def _configured(cascade: "Cascade") -> set[str]:
    return {u.sip_id for u in cascade.platform.config.upper}


async def load_saved(cascade: "Cascade") -> None:
    """Apply the store's uppers over the configured ones (before the links start)."""
    store = cascade.platform.store
    if store is None:
        return
    for raw in await store.list_uppers():
        sip_id = str(raw.get("sip_id"))
        if raw.get(DELETED) is True:
            if cascade.links.pop(sip_id, None) is not None:
                log.info("configured upper deleted through the API: not started", extra={"device_id": sip_id})
            continue
        try:
            settings = parse_upper(raw, f"saved upper {sip_id}")
        except ConfigError as exc:      # written by an older version, or edited by hand
            log.error("saved upper ignored: %s", exc, extra={"device_id": sip_id})
            continue
        cascade.links[sip_id] = UpperLink(cascade, settings, source="api")


def _parse(raw: Mapping[str, Any], sip_id: str | None = None) -> UpperSettings:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"upper: must be a JSON object, got {type(raw).__name__}")
    values = dict(raw)
    if sip_id is not None:
        if values.setdefault("sip_id", sip_id) != sip_id:
            raise ConfigError(f"upper: sip_id {values['sip_id']!r} differs from the path's {sip_id}")
    return parse_upper(values, "upper")


async def create_upper(cascade: "Cascade", raw: Mapping[str, Any]) -> UpperLink:
    """Add an upper (it registers at once when enabled); :class:`UpperExists` if it is there."""
    settings = _parse(raw)
    async with _lock(cascade):
        if settings.sip_id in cascade.links:
            raise UpperExists(f"upper {settings.sip_id} already exists")
        if cascade.platform.store is not None:
            await cascade.platform.store.save_upper(settings.to_dict())
        try:
            link = await cascade.add(settings)
        except ValueError:              # added meanwhile by the library, outside the API
            raise UpperExists(f"upper {settings.sip_id} already exists") from None
        link.source = "api"
    log.info("upper added through the API", extra={"device_id": settings.sip_id, "call_id": ""})
    return link


async def replace_upper(cascade: "Cascade", sip_id: str, raw: Mapping[str, Any]) -> UpperLink:
    """Replace an upper's settings (the link unregisters and starts again).

    The API never shows the password, so a body without ``password`` keeps the current one
    (``null`` removes it)."""
    async with _lock(cascade):
        old = cascade.link(sip_id)
        values = dict(raw) if isinstance(raw, Mapping) else raw
        if isinstance(values, dict) and "password" not in values:
            values["password"] = old.settings.password
        settings = _parse(values, sip_id)
        if cascade.platform.store is not None:
            await cascade.platform.store.save_upper(settings.to_dict())
        link = await cascade.update(settings)
        link.source = "api"
    log.info("upper changed through the API", extra={"device_id": sip_id, "call_id": ""})
    return link


async def delete_upper(cascade: "Cascade", sip_id: str) -> None:
    """Unregister from an upper and forget it, for good."""
    async with _lock(cascade):
        if sip_id not in cascade.links:
            raise NotFoundError(f"upper platform {sip_id} not found")
        store = cascade.platform.store
        if store is not None:
            if sip_id in _configured(cascade):
                await store.save_upper({"sip_id": sip_id, DELETED: True})
            else:
                await store.delete_upper(sip_id)
        await cascade.remove(sip_id)
    log.info("upper deleted through the API", extra={"device_id": sip_id, "call_id": ""})
