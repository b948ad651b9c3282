"""Store protocol: one suite run against every backend (SQLite and in-memory)."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from sip28181.config import Config
from sip28181.errors import ConfigError, LocalProtocolError
from sip28181.store import (DeviceRecord, MemoryStore, PresenceEvent, SqliteStore, Store,
                            StoreError, create_store, open_store)
from sip28181.store.sqlite import SCHEMA_VERSION


def dev(n: int, **kw) -> DeviceRecord:
    return DeviceRecord(device_id=f"340200000013200{n:05d}", **kw)


@pytest.fixture(params=["sqlite", "memory"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        s: Store = SqliteStore(tmp_path / "nested" / "dir" / "test.sqlite3")
    else:
        s = MemoryStore()
    await s.open()
    yield s
    await s.close()


def test_implementations_satisfy_protocol(tmp_path):
    assert isinstance(SqliteStore(tmp_path / "x.db"), Store)
    assert isinstance(MemoryStore(), Store)


async def test_upsert_get(store):
    record = DeviceRecord(
        device_id="34020000001320000001", name="Gate", status="online", transport="TCP",
        remote_host="192.168.1.20", remote_port=5060, contact="<sip:34020000001320000001@x>",
        expires=3600, registered_at=1000.5, last_keepalive_at=1010.25, last_seen_at=1010.25,
        call_id="abc@host", user_agent="IP Camera", gb_version="2.0", manufacturer="Hikvision",
        model="DS-2CD", firmware="V5.5", extra={"channels": 4, "名称": "大门"})
    await store.upsert_devices([record])
    got = await store.get_device("34020000001320000001")
    assert got is not None
    assert got.created_at is not None and got.updated_at is not None
    assert got == DeviceRecord(**{**{f: getattr(record, f) for f in record.__slots__},
                                  "created_at": got.created_at, "updated_at": got.updated_at})
    assert await store.get_device("34020000001320000002") is None


async def test_upsert_replaces_and_keeps_created_at(store):
    await store.upsert_devices([dev(1, name="a", created_at=100.0, updated_at=100.0)])
    await store.upsert_devices([dev(1, name="b", status="online", created_at=500.0,
                                    updated_at=200.0)])
    got = await store.get_device(dev(1).device_id)
    assert (got.name, got.status, got.created_at, got.updated_at) == ("b", "online", 100.0, 200.0)
    before = time.time()
    await store.upsert_devices([dev(1, name="c")])
    got = await store.get_device(dev(1).device_id)
    assert got.created_at == 100.0 and got.updated_at >= before


async def test_records_are_copies(store):
    record = dev(1, extra={"k": 1})
    await store.upsert_devices([record])
    record.name = "changed"
    record.extra["k"] = 2
    got = await store.get_device(record.device_id)
    assert got.name is None and got.extra == {"k": 1}
    got.extra["k"] = 3
    assert (await store.get_device(record.device_id)).extra == {"k": 1}


async def test_list_count_and_paging(store):
    await store.upsert_devices([dev(n, status="online" if n % 3 == 0 else "offline")
                                for n in reversed(range(30))])
    assert await store.count_devices() == 30
    assert await store.count_devices("online") == 10
    assert await store.count_devices(status="offline") == 20
    everything = await store.list_devices()
    assert [d.device_id for d in everything] == [dev(n).device_id for n in range(30)]
    page = await store.list_devices(offset=5, limit=10)
    assert [d.device_id for d in page] == [dev(n).device_id for n in range(5, 15)]
    online = await store.list_devices(status="online", offset=2, limit=3)
    assert [d.device_id for d in online] == [dev(n).device_id for n in (6, 9, 12)]
    assert [d.device_id for d in await store.list_devices(offset=28)] == \
        [dev(28).device_id, dev(29).device_id]
    assert await store.list_devices(limit=0) == []
    assert await store.list_devices(offset=100) == []
    with pytest.raises(LocalProtocolError):
        await store.list_devices(status="gone")
    with pytest.raises(LocalProtocolError):
        await store.list_devices(offset=-1)


async def test_delete(store):
    await store.upsert_devices([dev(1), dev(2)])
    await store.add_presence_events([PresenceEvent(dev(1).device_id, "online", 1.0, "register"),
                                     PresenceEvent(dev(2).device_id, "online", 1.0, "register")])
    assert await store.delete_device(dev(1).device_id) is True
    assert await store.delete_device(dev(1).device_id) is False
    assert await store.get_device(dev(1).device_id) is None
    assert await store.count_devices() == 1
    assert [e.device_id for e in await store.presence_events()] == [dev(2).device_id]


async def test_batch_of_10000(store):
    records = [dev(n, status="online", transport="UDP", remote_host="10.0.0.1",
                   remote_port=5060 + n % 100, last_keepalive_at=1000.0 + n)
               for n in range(10_000)]
    started = time.perf_counter()
    await store.upsert_devices(records)
    elapsed = time.perf_counter() - started
    assert await store.count_devices() == 10_000
    assert await store.count_devices("online") == 10_000
    # The periodic keepalive flush: same rows again with new times, one transaction.
    for r in records:
        r.last_keepalive_at += 60
    await store.upsert_devices(records)
    assert await store.count_devices() == 10_000
    got = await store.get_device(dev(9_999).device_id)
    assert got.last_keepalive_at == 1000.0 + 9_999 + 60
    assert len(await store.list_devices(offset=9_990)) == 10
    assert elapsed < 10, f"10,000-row batch took {elapsed:.2f} s"


async def test_presence_events_by_range(store):
    a, b = dev(1).device_id, dev(2).device_id
    events = [
        PresenceEvent(a, "online", 100.0, "register"),
        PresenceEvent(b, "online", 150.0, "register"),
        PresenceEvent(a, "offline", 200.0, "keepalive timeout"),
        PresenceEvent(a, "online", 300.0, "register"),
        PresenceEvent(b, "offline", 300.0, "unregister"),
    ]
    # Appended out of time order, in two batches.
    await store.add_presence_events(events[3:])
    await store.add_presence_events(events[:3])
    assert await store.presence_events() == events[:3] + [events[3], events[4]]
    assert await store.presence_events(a) == [events[0], events[2], events[3]]
    assert await store.presence_events(device_id=b) == [events[1], events[4]]
    assert await store.presence_events(since=150.0, until=300.0) == [events[1], events[2]]
    assert await store.presence_events(a, since=150.0) == [events[2], events[3]]
    assert await store.presence_events(until=150.0) == [events[0]]
    assert await store.presence_events(limit=2) == events[:2]
    newest = await store.presence_events(limit=2, newest_first=True)
    assert [e.at for e in newest] == [300.0, 300.0]
    assert await store.presence_events(a, limit=1, newest_first=True) == [events[3]]
    assert await store.presence_events(dev(3).device_id) == []
    assert await store.prune_presence_events(before=200.0) == 2
    assert await store.presence_events() == events[2:]


async def test_set_all_offline(store):
    await store.upsert_devices([dev(1, status="online"), dev(2, status="offline"),
                                dev(3, status="online")])
    assert await store.set_all_offline(5000.0, "restart") == 2
    assert await store.count_devices("online") == 0
    assert await store.count_devices() == 3
    assert (await store.get_device(dev(1).device_id)).updated_at == 5000.0
    assert await store.presence_events() == [
        PresenceEvent(dev(1).device_id, "offline", 5000.0, "restart"),
        PresenceEvent(dev(3).device_id, "offline", 5000.0, "restart"),
    ]
    assert await store.set_all_offline(6000.0, "restart") == 0


async def test_concurrent_calls(store):
    async def writer(k: int) -> None:
        for i in range(20):
            await store.upsert_devices([dev(k * 100 + i, status="online")])
            await store.add_presence_events([PresenceEvent(dev(k * 100 + i).device_id, "online",
                                                           float(i), "register")])

    async def reader() -> None:
        for _ in range(20):
            await store.list_devices(status="online", limit=10)
            await store.count_devices()

    await asyncio.gather(*(writer(k) for k in range(5)), *(reader() for _ in range(3)))
    assert await store.count_devices("online") == 100
    assert len(await store.presence_events()) == 100


async def test_empty_batches(store):
    await store.upsert_devices([])
    await store.add_presence_events([])
    assert await store.count_devices() == 0


async def test_use_when_closed(store):
    await store.close()
    await store.close()                       # idempotent
    with pytest.raises(StoreError, match="not open"):
        await store.count_devices()
    await store.open()
    await store.open()                        # idempotent
    assert await store.count_devices() == 0


def test_record_validation():
    with pytest.raises(LocalProtocolError, match="status"):
        DeviceRecord("34020000001320000001", status="ONLINE")
    with pytest.raises(LocalProtocolError, match="transport"):
        DeviceRecord("34020000001320000001", transport="udp")
    with pytest.raises(LocalProtocolError, match="status"):
        PresenceEvent("34020000001320000001", "gone", 1.0)


# -- SQLite specifics --------------------------------------------------------------------------------

async def test_sqlite_persists_across_reopen(tmp_path):
    path = tmp_path / "data" / "sip28181.sqlite3"
    async with SqliteStore(path) as s:
        await s.upsert_devices([dev(1, status="online", name="网关", extra={"a": [1, 2]}),
                                dev(2)])
        await s.add_presence_events([PresenceEvent(dev(1).device_id, "online", 10.0, "register")])
    assert path.exists()
    async with SqliteStore(path) as s:
        got = await s.get_device(dev(1).device_id)
        assert (got.name, got.status, got.extra) == ("网关", "online", {"a": [1, 2]})
        assert await s.count_devices() == 2
        assert await s.set_all_offline(20.0, "restart") == 1
        assert [e.status for e in await s.presence_events()] == ["online", "offline"]
    async with SqliteStore(path) as s:
        assert await s.count_devices("online") == 0


async def test_sqlite_wal_and_schema_version(tmp_path):
    path = tmp_path / "db.sqlite3"
    async with SqliteStore(path):
        pass
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"devices_status", "presence_events_device_at", "presence_events_at"} <= indexes
    conn.close()


async def test_sqlite_refuses_newer_schema(tmp_path):
    path = tmp_path / "db.sqlite3"
    async with SqliteStore(path):
        pass
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    store = SqliteStore(path)
    with pytest.raises(StoreError, match="newer than this sip28181 supports"):
        await store.open()
    with pytest.raises(StoreError, match="not open"):
        await store.count_devices()


async def test_sqlite_failed_batch_rolls_back(tmp_path):
    async with SqliteStore(tmp_path / "db.sqlite3") as s:
        await s.upsert_devices([dev(1)])
        bad = dev(3, remote_port=2**70)          # fails to bind after dev(2) was written
        with pytest.raises(OverflowError):
            await s.upsert_devices([dev(2), bad])
        assert await s.count_devices() == 1
        await s.upsert_devices([dev(2)])          # the connection is still usable
        assert await s.count_devices() == 2


# -- selection by config -----------------------------------------------------------------------------

async def test_open_store_by_config(tmp_path):
    store = await open_store(Config(data_dir=tmp_path / "d"))
    try:
        assert isinstance(store, SqliteStore)
        assert (tmp_path / "d" / "sip28181.sqlite3").exists()
    finally:
        await store.close()
    store = await open_store(Config(store="memory"))
    assert isinstance(store, MemoryStore)
    assert await store.count_devices() == 0
    await store.close()


def test_create_store_unknown_backend():
    config = Config()
    object.__setattr__(config, "store", "postgres")      # bypass Config validation
    with pytest.raises(ConfigError, match="unknown backend 'postgres'"):
        create_store(config)


@pytest.mark.parametrize("yields", [1, 2, 3, 5, 8])
async def test_a_cancelled_write_still_commits_and_leaves_the_connection_usable(tmp_path, yields):
    """The platform's flusher is cancelled at shutdown, mid-write: the write must neither be
    half-done nor leave a BEGIN behind that breaks the next one."""
    store = SqliteStore(tmp_path / "store.db")
    await store.open()
    try:
        event = PresenceEvent("34020000001320000001", "online", 1.0, "register")
        for _ in range(10):
            task = asyncio.ensure_future(store.add_presence_events([event]))
            for _ in range(yields):
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await store.add_presence_events([event])
        assert len(await store.presence_events()) == 11
    finally:
        await store.close()


async def test_write_in_order_puts_back_what_failed_and_what_a_cancellation_never_reached():
    from sip28181.store.base import write_in_order

    requeued: list[str] = []
    started = asyncio.Event()

    async def ok():
        return None

    async def fail():
        raise sqlite3.OperationalError("disk I/O error")

    async def slow():
        started.set()
        await asyncio.sleep(10)

    def step(write, name):
        return (write, lambda: requeued.append(name))

    with pytest.raises(sqlite3.OperationalError):
        await write_in_order([step(ok, "a"), step(fail, "b"), step(ok, "c")])
    assert requeued == ["b", "c"]           # the failed step and every later one

    requeued.clear()
    task = asyncio.ensure_future(write_in_order([step(ok, "a"), step(slow, "b"), step(ok, "c")]))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert requeued == ["c"]                # the cancelled write completes by itself
