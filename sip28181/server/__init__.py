"""The server: the platform, the store and the HTTP API in one event loop."""

from .app import Server, serve

__all__ = ["Server", "serve"]
