"""SSRC allocation (PROTOCOL §8.3): form, uniqueness among live sessions, release."""

from __future__ import annotations

import pytest

from sip28181.platform.ssrc import SERIALS, SsrcAllocator, SsrcExhausted


def test_form_of_live_and_history():
    alloc = SsrcAllocator("44010600002000000001")
    live = alloc.allocate()
    history = alloc.allocate(history=True)
    assert live == "0106000001" and history == "1106000001"        # §8.3: 0/1 + id[3:8] + serial
    assert int(live) == 0x06516E81
    assert len(alloc) == 2 and alloc.in_use(live) and alloc.in_use(history)
    assert SsrcAllocator("13010000002000000001").allocate() == "0100000001"   # the 2016 example


def test_unique_until_released_and_reused_after():
    alloc = SsrcAllocator("34020000002000000001")
    taken = {alloc.allocate() for _ in range(500)}
    assert len(taken) == 500 and all(s.startswith("020000") for s in taken)
    first = sorted(taken)[0]
    alloc.release(first)
    alloc.release(first)                   # idempotent
    alloc.release(None)
    alloc.release("garbage")
    assert not alloc.in_use(first) and len(alloc) == 499


def test_reserved_ssrcs_are_skipped():
    alloc = SsrcAllocator("34020000002000000001")
    assert alloc.reserve("200000002") == "0200000002"               # normalised: leading zeros
    assert alloc.reserve("nope") is None
    assert alloc.allocate() == "0200000001"
    assert alloc.allocate() == "0200000003"                        # 0002 is taken by the reservation


def test_exhaustion_and_wrap():
    alloc = SsrcAllocator("34020000002000000001")
    for _ in range(SERIALS - 1):          # serial 0000 is never used
        alloc.allocate()
    with pytest.raises(SsrcExhausted):
        alloc.allocate()
    assert alloc.allocate(history=True).startswith("1")            # the other kind is separate
    alloc.release("0200005000")
    assert alloc.allocate() == "0200005000"                        # the freed one is found again


def test_bad_server_id():
    with pytest.raises(ValueError):
        SsrcAllocator("1234")
