"""Catalog parts to an upper that leaves one unanswered: the rest go by timed sending
(PROTOCOL §11.2), while an error status from the upper still ends the answer."""

from __future__ import annotations

from sip28181.manscdp import messages as m
from sip28181.sip.dialog import new_tag
from sip28181.sip.message import Response

from ..integration.conftest import loop_errors, wait_for  # noqa: F401  (autouse: no leaked task errors)
from .test_catalog_upper import CITY, UPPER, city_with_upper, query


def catalog_parts(upper, sn: int) -> list:
    """The catalog answer parts with ``sn`` the upper received (each once: retransmissions of an
    unanswered MESSAGE are absorbed by its transaction layer)."""
    return [(r, msg) for r, msg in upper.bodies("MESSAGE", "Catalog") if msg.sn == sn]


class Script:
    """Decides the upper's answer to each catalog part in arrival order: a status, or None to
    leave it unanswered (kept in ``unanswered``)."""

    def __init__(self, upper, answers: list[int | None]) -> None:
        self.upper = upper
        self.answers = answers
        self.unanswered: list = []
        self.seen = 0
        self._inner = upper.endpoint.on_request
        upper.endpoint.on_request = self

    def __call__(self, request, flow) -> None:
        if request.method != "MESSAGE" or b"<Response>" not in request.body or b"Catalog" not in request.body:
            self._inner(request, flow)
            return
        self.upper.received.append(request)
        status = self.answers[self.seen] if self.seen < len(self.answers) else 200
        self.seen += 1
        if status is None:
            self.unanswered.append(request)
        else:
            self.upper.endpoint.respond(Response.for_request(request, status, to_tag=new_tag()))


def answers_done(city) -> int:
    """Catalog answers the city finished sending (however they ended)."""
    return city.platform._counts.get(("cascade_catalog_messages", ("catalog_answer",)), 0)


async def test_unanswered_part_falls_back_to_timed_sending(tmp_path):
    async with city_with_upper(tmp_path, catalog_group=3) as (upper, city, sim):
        link = city.platform.cascade.link(UPPER)
        link.request_timeout = 1.0                    # the upper's silence shows sooner
        script = Script(upper, [None, None])          # the first two parts never get a 200
        assert (await upper.send(city, upper.request(city, "MESSAGE", query(m.CatalogQuery, CITY, 41)))).status == 200
        # part 3 comes although part 2 is still unanswered: timed sending, not waiting for 200s
        parts = await wait_for(lambda: len(catalog_parts(upper, 41)) == 3 and catalog_parts(upper, 41), timeout=15)
        assert len(script.unanswered) == 2
        assert [len(msg.items) for _, msg in parts] == [3, 3, 2]
        assert {msg.sum_num for _, msg in parts} == {8}
        ids = {i.device_id for _, msg in parts for i in msg.items}
        assert len(ids) == 8 and CITY in ids and set(sim.management.channel_ids) <= ids
        await wait_for(lambda: answers_done(city) == 1, timeout=15)


async def test_error_status_still_ends_the_answer(tmp_path):
    async with city_with_upper(tmp_path, catalog_group=3) as (upper, city, sim):
        link = city.platform.cascade.link(UPPER)
        link.request_timeout = 1.0
        northbound = city.platform.cascade.northbound
        northbound.timed_interval = 60.0              # timed parts wait for the answer here
        # part 1 unanswered; part 2 (timed) refused with 486: part 3 never goes
        script = Script(upper, [None, None])
        await upper.send(city, upper.request(city, "MESSAGE", query(m.CatalogQuery, CITY, 51)))
        await wait_for(lambda: len(script.unanswered) == 2, timeout=15)
        second = script.unanswered[1]
        upper.endpoint.respond(Response.for_request(second, 486, to_tag=new_tag()))
        await wait_for(lambda: answers_done(city) == 1, timeout=15)
        assert len(catalog_parts(upper, 51)) == 2

        # an error status in sequential sending ends it at once, as before
        script.answers, script.seen = [500], 0
        await upper.send(city, upper.request(city, "MESSAGE", query(m.CatalogQuery, CITY, 52)))
        await wait_for(lambda: answers_done(city) == 2, timeout=15)
        assert len(catalog_parts(upper, 52)) == 1
