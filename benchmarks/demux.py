"""Demux throughput on one GB-style PS stream: our PS demuxer (compiled and pure Python), FFmpeg's
libavformat ``mpeg`` demuxer through PyAV, and the whole RTP → FLV path (batched through
``RtpPsReceiver.feed_packets``, and per packet through the hand-run stages).

The input is generated once and cached: a moving test pattern encoded by libx264 (1080p, about
4 Mbit/s, B-frames, fixed parameters) plus G.711 A-law audio, muxed by our ``PsMuxer``. Each stage
runs ``--repeat`` times; the table shows the median and the spread (min–max) because the machine
is shared. Nothing here asserts timings.

    python benchmarks/demux.py [--seconds 20] [--repeat 5] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import os
import pathlib
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "media"))

import av  # noqa: E402

from media import Frame, _impl  # noqa: E402
from media._psmux_py import PsMuxer as PsMuxerPy  # noqa: E402

CHUNK = 1400
BATCH = 32  # datagrams per feed_packets call, as a recvmmsg reader would deliver them
WIDTH, HEIGHT, FPS = 1920, 1080, 25
BIT_RATE = 4_000_000
SSRC = 100000001


# ---- input --------------------------------------------------------------------------------------

def generate(seconds: int, cache_dir: pathlib.Path) -> tuple[pathlib.Path, int, int]:
    """``(path of the PS file, video frames, audio frames)``, generated on first use."""
    params = f"h264-{WIDTH}x{HEIGHT}-{FPS}fps-{BIT_RATE}-bf2-gop50-{seconds}s-g711a40ms-v1"
    tag = hashlib.sha1(params.encode()).hexdigest()[:12]
    path = cache_dir / f"gb_ps_{tag}.ps"
    meta = cache_dir / f"gb_ps_{tag}.counts"
    if path.exists() and meta.exists():
        video, audio = pickle.loads(meta.read_bytes())
        return path, video, audio
    from media_gen import encode_video, g711_frames, interleave

    cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"generating {params} into {path} (once) …", flush=True)
    t0 = time.perf_counter()
    video = encode_video("h264", frames=seconds * FPS, width=WIDTH, height=HEIGHT, fps=FPS,
                         gop=2 * FPS, bframes=2, bit_rate=BIT_RATE, preset="veryfast",
                         first_pts=90000)
    audio = g711_frames("g711a", count=seconds * 25, samples=320, first_pts=90000)
    muxer = PsMuxerPy("h264", "g711a")
    data = b"".join(muxer.mux(f) for f in interleave(video, audio))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    meta.write_bytes(pickle.dumps((len(video), len(audio))))
    print(f"  {len(data) / 1e6:.1f} MB in {time.perf_counter() - t0:.0f} s", flush=True)
    return path, len(video), len(audio)


# ---- stages -------------------------------------------------------------------------------------

def run_demuxer(module, chunks: list[bytes]) -> int:
    demuxer = module.PsDemuxer()
    frames = 0
    feed = demuxer.feed
    for chunk in chunks:
        frames += len(feed(chunk))
    frames += len(demuxer.flush())
    return frames


def run_libavformat(path: str) -> int:
    frames = 0
    with av.open(path, format="mpeg") as container:
        for packet in container.demux():
            if packet.size:
                frames += 1
    return frames


def run_rtp_to_flv(rtp, ps, flv, packets: list[bytes]) -> int:
    parse = rtp.parse_rtp
    jitter = rtp.JitterBuffer()
    demuxer = ps.PsDemuxer()
    muxer = flv.FlvMuxer("h264", "g711a")
    add = jitter.add
    feed = demuxer.feed
    mux = muxer.mux
    frames = 0
    out = 0
    for raw in packets:
        for pkt in add(parse(raw)):
            for frame in feed(pkt.payload):
                out += len(mux(frame))
                frames += 1
    for pkt in jitter.flush():
        for frame in feed(pkt.payload):
            out += len(mux(frame))
            frames += 1
    for frame in demuxer.flush():
        out += len(mux(frame))
        frames += 1
    if not out:
        raise RuntimeError("RTP → FLV produced no output")
    return frames


def run_receiver_to_flv(receiver, flv, batches: list[list[bytes]]) -> int:
    """The batched path: ``RtpPsReceiver.feed_packets`` per batch (as a recvmmsg reader delivers
    them), each frame muxed to FLV."""
    rx = receiver.RtpPsReceiver()
    muxer = flv.FlvMuxer("h264", "g711a")
    feed = rx.feed_packets
    mux = muxer.mux
    frames = 0
    out = 0
    for batch in batches:
        for frame in feed(batch):
            out += len(mux(frame))
            frames += 1
    for frame in rx.flush():
        out += len(mux(frame))
        frames += 1
    if not out:
        raise RuntimeError("RTP → FLV produced no output")
    return frames


def run_flv(flv, frames: list[Frame]) -> int:
    muxer = flv.FlvMuxer("h264", "g711a")
    mux = muxer.mux
    for frame in frames:
        mux(frame)
    return len(frames)


def run_psmux(psmux, frames: list[Frame]) -> int:
    muxer = psmux.PsMuxer("h264", "g711a")
    packetizer = psmux.RtpPacketizer(SSRC, seq=0)
    mux = muxer.mux
    packetize = packetizer.packetize
    for frame in frames:
        packetize(mux(frame), frame.pts or 0)
    return len(frames)


def measure(fn: Callable[[], int], repeat: int) -> tuple[list[float], int]:
    times = []
    frames = 0
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        frames = fn()
        times.append(time.perf_counter() - t0)
    return times, frames


# ---- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20, help="length of the generated stream")
    parser.add_argument("--repeat", type=int, default=5, help="runs per stage (median reported)")
    parser.add_argument("--cache-dir", type=pathlib.Path,
                        default=pathlib.Path(os.environ.get("SIP28181_BENCH_CACHE",
                                                            pathlib.Path(tempfile.gettempdir())
                                                            / "sip28181-bench")))
    args = parser.parse_args(argv)

    path, n_video, n_audio = generate(args.seconds, args.cache_dir)
    data = path.read_bytes()
    size = len(data)
    chunks = [data[i:i + CHUNK] for i in range(0, size, CHUNK)]
    print(f"input: {path.name}, {size / 1e6:.2f} MB, {n_video} video + {n_audio} audio frames, "
          f"{size * 8 / args.seconds / 1e6:.2f} Mbit/s; {len(chunks)} chunks of {CHUNK} bytes; "
          f"repeat {args.repeat}")

    ps_py = importlib.import_module("media._ps_py")
    ps_c = _impl.compiled("ps")
    rtp_c = _impl.compiled("rtp")
    flv_c = _impl.compiled("flv")
    psmux_c = _impl.compiled("psmux")
    flv_py = importlib.import_module("media._flv_py")
    psmux_py = importlib.import_module("media._psmux_py")
    receiver_c = _impl.compiled("receiver")
    receiver_py = importlib.import_module("media._receiver_py")

    # RTP packets for the end-to-end row, and frames for the muxer rows (both untimed).
    reference = ps_py.PsDemuxer()
    frames = reference.feed(data) + reference.flush()
    packetizer = psmux_py.RtpPacketizer(SSRC, seq=0)
    muxer = psmux_py.PsMuxer("h264", "g711a")
    packets: list[bytes] = []
    for frame in frames:
        packets += packetizer.packetize(muxer.mux(frame), frame.pts or 0)
    rtp_bytes = sum(len(p) for p in packets)
    batches = [packets[i:i + BATCH] for i in range(0, len(packets), BATCH)]
    ps_bytes = size

    rows: list[tuple[str, list[float] | None, int, int]] = []

    def row(name: str, fn: Callable[[], int] | None, nbytes: int, repeat: int) -> None:
        if fn is None:
            rows.append((name, None, 0, nbytes))
            return
        times, count = measure(fn, repeat)
        rows.append((name, times, count, nbytes))

    py_repeat = max(1, min(args.repeat, 3))
    row("PS demux, Cython, 1400-B chunks",
        (lambda: run_demuxer(ps_c, chunks)) if ps_c else None, ps_bytes, args.repeat)
    row("PS demux, pure Python, 1400-B chunks",
        lambda: run_demuxer(ps_py, chunks), ps_bytes, py_repeat)
    row("libavformat mpeg (PyAV), packets only",
        lambda: run_libavformat(str(path)), ps_bytes, args.repeat)
    row(f"RTP → FLV, batched ({BATCH}), Cython",
        (lambda: run_receiver_to_flv(receiver_c, flv_c, batches)) if (receiver_c and flv_c)
        else None,
        rtp_bytes, args.repeat)
    row(f"RTP → FLV, batched ({BATCH}), pure Python",
        lambda: run_receiver_to_flv(receiver_py, flv_py, batches), rtp_bytes, py_repeat)
    row("RTP → FLV, per packet, Cython",
        (lambda: run_rtp_to_flv(rtp_c, ps_c, flv_c, packets)) if (ps_c and rtp_c and flv_c)
        else None,
        rtp_bytes, args.repeat)
    row("RTP → FLV, per packet, pure Python",
        lambda: run_rtp_to_flv(importlib.import_module("media._rtp_py"), ps_py, flv_py, packets),
        rtp_bytes, py_repeat)
    row("FLV mux only, Cython", (lambda: run_flv(flv_c, frames)) if flv_c else None,
        ps_bytes, args.repeat)
    row("FLV mux only, pure Python", lambda: run_flv(flv_py, frames), ps_bytes, py_repeat)
    row("PS mux + RTP packetize, Cython",
        (lambda: run_psmux(psmux_c, frames)) if psmux_c else None, ps_bytes, args.repeat)
    row("PS mux + RTP packetize, pure Python", lambda: run_psmux(psmux_py, frames), ps_bytes,
        py_repeat)

    print()
    print(f"{'stage':42} {'MB/s median':>12} {'spread (min–max)':>20} {'frames/s':>12} "
          f"{'frames':>7} {'runs':>5}")
    results = {}
    for name, times, count, nbytes in rows:
        if times is None:
            print(f"{name:42} {'not built':>12}")
            continue
        rates = sorted(nbytes / t / 1e6 for t in times)
        med = statistics.median(rates)
        fps = count / statistics.median(times)
        results[name] = med
        print(f"{name:42} {med:12.1f} {rates[0]:9.1f}–{rates[-1]:<10.1f} {fps:12.0f} "
              f"{count:7d} {len(times):5d}")

    print()
    c = results.get("PS demux, Cython, 1400-B chunks")
    lav = results.get("libavformat mpeg (PyAV), packets only")
    e2e = results.get(f"RTP → FLV, batched ({BATCH}), Cython")
    per_packet = results.get("RTP → FLV, per packet, Cython")
    if c and lav:
        print(f"Cython PS demuxer vs libavformat: {c / lav:.2f}x (target >= 3x)")
    if e2e:
        print(f"RTP → FLV, batched, Cython: {e2e / 1000:.2f} GB/s (target >= 3 GB/s)"
              + (f"; {e2e / per_packet:.1f}x the per-packet chain" if per_packet else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
