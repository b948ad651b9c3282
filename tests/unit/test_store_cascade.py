"""Store schema v3: saved upper platforms and the control log, against SQLite and the in-memory store."""

from __future__ import annotations

import sqlite3

import pytest

from sip28181.errors import LocalProtocolError
from sip28181.store import ControlLogRecord, MemoryStore, SqliteStore, Store, StoreError
from sip28181.store.sqlite import MIGRATIONS, SCHEMA_VERSION

PROVINCE = "44000000002000000001"
MINISTRY = "10000000002000000001"
CAM = "34020000001320000001"
NVR = "34020000001180000001"


@pytest.fixture(params=["sqlite", "memory"])
async def store(request, tmp_path):
    s: Store = SqliteStore(tmp_path / "t.sqlite3") if request.param == "sqlite" else MemoryStore()
    await s.open()
    yield s
    await s.close()


async def test_uppers_save_list_replace_delete(store):
    assert await store.list_uppers() == []
    province = {"sip_id": PROVINCE, "host": "127.0.0.1", "port": 15060, "password": "密码",
                "share": ["34020000001320000001"], "id_map": {"a": "b"}, "enabled": True}
    await store.save_upper(province)
    await store.save_upper({"sip_id": MINISTRY, "host": "127.0.0.2"})
    got = await store.list_uppers()
    assert [u["sip_id"] for u in got] == [MINISTRY, PROVINCE]        # ordered by sip_id
    assert got[1] == province                                         # password kept, JSON round trip
    got[1]["host"] = "mutated"
    assert (await store.list_uppers())[1]["host"] == "127.0.0.1"
    await store.save_upper({**province, "port": 5060, "password": "new"})
    again = {u["sip_id"]: u for u in await store.list_uppers()}
    assert (again[PROVINCE]["port"], again[PROVINCE]["password"]) == (5060, "new")
    assert len(again) == 2
    assert await store.delete_upper(PROVINCE) is True
    assert await store.delete_upper(PROVINCE) is False
    assert [u["sip_id"] for u in await store.list_uppers()] == [MINISTRY]


async def test_save_upper_needs_a_sip_id(store):
    with pytest.raises(LocalProtocolError):
        await store.save_upper({"host": "127.0.0.1"})
    with pytest.raises(LocalProtocolError):
        await store.save_upper({"sip_id": ""})
    assert await store.list_uppers() == []


def log(at, source="local", device=NVR, channel=CAM, command="PTZ", result="ok", detail="A50F01..."):
    return ControlLogRecord(at=at, source=source, device_id=device, channel_id=channel,
                            command=command, detail=detail, result=result)


async def test_control_log_add_and_search(store):
    await store.add_control_log([])
    await store.add_control_log([log(10.0), log(20.0, source=PROVINCE, result="refused"),
                                 log(20.0, command="DeviceControl/GuardCmd", channel=None),
                                 log(30.0, device="34020000001180000002", channel="34020000001320000009")])
    everything = await store.search_control_log()
    assert [r.at for r in everything] == [30.0, 20.0, 20.0, 10.0]               # newest first
    assert everything[1].command == "DeviceControl/GuardCmd"                  # equal times: last added first
    assert everything[1].channel_id is None and everything[2].result == "refused"
    assert [r.at for r in await store.search_control_log(device_id=NVR)] == [20.0, 20.0, 10.0]
    assert [r.at for r in await store.search_control_log(device_id=CAM)] == [20.0, 10.0]   # by channel
    assert [r.source for r in await store.search_control_log(source=PROVINCE)] == [PROVINCE]
    assert [r.at for r in await store.search_control_log(start=20.0, end=30.0)] == [20.0, 20.0]
    assert [r.at for r in await store.search_control_log(limit=2, offset=1)] == [20.0, 20.0]
    assert await store.search_control_log(device_id="nope") == []
    with pytest.raises(LocalProtocolError):
        await store.search_control_log(offset=-1)


async def test_closed_store_refuses_cascade_calls(tmp_path):
    for s in (SqliteStore(tmp_path / "c.sqlite3"), MemoryStore()):
        with pytest.raises(StoreError):
            await s.list_uppers()
        with pytest.raises(StoreError):
            await s.add_control_log([log(1.0)])


async def test_uppers_and_log_survive_reopening(tmp_path):
    path = tmp_path / "r.sqlite3"
    async with SqliteStore(path) as s:
        await s.save_upper({"sip_id": PROVINCE, "password": "x"})
        await s.add_control_log([log(5.0)])
    async with SqliteStore(path) as s:
        assert await s.list_uppers() == [{"sip_id": PROVINCE, "password": "x"}]
        assert await s.search_control_log() == [log(5.0)]


async def test_sqlite_migrates_a_version_2_database(tmp_path):
    path = tmp_path / "v2.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (2)")
    for migration in MIGRATIONS[:2]:
        for statement in migration:
            db.execute(statement)
    db.execute("INSERT INTO devices (device_id, created_at, updated_at) VALUES (?, 1, 1)", (NVR,))
    db.commit()
    db.close()
    async with SqliteStore(path) as s:
        assert (await s.get_device(NVR)) is not None
        await s.save_upper({"sip_id": PROVINCE})
        await s.add_control_log([log(1.0)])
        assert len(await s.list_uppers()) == 1 and len(await s.search_control_log()) == 1
    version = sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone()[0]
    assert version == SCHEMA_VERSION == 3


async def test_control_log_prune_removes_only_older_entries(store):
    await store.add_control_log([log(30.0), log(10.0), log(20.0), log(20.0, source=PROVINCE)])
    assert await store.prune_control_log(20.0) == 1
    assert [r.at for r in await store.search_control_log()] == [30.0, 20.0, 20.0]
    assert await store.prune_control_log(20.0) == 0
    assert await store.prune_control_log(100.0) == 3
    assert await store.search_control_log() == []
