"""SQLite store (the default): one aiosqlite connection in WAL mode, a versioned schema.

aiosqlite runs the connection in its own thread, so the event loop never waits on disk. One
``asyncio.Lock`` serialises the calls, which keeps a transaction from interleaving with statements
from another task on the same connection. Batches go through ``executemany`` in one transaction:
10,000 device rows take a few tens of milliseconds.

Schema changes are appended to :data:`MIGRATIONS`; never edit a migration that has shipped. The
SQL is kept to what PostgreSQL also accepts (``INSERT … ON CONFLICT … DO UPDATE``, ``REAL`` epoch
times, JSON as text), so a PostgreSQL store can reuse it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import aiosqlite

from .base import DeviceRecord, PresenceEvent, StoreError, check_paging, check_status

__all__ = ["MIGRATIONS", "SqliteStore"]

logger = logging.getLogger("sip28181.store")

#: Each entry upgrades the schema by one version (index 0 creates version 1).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            name TEXT,
            status TEXT NOT NULL DEFAULT 'offline',
            transport TEXT,
            remote_host TEXT,
            remote_port INTEGER,
            contact TEXT,
            expires INTEGER,
            registered_at REAL,
            last_keepalive_at REAL,
            last_seen_at REAL,
            call_id TEXT,
            user_agent TEXT,
            gb_version TEXT,
            manufacturer TEXT,
            model TEXT,
            firmware TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            extra TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX devices_status ON devices (status, device_id)",
        """CREATE TABLE presence_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            device_id TEXT NOT NULL,
            status TEXT NOT NULL,
            at REAL NOT NULL,
            reason TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX presence_events_device_at ON presence_events (device_id, at)",
        "CREATE INDEX presence_events_at ON presence_events (at)",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)

_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DeviceRecord))
_COLUMN_LIST = ", ".join(_COLUMNS)
_UPSERT = (
    f"INSERT INTO devices ({_COLUMN_LIST}) VALUES ({', '.join('?' for _ in _COLUMNS)}) "
    "ON CONFLICT (device_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in ("device_id", "created_at"))
)
_EXTRA_INDEX = _COLUMNS.index("extra")


def _row_params(record: DeviceRecord, now: float) -> tuple[Any, ...]:
    values = [getattr(record, c) for c in _COLUMNS]
    if record.created_at is None:
        values[_COLUMNS.index("created_at")] = now
    if record.updated_at is None:
        values[_COLUMNS.index("updated_at")] = now
    values[_EXTRA_INDEX] = json.dumps(record.extra, ensure_ascii=False, separators=(",", ":"))
    return tuple(values)


def _record(row: Sequence[Any]) -> DeviceRecord:
    values = list(row)
    values[_EXTRA_INDEX] = json.loads(values[_EXTRA_INDEX]) if values[_EXTRA_INDEX] else {}
    return DeviceRecord(*values)


class SqliteStore:
    """:class:`~sip28181.store.base.Store` on an SQLite file (parent directories are created).

    ``path`` may be ``":memory:"`` for a private in-memory database.
    """

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = path if path == ":memory:" else Path(path)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        state = "open" if self._db is not None else "closed"
        return f"<SqliteStore {str(self.path)!r} {state}>"

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        async with self._lock:
            if self._db is not None:
                return
            if isinstance(self.path, Path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; we issue BEGIN/COMMIT ourselves.
            db = await aiosqlite.connect(self.path, isolation_level=None)
            try:
                await db.execute("PRAGMA journal_mode = WAL")
                await db.execute("PRAGMA synchronous = NORMAL")
                await db.execute("PRAGMA busy_timeout = 5000")
                await self._migrate(db)
            except BaseException:
                await db.close()
                raise
            self._db = db

    async def close(self) -> None:
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await db.close()

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        async with db.execute("SELECT version FROM schema_version") as cur:
            row = await cur.fetchone()
        if row is None:
            await db.execute("INSERT INTO schema_version (version) VALUES (0)")
            version = 0
        else:
            version = int(row[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"database {str(self.path)!r} has schema version {version}, newer than "
                             f"this sip28181 supports ({SCHEMA_VERSION})")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            await db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[target - 1]:
                    await db.execute(statement)
                await db.execute("UPDATE schema_version SET version = ?", (target,))
                await db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    await db.rollback()
                raise
            logger.info("store %s: schema migrated to version %d", self.path, target)

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    async def _write(self, statements: Sequence[tuple[str, Any, bool]]) -> list[int]:
        """Run ``(sql, params, many)`` statements in one transaction; returns their row counts."""
        async with self._lock:
            db = self._conn()
            counts: list[int] = []
            if db.in_transaction:       # left over from a write cancelled during its rollback
                await db.rollback()
            await db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params, many in statements:
                    if many:
                        cur = await db.executemany(sql, params)
                    else:
                        cur = await db.execute(sql, params)
                    counts.append(cur.rowcount)
                    await cur.close()
                await db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    await db.rollback()
                raise
            return counts

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._lock:
            async with self._conn().execute(sql, params) as cur:
                return list(await cur.fetchall())

    # -- devices ---------------------------------------------------------------------------------

    async def upsert_devices(self, records: Sequence[DeviceRecord]) -> None:
        if not records:
            return
        now = time.time()
        await self._write([(_UPSERT, [_row_params(r, now) for r in records], True)])

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        rows = await self._read(f"SELECT {_COLUMN_LIST} FROM devices WHERE device_id = ?",
                                (device_id,))
        return _record(rows[0]) if rows else None

    async def list_devices(self, *, status: str | None = None, offset: int = 0,
                           limit: int | None = None) -> list[DeviceRecord]:
        check_status(status)
        check_paging(offset, limit)
        sql = f"SELECT {_COLUMN_LIST} FROM devices"
        params: list[Any] = []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(status)
        sql += " ORDER BY device_id LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset]     # SQLite: LIMIT -1 = no limit
        return [_record(row) for row in await self._read(sql, params)]

    async def count_devices(self, status: str | None = None) -> int:
        check_status(status)
        if status is None:
            rows = await self._read("SELECT COUNT(*) FROM devices")
        else:
            rows = await self._read("SELECT COUNT(*) FROM devices WHERE status = ?", (status,))
        return int(rows[0][0])

    async def delete_device(self, device_id: str) -> bool:
        counts = await self._write([
            ("DELETE FROM devices WHERE device_id = ?", (device_id,), False),
            ("DELETE FROM presence_events WHERE device_id = ?", (device_id,), False),
        ])
        return counts[0] > 0

    async def set_all_offline(self, at: float, reason: str) -> int:
        counts = await self._write([
            ("INSERT INTO presence_events (device_id, status, at, reason) "
             "SELECT device_id, 'offline', ?, ? FROM devices WHERE status <> 'offline'",
             (at, reason), False),
            ("UPDATE devices SET status = 'offline', updated_at = ? WHERE status <> 'offline'",
             (at,), False),
        ])
        return counts[1]

    # -- presence history ------------------------------------------------------------------------

    async def add_presence_events(self, events: Sequence[PresenceEvent]) -> None:
        if not events:
            return
        await self._write([(
            "INSERT INTO presence_events (device_id, status, at, reason) VALUES (?, ?, ?, ?)",
            [(e.device_id, e.status, e.at, e.reason) for e in events], True)])

    async def presence_events(self, device_id: str | None = None, since: float | None = None,
                              until: float | None = None, limit: int = 1000, *,
                              newest_first: bool = False) -> list[PresenceEvent]:
        check_paging(0, limit)
        where: list[str] = []
        params: list[Any] = []
        if device_id is not None:
            where.append("device_id = ?")
            params.append(device_id)
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        if until is not None:
            where.append("at < ?")
            params.append(until)
        order = "DESC" if newest_first else "ASC"
        sql = "SELECT device_id, status, at, reason FROM presence_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY at {order}, id {order} LIMIT ?"
        params.append(limit)
        return [PresenceEvent(*row) for row in await self._read(sql, params)]

    async def prune_presence_events(self, before: float) -> int:
        counts = await self._write([("DELETE FROM presence_events WHERE at < ?", (before,), False)])
        return counts[0]
