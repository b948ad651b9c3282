"""Background tasks owned by one object (platform, stream manager, simulator...).

The event loop keeps only weak references to tasks, so an owner must hold them while they run;
and every owner needs the same stop path: let them finish for a moment, cancel the rest, wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator, Mapping
from typing import Any


class TaskSet:
    """Tasks kept referenced while they run; failures logged (when given a logger) as they end."""

    def __init__(self, logger: logging.Logger | None = None, *, prefix: str = "",
                 extra: Mapping[str, Any] | None = None) -> None:
        self._tasks: set[asyncio.Task] = set()
        self._log = logger
        self._prefix = prefix
        self._extra = extra

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=self._prefix + name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if self._log is not None and not task.cancelled() and task.exception() is not None:
            self._log.error("task %s failed", task.get_name(), exc_info=task.exception(), extra=self._extra)

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task]:
        return iter(list(self._tasks))

    async def close(self, grace: float = 0.0) -> None:
        """Give running tasks ``grace`` seconds to end by themselves, then cancel and await them."""
        if grace > 0 and self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
