"""Logging set-up: every record carries the device ID and Call-ID it concerns (``-`` when none)."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(device_id)s %(call_id)s] %(message)s"


class ContextFilter(logging.Filter):
    """Fill ``device_id``/``call_id`` so the format works for records logged without them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "device_id"):
            record.device_id = "-"
        if not hasattr(record, "call_id"):
            record.call_id = "-"
        return True


def setup_logging(level: str = "INFO", stream=None) -> None:
    # records need no process ID (a getpid() system call per record): one process logs here
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "aiosqlite"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
