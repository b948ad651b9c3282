"""An N-level cascade of real servers on loopback, a simulated camera at the bottom.

    async with chain(tmp_path, levels=["city", "province"], channels=2) as c:
        await c.ready()                       # every level registered to the next, camera online
        province, city = c["province"], c["city"]
        status, page = await province.api.get(f"/api/v1/devices/{city.sip_id}/channels")

Each level is a whole :class:`~sip28181.server.Server` (SIP over UDP and TCP, media, HTTP API,
SQLite store in its own directory) with one ``[[upper]]`` entry: the next level up. The camera
registers to the lowest level. Every level keeps its SIP port across restarts (the one below knows
it by address), so :meth:`Node.restart` and :meth:`Node.stop` / :meth:`Node.start` model a
platform going away and coming back; ``stop(unregister=False)`` models one that dies without
saying goodbye. Nothing here asserts behaviour: the tests do.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from sip28181.device import DeviceSimulator
from sip28181.device.media import MediaOptions
from sip28181.server import Server

from ..integration.conftest import TOKEN, Api, make_config, wait_for

__all__ = ["DEVICE", "LEVEL_IDS", "Chain", "Level", "Node", "chain"]

#: The camera at the bottom (in the district of the "unit" level).
DEVICE = "44010600001320000001"

#: Platform IDs of the usual level names (type 200, civil codes nesting district → city → province).
LEVEL_IDS = {
    "unit": "44010600002000000001",
    "district": "44010600002000000001",
    "section": "44010600002000000002",
    "city": "44010000002000000001",
    "province": "44000000002000000001",
    "ministry": "10000000002000000001",
}

#: Server settings for a chain: media on loopback, short presence timers, store flushed often.
LEVEL_CONFIG: dict[str, Any] = dict(
    media_bind="127.0.0.1", media_host="127.0.0.1", media_linger=0.5, media_no_media_timeout=3.0,
    media_invite_timeout=8.0, keepalive_interval=2, keepalive_count=3, query_timeout=8.0,
)

#: The ``[[upper]]`` settings every level uses towards the next (tests override per level).
UPPER_DEFAULTS: dict[str, Any] = dict(
    keepalive_interval=1, keepalive_timeout_count=3, retry_interval=0.2, retry_max=1.0,
    register_interval=3600,
)


@dataclasses.dataclass(frozen=True)
class Level:
    """One platform of the chain. ``transport`` and ``upper`` describe its link to the next level
    up (unused at the top); ``config`` overrides its own :class:`~sip28181.config.Config`."""

    name: str
    sip_id: str = ""
    password: str = ""
    """What the level below (platform or camera) authenticates with."""
    transport: str = "udp"
    upper: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.sip_id:
            if self.name not in LEVEL_IDS:
                raise ValueError(f"level {self.name!r}: give its sip_id (known names: {', '.join(LEVEL_IDS)})")
            object.__setattr__(self, "sip_id", LEVEL_IDS[self.name])
        if not self.password:
            object.__setattr__(self, "password", f"{self.name}-secret")


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (the SIP endpoint listens on both)."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no port free for both UDP and TCP")


class Node:
    """One running level: its server, its HTTP API client and what it saw happen."""

    def __init__(self, chain: "Chain", level: Level, index: int, root: Path) -> None:
        self.chain = chain
        self.level = level
        self.index = index
        self.root = root
        self.sip_port = _free_port()
        self.server: Server | None = None
        self.api: Api | None = None
        #: Every platform event published while this level ran (kept across restarts).
        self.events: list[object] = []
        self.starts = 0

    # -- identity ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.level.name

    @property
    def sip_id(self) -> str:
        return self.level.sip_id

    @property
    def upper(self) -> "Node | None":
        """The level above (None at the top)."""
        nodes = self.chain.nodes
        return nodes[self.index + 1] if self.index + 1 < len(nodes) else None

    @property
    def lower(self) -> "Node | None":
        """The level below (None at the bottom: the camera is there)."""
        return self.chain.nodes[self.index - 1] if self.index > 0 else None

    @property
    def lower_id(self) -> str:
        """The device ID this level knows its channels under: the camera's at the bottom, the
        lower platform's ID above it."""
        return self.lower.sip_id if self.lower is not None else self.chain.device_id

    @property
    def platform(self):
        assert self.server is not None and self.server.platform is not None, f"{self.name} is not running"
        return self.server.platform

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.platform is not None

    @property
    def link(self):
        """This level's :class:`~sip28181.cascade.link.UpperLink` to the next one up."""
        assert self.upper is not None, f"{self.name} is the top level"
        return self.platform.cascade.link(self.upper.sip_id)

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.http_port}"

    def live_url(self, channel_id: str, device_id: str | None = None, suffix: str = ".flv",
                 **query: str) -> str:
        """``/live/{device}/{channel}.flv`` here; the device is the level below unless given."""
        qs = "&".join(f"{k}={v}" for k, v in {"token": TOKEN, **query}.items())
        return f"{self.base}/live/{device_id or self.lower_id}/{channel_id}{suffix}?{qs}"

    def events_of(self, *types: type) -> list[object]:
        return [e for e in self.events if isinstance(e, types)]

    # -- configuration ----------------------------------------------------------------------------
    def upper_settings(self) -> dict[str, Any]:
        """This level's ``[[upper]]`` table: the next level up."""
        upper = self.upper
        assert upper is not None
        return {"sip_id": upper.sip_id, "host": "127.0.0.1", "port": upper.sip_port,
                "transport": self.level.transport, "password": upper.level.password,
                **UPPER_DEFAULTS, **self.chain.upper_overrides, **self.level.upper}

    def config(self):
        values: dict[str, Any] = dict(LEVEL_CONFIG)
        values.update(sip_id=self.sip_id, sip_port=self.sip_port, password=self.level.password)
        if self.upper is not None:
            values["upper"] = (self.upper_settings(),)
        values.update(self.chain.config_overrides)
        values.update(self.level.config)
        return make_config(self.root / self.name, **values)

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        assert self.server is None, f"{self.name} already runs"
        server = Server(self.config())
        await server.start()
        self.server = server
        self.starts += 1
        server.platform.events.on(self.events.append)
        self.api = Api(self.chain.http, self.base)

    async def stop(self, *, unregister: bool = True) -> None:
        """Stop this level; ``unregister=False``: its links drop without unregistering (a crash as
        the upper sees it)."""
        server, self.server = self.server, None
        self.api = None
        if server is None:
            return
        if not unregister and server.platform is not None:
            for link in list(server.platform.cascade.links.values()):
                await link.stop(unregister=False)
        await server.stop()

    async def restart(self, *, unregister: bool = True) -> None:
        await self.stop(unregister=unregister)
        await self.start()

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.sip_id} sip {self.sip_port}{'' if self.running else ' stopped'}>"


class Chain:
    """Levels from the bottom (index 0, the camera's platform) to the top."""

    def __init__(self, root: Path, levels: Sequence[str | Level], *, device_id: str = DEVICE,
                 channels: int = 1, media: MediaOptions | None = None, device: bool = True,
                 device_options: Mapping[str, Any] | None = None,
                 upper: Mapping[str, Any] | None = None, **config: Any) -> None:
        if len(levels) < 2:
            raise ValueError("a chain has at least two levels")
        self.root = Path(root)
        self.levels = [lv if isinstance(lv, Level) else Level(lv) for lv in levels]
        ids = [lv.sip_id for lv in self.levels]
        if len(set(ids)) != len(ids):
            raise ValueError(f"two levels share an ID: {ids}")
        self.device_id = device_id
        self.channels = channels
        self.media = media if media is not None else MediaOptions()
        self.with_device = device
        self.device_options = dict(device_options or {})
        self.upper_overrides = dict(upper or {})
        self.config_overrides = config
        self.http: aiohttp.ClientSession = None  # type: ignore[assignment]  # set by start()
        self.nodes = [Node(self, lv, i, self.root) for i, lv in enumerate(self.levels)]
        self.device: DeviceSimulator | None = None

    def __getitem__(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name or node.sip_id == name:
                return node
        raise KeyError(name)

    @property
    def bottom(self) -> Node:
        return self.nodes[0]

    @property
    def top(self) -> Node:
        return self.nodes[-1]

    @property
    def channel_ids(self) -> list[str]:
        """The camera's video channels."""
        assert self.device is not None
        return self.device.management.channel_ids

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self.http = aiohttp.ClientSession()
        for node in reversed(self.nodes):          # top first: every lower finds its upper there
            await node.start()
        if self.with_device:
            await self.start_device()

    async def start_device(self) -> DeviceSimulator:
        bottom = self.bottom
        options = dict(keepalive_interval=2, channels=self.channels)
        options.update(self.device_options)
        self.device = DeviceSimulator(
            self.device_id, server_id=bottom.sip_id, server_host="127.0.0.1",
            server_port=bottom.sip_port, password=bottom.level.password, media=self.media, **options)
        await self.device.start()
        return self.device

    async def close(self) -> None:
        errors: list[BaseException] = []
        if self.device is not None:
            try:
                await self.device.stop()
            except Exception as exc:   # keep stopping the servers
                errors.append(exc)
        for node in self.nodes:                    # bottom first: lowers unregister from live uppers
            try:
                await node.stop()
            except Exception as exc:
                errors.append(exc)
        if self.http is not None:
            await self.http.close()
        if errors:
            raise errors[0]

    # -- waiting ----------------------------------------------------------------------------------
    async def ready(self, timeout: float = 15.0) -> None:
        """Every level registered and online at the next one up, the camera (if started) online
        at the bottom."""
        for node in self.nodes[:-1]:
            await self.registered(node, timeout)
        if self.device is not None:
            await wait_for(lambda: self._online(self.bottom, self.device_id), timeout)

    async def registered(self, node: Node, timeout: float = 15.0) -> None:
        """``node``'s link is up and its upper shows it online."""
        upper = node.upper
        assert upper is not None
        await wait_for(lambda: node.running and node.link.online, timeout)
        await wait_for(lambda: self._online(upper, node.sip_id), timeout)

    @staticmethod
    def _online(node: Node, device_id: str) -> bool:
        if not node.running:
            return False
        state = node.platform.registry.get(device_id)
        return state is not None and state.registered and state.status == "online"

    def channel_at(self, node: Node | str, channel_id: str) -> str:
        """The ID ``node`` knows the camera's channel ``channel_id`` by: each level below maps it
        for its upper (``ids = "map"``), or keeps it."""
        node = self[node] if isinstance(node, str) else node
        cid = channel_id
        for lower in self.nodes[:node.index]:
            mapped = lower.platform.cascade.upper_side_id(lower.link, lower.lower_id, cid)
            if mapped is None:
                raise KeyError(f"{lower.name} does not share {cid} with {lower.upper.name}")
            cid = mapped
        return cid

    async def catalog_up(self, upto: Node | str | None = None, timeout: float = 20.0, *,
                         ask: bool = True) -> list[str]:
        """Wait until every level up to ``upto`` (default: the top) lists the camera's channels
        under its lower. With ``ask`` the lower's catalog is queried again while they are
        missing (the catalog queried at registration may predate the camera); without it they
        must arrive by themselves (catalog notifications). The channel IDs seen at ``upto``."""
        last = self[upto] if isinstance(upto, str) else (upto or self.top)
        seen: list[str] = []
        for node in self.nodes[:last.index + 1]:
            wanted = {self.channel_at(node, cid) for cid in self.channel_ids}
            loop_deadline = [0.0 if ask else float("inf")]

            async def listed(node: Node = node) -> list[str] | None:
                ids = self.listed(node)
                if wanted <= set(ids):
                    return ids
                now = asyncio.get_running_loop().time()
                if now >= loop_deadline[0]:
                    loop_deadline[0] = now + 2.0
                    with contextlib.suppress(Exception):
                        await node.platform.query_catalog(node.lower_id, timeout=2.0)
                return None

            try:
                seen = await wait_for(listed, timeout, interval=0.1)
            except AssertionError:
                raise AssertionError(
                    f"{node.name} does not list the camera's channels under {node.lower_id} within "
                    f"{timeout} s: wanted {sorted(wanted)}, listed {self.listed(node)}") from None
        return seen

    def listed(self, node: Node) -> list[str]:
        """Channel IDs ``node`` lists under its lower (platform API, not HTTP)."""
        try:
            channels = node.platform.channels(node.lower_id)
        except Exception:
            return []
        return [c.channel_id for c in channels if getattr(c, "kind", "channel") == "channel"]


@contextlib.asynccontextmanager
async def chain(tmp_path: Path, levels: Sequence[str | Level] = ("city", "province"), **options: Any):
    """Start a chain (see :class:`Chain` for the options), stop every part of it on exit."""
    c = Chain(tmp_path, levels, **options)
    try:
        await c.start()
        yield c
    finally:
        await c.close()
