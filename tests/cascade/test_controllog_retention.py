"""The control log in the store: old entries are pruned after ``[cascade] control_log_days``;
while the store fails, what waits for it is bounded; a search flushes the control log only.

A real server with its SQLite store, read over its HTTP API.
"""

from __future__ import annotations

import time

import pytest

from sip28181.cascade.controllog import ControlLog
from sip28181.store import ControlLogRecord, StoreError

from ..integration.conftest import loop_errors  # noqa: F401  (autouse: no leaked task errors)
from ..integration.conftest import make_config, running as running_server

NVR = "44010000001180000001"
CAM = "44010000001320000001"
DAY = 86400.0


def entry(at: float, command: str = "PTZCmd") -> ControlLogRecord:
    return ControlLogRecord(at, "local", NVR, CAM, command, "A50F0101...", "ok")


def server_and_api(tmp_path, **config):
    return running_server(make_config(tmp_path, **config))


@pytest.mark.parametrize("days, kept", [(None, ["fresh", "old"]), (10.0, ["fresh"]), (0.0, ["fresh", "old", "ancient"])])
async def test_entries_older_than_the_retention_are_pruned(tmp_path, days, kept):
    config = {} if days is None else {"cascade_control_log_days": days}
    async with server_and_api(tmp_path, **config) as (server, api):
        now = time.time()
        await server.platform.store.add_control_log([entry(now - 365 * DAY, "ancient"), entry(now - 30 * DAY, "old"),
                                                     entry(now - 60, "fresh")])
        server.platform.cascade.forward.log._pruned_at = None     # as at start: prune at the next flush
        status, body = await api.get("/api/v1/control-log")
        assert status == 200, body
        assert [e["command"] for e in body] == kept        # default: 90 days


async def test_a_failing_store_keeps_a_bounded_backlog_and_search_flushes_only_the_log(tmp_path, monkeypatch):
    async with server_and_api(tmp_path, store_flush_interval=3600.0) as (server, api):
        platform = server.platform
        log = ControlLog(platform, memory_size=5)
        store = platform.store
        real_add = store.add_control_log

        async def failing(records):
            raise StoreError("disk full")
        monkeypatch.setattr(store, "add_control_log", failing)
        for i in range(8):
            log.record("local", NVR, CAM, f"cmd{i}", "", "ok")
        for _ in range(3):
            with pytest.raises(StoreError):
                await log.flush()
            log.record("local", NVR, CAM, "late", "", "ok")
        assert len(log._pending) == 5 and log.dropped == 6     # the newest kept, never more than 5
        monkeypatch.setattr(store, "add_control_log", real_add)
        await log.flush()
        assert log._pending == []
        assert [r.command for r in await store.search_control_log(device_id=CAM)] == [
            "late", "late", "late", "cmd7", "cmd6"]

        # the API's search writes the control log, not everything else the platform keeps
        async def no_full_flush():
            raise AssertionError("a control log search flushed the whole platform")
        monkeypatch.setattr(platform, "flush", no_full_flush)
        platform.cascade.forward.log.record("local", NVR, CAM, "PTZCmd", "A50F01", "ok")
        status, body = await api.get("/api/v1/control-log", params={"device_id": CAM, "limit": 1})
        assert status == 200, body
        assert [(e["command"], e["detail"]) for e in body] == [("PTZCmd", "A50F01")]
        monkeypatch.undo()          # the server's stop flushes everything, as it should
