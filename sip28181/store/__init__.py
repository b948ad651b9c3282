"""Persistence for the device registry, presence history, catalogs, alarms, positions, upper
platforms and the control log.

:func:`create_store` picks the backend named by ``config.store`` from :data:`STORES`;
:func:`open_store` also opens it. The server owns the store and closes it at shutdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError
from .base import (DEVICE_STATUSES, AlarmFilter, AlarmRecord, ChannelRecord, ControlLogRecord, DeviceRecord,
                   DeviceStatus, MobilePositionRecord, PresenceEvent, PresenceSummary, Store, StoreError)
from .memory import MemoryStore
from .sqlite import SqliteStore

if TYPE_CHECKING:
    from ..config import Config

__all__ = [
    "AlarmFilter", "AlarmRecord", "ChannelRecord", "ControlLogRecord", "MobilePositionRecord", "PresenceSummary",
    "DEVICE_STATUSES", "DeviceRecord", "DeviceStatus", "MemoryStore", "PresenceEvent", "STORES",
    "SqliteStore", "Store", "StoreError", "create_store", "open_store",
]

#: Backend name (``Config.store``) → factory. A PostgreSQL entry will join these.
STORES: dict[str, Callable[[Config], Store]] = {
    "sqlite": lambda config: SqliteStore(config.db_path),
    "memory": lambda config: MemoryStore(),
}


def create_store(config: Config) -> Store:
    """The store ``config.store`` names, not yet opened."""
    try:
        factory = STORES[config.store]
    except KeyError:
        raise ConfigError(f"store: unknown backend {config.store!r} "
                          f"(known: {', '.join(STORES)})") from None
    return factory(config)


async def open_store(config: Config) -> Store:
    """:func:`create_store`, then :meth:`Store.open` (schema created or migrated)."""
    store = create_store(config)
    await store.open()
    return store
