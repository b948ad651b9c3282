"""``Server(config)``: store, platform (SIP UDP+TCP), media streams and HTTP API, started and
stopped as one.

Shutdown order: end the media streams (BYE, viewers see the end), stop accepting HTTP, stop SIP
(its store flush included), then close the store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from pathlib import Path
from typing import Callable

from aiohttp import web

from ..config import Config
from ..platform import Platform
from ..store import create_store

log = logging.getLogger("sip28181.server")

DEFAULT_DEVICE_PASSWORD = "12345678"


def ensure_api_token(config: Config) -> str:
    """The configured token, or one generated once and kept (mode 0600) in the data directory."""
    if config.api_token:
        return config.api_token
    path = Path(config.data_dir) / "api-token"
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    log.warning("no API token configured: generated one in %s", path)
    return token


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.platform: Platform | None = None
        self.runner: web.AppRunner | None = None
        self.http_port = 0
        self.api_token = ""

    async def start(self) -> None:
        from ..api import RedactingAccessLogger
        from ..api.app import build_app
        from ..api.metrics import Metrics

        cfg = self.config
        Path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
        self.api_token = ensure_api_token(cfg)
        if cfg.password == DEFAULT_DEVICE_PASSWORD:
            log.warning("devices are accepted with the well-known default password %r: set --password "
                        "(or per-device passwords in the configuration file)", DEFAULT_DEVICE_PASSWORD)
        metrics = Metrics()
        store = create_store(cfg)
        self.platform = Platform(cfg, store, metrics)
        await self.platform.start()
        try:
            from ..platform.streams import StreamManager
            self.platform.streams = StreamManager.from_config(self.platform, cfg)
            await self.platform.streams.start()
            from ..platform.outputs import OutputManager
            self.platform.outputs = OutputManager.from_config(self.platform.streams, cfg)
            app = build_app(self.platform, token=self.api_token, metrics=metrics)
            self.runner = web.AppRunner(app, access_log=logging.getLogger("aiohttp.access"),
                                        access_log_class=RedactingAccessLogger,  # ?token= never logged
                                        handle_signals=False, shutdown_timeout=2.0)
            await self.runner.setup()
            site = web.TCPSite(self.runner, cfg.http_host, cfg.http_port, reuse_address=True)
            await site.start()
        except BaseException:
            await self.stop()
            raise
        sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
        self.http_port = sockets[0].getsockname()[1] if sockets else cfg.http_port
        log.info("HTTP API on http://%s:%d/api/v1 (OpenAPI at /api/v1/openapi.json)", cfg.http_host, self.http_port)

    @property
    def sip_port(self) -> int:
        return self.platform.sip_port if self.platform else 0

    async def stop(self) -> None:
        outputs = getattr(self.platform, "outputs", None)
        if outputs is not None:
            await outputs.close()
        streams = getattr(self.platform, "streams", None)
        if streams is not None:
            await streams.close()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.platform is not None:
            await self.platform.stop()
            self.platform = None
        log.info("stopped")

    async def __aenter__(self) -> "Server":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


async def serve(config: Config, *, on_started: Callable[[Server], None] | None = None) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = Server(config)
    await server.start()
    if on_started is not None:
        on_started(server)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
