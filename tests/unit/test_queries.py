"""Correlation of MANSCDP answers and gathering of multi-packet answers (no sockets)."""

from __future__ import annotations

from sip28181.platform.queries import Correlator, Gather, Pending

DEV = "34020000001180000001"


def pending(cmd: str, sn: int) -> Pending:
    return Pending(DEV, cmd, sn, future=None)  # type: ignore[arg-type]  # the correlator never touches it


def test_gather_dedupes_any_order_and_completes_on_sumnum():
    g: Gather = Gather(key=lambda item: item)
    assert not g.add(5, [3, 4])
    assert not g.add(5, [3, 4])          # a repeated packet
    assert not g.add(5, [5])
    assert g.add(5, [1, 2])              # the first part last
    assert (list(g.items), g.packets, g.duplicates) == ([3, 4, 5, 1, 2], 4, 2)


def test_gather_empty_answer_and_items_without_key():
    g: Gather = Gather(key=lambda item: item or None)
    assert g.add(0, [])
    g = Gather(key=lambda item: item or None)
    assert g.add(None, ["", "a"])         # no SumNum: the packet is the whole answer
    assert list(g.items) == ["a"]
    g = Gather(key=lambda item: item)
    assert not g.add(3, ["a"])
    assert not g.add(None, ["b"])         # a later packet without SumNum keeps the announced one
    assert g.add(None, ["c"])


def test_gather_cost_per_packet_is_linear():
    g: Gather = Gather(key=lambda item: item)
    for start in range(0, 10_000, 4):
        done = g.add(10_000, range(start, start + 4))
    assert done and len(g.items) == 10_000


def test_correlator_exact_then_fallbacks():
    c = Correlator()
    a, b = pending("Catalog", 10), pending("DeviceInfo", 11)
    c.open(a)
    c.open(b)
    assert c.match(DEV, "Catalog", 10) is a
    assert c.match(DEV, "DeviceInfo", 11) is b
    # another device, another CmdType: no match
    assert c.match("34020000001180000002", "Catalog", 10) is None
    assert c.match(DEV, "RecordInfo", 10) is None
    # a device answering with its own SN, or none: the only open query of that CmdType
    assert c.match(DEV, "Catalog", 999) is a
    assert c.match(DEV, "Catalog", None) is a
    # two open queries of one CmdType: only exact SNs match
    a2 = pending("Catalog", 12)
    c.open(a2)
    assert c.match(DEV, "Catalog", 12) is a2
    assert c.match(DEV, "Catalog", 999) is a     # remembered alias
    assert c.match(DEV, "Catalog", 1234) is None
    c.close(a)
    c.close(a2)
    c.close(b)
    assert len(c) == 0 and c.match(DEV, "Catalog", 999) is None
