"""Loopback fixtures: a real server (SIP over UDP+TCP, HTTP API, SQLite) on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect

import aiohttp
import pytest

from sip28181.config import Config
from sip28181.server import Server

TOKEN = "test-token"
SERVER_ID = "34020000002000000001"


def make_config(tmp_path, **overrides) -> Config:
    values = dict(sip_host="127.0.0.1", sip_port=0, http_host="127.0.0.1", http_port=0,
                  data_dir=tmp_path / "data", api_token=TOKEN, store_flush_interval=0.2,
                  log_level="DEBUG")
    values.update(overrides)
    return Config(**values)


class Api:
    """A thin HTTP client for the server's REST API."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str | None = TOKEN) -> None:
        self.session = session
        self.base = base
        self.token = token

    async def call(self, method: str, path: str, *, token: str | None | bool = True, **kw):
        headers = dict(kw.pop("headers", {}))
        use = self.token if token is True else token
        if use:
            headers["Authorization"] = f"Bearer {use}"
        async with self.session.request(method, self.base + path, headers=headers, **kw) as resp:
            ctype = resp.headers.get("Content-Type", "")
            body = await resp.json() if "json" in ctype else await resp.text()
            return resp.status, body

    async def get(self, path: str, **kw):
        return await self.call("GET", path, **kw)


@contextlib.asynccontextmanager
async def running(config: Config, prefix: str = ""):
    """A started server and an API client for it (``prefix`` is put before every path)."""
    srv = Server(config)
    await srv.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield srv, Api(session, f"http://127.0.0.1:{srv.http_port}{prefix}")
    finally:
        await srv.stop()


@pytest.fixture
def config_factory(tmp_path):
    def factory(**overrides) -> Config:
        return make_config(tmp_path, **overrides)
    return factory


@pytest.fixture
async def server(config_factory):
    srv = Server(config_factory())
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def api(server):
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{server.http_port}")


async def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Poll ``predicate`` (sync or async) until truthy; its last value, or AssertionError."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def replace(config: Config, **changes) -> Config:
    return dataclasses.replace(config, **changes)


@pytest.fixture(autouse=True)
async def loop_errors():
    """Fail the test on any exception reported to the loop's handler (leaked task, crashed callback)."""
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(previous)
    assert not errors, f"unhandled event-loop exceptions: {[(e.get('message'), e.get('exception')) for e in errors]}"
