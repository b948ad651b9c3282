"""Statistics from constructed presence histories: online rate, access intervals, device lists."""

from __future__ import annotations

import pytest

from sip28181.errors import LocalProtocolError
from sip28181.platform.stats import (DAY, DeviceFacts, device_lists, local_midnight, online_intervals,
                                     online_rate, online_time)
from sip28181.store.base import PresenceEvent, PresenceSummary

D = "34020000001320000001"


def ev(status: str, at: float) -> PresenceEvent:
    return PresenceEvent(D, status, at, "test")


def test_online_time_over_a_period():
    events = [ev("online", 100), ev("offline", 400), ev("online", 600), ev("offline", 700)]
    assert online_intervals(events, 0, 1000) == [(100, 400), (600, 700)]
    assert online_time(events, 0, 1000) == 400
    # clipped by the period on both sides
    assert online_time(events, 200, 650) == 200 + 50
    # the device was online before the period began and is still online at its end
    assert online_time([ev("offline", 300)], 0, 1000, initial="online") == 300
    assert online_time([], 0, 1000, initial="online") == 1000
    assert online_time([], 0, 1000) == 0


def test_repeated_states_change_nothing():
    events = [ev("online", 100), ev("online", 200), ev("offline", 300), ev("offline", 350), ev("online", 900)]
    assert online_intervals(events, 0, 1000) == [(100, 300), (900, 1000)]


def test_online_rate_expected_time_starts_when_the_device_was_known_and_ends_now():
    events = [ev("online", 5000), ev("offline", 5000 + 0.9 * 3600)]
    r = online_rate(D, events, 5000, 5000 + 3600)
    assert r.online_seconds == pytest.approx(0.9 * 3600) and r.expected_seconds == 3600
    assert r.rate == pytest.approx(0.9)
    # known only from half-way: M is half the period
    r = online_rate(D, [ev("online", 1800)], 0, 3600, known_since=1800)
    assert (r.online_seconds, r.expected_seconds, r.rate) == (1800, 1800, 1.0)
    # a period reaching into the future counts only until now
    r = online_rate(D, [ev("online", 0)], 0, 10_000, now=2500)
    assert (r.online_seconds, r.expected_seconds) == (2500, 2500)
    # not known in the period at all: no rate rather than 0 %
    assert online_rate(D, [], 0, 100, known_since=500).rate is None
    with pytest.raises(LocalProtocolError):
        online_rate(D, [], 100, 100)


def test_a_month_with_keepalive_outages():
    """HJ 9.3.1: monthly online rate >= 90 %. Three outages of 1 day each in a 30-day month."""
    events = [ev("online", 0)]
    for day in (3, 10, 20):
        events += [ev("offline", day * DAY), ev("online", (day + 1) * DAY)]
    r = online_rate(D, events, 0, 30 * DAY)
    assert r.rate == pytest.approx(27 / 30)


def facts(device_id, online=False, first=None, last_on=None, last_off=None, stream=None):
    summary = PresenceSummary(device_id, first, last_on, last_off) if (first or last_off) else None
    return DeviceFacts(device_id, online, summary, stream)


def test_device_lists():
    now = 10 * DAY + 12 * 3600
    today = 10 * DAY
    lists = device_lists([
        facts("a", online=True, first=1 * DAY, last_on=1 * DAY, stream=2 * DAY),   # old, streams
        facts("b", online=True, first=today + 60, last_on=today + 60),              # new today, never streamed
        facts("c", online=False, first=2 * DAY, last_on=2 * DAY, last_off=today + 3600),   # dropped today
        facts("d", online=False, first=2 * DAY, last_on=2 * DAY, last_off=now - 2 * DAY),  # offline 2 days
        facts("e", online=False, first=1 * DAY, last_on=1 * DAY, last_off=now - 5 * DAY),  # offline 5 days
        facts("f", online=False),                                                   # never online
    ], now, today)
    assert lists["ever_online"] == ["a", "b", "c", "d", "e"]
    assert lists["new_online_today"] == ["b"]
    assert lists["new_offline_today"] == ["c"]
    assert lists["offline_within_3_days"] == ["c", "d"]
    assert lists["offline_over_3_days"] == ["e", "f"]
    assert lists["online_never_streamed"] == ["b", "c", "d", "e"]


def test_local_midnight():
    now = 1_700_000_000.0
    midnight = local_midnight(now)
    assert 0 <= now - midnight < DAY
