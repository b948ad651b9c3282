"""The PyAV outputs of streamed channels: live HLS, RTMP pushes, MP4 recordings, snapshots.

Each output holds its stream through :meth:`StreamManager.acquire` (so the stream starts on
demand and stays up while the output runs) and is a sink of the stream's relay. It ends when
asked (API), when its stream ends (device BYE, no media...: the relay tells the sink), or, for
HLS, when no player asked for the playlist or a segment for ``hls_idle_timeout`` seconds; then
its hold is released, and the stream lingers and ends as usual when nobody else watches.

::

    outputs = OutputManager(platform.streams, hls_dir=data_dir / "hls", record_dir=...)
    hls = await outputs.hls(device_id, channel_id)          # started on demand, shared
    push = await outputs.start_push(device_id, channel_id, "rtmp://host/live/cam")
    rec = await outputs.start_record(device_id, channel_id, segment_seconds=600)
    jpeg = await outputs.snapshot(device_id, channel_id, width=320)
    await outputs.close()
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import pathlib
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from media.outputs import OutputError
from media.outputs.hls import HlsSink
from media.outputs.record import RecordSink
from media.outputs.rtmp import RtmpPushSink
from media.outputs.snapshot import snapshot as take_snapshot

from ..errors import NotFoundError
from ..tasks import TaskSet
from .streams import StreamHandle, StreamManager

__all__ = ["HlsOutput", "OutputManager", "PushOutput", "RecordOutput"]

log = logging.getLogger("sip28181.outputs")

#: Finished pushes and recordings kept for the listings.
HISTORY = 100
#: Seconds :meth:`OutputManager.close` waits for the output threads (MP4 remux, RTMP close).
CLOSE_TIMEOUT = 10.0


@dataclass(eq=False)
class _Output:
    output_id: str
    device_id: str
    channel_id: str
    handle: StreamHandle | None
    sink: Any
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    end_reason: str | None = None

    @property
    def stream_id(self) -> str:
        return f"{self.device_id}_{self.channel_id}"

    @property
    def running(self) -> bool:
        return self.ended_at is None


@dataclass(eq=False)
class HlsOutput(_Output):
    last_access: float = 0.0          # loop time of the last request


@dataclass(eq=False)
class PushOutput(_Output):
    pass


@dataclass(eq=False)
class RecordOutput(_Output):
    pass


class OutputManager:
    """HLS, RTMP push and recording outputs of the platform's streams (``platform.outputs``)."""

    def __init__(self, streams: StreamManager, *, hls_dir: str | pathlib.Path,
                 record_dir: str | pathlib.Path, hls_segment_seconds: float = 2.0,
                 hls_list_size: int = 5, hls_idle_timeout: float = 30.0,
                 hls_start_timeout: float = 20.0) -> None:
        self.streams = streams
        self.hls_dir = pathlib.Path(hls_dir)
        self.record_dir = pathlib.Path(record_dir)
        self.hls_segment_seconds = hls_segment_seconds
        self.hls_list_size = hls_list_size
        self.hls_idle_timeout = hls_idle_timeout
        self.hls_start_timeout = hls_start_timeout
        self._hls: dict[str, HlsOutput] = {}
        self._hls_starting: dict[str, asyncio.Future[HlsOutput]] = {}
        self._pushes: dict[str, PushOutput] = {}
        self._records: dict[str, RecordOutput] = {}
        self._history: deque[_Output] = deque(maxlen=HISTORY)
        self._ids = itertools.count(1)
        self._tasks = TaskSet()
        self._idle_task: asyncio.Task | None = None
        self._closing = False
        # HLS files of a previous run are stale: players must not get them.
        shutil.rmtree(self.hls_dir, ignore_errors=True)

    @classmethod
    def from_config(cls, streams: StreamManager, config: Any) -> OutputManager:
        data = pathlib.Path(config.data_dir)
        return cls(streams, hls_dir=data / "hls", record_dir=data / "records",
                   hls_segment_seconds=config.hls_segment_seconds,
                   hls_list_size=config.hls_list_size, hls_idle_timeout=config.hls_idle_timeout)

    # -- common -----------------------------------------------------------------------------
    def _check(self) -> None:
        if self._closing:
            raise OutputError("outputs are stopping")

    async def _attach(self, device_id: str, channel_id: str, sink: Any, kind: str,
                      transport: str | None = None) -> StreamHandle:
        """Hold the channel's live stream and feed ``sink`` from its relay."""
        handle = await self.streams.acquire(device_id, channel_id, transport=transport)
        handle.describe(kind)
        try:
            sink.start()
        except BaseException:
            handle.release()
            raise
        handle.relay.add_sink(sink)
        return handle

    def _watch(self, output: _Output, table: dict[str, Any]) -> None:
        """When the sink's thread ends (stop, stream end, error): detach, release, file away."""
        async def watch() -> None:
            try:
                await output.sink.wait_closed()
            finally:
                self._ended(output, table)

        self._tasks.spawn(watch(), f"output {output.output_id}")

    def _ended(self, output: _Output, table: dict[str, Any]) -> None:
        if output.ended_at is not None:
            return
        output.ended_at = time.time()
        sink = output.sink
        output.end_reason = sink.end_reason or "stopped"
        if sink.error is not None:
            output.end_reason = f"error: {sink.error}"
        if output.handle is not None:
            output.handle.relay.remove_sink(sink)
            output.handle.release()
        if table.get(output.output_id) is output:
            del table[output.output_id]
        if not isinstance(output, HlsOutput):
            self._history.append(output)
        log.info("output %s of %s ended: %s", output.output_id, output.stream_id,
                 output.end_reason, extra={"device_id": output.device_id, "call_id": None})

    # -- HLS ----------------------------------------------------------------------------------
    async def hls(self, device_id: str, channel_id: str, transport: str | None = None) -> HlsOutput:
        """The channel's HLS output, started on demand; returns once a segment is listed."""
        self._check()
        key = f"{device_id}_{channel_id}"
        output = self._hls.get(key)
        if output is not None and output.running:
            self.touch(output)
            return output
        pending = self._hls_starting.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._hls_starting[key] = pending
            try:
                output = await self._start_hls(key, device_id, channel_id, transport)
            except BaseException as exc:
                if not pending.done():
                    pending.set_exception(exc)
                    pending.exception()            # retrieved here: waiters re-raise it
                raise
            finally:
                self._hls_starting.pop(key, None)
            if not pending.done():
                pending.set_result(output)
            return output
        output = await asyncio.shield(pending)
        self.touch(output)
        return output

    async def _start_hls(self, key: str, device_id: str, channel_id: str,
                         transport: str | None) -> HlsOutput:
        sink = HlsSink(self.hls_dir / key, segment_seconds=self.hls_segment_seconds,
                       list_size=self.hls_list_size)
        handle = await self._attach(device_id, channel_id, sink, "hls", transport)
        output = HlsOutput(key, device_id, channel_id, handle, sink)
        self._hls[key] = output
        self._watch(output, self._hls)
        self.touch(output)
        self._ensure_idle_task()
        try:
            await sink.wait_ready(self.hls_start_timeout)
        except BaseException:
            sink.stop("not ready")
            raise
        return output

    def hls_output(self, device_id: str, channel_id: str) -> HlsOutput | None:
        """The running HLS output of a channel (touched: a player is using it), or None."""
        output = self._hls.get(f"{device_id}_{channel_id}")
        if output is None or not output.running:
            return None
        self.touch(output)
        return output

    def touch(self, output: HlsOutput) -> None:
        output.last_access = asyncio.get_running_loop().time()

    def _ensure_idle_task(self) -> None:
        if self._idle_task is None or self._idle_task.done():
            self._idle_task = asyncio.get_running_loop().create_task(self._expire_idle(),
                                                                     name="hls idle")

    async def _expire_idle(self) -> None:
        interval = min(1.0, self.hls_idle_timeout / 4)
        while self._hls:
            await asyncio.sleep(interval)
            now = asyncio.get_running_loop().time()
            for output in list(self._hls.values()):
                if not output.sink.ready:      # starting: bounded by hls_start_timeout instead
                    output.last_access = now
                elif output.running and now - output.last_access > self.hls_idle_timeout:
                    log.info("HLS of %s idle for %.0f s: stopped", output.stream_id,
                             self.hls_idle_timeout,
                             extra={"device_id": output.device_id, "call_id": None})
                    output.sink.stop("idle")

    def hls_outputs(self) -> list[HlsOutput]:
        return list(self._hls.values())

    # -- RTMP push ------------------------------------------------------------------------------
    async def start_push(self, device_id: str, channel_id: str, url: str, *, audio: str = "aac",
                         transport: str | None = None) -> PushOutput:
        """Push the channel's live stream to ``url`` (RTMP), reconnecting until stopped."""
        self._check()
        sink = RtmpPushSink(url, audio=audio)            # OutputError for bad URLs, first
        for other in self._pushes.values():
            if other.stream_id == f"{device_id}_{channel_id}" and other.sink.url == sink.url:
                raise OutputError(f"already pushing this channel to {sink.display_url}")
        handle = await self._attach(device_id, channel_id, sink, "rtmp", transport)
        output = PushOutput(f"push-{next(self._ids)}", device_id, channel_id, handle, sink)
        self._pushes[output.output_id] = output
        self._watch(output, self._pushes)
        return output

    def pushes(self, device_id: str | None = None, channel_id: str | None = None,
               finished: bool = True) -> list[PushOutput]:
        items = list(self._pushes.values())
        if finished:
            items += [o for o in self._history if isinstance(o, PushOutput)]
        return [o for o in items if (device_id is None or o.device_id == device_id)
                and (channel_id is None or o.channel_id == channel_id)]

    async def stop_push(self, push_id: str) -> PushOutput:
        output = self._pushes.get(push_id)
        if output is None:
            raise NotFoundError(f"push {push_id} not found")
        await self._stop(output, self._pushes)
        return output

    # -- recording ------------------------------------------------------------------------------
    async def start_record(self, device_id: str, channel_id: str, *,
                           segment_seconds: float | None = None, audio: str = "aac",
                           transport: str | None = None) -> RecordOutput:
        """Record the channel's live stream as MP4 into ``record_dir/<device>_<channel>/``."""
        self._check()
        key = f"{device_id}_{channel_id}"
        if any(o.stream_id == key for o in self._records.values()):
            raise OutputError(f"channel {channel_id} of {device_id} is already being recorded")
        sink = RecordSink(self.record_dir / key / "{start}.mp4", segment_seconds=segment_seconds,
                          audio=audio)
        handle = await self._attach(device_id, channel_id, sink, "record", transport)
        output = RecordOutput(f"record-{next(self._ids)}", device_id, channel_id, handle, sink)
        self._records[output.output_id] = output
        self._watch(output, self._records)
        return output

    def records(self, device_id: str | None = None, channel_id: str | None = None,
                finished: bool = True) -> list[RecordOutput]:
        items = list(self._records.values())
        if finished:
            items += [o for o in self._history if isinstance(o, RecordOutput)]
        return [o for o in items if (device_id is None or o.device_id == device_id)
                and (channel_id is None or o.channel_id == channel_id)]

    async def stop_record(self, record_id: str) -> RecordOutput:
        output = self._records.get(record_id)
        if output is None:
            raise NotFoundError(f"recording {record_id} not found")
        await self._stop(output, self._records)
        return output

    async def _stop(self, output: _Output, table: dict[str, Any]) -> None:
        if output.handle is not None:
            output.handle.relay.remove_sink(output.sink)
        output.sink.stop("api")
        try:
            await asyncio.wait_for(asyncio.shield(output.sink.wait_closed()), CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("output %s still closing after %.0f s", output.output_id, CLOSE_TIMEOUT)
        self._ended(output, table)

    # -- snapshot -------------------------------------------------------------------------------
    async def snapshot(self, device_id: str, channel_id: str, *, width: int | None = None,
                       height: int | None = None, quality: int = 3, timeout: float = 5.0,
                       transport: str | None = None) -> bytes:
        """A JPEG of the channel's live picture (starts the stream if needed)."""
        self._check()
        handle = await self.streams.acquire(device_id, channel_id, transport=transport)
        handle.describe("snapshot")
        try:
            return await take_snapshot(handle.relay, timeout=timeout, width=width, height=height,
                                       quality=quality)
        finally:
            handle.release()

    # -- shutdown -------------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop every output and wait (bounded) for their threads to finish their files."""
        self._closing = True
        outputs = [*self._hls.values(), *self._pushes.values(), *self._records.values()]
        for output in outputs:
            if output.handle is not None:
                output.handle.relay.remove_sink(output.sink)
            output.sink.stop("shutdown")
        await self._tasks.close(grace=CLOSE_TIMEOUT)
        if self._idle_task is not None:
            self._idle_task.cancel()
            await asyncio.gather(self._idle_task, return_exceptions=True)
            self._idle_task = None
        for output in outputs:
            table = (self._hls if isinstance(output, HlsOutput) else
                     self._pushes if isinstance(output, PushOutput) else self._records)
            self._ended(output, table)
