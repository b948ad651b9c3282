"""PsRtpSink: relay frames re-muxed into PS over RTP with a given SSRC, read back by our receiver
and by PyAV, through a relay and over a real loopback UDP socket."""

from __future__ import annotations

import asyncio
import functools
import io
import struct

import av
import pytest

from media import Frame, RtpPsReceiver, parse_rtp, rfc4571_frame, Rfc4571Framer
from media.psrtp import AUDIO_ONLY_AFTER, PsRtpSink
from media.relay import Relay

from media_gen import encode_video, g711_frames, interleave

SSRC = 106000001


@functools.lru_cache(maxsize=None)
def clip() -> tuple[Frame, ...]:
    """Three GOPs of H.264 (keyframe every 25 frames, no B-frames) with G.711 A-law interleaved."""
    video = encode_video("h264", frames=75, gop=25, bframes=0)
    frames = interleave(video, g711_frames("g711a", count=75))
    first = next(i for i, f in enumerate(frames) if f.keyframe and f.codec == "h264")
    return tuple(frames[first:])


def is_key(frame: Frame) -> bool:
    return frame.keyframe and frame.codec == "h264"


def essence(frames) -> dict[str, list[tuple[bool, bytes]]]:
    """What must survive the trip, per stream (the demuxer may release a video frame after the
    audio that follows it, and flags every audio frame a keyframe)."""
    out: dict[str, list[tuple[bool, bytes]]] = {}
    for f in frames:
        out.setdefault(f.codec, []).append((f.keyframe and f.codec == "h264", bytes(f.data)))
    return out


def collect(**kw) -> tuple[PsRtpSink, list[bytes], list[str]]:
    packets: list[bytes] = []
    ends: list[str] = []
    sink = PsRtpSink(SSRC, packets.extend, on_end=ends.append, seq=65000, **kw)
    return sink, packets, ends


def receive(packets: list[bytes]) -> list[Frame]:
    receiver = RtpPsReceiver(ssrc=SSRC)
    return receiver.feed_packets(packets) + receiver.flush()


def test_frames_survive_the_round_trip_with_one_ssrc_and_continuous_sequence():
    frames = list(clip())
    sink, packets, _ = collect(timestamp_base=1000)
    for i in range(0, len(frames), 7):              # batches as a relay hands them out
        sink.on_frames(frames[i:i + 7])
    rtp = [parse_rtp(p) for p in packets]
    assert {p.ssrc for p in rtp} == {SSRC} and {p.payload_type for p in rtp} == {96}
    assert [p.sequence for p in rtp] == [(65000 + i) & 0xFFFF for i in range(len(rtp))]
    assert all(len(p.payload) <= 1400 for p in rtp)
    # one timestamp per frame, the marker on its last packet, a pack header at every frame start
    ends = [i for i, p in enumerate(rtp) if p.marker]
    assert len(ends) == len(frames) == sink.frames_sent
    start = 0
    for frame, end in zip(frames, ends):
        group = rtp[start:end + 1]
        assert len({p.timestamp for p in group}) == 1
        assert group[0].timestamp == (1000 + frame.pts - frames[0].pts) & 0xFFFFFFFF
        assert bytes(group[0].payload[:4]) == b"\x00\x00\x01\xba"
        start = end + 1
    out = receive(packets)
    assert essence(out) == essence(frames)
    assert sink.packets_sent == len(packets) and sink.bytes_sent == sum(map(len, packets))


def test_starts_at_a_keyframe_and_again_after_resync():
    frames = list(clip())
    first_key = next(i for i, f in enumerate(frames) if is_key(f))
    second_key = next(i for i, f in enumerate(frames) if is_key(f) and i > first_key)
    sink, packets, _ = collect()
    sink.on_frames(frames[first_key + 1:second_key])      # joined mid-GOP: nothing decodable yet
    assert packets == [] and not sink.started and sink.frames_skipped == second_key - first_key - 1
    sink.on_frames(frames[second_key:second_key + 10])
    assert sink.started
    out = receive(list(packets))
    assert essence(out)["h264"][0][0]                      # the first picture is a keyframe
    assert bytes(parse_rtp(packets[0]).payload[:4]) == b"\x00\x00\x01\xba"
    # the sender dropped output: skip to the next keyframe, sequence numbers stay continuous
    n = len(packets)
    sink.resync()
    sink.on_frames(frames[second_key + 10:])
    assert len(packets) > n
    first_after = parse_rtp(packets[n])
    assert first_after.sequence == (parse_rtp(packets[n - 1]).sequence + 1) & 0xFFFF
    assert sink.resyncs == 1 and sink.frames_skipped > second_key - first_key - 1


def test_decodes_with_pyav_from_the_first_packet():
    frames = list(clip())
    sink, packets, _ = collect()
    sink.on_frames(frames[3:])          # not at a keyframe: the sink waits for the next one
    ps = b"".join(bytes(parse_rtp(p).payload) for p in packets)
    container = av.open(io.BytesIO(ps), format="mpeg")
    try:
        pictures = [p for packet in container.demux(video=0) for p in packet.decode()]
    finally:
        container.close()
    video = [f for f in frames if f.codec == "h264"]
    keys = [i for i, f in enumerate(video) if is_key(f)]
    assert pictures and pictures[0].key_frame
    assert len(pictures) >= len(video) - keys[1] - 1


def test_audio_only_stream_starts_without_a_keyframe():
    audio = g711_frames("g711a", count=AUDIO_ONLY_AFTER + 10)
    sink, packets, _ = collect()
    sink.on_frames(audio)
    assert sink.frames_skipped == AUDIO_ONLY_AFTER - 1 and sink.frames_sent == 11
    out = receive(packets)
    assert essence(out) == essence(audio[AUDIO_ONLY_AFTER - 1:])


def test_unknown_codec_is_skipped_and_counted_not_raised():
    frames = list(clip())
    sink, packets, _ = collect(require_keyframe=False)
    sink.on_frames([frames[0], Frame("opus", 0, 0, False, b"\x01\x02"), *frames[1:5]])
    assert sink.frames_refused == 1 and sink.frames_sent == 5
    assert len(receive(packets)) == 5


def test_end_is_reported_once_and_later_frames_are_ignored():
    frames = list(clip())
    sink, packets, ends = collect()
    sink.on_frames(frames[:5])
    sink.on_end("end of file")
    sink.close("closed")
    n = len(packets)
    sink.on_frames(frames[5:])
    assert ends == ["end of file"] and sink.ended == "end of file" and len(packets) == n


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError):
        PsRtpSink(1 << 32, lambda p: None)
    with pytest.raises(ValueError):
        PsRtpSink(1, lambda p: None, payload_type=200)


def test_relay_sink_gets_the_gop_cache_then_live_frames_and_the_end():
    frames = list(clip())
    relay = Relay("test")
    relay.feed(frames[:30])                 # a running stream: the GOP cache holds frames[25:30]...
    sink, packets, ends = collect()
    relay.add_sink(sink)
    assert sink.started and sink.frames_skipped == 0
    relay.feed(frames[30:])
    relay.end("device bye")
    assert ends == ["device bye"]
    out = receive(packets)
    key = max(i for i, f in enumerate(frames[:30]) if is_key(f))
    assert essence(out) == essence(frames[key:])


async def test_over_loopback_udp_and_tcp():
    """The sink's packets through real sockets: UDP datagrams and RFC 4571 over TCP."""
    frames = list(clip())
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    done = asyncio.Event()

    class Receiver(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            got.append(data)
            if len(got) == expected:
                done.set()

    rx, _ = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
    tx, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    port = rx.get_extra_info("sockname")[1]
    sent: list[bytes] = []

    def send(packets):
        sent.extend(packets)
        for p in packets:
            tx.sendto(p, ("127.0.0.1", port))

    sink = PsRtpSink(SSRC, send)
    sink.on_frames(frames[:20])
    expected = len(sent)
    await asyncio.wait_for(done.wait(), 5)
    rx.close()
    tx.close()
    assert sorted(got, key=lambda p: parse_rtp(p).sequence) == sent
    assert len(receive(got)) == 20

    # TCP: the packets framed by a length prefix arrive whole
    stream_got = bytearray()
    finished = asyncio.Event()

    async def serve(reader, writer):
        stream_got.extend(await reader.read(-1))
        writer.close()
        finished.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    tcp_sent: list[bytes] = []
    sink = PsRtpSink(SSRC, lambda packets: (tcp_sent.extend(packets),
                                            writer.write(b"".join(map(rfc4571_frame, packets)))))
    sink.on_frames(frames[:20])
    await writer.drain()
    writer.close()
    await asyncio.wait_for(finished.wait(), 5)
    server.close()
    await server.wait_closed()
    framer = Rfc4571Framer()
    packets = [bytes(p) for p in framer.feed(bytes(stream_got))]
    assert packets == tcp_sent
    assert struct.unpack(">H", stream_got[:2])[0] == len(tcp_sent[0])
    assert len(receive(packets)) == 20
