"""Store protocol, catalog/alarm/position tables: one suite against SQLite and the in-memory store."""

from __future__ import annotations

import sqlite3

import pytest

from sip28181.store import (AlarmFilter, AlarmRecord, ChannelRecord, DeviceRecord, MemoryStore,
                            MobilePositionRecord, PresenceEvent, SqliteStore, Store)
from sip28181.store.sqlite import MIGRATIONS, SCHEMA_VERSION

NVR = "34020000001180000001"


def ch(n: int, **kw) -> ChannelRecord:
    return ChannelRecord(device_id=NVR, channel_id=f"340200000013100{n:05d}", **kw)


@pytest.fixture(params=["sqlite", "memory"])
async def store(request, tmp_path):
    s: Store = SqliteStore(tmp_path / "t.sqlite3") if request.param == "sqlite" else MemoryStore()
    await s.open()
    yield s
    await s.close()


async def test_channels_upsert_list_delete(store):
    await store.upsert_channels([ch(1, name="门口", parent_id=f"{NVR}/34020000002160000001",
                                    fields={"Info": {"PTZType": "1"}, "Owner": "x"}, longitude=113.5),
                                 ch(2, status="OFF", created_at=10.0)])
    await store.upsert_channels([ch(2, status="ON", fault=None, created_at=99.0)])
    got = await store.list_channels(NVR)
    assert [c.channel_id for c in got] == [ch(1).channel_id, ch(2).channel_id]
    assert got[0].name == "门口" and got[0].fields == {"Info": {"PTZType": "1"}, "Owner": "x"}
    assert got[0].longitude == 113.5 and got[0].parent_id.endswith("/34020000002160000001")
    assert (got[1].status, got[1].created_at) == ("ON", 10.0)
    got[0].fields["mutated"] = True
    assert "mutated" not in (await store.list_channels(NVR))[0].fields
    assert await store.list_channels("34020000001180000009") == []
    assert await store.delete_channels(NVR, [ch(1).channel_id, "nope"]) == 1
    assert [c.channel_id for c in await store.list_channels()] == [ch(2).channel_id]
    assert await store.delete_channels(NVR) == 1
    assert await store.list_channels() == []


async def test_channels_batch_of_10000(store):
    await store.upsert_channels([ch(i, name=f"c{i}") for i in range(10_000)])
    assert len(await store.list_channels(NVR)) == 10_000
    assert await store.delete_channels(NVR, [ch(i).channel_id for i in range(0, 10_000, 2)]) == 5_000
    assert len(await store.list_channels(NVR)) == 5_000


async def test_delete_device_removes_its_channels(store):
    await store.upsert_devices([DeviceRecord(device_id=NVR)])
    await store.upsert_channels([ch(1), ch(2)])
    assert await store.delete_device(NVR)
    assert await store.list_channels() == []


def alarm(at: float, **kw) -> AlarmRecord:
    values = dict(device_id=NVR, alarm_device_id=ch(1).channel_id, at=at, sn=1, priority=2, method=5,
                  alarm_type=100002, alarm_time="2024-05-20T09:30:12")
    values.update(kw)
    return AlarmRecord(**values)


async def test_alarms_search_count_paging(store):
    await store.add_alarms([
        alarm(100.0, image_urls=["http://192.0.2.12/a.jpg"], infos=[{"AlarmType": "100002"},
                                                                     {"ImageURL": "http://192.0.2.12/a.jpg"}],
              alarm_type_param={"EventType": "1"}, event_type=1, description="颜色异常"),
        alarm(200.0, method=2, alarm_type=1, priority=1),
        alarm(300.0, alarm_device_id=ch(2).channel_id, method=6, alarm_type=2),
        alarm(400.0, device_id="34020000001320000005", alarm_device_id="34020000001320000005",
              alarm_type=None, method=2),
    ])
    everything = await store.search_alarms(AlarmFilter())
    assert [a.at for a in everything] == [400.0, 300.0, 200.0, 100.0]
    assert all(a.id is not None for a in everything) and len({a.id for a in everything}) == 4
    first = everything[-1]
    assert first.image_urls == ["http://192.0.2.12/a.jpg"] and first.infos[1] == {"ImageURL": "http://192.0.2.12/a.jpg"}
    assert first.alarm_type_param == {"EventType": "1"} and first.description == "颜色异常"
    assert everything[0].alarm_type is None and everything[0].image_urls == []
    assert [a.at for a in await store.search_alarms(AlarmFilter(since=200.0, until=400.0))] == [300.0, 200.0]
    assert [a.at for a in await store.search_alarms(AlarmFilter(method=2), newest_first=False)] == [200.0, 400.0]
    assert [a.at for a in await store.search_alarms(AlarmFilter(alarm_type=100002))] == [100.0]
    assert [a.at for a in await store.search_alarms(AlarmFilter(device_id=ch(2).channel_id))] == [300.0]
    assert await store.count_alarms(AlarmFilter(device_id=NVR)) == 3
    assert await store.count_alarms(AlarmFilter(priority=1)) == 1
    page = await store.search_alarms(AlarmFilter(), offset=1, limit=2)
    assert [a.at for a in page] == [300.0, 200.0]


async def test_mobile_positions(store):
    await store.add_mobile_positions([
        MobilePositionRecord(NVR, ch(1).channel_id, 20.0, "2024-01-01T00:00:20", 113.1, 23.1, 10.0, 90.0, 5.0),
        MobilePositionRecord(NVR, ch(1).channel_id, 10.0, None, 113.0, 23.0),
        MobilePositionRecord(NVR, ch(2).channel_id, 15.0, None, 114.0, 24.0),
    ])
    got = await store.mobile_positions(ch(1).channel_id)
    assert [p.at for p in got] == [10.0, 20.0] and got[1].speed == 10.0 and got[1].time == "2024-01-01T00:00:20"
    assert [p.at for p in await store.mobile_positions(since=12.0, until=20.0)] == [15.0]
    assert len(await store.mobile_positions(limit=2)) == 2


async def test_presence_summary(store):
    await store.add_presence_events([
        PresenceEvent("a", "online", 10.0), PresenceEvent("a", "offline", 20.0),
        PresenceEvent("a", "online", 30.0), PresenceEvent("b", "offline", 5.0),
    ])
    summary = await store.presence_summary()
    assert summary["a"].first_online_at == 10.0 and summary["a"].last_online_at == 30.0
    assert summary["a"].last_offline_at == 20.0
    assert summary["b"].first_online_at is None and summary["b"].last_offline_at == 5.0


async def test_sqlite_migrates_a_version_1_database(tmp_path):
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (1)")
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute("INSERT INTO devices (device_id, created_at, updated_at) VALUES (?, 1, 1)", (NVR,))
    db.commit()
    db.close()
    async with SqliteStore(path) as store:
        assert (await store.get_device(NVR)) is not None
        await store.upsert_channels([ch(1)])
        assert len(await store.list_channels()) == 1
    version = sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone()[0]
    assert version == SCHEMA_VERSION >= 2
