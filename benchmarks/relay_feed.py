"""Relay hot path without the network: pre-demuxed frames of 4 Mbit/s streams fed to ``Relay``.

The RTP packets of the ``demux.py`` recording (1080p H.264 at about 4 Mbit/s with G.711, the
packing of ``relay.py``) go through ``RtpPsReceiver.feed_packets`` once, one call per 40 ms tick
as the ingest's batch reader delivers them; the frame lists it returns are then replayed into
``--streams`` relays, each with one FLV viewer drained by a task in the same event loop (an
HTTP-FLV response without the socket write), every stream starting at its own point of the
recording. Figures are CPU seconds of this process (not wall time): frames per CPU second and
the share of a core one stream takes (25 ticks per second), median and spread of ``--repeat``
runs. ``--stage`` picks how much of the path runs: ``relay`` (Relay → FLV hub → viewer queue →
drain task), ``mux`` (one ``FlvMuxer`` per stream, per frame: the floor the relay adds to).

    python benchmarks/relay_feed.py [--streams 200] [--seconds 20] [--repeat 5] [--stage relay]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import pathlib
import statistics
import struct
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "media"))

from media import FlvMuxer, RtpPsReceiver  # noqa: E402
from media.relay import Relay  # noqa: E402

TICKS_PER_S = 25


def batches(cache: pathlib.Path, seconds: int) -> list[list]:
    """Frame lists of one stream, one per 40 ms tick, as the ingest hands them to ``on_frames``."""
    from demux import generate
    from relay import write_pack

    ps_path, _, _ = generate(seconds, cache)
    pack, nticks, _, _ = write_pack(ps_path, cache)
    data = pack.read_bytes()
    count, _ = struct.unpack_from("<II", data, 4)
    pos = 12
    receiver = RtpPsReceiver()
    out = []
    for _ in range(count):
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        packets = []
        for _ in range(n):
            (size,) = struct.unpack_from("<H", data, pos)
            packets.append(data[pos + 2:pos + 2 + size])
            pos += 2 + size
        frames = receiver.feed_packets(packets)
        if frames:
            out.append(frames)
    return out


async def run_relay(ticks: list[list], streams: int) -> tuple[float, int, int]:
    relays = [Relay(f"bench/{i}") for i in range(streams)]
    viewers = [r.flv().add_viewer() for r in relays]
    received = [0]

    async def drain(viewer) -> None:
        while (data := await viewer.read()) is not None:
            received[0] += len(data)

    tasks = [asyncio.ensure_future(drain(v)) for v in viewers]
    feeds = [r.feed for r in relays]
    n = len(ticks)
    offsets = [(i * 37) % n for i in range(streams)]
    frames = 0
    gc.collect()
    sleep = asyncio.sleep
    c0 = time.process_time()
    for t in range(n):
        for feed, off in zip(feeds, offsets):
            batch = ticks[(t + off) % n]
            feed(batch)
            frames += len(batch)
        await sleep(0)
        await sleep(0)
    c1 = time.process_time()
    for r in relays:
        r.end("done")
    await asyncio.gather(*tasks)
    return c1 - c0, frames, received[0]


async def run_mux(ticks: list[list], streams: int) -> tuple[float, int, int]:
    muxers = [FlvMuxer("h264", "g711a") for _ in range(streams)]
    n = len(ticks)
    offsets = [(i * 37) % n for i in range(streams)]
    frames = out = 0
    gc.collect()
    c0 = time.process_time()
    for t in range(n):
        for muxer, off in zip(muxers, offsets):
            batch = ticks[(t + off) % n]
            for frame in batch:
                out += len(muxer.mux(frame))
            frames += len(batch)
        await asyncio.sleep(0)
    c1 = time.process_time()
    return c1 - c0, frames, out


async def main(args) -> int:
    ticks = batches(args.cache_dir, args.seconds)
    nframes = sum(len(b) for b in ticks)
    print(f"{len(ticks)} batches, {nframes} frames per stream "
          f"({nframes / len(ticks):.2f} frames per batch); {args.streams} streams; "
          f"stage {args.stage}", flush=True)
    run = run_relay if args.stage == "relay" else run_mux
    rates, shares = [], []
    for _ in range(args.repeat):
        cpu, frames, out = await run(ticks, args.streams)
        rates.append(frames / cpu)
        # CPU seconds per stream-second of media, as a share of a core
        share = cpu / (args.streams * len(ticks) / TICKS_PER_S)
        shares.append(share)
        print(f"  {cpu:6.2f} CPU s  {frames / cpu:9.0f} frames/CPU s  "
              f"{100 * share:6.4f} % of a core per stream  ({out / 1e6:.0f} MB out)", flush=True)
    med = statistics.median(shares)
    print(f"median {statistics.median(rates):.0f} frames/CPU s "
          f"({min(rates):.0f}–{max(rates):.0f}); {100 * med:.4f} % of a core per stream "
          f"({100 * min(shares):.4f}–{100 * max(shares):.4f}) ≈ {1 / med:.0f} streams per core")
    return 0


if __name__ == "__main__":
    from relay import cache_dir_default

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=20, help="recording length")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stage", choices=("relay", "mux"), default="relay")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--cache-dir", type=pathlib.Path, default=cache_dir_default())
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop
        sys.exit(uvloop.run(main(args)))
    sys.exit(asyncio.run(main(args)))
