"""Concurrent changes of the same upper through the API: one wins, and what the store keeps is
what runs (it survives a restart as the winner's settings, never the loser's)."""

from __future__ import annotations

import asyncio

from sip28181.cascade.uppers import UpperExists, create_upper

from ..integration.conftest import loop_errors  # noqa: F401  (autouse: no leaked task errors)
from ..integration.conftest import make_config, running as running_server

CITY = "44010000002000000001"
PROVINCE = "44000000002000000001"


def running(config):
    return running_server(config, "/api/v1")


def body(name: str) -> dict:
    # nobody listens there: the links only retry, which is all this test needs
    return {"sip_id": PROVINCE, "host": "127.0.0.1", "port": 9, "name": name, "enabled": False}


async def saved(server) -> list[str]:
    return [u.get("name") for u in await server.platform.store.list_uppers()]


async def test_concurrent_creations_leave_the_winner_in_the_store(tmp_path):
    config = make_config(tmp_path, sip_id=CITY)
    async with running(config) as (server, api):
        cascade = server.platform.cascade
        # both checks run before either save: the race as two requests arriving together
        results = await asyncio.gather(create_upper(cascade, body("first")), create_upper(cascade, body("second")),
                                       return_exceptions=True)
        assert sum(isinstance(r, UpperExists) for r in results) == 1
        winner = cascade.link(PROVINCE).settings.name
        assert await saved(server) == [winner]

        # over HTTP: two creations at once, one 201 and one 409, the store agreeing with the link
        assert (await api.call("DELETE", f"/uppers/{PROVINCE}"))[0] == 200
        responses = await asyncio.gather(api.call("POST", "/uppers", json=body("third")),
                                         api.call("POST", "/uppers", json=body("fourth")))
        assert sorted(status for status, _ in responses) == [201, 409]
        running_name = cascade.link(PROVINCE).settings.name
        assert running_name in ("third", "fourth")
        assert await saved(server) == [running_name]
    async with running(config) as (server, api):
        status, one = await api.get(f"/uppers/{PROVINCE}")
        assert status == 200 and one["name"] == running_name
