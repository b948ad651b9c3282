"""Relay capacity: how many 4 Mbit/s RTP/PS device streams one ingest core takes in and relays.

(a) ``streams``: concurrent UDP streams, sent by ``benchmarks/rtpsend.c`` processes pinned to
    core 1 (paced, one 1080p H.264 recording with G.711 audio at about 4 Mbit/s, each stream with
    its own port, SSRC, sequence numbers and starting point), into this process pinned to core 0:
    ``MediaIngest`` → relay (``media.relay.Relay`` with one FLV viewer per stream when that module
    exists, else ``RtpPsReceiver`` frames into an ``FlvMuxer``). A ladder of stream counts, each
    run measured after a warm-up: loss from RTP sequence numbers (the receivers' jitter buffers),
    received/sent datagrams, CPU use of the ingest process, kernel receive-buffer drops. A count is
    sustained when loss stays below 0.1 % and the senders kept to their schedule. The same
    ladder with a stock asyncio ``DatagramProtocol`` per stream (one callback per datagram) for
    comparison, and with every stream on one shared port (demultiplexed by SSRC).
(b) ``fanout`` and (c) ``first-byte``: see the README (they need the HTTP-FLV output).

Nothing here asserts timings; the machine is shared, so each figure is printed with what else
ran on the cores.

    python benchmarks/relay.py streams [--mode ingest,single,protocol] [--ladder 100,200,...]
           [--seconds 10] [--warmup 3] [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import pathlib
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "media"))

from media import PsDemuxer, PsMuxer, RtpPacketizer, RtpPsReceiver  # noqa: E402
from media import receiver as receiver_mod  # noqa: E402
from media import udprecv  # noqa: E402
from media.ingest import MediaIngest  # noqa: E402

from media.relay import Relay  # noqa: E402

INGEST_CORE, SENDER_CORE = 0, 1
HOST = "127.0.0.1"
PORT_BASE = 20000
STREAMS_PER_SENDER = 500
SINGLE_PORT_RCVBUF = 256 << 20      # one socket takes every burst of every stream
MAX_LOSS = 0.001
TICK = 3600                      # 40 ms at 90 kHz: one video frame at 25 fps
DEFAULT_LADDER = (100, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800)
PROTOCOL_LADDER = (50, 100, 150, 200, 300, 400, 600)
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


# ---- input: the recording and the sender ----------------------------------------------------------

def cache_dir_default() -> pathlib.Path:
    return pathlib.Path(os.environ.get("SIP28181_BENCH_CACHE",
                                       pathlib.Path(tempfile.gettempdir()) / "sip28181-bench"))


def write_pack(ps_path: pathlib.Path, cache: pathlib.Path) -> tuple[pathlib.Path, int, int, int]:
    """The recording as RTP packets grouped by 40 ms tick (a tick starts with each video frame),
    in the format ``rtpsend`` reads. Returns (path, ticks, bytes and packets per loop)."""
    path = cache / (ps_path.stem + ".rtpk")
    data = ps_path.read_bytes()
    demuxer = PsDemuxer()
    frames = demuxer.feed(data) + demuxer.flush()
    video = next(f.codec for f in frames if f.codec in ("h264", "h265"))
    muxer = PsMuxer(video, "g711a")
    packetizer = RtpPacketizer(1, seq=0)
    ticks: list[list[bytes]] = []
    # the demuxer completes a video frame when the next begins: re-order to the file's order
    order = sorted(range(len(frames)), key=lambda i: (frames[i].dts or 0, frames[i].codec != video))
    for i in order:
        frame = frames[i]
        packets = packetizer.packetize(muxer.mux(frame), frame.pts or 0)
        if frame.codec == video or not ticks:
            ticks.append([])
        ticks[-1] += packets
    if not path.exists():
        out = bytearray(b"RTPK" + struct.pack("<II", len(ticks), TICK))
        for tick in ticks:
            out += struct.pack("<I", len(tick))
            for packet in tick:
                out += struct.pack("<H", len(packet)) + packet
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(out)
        os.replace(tmp, path)
    total = sum(len(p) for t in ticks for p in t)
    return path, len(ticks), total, sum(len(t) for t in ticks)


def build_sender(cache: pathlib.Path) -> pathlib.Path:
    source = ROOT / "benchmarks" / "rtpsend.c"
    binary = cache / "rtpsend"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise SystemExit("a C compiler is needed for the paced sender (rtpsend.c)")
        subprocess.run([cc, "-O2", "-o", str(binary), str(source)], check=True)
    return binary


# ---- machine state ------------------------------------------------------------------------------

def all_process_cpu() -> dict[int, float]:
    """CPU seconds of every process (to tell other load on the shared machine)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                out[int(entry)] = process_cpu(entry)
            except (OSError, IndexError, ValueError):
                pass
    return out


def process_cpu(pid: int | str = "self") -> float:
    """CPU seconds (user + system) of a process, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def udp_rcvbuf_errors() -> int:
    """Datagrams the kernel dropped at full receive buffers (RcvbufErrors; InErrors counts them
    too, with checksum and memory errors)."""
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("InErrors")])


async def loop_lag(out: list[float]) -> None:
    """Worst delay of a 10 ms timer: how long the event loop went without coming back."""
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(0.01)
        out[0] = max(out[0], loop.time() - t - 0.01)


def softnet_drops() -> int:
    """Packets the kernel dropped from its per-CPU input backlog (loopback traffic waits there)."""
    total = 0
    with open("/proc/net/softnet_stat") as f:
        for line in f:
            total += int(line.split()[1], 16)
    return total


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ---- receiving side -----------------------------------------------------------------------------

class Target:
    """One received stream: a receiver (inside the ingest, or our own for the protocol mode), its
    relay and, with ``viewers="queue"``, one FLV viewer drained in this process (the work of an
    HTTP-FLV response minus the socket write); with ``viewers="http"`` the viewers are real
    HTTP-FLV clients in another process."""

    def __init__(self, ssrc: int, viewers: str) -> None:
        self.ssrc = ssrc
        self.relay = Relay(f"bench/{ssrc}")
        self.on_frames = self.relay.feed
        self.viewer = self.relay.flv().add_viewer() if viewers == "queue" else None
        self.viewer_bytes = 0
        self.stream = None          # IngestStream
        self.receiver = None        # protocol mode
        self.proto_bytes = 0
        self.port = 0

    async def drain(self) -> None:
        viewer = self.viewer
        while (data := await viewer.read()) is not None:
            self.viewer_bytes += len(data)

    def counters(self) -> tuple[int, int, int, int]:
        """(packets, bytes, lost, expected)."""
        if self.stream is not None:
            stats = self.stream.stats()
            return stats["packets"], stats["bytes"], stats["lost"], stats["expected"]
        rx = self.receiver
        stats = rx.rtp_stats()
        return rx.packets, self.proto_bytes, stats["lost"], stats["expected"]


class Proto(asyncio.DatagramProtocol):
    """Stock asyncio: one call per datagram."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.feed = target.receiver.feed_packet
        self.on_frames = target.on_frames

    def connection_made(self, transport) -> None:
        sock = transport.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 4 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def datagram_received(self, data, addr) -> None:
        self.target.proto_bytes += len(data)
        frames = self.feed(data)
        if frames:
            self.on_frames(frames)


async def open_targets(mode: str, count: int, viewers: str) -> tuple[list[Target], object]:
    targets = [Target(106000000 + i, viewers) for i in range(count)]
    loop = asyncio.get_running_loop()
    if mode == "protocol":
        transports = []
        port = PORT_BASE
        for target in targets:
            target.receiver = RtpPsReceiver()
            while True:
                try:
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda t=target: Proto(t), local_addr=(HOST, port))
                    break
                except OSError:
                    port += 1
            target.port = port
            port += 1
            transports.append(transport)
        return targets, transports
    ingest = MediaIngest(HOST, (PORT_BASE, PORT_BASE + 4999),
                         single_port=0 if mode == "single" else None,
                         single_port_rcvbuf=SINGLE_PORT_RCVBUF)
    await ingest.start()
    for target in targets:
        target.stream = await ingest.open("udp", ssrc=target.ssrc, on_frames=target.on_frames,
                                          on_close=target.relay.end)
        target.port = target.stream.local_port
    return targets, ingest


class FlvServer:
    """HTTP-FLV in this process: ``GET /v/{i}.flv`` streams relay ``i`` (the relay workstream's
    ``stream_flv``, as the server's ``/live/...`` route does after the INVITE)."""

    def __init__(self) -> None:
        self.viewers: list = []
        self.runner = None
        self.port = 0

    @classmethod
    async def start(cls, relays: list) -> FlvServer:
        from aiohttp import web

        from media.outputs import stream_flv

        self = cls()

        async def handler(request):
            relay = relays[int(request.match_info["i"])]
            return await stream_flv(request, relay, on_viewer=self.viewers.append)

        app = web.Application()
        app.router.add_get("/v/{i}.flv", handler)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, 0, backlog=4096)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    def sent(self) -> int:
        return sum(v.sent for v in self.viewers)

    def stats(self) -> dict[str, int]:
        return {"viewers": len(self.viewers),
                "dropped_bytes": sum(v.dropped_bytes for v in self.viewers),
                "overflows": sum(v.overflows for v in self.viewers),
                "too_slow": sum(1 for v in self.viewers if v.ended == "too slow")}

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_viewers(port: int, paths: pathlib.Path, seconds: float, core: int = SENDER_CORE):
    return await asyncio.create_subprocess_exec(
        "taskset", "-c", str(core), sys.executable, __file__, "_viewers", HOST, str(port),
        str(paths), f"{seconds}", stdout=asyncio.subprocess.PIPE)


def viewers_main(host: str, port: int, paths_file: str, seconds: float) -> int:
    """HTTP-FLV clients (one per line of ``paths_file``), read with one selector: bytes counted,
    nothing parsed beyond the first FLV keyframe tag of each (for the time to first picture)."""
    import selectors

    paths = pathlib.Path(paths_file).read_text().split()
    sel = selectors.DefaultSelector()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    state = {}
    start = time.monotonic()
    for path in paths:
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        sock.setblocking(False)
        state[sock] = [0, None, time.monotonic()]      # bytes, first byte at, request at
        sel.register(sock, selectors.EVENT_READ)
    deadline = start + seconds
    total = 0
    while time.monotonic() < deadline and state:
        for key, _ in sel.select(0.2):
            sock = key.fileobj
            try:
                n = sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                n = 0
            entry = state[sock]
            if n == 0:
                sel.unregister(sock)
                sock.close()
                del state[sock]
                continue
            if entry[1] is None:
                entry[1] = time.monotonic()
            entry[0] += n
            total += n
    for sock in list(state):
        sock.close()
    print(f"viewer_bytes={total} viewers={len(paths)} open_at_end={len(state)}")
    return 0


async def close_targets(mode: str, handle) -> None:
    if mode == "protocol":
        for transport in handle:
            transport.close()
        await asyncio.sleep(0.05)
    else:
        await handle.close()


def totals(targets: list[Target]) -> tuple[int, int, int, int]:
    packets = nbytes = lost = expected = 0
    for target in targets:
        p, b, l, e = target.counters()
        packets += p
        nbytes += b
        lost += l
        expected += e
    return packets, nbytes, lost, expected


async def run_rung(mode: str, count: int, args, pack: pathlib.Path, sender: pathlib.Path) -> dict:
    targets, handle = await open_targets(mode, count, args.viewers)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="relay-bench-"))
    procs = []
    drains = []
    server = None
    duration = args.warmup + args.seconds + 2.0      # the senders outlive the measurement
    try:
        if args.viewers == "queue":
            drains = [asyncio.ensure_future(t.drain()) for t in targets]
        elif args.viewers == "http":
            server = await FlvServer.start([t.relay for t in targets])
            paths = workdir / "paths.txt"
            paths.write_text("".join(f"/v/{i}.flv\n" for i in range(count)))
            procs.append(await start_viewers(server.port, paths, duration))
        for i in range(math.ceil(count / STREAMS_PER_SENDER)):
            part = targets[i * STREAMS_PER_SENDER:(i + 1) * STREAMS_PER_SENDER]
            spec = workdir / f"streams{i}.txt"
            spec.write_text("".join(f"{t.port} {t.ssrc}\n" for t in part))
            procs.append(await asyncio.create_subprocess_exec(
                "taskset", "-c", str(SENDER_CORE), str(sender), str(pack), HOST, f"{duration}",
                str(spec), *(["gso"] if args.gso else []), stdout=asyncio.subprocess.PIPE))
        await asyncio.sleep(args.warmup)
        gc.collect()
        lag = [0.0]
        lag_task = asyncio.ensure_future(loop_lag(lag))
        p0, b0, l0, e0 = totals(targets)
        v0 = server.sent() if server is not None else sum(t.viewer_bytes for t in targets)
        cpu0, all0, drops0, t0 = time.process_time(), all_process_cpu(), udp_rcvbuf_errors(), \
            time.monotonic()
        backlog0 = softnet_drops()
        senders0 = {}
        for proc in procs:
            try:
                senders0[proc.pid] = process_cpu(proc.pid)
            except OSError:
                print(f"  process {proc.pid} ended early (status {proc.returncode})", flush=True)
        await asyncio.sleep(args.seconds)
        p1, b1, l1, e1 = totals(targets)
        lag_task.cancel()
        v1 = server.sent() if server is not None else sum(t.viewer_bytes for t in targets)
        cpu1, all1, drops1, t1 = time.process_time(), all_process_cpu(), udp_rcvbuf_errors(), \
            time.monotonic()
        backlog1 = softnet_drops()
        sender_cpu = 0.0
        for pid, cpu in senders0.items():
            try:
                sender_cpu += process_cpu(pid) - cpu
            except OSError:
                pass
        viewer_rate = (v1 - v0) / (t1 - t0)
        outputs = [(await proc.communicate())[0].decode() for proc in procs]
        # what the sockets still hold (a receiver behind its senders) is read before counting
        received_total = -1
        for _ in range(50):
            await asyncio.sleep(0.2)
            now_total = sum(t.counters()[0] for t in targets)
            if now_total == received_total:
                break
            received_total = now_total
        rss = rss_mib()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await close_targets(mode, handle)
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)
        if server is not None:
            await server.close()
        shutil.rmtree(workdir, ignore_errors=True)
    sent = late = worst = errors = 0
    viewer_info = ""
    for proc, line in zip(procs, outputs):
        if proc.returncode:
            print(f"  process {proc.pid} exited with status {proc.returncode}", flush=True)
        fields = dict(item.split("=") for item in line.split())
        if "sent" not in fields:
            viewer_info = line.strip()
            continue
        sent += int(fields["sent"])
        late += int(fields["late_steps"])
        errors += int(fields["errors"])
        worst = max(worst, int(fields["worst_lag_ms"]))
    wall = t1 - t0
    senders = {proc.pid for proc in procs}       # and the HTTP client process
    mine = {os.getpid(), *senders}
    other_cpu = sum(v - all0[pid] for pid, v in all1.items() if pid in all0 and pid not in mine)
    loss = (l1 - l0) / (e1 - e0) if e1 > e0 else 1.0
    return {
        "mode": mode, "streams": count, "wall": wall,
        "pps": (p1 - p0) / wall, "bytes_per_s": (b1 - b0) / wall,
        "loss": loss, "sent": sent, "received": received_total,
        "count_loss": 1 - received_total / sent if sent else 1.0,
        "cpu": (cpu1 - cpu0) / wall, "sender_cpu": sender_cpu / wall,
        "other_cpu": other_cpu / wall, "rcvbuf_drops": drops1 - drops0,
        "backlog_drops": backlog1 - backlog0, "loop_lag_ms": 1000 * lag[0],
        "sender_late_steps": late, "sender_worst_lag_ms": worst, "sender_errors": errors,
        "viewer_mbit": viewer_rate * 8 / 1e6, "viewer_info": viewer_info, "rss": rss,
    }


def sustained(row: dict) -> bool:
    """Loss below 0.1 % while the senders delivered at least 97 % of the nominal rate (a late
    sender on the shared core offers less than the figure says)."""
    return row["loss"] < MAX_LOSS and row["pps"] >= 0.97 * row["nominal_pps"]


def report(row: dict) -> None:
    ok = sustained(row)
    print(f"{row['mode']:8} {row['streams']:5d}  {row['pps']:7.0f} of {row['nominal_pps']:7.0f} "
          f"pkt/s  {row['mbit'] / 1e3:5.2f} Gbit/s  "
          f"loss {100 * row['loss']:7.3f}% (count {100 * row['count_loss']:6.3f}%)  "
          f"ingest CPU {100 * row['cpu']:4.0f}%  senders+clients {100 * row['sender_cpu']:4.0f}%  "
          f"others {100 * row['other_cpu']:4.0f}%  drops: udp {row['rcvbuf_drops']:6d} "
          f"backlog {row['backlog_drops']:6d}  loop lag {row['loop_lag_ms']:4.0f} ms  "
          f"sender late {row['sender_late_steps']:4d} (worst {row['sender_worst_lag_ms']} ms, "
          f"{row['sender_errors']} send errors)  "
          f"RSS {row['rss']:5.0f} MiB  FLV out {row['viewer_mbit'] / 1e3:5.2f} Gbit/s  "
          f"{'ok' if ok else 'NOT sustained'}", flush=True)


async def streams_main(args) -> int:
    cache = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    from demux import generate
    ps_path, _, _ = generate(args.recording_seconds, cache)
    pack, nticks, loop_bytes, loop_packets = write_pack(ps_path, cache)
    sender = build_sender(cache)
    rate = loop_bytes / (nticks * 0.04)
    packet_rate = loop_packets / (nticks * 0.04)
    print(f"recording: {ps_path.name}, {nticks} ticks of 40 ms, {rate * 8 / 1e6:.2f} Mbit/s of RTP "
          f"per stream; ingest pinned to core {INGEST_CORE}, senders to core {SENDER_CORE}; "
          f"loop {args.loop}; batch reader {'recvmmsg (compiled)' if udprecv.COMPILED else 'Python'}; "
          f"receiver {'compiled' if receiver_mod.COMPILED else 'Python'}; "
          f"Relay per stream with {args.viewers} FLV viewers",
          flush=True)
    results = []
    for mode in args.mode:
        ladder = args.ladder or (PROTOCOL_LADDER if mode == "protocol" else DEFAULT_LADDER)
        failures = 0
        for count in ladder:
            row = await run_rung(mode, count, args, pack, sender)
            row["nominal_pps"] = count * packet_rate
            row["mbit"] = row["bytes_per_s"] * 8 / 1e6
            report(row)
            results.append(row)
            if not sustained(row):
                failures += 1
                if failures >= 2 or row["loss"] > 0.01:
                    break
            await asyncio.sleep(1)
    print()
    for mode in args.mode:
        ok = [r["streams"] for r in results if r["mode"] == mode and sustained(r)]
        print(f"{mode}: highest count sustained with < 0.1 % loss: {max(ok) if ok else 'none'}")
    return 0


# ---- (b) one stream to many HTTP-FLV viewers ---------------------------------------------------

async def fanout_main(args) -> int:
    cache = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    from demux import generate
    ps_path, _, _ = generate(args.recording_seconds, cache)
    pack, nticks, loop_bytes, _ = write_pack(ps_path, cache)
    sender = build_sender(cache)
    rate = loop_bytes * 8 / (nticks * 0.04)
    targets, ingest = await open_targets("ingest", 1, "none")
    relay = targets[0].relay
    server = await FlvServer.start([relay])
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="relay-bench-"))
    spec = workdir / "streams.txt"
    spec.write_text(f"{targets[0].port} {targets[0].ssrc}\n")
    duration = args.warmup + args.seconds + 3
    procs = [await asyncio.create_subprocess_exec(
        "taskset", "-c", str(SENDER_CORE), str(sender), str(pack), HOST, f"{duration + 2}",
        str(spec), stdout=asyncio.subprocess.PIPE)]
    print(f"one {rate / 1e6:.2f} Mbit/s stream, {args.viewers} HTTP-FLV viewers in "
          f"{args.clients} client process(es) on core {SENDER_CORE}; server on core "
          f"{INGEST_CORE}", flush=True)
    try:
        await asyncio.sleep(2.0)                  # the relay has a GOP before viewers come
        paths = workdir / "paths.txt"
        per = math.ceil(args.viewers / args.clients)
        for i in range(args.clients):
            n = min(per, args.viewers - i * per)
            part = workdir / f"paths{i}.txt"
            part.write_text("/v/0.flv\n" * n)
            procs.append(await start_viewers(server.port, part, duration))
        await asyncio.sleep(args.warmup)
        gc.collect()
        s0, c0, t0 = server.sent(), time.process_time(), time.monotonic()
        await asyncio.sleep(args.seconds)
        s1, c1, t1 = server.sent(), time.process_time(), time.monotonic()
        stats = server.stats()
        connected = relay.flv_viewers
        outputs = [(await proc.communicate())[0].decode() for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await ingest.close()
        await server.close()
        shutil.rmtree(workdir, ignore_errors=True)
    wall = t1 - t0
    per_viewer = (s1 - s0) * 8 / wall / max(1, args.viewers)
    print(f"viewers connected at the end of the window: {connected} of {args.viewers}; "
          f"'too slow' disconnects {stats['too_slow']}, queue overflows {stats['overflows']}, "
          f"bytes dropped {stats['dropped_bytes']}")
    print(f"FLV written: {(s1 - s0) * 8 / wall / 1e9:.2f} Gbit/s in total, "
          f"{per_viewer / 1e6:.2f} Mbit/s per viewer (stream {rate / 1e6:.2f} Mbit/s); "
          f"server CPU {100 * (c1 - c0) / wall:.0f}%; RSS {rss_mib():.0f} MiB")
    for line in outputs[1:]:
        print("clients:", line.strip())
    return 0


# ---- (c) time to the first keyframe byte -------------------------------------------------------

def first_key_offset(data: bytes) -> int | None:
    """Offset just past the header of the first FLV video tag holding a keyframe NAL unit
    (AVC/HEVC packet type 1, or an enhanced-FLV coded frame), None while not there yet."""
    if len(data) < 13:
        return None
    pos = 13
    while pos + 11 <= len(data):
        kind = data[pos]
        size = int.from_bytes(data[pos + 1:pos + 4], "big")
        if pos + 11 + 2 > len(data):
            return None
        body = data[pos + 11:pos + 11 + size]
        if kind == 9 and len(body) >= 2:
            b0 = body[0]
            if b0 & 0x80:                     # enhanced FLV: packet type in the low bits
                if (b0 >> 4) & 0x07 == 1 and b0 & 0x0F in (1, 3):
                    return pos + 11
            elif b0 >> 4 == 1 and body[1] == 1:
                return pos + 11
        pos += 11 + size + 4
    return None


async def first_byte_main(args) -> int:
    import aiohttp

    from sip28181.config import Config
    from sip28181.device import DeviceSimulator
    from sip28181.device.media import MediaOptions
    from sip28181.server import Server

    device, channel, token = "34020000001320000001", "34020000001310000001", "bench-token"
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="relay-first-"))
    source = args.source or str(ROOT / "tests" / "data" / "ps" / "libmpeg_h264_g711a.ps")
    config = Config(sip_host=HOST, sip_port=0, http_host=HOST, http_port=0, data_dir=tmp / "data",
                    api_token=token, log_level="WARNING", media_bind=HOST, media_host=HOST,
                    media_port_min=PORT_BASE, media_port_max=PORT_BASE + 999, media_linger=0.0,
                    media_transport=args.transport)
    server = Server(config)
    await server.start()
    sim = DeviceSimulator(device, server_id="34020000002000000001", server_host=HOST,
                          server_port=server.sip_port, media=MediaOptions(source=source))
    first_packet: list[float] = []
    media = sim.media
    original_send = media._send

    def send(stream, packets):               # the device's first RTP packet, timed
        if not first_packet and packets:
            first_packet.append(time.perf_counter())
        return original_send(stream, packets)

    media._send = send
    await sim.start()
    rows = []
    url = f"http://{HOST}:{server.http_port}/live/{device}/{channel}.flv?token={token}"
    print(f"simulator ({source.rsplit('/', 1)[-1]}, {args.transport}) and server in this "
          f"process; {args.repeat} requests, each on a fresh stream (linger 0)", flush=True)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(args.repeat):
                first_packet.clear()
                data = bytearray()
                t_req = time.perf_counter()
                t_first = t_key = None
                async with session.get(url) as resp:
                    if resp.status != 200:
                        print("HTTP", resp.status, await resp.text())
                        return 1
                    async for chunk in resp.content.iter_any():
                        now = time.perf_counter()
                        if t_first is None:
                            t_first = now
                        data += chunk
                        if first_key_offset(data) is not None:
                            t_key = now
                            break
                rows.append((t_first - t_req, t_key - t_req,
                             t_key - first_packet[0] if first_packet else float("nan")))
                # the stream ends with the last viewer (linger 0); wait until it is gone
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    if not len(server.platform.streams):
                        break
    finally:
        await sim.stop()
        await server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    import statistics
    for name, i in (("request → first body byte", 0), ("request → first keyframe byte", 1),
                    ("device's first RTP packet → first keyframe byte", 2)):
        values = sorted(1000 * r[i] for r in rows)
        print(f"{name:48} median {statistics.median(values):7.1f} ms  "
              f"min {values[0]:7.1f}  max {values[-1]:7.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    streams = sub.add_parser("streams", help="(a) concurrent UDP streams into one core")
    streams.add_argument("--mode", default="ingest,protocol",
                         type=lambda s: s.split(","),
                         help="comma-separated: ingest (dedicated ports, batch reader), single "
                              "(one shared port), protocol (stock asyncio DatagramProtocol)")
    streams.add_argument("--ladder", type=lambda s: [int(x) for x in s.split(",")], default=None)
    streams.add_argument("--seconds", type=float, default=10.0, help="measured time per rung")
    streams.add_argument("--warmup", type=float, default=3.0)
    streams.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    streams.add_argument("--no-gso", dest="gso", action="store_false",
                         help="one send per datagram in the senders (no UDP GSO)")
    streams.add_argument("--recording-seconds", type=int, default=20)
    streams.add_argument("--cache-dir", type=pathlib.Path, default=cache_dir_default())
    streams.add_argument("--viewers", choices=("queue", "http", "none"), default="queue",
                         help="one FLV viewer per stream drained in this process (queue), real "
                              "HTTP-FLV clients in a process on the sender core (http), none")
    fanout = sub.add_parser("fanout", help="(b) one stream to many HTTP-FLV viewers")
    fanout.add_argument("--viewers", type=int, default=1000)
    fanout.add_argument("--clients", type=int, default=2, help="client processes")
    fanout.add_argument("--seconds", type=float, default=10.0)
    fanout.add_argument("--warmup", type=float, default=3.0)
    fanout.add_argument("--recording-seconds", type=int, default=20)
    fanout.add_argument("--cache-dir", type=pathlib.Path, default=cache_dir_default())
    first = sub.add_parser("first-byte", help="(c) HTTP-FLV request to first keyframe byte")
    first.add_argument("--repeat", type=int, default=20)
    first.add_argument("--transport", default="udp",
                       choices=("udp", "tcp-passive", "tcp-active"))
    first.add_argument("--source", default=None, help="PS file the simulator streams")
    hidden = sub.add_parser("_viewers")
    hidden.add_argument("host")
    hidden.add_argument("port", type=int)
    hidden.add_argument("paths")
    hidden.add_argument("seconds", type=float)
    args = parser.parse_args(argv)
    if args.command == "_viewers":
        return viewers_main(args.host, args.port, args.paths, args.seconds)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {INGEST_CORE})
    entry = {"streams": streams_main, "fanout": fanout_main, "first-byte": first_byte_main}
    if getattr(args, "loop", "uvloop") == "uvloop":
        import uvloop
        return uvloop.run(entry[args.command](args))
    return asyncio.run(entry[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
