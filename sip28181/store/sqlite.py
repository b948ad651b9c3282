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

from .base import (AlarmFilter, AlarmRecord, ChannelRecord, ControlLogRecord, DeviceRecord,
                   MobilePositionRecord, PresenceEvent, PresenceSummary, StoreError, check_paging,
                   check_status, upper_key)

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
    (
        """CREATE TABLE channels (
            device_id TEXT NOT NULL,
            channel_id TEXT NOT NULL,
            name TEXT,
            kind TEXT NOT NULL DEFAULT 'channel',
            status TEXT NOT NULL DEFAULT 'ON',
            fault TEXT,
            parent_id TEXT,
            business_group_id TEXT,
            civil_code TEXT,
            manufacturer TEXT,
            model TEXT,
            address TEXT,
            parental INTEGER,
            longitude REAL,
            latitude REAL,
            fields TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (device_id, channel_id)
        )""",
        """CREATE TABLE alarms (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            device_id TEXT NOT NULL,
            alarm_device_id TEXT NOT NULL,
            at REAL NOT NULL,
            sn INTEGER,
            priority INTEGER,
            method INTEGER,
            alarm_type INTEGER,
            alarm_time TEXT,
            description TEXT,
            longitude REAL,
            latitude REAL,
            event_type INTEGER,
            alarm_type_param TEXT NOT NULL DEFAULT '{}',
            image_urls TEXT NOT NULL DEFAULT '[]',
            infos TEXT NOT NULL DEFAULT '[]',
            extra TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX alarms_at ON alarms (at)",
        "CREATE INDEX alarms_device_at ON alarms (device_id, at)",
        "CREATE INDEX alarms_alarm_device_at ON alarms (alarm_device_id, at)",
        "CREATE INDEX alarms_type_at ON alarms (alarm_type, at)",
        "CREATE INDEX alarms_method_at ON alarms (method, at)",
        """CREATE TABLE mobile_positions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            device_id TEXT NOT NULL,
            target_id TEXT NOT NULL,
            at REAL NOT NULL,
            time TEXT,
            longitude REAL,
            latitude REAL,
            speed REAL,
            direction REAL,
            altitude REAL
        )""",
        "CREATE INDEX mobile_positions_target_at ON mobile_positions (target_id, at)",
        "CREATE INDEX mobile_positions_at ON mobile_positions (at)",
    ),
    (
        """CREATE TABLE uppers (
            sip_id TEXT PRIMARY KEY,
            settings TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE control_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            source TEXT NOT NULL,
            device_id TEXT NOT NULL,
            channel_id TEXT,
            command TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            result TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX control_log_at ON control_log (at)",
        "CREATE INDEX control_log_device_at ON control_log (device_id, at)",
        "CREATE INDEX control_log_channel_at ON control_log (channel_id, at)",
        "CREATE INDEX control_log_source_at ON control_log (source, at)",
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


_CH_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ChannelRecord))
_CH_LIST = ", ".join(_CH_COLUMNS)
_CH_UPSERT = (
    f"INSERT INTO channels ({_CH_LIST}) VALUES ({', '.join('?' for _ in _CH_COLUMNS)}) "
    "ON CONFLICT (device_id, channel_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _CH_COLUMNS
                if c not in ("device_id", "channel_id", "created_at"))
)
_CH_FIELDS = _CH_COLUMNS.index("fields")
_AL_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AlarmRecord) if f.name != "id")
_AL_JSON = ("alarm_type_param", "image_urls", "infos", "extra")
_POS_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(MobilePositionRecord))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_LOG_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ControlLogRecord))


def _channel_params(record: ChannelRecord, now: float) -> tuple[Any, ...]:
    values = [getattr(record, c) for c in _CH_COLUMNS]
    if record.created_at is None:
        values[_CH_COLUMNS.index("created_at")] = now
    if record.updated_at is None:
        values[_CH_COLUMNS.index("updated_at")] = now
    values[_CH_FIELDS] = _json(record.fields)
    return tuple(values)


def _channel(row: Sequence[Any]) -> ChannelRecord:
    values = list(row)
    values[_CH_FIELDS] = json.loads(values[_CH_FIELDS]) if values[_CH_FIELDS] else {}
    return ChannelRecord(*values)


def _alarm(row: Sequence[Any]) -> AlarmRecord:
    values = dict(zip(("id", *_AL_COLUMNS), row))
    for name in _AL_JSON:
        values[name] = json.loads(values[name]) if values[name] else ([] if name in ("image_urls", "infos") else {})
    return AlarmRecord(**values)


def _where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """`` WHERE a AND b ...`` of the conditions whose value is not None, and their parameters (a
    clause with several ``?`` takes its value for each)."""
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in conditions:
        if value is not None:
            clauses.append(clause)
            params += [value] * clause.count("?")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _alarm_where(where: AlarmFilter) -> tuple[str, list[Any]]:
    return _where(("at >= ?", where.since), ("at < ?", where.until),
                  ("(device_id = ? OR alarm_device_id = ?)", where.device_id),
                  *((f"{name} = ?", getattr(where, name)) for name in ("alarm_type", "method", "priority")))


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
        """Run ``(sql, params, many)`` statements in one transaction; returns their row counts.

        The transaction is shielded from cancellation: the statements run in aiosqlite's thread
        whatever the caller does, so a cancelled caller waits for the COMMIT (or ROLLBACK) before it
        sees the cancellation. Otherwise a BEGIN still queued in the thread could outlive the
        cancelled write and break the next one ("cannot start a transaction within a transaction")."""
        task = asyncio.ensure_future(self._transaction(statements))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                logger.error("store write failed while its caller was cancelled", exc_info=task.exception())
            raise

    async def _transaction(self, statements: Sequence[tuple[str, Any, bool]]) -> list[int]:
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
            ("DELETE FROM channels WHERE device_id = ?", (device_id,), False),
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

    async def presence_summary(self) -> dict[str, PresenceSummary]:
        rows = await self._read(
            "SELECT device_id, MIN(CASE WHEN status = 'online' THEN at END), "
            "MAX(CASE WHEN status = 'online' THEN at END), "
            "MAX(CASE WHEN status = 'offline' THEN at END) FROM presence_events GROUP BY device_id")
        return {row[0]: PresenceSummary(*row) for row in rows}

    # -- catalog ---------------------------------------------------------------------------------

    async def upsert_channels(self, records: Sequence[ChannelRecord]) -> None:
        if not records:
            return
        now = time.time()
        await self._write([(_CH_UPSERT, [_channel_params(r, now) for r in records], True)])

    async def delete_channels(self, device_id: str, channel_ids: Sequence[str] | None = None) -> int:
        if channel_ids is None:
            counts = await self._write([("DELETE FROM channels WHERE device_id = ?", (device_id,), False)])
            return counts[0]
        if not channel_ids:
            return 0
        counts = await self._write([("DELETE FROM channels WHERE device_id = ? AND channel_id = ?",
                                     [(device_id, c) for c in channel_ids], True)])
        return counts[0]

    async def list_channels(self, device_id: str | None = None) -> list[ChannelRecord]:
        sql = f"SELECT {_CH_LIST} FROM channels"
        params: tuple[Any, ...] = ()
        if device_id is not None:
            sql += " WHERE device_id = ?"
            params = (device_id,)
        sql += " ORDER BY device_id, channel_id"
        return [_channel(row) for row in await self._read(sql, params)]

    # -- alarms and positions --------------------------------------------------------------------

    async def add_alarms(self, records: Sequence[AlarmRecord]) -> None:
        if not records:
            return
        rows = []
        for r in records:
            values = [getattr(r, c) for c in _AL_COLUMNS]
            for name in _AL_JSON:
                i = _AL_COLUMNS.index(name)
                values[i] = _json(values[i])
            rows.append(tuple(values))
        await self._write([(f"INSERT INTO alarms ({', '.join(_AL_COLUMNS)}) "
                            f"VALUES ({', '.join('?' for _ in _AL_COLUMNS)})", rows, True)])

    async def search_alarms(self, where: AlarmFilter, *, offset: int = 0, limit: int | None = 100,
                            newest_first: bool = True) -> list[AlarmRecord]:
        check_paging(offset, limit)
        clause, params = _alarm_where(where)
        order = "DESC" if newest_first else "ASC"
        sql = (f"SELECT id, {', '.join(_AL_COLUMNS)} FROM alarms{clause} "
               f"ORDER BY at {order}, id {order} LIMIT ? OFFSET ?")
        return [_alarm(row) for row in await self._read(sql, [*params, -1 if limit is None else limit, offset])]

    async def count_alarms(self, where: AlarmFilter) -> int:
        clause, params = _alarm_where(where)
        rows = await self._read(f"SELECT COUNT(*) FROM alarms{clause}", params)
        return int(rows[0][0])

    async def add_mobile_positions(self, records: Sequence[MobilePositionRecord]) -> None:
        if not records:
            return
        await self._write([(f"INSERT INTO mobile_positions ({', '.join(_POS_COLUMNS)}) "
                            f"VALUES ({', '.join('?' for _ in _POS_COLUMNS)})",
                            [tuple(getattr(r, c) for c in _POS_COLUMNS) for r in records], True)])

    async def mobile_positions(self, target_id: str | None = None, since: float | None = None,
                               until: float | None = None, limit: int = 1000) -> list[MobilePositionRecord]:
        check_paging(0, limit)
        where, params = _where(("target_id = ?", target_id), ("at >= ?", since), ("at < ?", until))
        sql = f"SELECT {', '.join(_POS_COLUMNS)} FROM mobile_positions{where} ORDER BY at, id LIMIT ?"
        return [MobilePositionRecord(*row) for row in await self._read(sql, [*params, limit])]

    # -- upper platforms -------------------------------------------------------------------------

    async def list_uppers(self) -> list[dict[str, Any]]:
        rows = await self._read("SELECT settings FROM uppers ORDER BY sip_id")
        return [json.loads(row[0]) for row in rows]

    async def save_upper(self, settings: dict[str, Any]) -> None:
        key = upper_key(settings)
        await self._write([("INSERT INTO uppers (sip_id, settings, updated_at) VALUES (?, ?, ?) "
                            "ON CONFLICT (sip_id) DO UPDATE SET settings = excluded.settings, "
                            "updated_at = excluded.updated_at",
                            (key, _json(settings), time.time()), False)])

    async def delete_upper(self, sip_id: str) -> bool:
        counts = await self._write([("DELETE FROM uppers WHERE sip_id = ?", (sip_id,), False)])
        return counts[0] > 0

    # -- control log -----------------------------------------------------------------------------

    async def add_control_log(self, records: Sequence[ControlLogRecord]) -> None:
        if not records:
            return
        await self._write([(f"INSERT INTO control_log ({', '.join(_LOG_COLUMNS)}) "
                            f"VALUES ({', '.join('?' for _ in _LOG_COLUMNS)})",
                            [tuple(getattr(r, c) for c in _LOG_COLUMNS) for r in records], True)])

    async def search_control_log(self, *, device_id: str | None = None, source: str | None = None,
                                 start: float | None = None, end: float | None = None,
                                 limit: int = 100, offset: int = 0) -> list[ControlLogRecord]:
        check_paging(offset, limit)
        where, params = _where(("(device_id = ? OR channel_id = ?)", device_id), ("source = ?", source),
                               ("at >= ?", start), ("at < ?", end))
        sql = f"SELECT {', '.join(_LOG_COLUMNS)} FROM control_log{where} ORDER BY at DESC, id DESC LIMIT ? OFFSET ?"
        return [ControlLogRecord(*row) for row in await self._read(sql, [*params, limit, offset])]

    async def prune_control_log(self, before: float) -> int:
        counts = await self._write([("DELETE FROM control_log WHERE at < ?", (before,), False)])
        return counts[0]
