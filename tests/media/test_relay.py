"""Relay hub: GOP cache, codec tracking, shared FLV tags, viewer drop policy, end of stream."""

from __future__ import annotations

import asyncio
import functools
import io

import av
import pytest

from media import Frame
from media.relay import AUDIO_GOP_FRAMES, FrameQueue, Relay

from media_gen import encode_video, g711_frames, interleave


@functools.lru_cache(maxsize=None)
def video(frames: int = 75, gop: int = 25, codec: str = "h264") -> tuple[Frame, ...]:
    return tuple(encode_video(codec, frames=frames, gop=gop, bframes=0, width=160, height=120))


@functools.lru_cache(maxsize=None)
def av_stream(frames: int = 75) -> tuple[Frame, ...]:
    vid = list(video(frames))
    aud = g711_frames("g711a", count=frames * 40 // 40, samples=320)
    return tuple(interleave(vid, aud))


class Collect:
    """A FrameSink that records what it gets."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.ends: list[str] = []

    def on_frames(self, frames):
        self.frames.extend(frames)

    def on_end(self, reason):
        self.ends.append(reason)


def decode_flv(data: bytes) -> tuple[int, int]:
    """(video frames, audio packets) PyAV decodes from FLV bytes."""
    container = av.open(io.BytesIO(data), format="flv")
    n_video = n_audio = 0
    for packet in container.demux():
        if packet.stream.type == "video":
            n_video += len(packet.decode())
        elif packet.stream.type == "audio" and packet.size:
            n_audio += 1
    container.close()
    return n_video, n_audio


def drain(viewer) -> bytes:
    """Everything queued in a viewer, without an event loop."""
    data = b"".join(viewer._items)
    viewer._items.clear()
    viewer._queued = 0
    return data


# ---- GOP cache and codecs -----------------------------------------------------------------------

def test_gop_cache_starts_at_the_last_keyframe():
    frames = video(60, gop=25)
    relay = Relay("t")
    relay.feed(list(frames[:55]))
    gop = relay.gop()
    assert gop[0] is frames[50] and gop[0].keyframe
    assert gop == list(frames[50:55])
    assert relay.video_codec == "h264" and relay.audio_codec is None
    assert relay.keyframes == 3
    late = Collect()
    relay.add_sink(late)
    assert late.frames == list(frames[50:55])       # a late sink starts on the keyframe at once
    relay.feed([frames[55]])
    assert late.frames[-1] is frames[55]


def test_gop_cache_is_bounded_in_bytes():
    frames = video(60, gop=25)
    gop_bytes = sum(len(f.data) for f in frames[25:50])
    relay = Relay("t", gop_limit=gop_bytes // 2)
    relay.feed(list(frames[:50]))
    assert relay.gop() == [] and relay.gop_bytes == 0
    assert relay.gop_overflows >= 1
    relay.feed([frames[50]])                          # caching resumes at the next keyframe
    assert relay.gop() == [frames[50]]
    assert relay.gop_bytes == len(frames[50].data)


def test_frames_before_the_first_keyframe_are_not_cached():
    frames = video(30, gop=25)
    relay = Relay("t")
    relay.feed(list(frames[1:20]))                   # joined mid-GOP: no keyframe yet
    assert relay.gop() == [] and relay.video_codec == "h264"
    assert not relay.codecs_settled


def test_audio_settles_codecs_at_once_and_video_only_after_the_probe():
    av_frames = list(av_stream(30))
    relay = Relay("t", audio_probe_ms=300)
    relay.feed(av_frames[:3])
    # the keyframe and the first audio frame are there: settled without waiting
    assert relay.video_codec == "h264" and relay.audio_codec == "g711a"
    assert relay.codecs_settled

    relay = Relay("t", audio_probe_ms=200)
    vid = list(video(30))
    relay.feed(vid[:3])                              # 80 ms of video after the keyframe
    assert not relay.codecs_settled
    relay.feed(vid[3:6])                             # 200 ms
    assert relay.codecs_settled and relay.audio_codec is None


def test_audio_only_stream_keeps_its_last_frames():
    audio = g711_frames("g711a", count=AUDIO_GOP_FRAMES + 10, samples=160)
    relay = Relay("t")
    relay.feed(audio)
    assert relay.video_codec is None and relay.codecs_settled
    assert relay.gop() == audio[-AUDIO_GOP_FRAMES:]


def test_a_failing_sink_is_removed_and_the_others_carry_on():
    class Broken(Collect):
        def on_frames(self, frames):
            raise RuntimeError("boom")

    relay = Relay("t")
    good, bad = Collect(), Broken()
    relay.add_sink(bad)
    relay.add_sink(good)
    frames = video(10)
    relay.feed(list(frames[:5]))
    assert bad.ends == ["error"] and bad not in relay.sinks
    assert good.frames == list(frames[:5]) and relay.sink_errors == 1


def test_end_reaches_every_sink_once_and_later_frames_are_ignored():
    relay = Relay("t")
    a, b = Collect(), Collect()
    relay.add_sink(a)
    relay.add_sink(b)
    relay.feed(list(video(5)))
    relay.end("device bye")
    relay.end("again")
    relay.feed(list(video(10)[5:]))
    assert a.ends == ["device bye"] and b.ends == ["device bye"]
    assert len(a.frames) == 5 and relay.ended == "device bye"
    late = Collect()
    relay.add_sink(late)                             # joining an ended stream: told at once
    assert late.ends == ["device bye"] and late.frames == []


def test_first_frame_callback_runs_once():
    relay = Relay("t")
    seen = []
    relay.on_first_frame = seen.append
    relay.feed(list(video(5)[:2]))
    relay.feed(list(video(5)[2:]))
    assert seen == [relay]


# ---- shared FLV -------------------------------------------------------------------------------

def test_flv_is_muxed_once_and_the_same_bytes_go_to_every_viewer():
    frames = list(av_stream(75))
    relay = Relay("t")
    hub = relay.flv()
    v1 = hub.add_viewer()
    v2 = hub.add_viewer()
    relay.feed(frames[:20])
    # the tag objects queued for both viewers are the very same bytes objects (no per-viewer mux)
    assert [id(x) for x in list(v1._items)[1:]] == [id(x) for x in list(v2._items)[1:]]
    assert hub.muxer is not None and hub.muxer.frames_in == 20
    relay.feed(frames[20:])
    d1, d2 = drain(v1), drain(v2)
    assert d1 == d2 and d1.startswith(b"FLV")
    n_video, n_audio = decode_flv(d1)
    assert n_video == 75 and n_audio > 0


def test_late_flv_viewer_starts_on_the_cached_keyframe():
    frames = list(video(75, gop=25))
    relay = Relay("t", audio_probe_ms=0)
    hub = relay.flv()
    first = hub.add_viewer()
    relay.feed(frames[:60])
    late = hub.add_viewer()                          # joins 10 frames into the third GOP
    relay.feed(frames[60:])
    assert decode_flv(drain(first))[0] == 75
    data = drain(late)
    assert data.startswith(b"FLV")
    assert decode_flv(data)[0] == 25                  # frames 50..74, from the keyframe on


def test_flv_hub_created_late_muxes_the_gop_cache():
    frames = list(video(40, gop=25))
    relay = Relay("t", audio_probe_ms=0)
    relay.feed(frames[:30])
    viewer = relay.flv().add_viewer()
    relay.feed(frames[30:])
    assert decode_flv(drain(viewer))[0] == 15         # 25..39


def test_flv_viewer_before_any_keyframe_waits_for_one():
    frames = list(video(40, gop=25))
    relay = Relay("t", audio_probe_ms=0)
    viewer = relay.flv().add_viewer()
    relay.feed(frames[5:25])                          # mid-GOP: nothing to show yet
    assert viewer.queued == 0
    relay.feed(frames[25:])
    assert decode_flv(drain(viewer))[0] == 15


def test_unsupported_video_codec_ends_flv_viewers_with_a_reason():
    relay = Relay("t", audio_probe_ms=0)
    viewer = relay.flv().add_viewer()
    relay.feed([Frame("mpeg4", 0, 0, True, b"\x00\x00\x01\xb0\x01" + bytes(50), 0xE0)])
    assert viewer.ended is not None and "mpeg4" in viewer.ended


def test_relay_end_closes_flv_viewers_after_their_data_with_the_end_tag():
    frames = list(video(30))
    relay = Relay("t", audio_probe_ms=0)
    viewer = relay.flv().add_viewer()
    relay.feed(frames)
    relay.end("no media")
    data = drain(viewer)
    assert viewer.ended == "no media"
    assert decode_flv(data)[0] == 30
    # the last tag is the AVC end-of-sequence (AVCPacketType 2)
    last_size = int.from_bytes(data[-4:], "big")
    last = data[-4 - last_size:-4]
    assert last[0] == 9 and last[11] == 0x17 and last[12] == 2
    assert relay.flv_viewers == 0


async def test_viewer_read_returns_data_then_none_at_the_end():
    frames = list(video(30))
    relay = Relay("t", audio_probe_ms=0)
    viewer = relay.flv().add_viewer()
    reader = asyncio.ensure_future(viewer.read())
    await asyncio.sleep(0)
    assert not reader.done()
    relay.feed(frames[:1])
    first = await asyncio.wait_for(reader, 5)
    assert first.startswith(b"FLV")
    relay.feed(frames[1:])
    relay.end("device bye")
    rest = await viewer.read()
    assert rest and await viewer.read() is None
    assert decode_flv(first + rest)[0] == 30
    assert viewer.sent == len(first) + len(rest)


async def test_closing_a_viewer_wakes_its_reader_and_detaches_it():
    relay = Relay("t", audio_probe_ms=0)
    hub = relay.flv()
    viewer = hub.add_viewer()
    reader = asyncio.ensure_future(viewer.read())
    await asyncio.sleep(0)
    viewer.close("client gone")
    assert await asyncio.wait_for(reader, 5) is None
    assert viewer not in hub.viewers and viewer.ended == "client gone"


# ---- drop policy ------------------------------------------------------------------------------

def test_slow_viewer_drops_to_the_next_keyframe_and_resumes_there():
    frames = list(video(76, gop=25))
    gop_bytes = sum(len(f.data) for f in frames[:25])
    relay = Relay("t", audio_probe_ms=0, viewer_limit=gop_bytes // 2, max_overflows=10)
    hub = relay.flv()
    slow, fast = hub.add_viewer(), hub.add_viewer()
    received = b""
    for i, frame in enumerate(frames):
        relay.feed([frame])
        received += drain(fast)                      # the fast one reads after every frame
    assert decode_flv(received)[0] == 76
    assert fast.dropped == 0 and fast.overflows == 0
    assert slow.overflows >= 1 and slow.dropped > 0 and slow.dropped_bytes > 0
    data = drain(slow)
    # what is left starts on a keyframe (the resume point) and decodes
    assert data[0] == 9 and (data[11] >> 4) & 7 == 1
    n = decode_flv(hub.muxer.init_segment() + data)[0]
    assert 0 < n < 76


def test_viewer_that_never_catches_up_is_disconnected():
    frames = list(video(150, gop=25))
    gop_bytes = sum(len(f.data) for f in frames[:25])
    relay = Relay("t", audio_probe_ms=0, viewer_limit=gop_bytes // 2, max_overflows=3)
    hub = relay.flv()
    stuck = hub.add_viewer()
    aborted = []
    stuck.on_abort = lambda: aborted.append(True)
    stuck._busy = True                               # the writer took data and never came back
    relay.feed(frames)
    assert stuck.ended == "too slow" and aborted == [True]
    assert stuck.overflows == 3 and stuck not in hub.viewers


def test_viewer_that_catches_up_at_keyframes_stays():
    frames = list(video(150, gop=25))
    gop_bytes = sum(len(f.data) for f in frames[:25])
    relay = Relay("t", audio_probe_ms=0, viewer_limit=gop_bytes // 2, max_overflows=2)
    viewer = relay.flv().add_viewer()
    for i in range(0, 150, 25):
        relay.feed(frames[i:i + 24])                 # overflows within every GOP...
        drain(viewer)                                # ...but reads everything before the next
        relay.feed([frames[i + 24]])
        drain(viewer)
    assert viewer.ended is None and viewer.overflows >= 3


async def test_frame_queue_drop_policy_and_end():
    frames = list(video(75, gop=25))
    relay = Relay("t")
    queue = FrameQueue(limit=10, max_overflows=5)
    relay.add_sink(queue)
    relay.feed(frames[:20])
    assert queue.overflows == 1 and queue.dropped > 0
    relay.feed(frames[20:30])
    got = await queue.get()
    assert got[0] is frames[25]                      # resumed at the keyframe
    relay.end("api")
    assert await queue.get() is None and queue.ended == "api"


@pytest.mark.parametrize("batch", [2, 5, 10])
def test_batched_feed_drops_like_frame_by_frame(batch):
    """The hub queues one chunk per batch; the drop policy still acts frame by frame."""
    frames = list(av_stream(150))
    gop_bytes = sum(len(f.data) for f in frames[:50])
    results = []
    for size in (1, batch):
        relay = Relay("t", viewer_limit=gop_bytes // 4, max_overflows=50)
        viewer = relay.flv().add_viewer()
        got = []
        for i in range(0, len(frames), 30):
            for j in range(i, i + 30, size):
                relay.feed(frames[j:j + size])
            got.append(drain(viewer))              # reads now and then: overflows between
        results.append((got, viewer.overflows, viewer.dropped_bytes, viewer.ended))
    assert results[0] == results[1]
    assert results[0][1] > 0


def test_split_frames_keeps_sequence_headers_with_their_frame():
    from media.flv import FlvMuxer
    from media.relay import _split_frames
    frames = list(av_stream(30))
    muxer = FlvMuxer("h264", "g711a")
    outs = [muxer.mux(f) for f in frames]
    outs = [o for o in outs if o]
    assert _split_frames(b"".join(outs), True) == [(o, i == 0) for i, o in enumerate(outs)]
