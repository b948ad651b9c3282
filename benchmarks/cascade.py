"""Cascade costs: the catalog shared with an upper, the PS/RTP re-mux, forwarding live streams up.

(a) ``share``: ``sip28181.cascade.share`` for 1k, 10k and 50k channels (NVR-like devices of 100
    channels, each with a business group and virtual organisations): ``build_shared``, ``diff``
    (the first full ADD, then 1 % of the channels going OFF), the incremental updates the
    northbound applies (one channel's status: ``update_status`` + ``diff``; one device's catalog
    change, a channel renamed: ``update_devices`` + ``diff``), ``packets`` with each message encoded
    as the upper receives it (``CatalogResponse`` in GB2312); median and min–max time, and the peak
    of Python allocations (``tracemalloc``, in a separate uncounted pass).
(b) ``remux``: ``media.psrtp.PsRtpSink`` fed the frames of the 4 Mbit/s 1080p25 H.264 + G.711
    recording of ``demux.py``, in the batches the receiver delivers (one frame and its audio):
    frames/s, µs per frame, and the streams per core that implies for forwarding to an upper.
(c) ``forward``: a city server (``python -m sip28181.server``, its own process pinned to core 0)
    forwards N live streams to a province: the province (a ``Server`` in this process) INVITEs the
    city's channels with a plain UDP socket as the media address; the device behind the city is a
    ``DeviceSimulator`` with N channels whose media is sent by the paced C sender of ``relay.py``
    (``rtpsend.c``, core 1). City CPU per forwarded stream, RTP forwarded against received, loss.

Nothing is asserted; every figure comes with the CPU other processes used meanwhile.

    python benchmarks/cascade.py share [--sizes 1000,10000,50000] [--repeat 5]
    python benchmarks/cascade.py remux [--repeat 5]
    python benchmarks/cascade.py forward [--ladder 50,100,200] [--seconds 10] [--no-gso]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import pathlib
import statistics
import sys
import time
import tracemalloc

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "media"))

from relay import (all_process_cpu, build_sender, cache_dir_default,  # noqa: E402
                   process_cpu, rss_mib, write_pack)

CITY = "44010000002000000001"
PROVINCE = "44000000002000000001"
DEVICE = "44010000001180000001"
HOST = "127.0.0.1"


# ---- machine noise ------------------------------------------------------------------------------

class Noise:
    """Busy share of each core (``/proc/stat``) and CPU of processes other than ours, over a window."""

    def __init__(self, mine: set[int] | None = None) -> None:
        self.mine = {os.getpid()} | (mine or set())
        self.cores0 = self._cores()
        self.procs0 = all_process_cpu()
        self.t0 = time.monotonic()

    @staticmethod
    def _cores() -> dict[str, tuple[int, int]]:
        out = {}
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3] != " ":
                    name, *values = line.split()
                    v = [int(x) for x in values]
                    idle = v[3] + v[4]
                    out[name] = (sum(v[:8]) - idle, sum(v[:8]))
        return out

    def report(self, mine: set[int] | None = None) -> str:
        mine = self.mine | (mine or set())
        wall = time.monotonic() - self.t0
        cores1 = self._cores()
        procs1 = all_process_cpu()
        busy = []
        for name, (b1, t1) in sorted(cores1.items()):
            b0, t0 = self.cores0[name]
            busy.append(f"{name} {100 * (b1 - b0) / max(1, t1 - t0):.0f}%")
        others = sum(v - self.procs0[pid] for pid, v in procs1.items()
                     if pid in self.procs0 and pid not in mine)
        return f"busy {', '.join(busy)}; other processes {100 * others / wall:.0f}% of a core"


def spread(values: list[float], scale: float = 1.0, fmt: str = ".1f") -> str:
    v = sorted(x * scale for x in values)
    return f"{statistics.median(v):{fmt}} ({v[0]:{fmt}}–{v[-1]:{fmt}})"


# ---- (a) the shared catalog ---------------------------------------------------------------------

def make_devices(channels: int, per_device: int = 100, vos: int = 5):
    """NVR-like devices of ``per_device`` channels: a business group (215) per device, ``vos``
    virtual organisations (216) under it, one nested VO, channels spread over the VOs."""
    from sip28181.cascade.share import LocalDevice
    from sip28181.store.base import ChannelRecord

    devices = []
    n_dev = max(1, (channels + per_device - 1) // per_device)
    left = channels
    for d in range(n_dev):
        dev = f"440100000011800{d:05d}"
        group = f"44010000002150{d:06d}"
        recs = [ChannelRecord(dev, group, name=f"group {d}", kind="business_group", civil_code="440100")]
        vo_ids = [f"4401000000216{d:05d}{v:02d}" for v in range(vos)]
        for v, vo in enumerate(vo_ids):
            parent = vo_ids[0] if v == vos - 1 and v > 0 else group   # one VO nested in another
            recs.append(ChannelRecord(dev, vo, name=f"vo {d}.{v}", kind="virtual_org", parent_id=parent,
                                      business_group_id=group, civil_code="440100"))
        n = min(per_device, left)
        left -= n
        for c in range(n):
            cid = f"4401000000131{d:05d}{c:02d}" if per_device <= 100 else f"44010000001310{d * per_device + c:06d}"
            recs.append(ChannelRecord(
                dev, cid, name=f"camera {d}-{c} 路口", status="ON", parent_id=vo_ids[c % vos],
                business_group_id=group, civil_code="440100", manufacturer="Hikvision", model="DS-2CD",
                address=f"road {c}", longitude=113.2 + c / 1000, latitude=23.1,
                fields={"owner": "owner", "safety_way": "0", "register_way": "1", "secrecy": "0",
                        "info": {"ptz_type": "1"}}))
        devices.append(LocalDevice(dev, f"nvr {d}", True, recs, "Hikvision", "DS-9600"))
    return devices


def off_some(devices, share: float = 0.01):
    """The same devices with ``share`` of the channels OFF (what a ChannelStatusChanged does)."""
    import dataclasses

    out = []
    for dev in devices:
        recs = []
        for i, rec in enumerate(dev.channels):
            if rec.kind == "channel" and i % int(1 / share) == 0:
                rec = dataclasses.replace(rec, status="OFF")
            recs.append(rec)
        out.append(dataclasses.replace(dev, channels=recs))
    return out


def share_main(args) -> int:
    from sip28181.cascade.settings import UpperSettings
    import dataclasses

    from sip28181.cascade.share import build_shared, diff, packets, update_devices, update_status
    from sip28181.manscdp import messages as m

    print(f"python {sys.version.split()[0]}; one core; median (min–max) of {args.repeat} runs; "
          f"catalog_group {args.group}, GB2312", flush=True)
    for tree in args.trees:
        for mapping in ("keep", "map"):
            settings = UpperSettings(sip_id=PROVINCE, host=HOST, tree=tree, ids=mapping,
                                     id_prefix="4402" if mapping == "map" else None, catalog_group=args.group)
            for size in args.sizes:
                devices = make_devices(size)
                changed = off_some(devices)
                # one channel of the middle device goes OFF; another of it is renamed
                mid = devices[len(devices) // 2]
                recs = list(mid.channels)
                first = next(i for i, r in enumerate(recs) if r.kind == "channel")
                off_one = dataclasses.replace(mid, channels=[dataclasses.replace(r, status="OFF") if i == first else r
                                                             for i, r in enumerate(recs)])
                renamed = dataclasses.replace(mid, channels=[dataclasses.replace(r, name="renamed") if i == first + 1
                                                             else r for i, r in enumerate(recs)])
                noise = Noise()
                times = {k: [] for k in ("build", "diff_full", "rebuild+diff_1%", "status_1ch", "catalog_1dev",
                                         "packets+encode")}
                nodes = msgs = nbytes = events = 0
                for _ in range(args.repeat):
                    gc.collect()
                    t0 = time.perf_counter()
                    shared = build_shared(devices, settings, root_id=CITY, root_name="city")
                    t1 = time.perf_counter()
                    full = diff(None, shared)
                    t2 = time.perf_counter()
                    after = build_shared(changed, settings, root_id=CITY, root_name="city")
                    delta = diff(shared, after)
                    t3 = time.perf_counter()
                    items = [n.item for n in shared.nodes]
                    bodies = [m.CatalogResponse(sn=1, device_id=CITY, sum_num=len(items), items=part).encode("GB2312")
                              for part in packets(items, settings.catalog_group)]
                    t4 = time.perf_counter()
                    one = update_status(shared, off_one, [recs[first].channel_id])
                    status_events = diff(shared, one)
                    t5 = time.perf_counter()
                    dev = update_devices(shared, {mid.device_id: renamed})
                    dev_events = diff(shared, dev)
                    t6 = time.perf_counter()
                    assert [e.event for e in status_events] == ["OFF"], status_events
                    assert [e.event for e in dev_events] == ["UPDATE"], dev_events
                    times["status_1ch"].append(t5 - t4)
                    times["catalog_1dev"].append(t6 - t5)
                    times["build"].append(t1 - t0)
                    times["diff_full"].append(t2 - t1)
                    times["rebuild+diff_1%"].append(t3 - t2)
                    times["packets+encode"].append(t4 - t3)
                    nodes, msgs, nbytes, events = len(shared.nodes), len(bodies), sum(map(len, bodies)), len(delta)
                    assert len(full) == nodes and not shared.conflicts
                    del shared, full, after, delta, items, bodies, one, dev
                noise_line = noise.report()
                # peak Python allocations, one uncounted pass
                gc.collect()
                tracemalloc.start()
                base = tracemalloc.get_traced_memory()[0]
                shared = build_shared(devices, settings, root_id=CITY, root_name="city")
                peak_build = tracemalloc.get_traced_memory()[1] - base
                held = tracemalloc.get_traced_memory()[0] - base
                tracemalloc.reset_peak()
                items = [n.item for n in shared.nodes]
                bodies = [m.CatalogResponse(sn=1, device_id=CITY, sum_num=len(items), items=part).encode("GB2312")
                          for part in packets(items, settings.catalog_group)]
                peak_all = tracemalloc.get_traced_memory()[1] - base
                tracemalloc.stop()
                del shared, items, bodies
                print(f"tree {tree} ids {mapping:4} {size:6d} channels ({nodes} nodes, "
                      f"{len(devices)} devices): "
                      + "; ".join(f"{k} {spread(v, 1000)} ms" for k, v in times.items())
                      + f"; {msgs} messages, {nbytes / 1e6:.1f} MB; 1 % OFF → {events} events; "
                      f"memory: shared catalog {held / 2**20:.1f} MiB held, build peak "
                      f"{peak_build / 2**20:.1f} MiB, with encoded messages {peak_all / 2**20:.1f} MiB; "
                      f"RSS {rss_mib():.0f} MiB; {noise_line}", flush=True)
    return 0


# ---- (b) PsRtpSink re-mux ----------------------------------------------------------------------

def load_batches(cache: pathlib.Path, seconds: int):
    """The recording's frames in the batches ``RtpPsReceiver.feed_packets`` hands the relay."""
    from demux import generate

    from media import PsMuxer, RtpPacketizer, RtpPsReceiver, PsDemuxer

    ps_path, _, _ = generate(seconds, cache)
    data = ps_path.read_bytes()
    # RTP packets of the recording, as a device would send them
    demuxer = PsDemuxer()
    frames = demuxer.feed(data) + demuxer.flush()
    video = next(f.codec for f in frames if f.codec in ("h264", "h265"))
    muxer, packetizer = PsMuxer(video, "g711a"), RtpPacketizer(1, seq=0)
    order = sorted(range(len(frames)), key=lambda i: (frames[i].dts or 0, frames[i].codec != video))
    packets = [p for i in order for p in packetizer.packetize(muxer.mux(frames[i]), frames[i].pts or 0)]
    receiver = RtpPsReceiver()
    batches = []
    for i in range(0, len(packets), 32):
        out = receiver.feed_packets(packets[i:i + 32])
        if out:
            batches.append(out)
    return ps_path, len(data), batches


def remux_main(args) -> int:
    from media import psrtp
    from media.psrtp import PsRtpSink

    cache = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    ps_path, ps_bytes, batches = load_batches(cache, args.recording_seconds)
    nframes = sum(len(b) for b in batches)
    nvideo = sum(1 for b in batches for f in b if f.codec == "h264")
    duration = nvideo / 25
    print(f"recording {ps_path.name}: {ps_bytes / 1e6:.1f} MB, {nvideo} video + {nframes - nvideo} audio "
          f"frames ({duration:.0f} s, {ps_bytes * 8 / duration / 1e6:.2f} Mbit/s), {len(batches)} batches "
          f"of 32 RTP packets; PsMuxer {psrtp.PsMuxer.__module__}; RtpPacketizer "
          f"{psrtp.RtpPacketizer.__module__} (a _py module is the pure-Python twin)", flush=True)

    sent = [0, 0]

    def send(packets):                 # what invite.py's UDP path gets, minus the sendto
        sent[0] += len(packets)

    def run(send, passes: int) -> tuple[float, float, PsRtpSink]:
        """One sink fed the recording ``passes`` times over (a run long enough to be timed
        against the machine's 10 ms CPU accounting); wall and CPU seconds per pass."""
        sink = PsRtpSink(106000001, send, video_codec="h264", audio_codec="g711a")
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(passes):
            for batch in batches:
                sink.on_frames(batch)
        t1, c1 = time.perf_counter(), time.process_time()
        return (t1 - t0) / passes, (c1 - c0) / passes, sink

    probe = run(send, 3)[0]
    passes = max(1, round(args.run_seconds / probe))
    noise = Noise()
    cpu, wall = [], []
    for _ in range(args.repeat):
        w, c, sink = run(send, passes)
        cpu.append(c)
        wall.append(w)
    frames_sent = sink.frames_sent // passes
    packets_sent, bytes_sent = sink.packets_sent // passes, sink.bytes_sent // passes
    noise_line = noise.report()
    per_frame = [w / frames_sent for w in wall]
    per_video = [w / nvideo for w in wall]
    realtime = [w / duration for w in wall]        # share of a core one live stream takes
    print(f"PsRtpSink.on_frames, {args.repeat} runs of {passes} passes over the recording: "
          f"{frames_sent} frames re-muxed into {packets_sent} RTP packets "
          f"({bytes_sent / 1e6:.1f} MB) per pass")
    print(f"  {spread([frames_sent / w for w in wall], 1, ',.0f')} frames/s; "
          f"{spread(per_frame, 1e6, '.2f')} µs per frame (video+audio), "
          f"{spread(per_video, 1e6, '.2f')} µs per video frame with its audio; "
          f"{spread([bytes_sent / w / 1e6 for w in wall], 1, '.0f')} MB/s of RTP; CPU/wall "
          f"{sum(cpu) / sum(wall):.2f}")
    print(f"  one 25 fps stream: {spread(realtime, 100, '.4f')} % of a core → "
          f"{spread([1 / r for r in realtime], 1, ',.0f')} streams per core for the re-mux alone; "
          f"{noise_line}", flush=True)

    # with the UDP sends the city does (invite.py, on an unconnected socket): one sendto per
    # packet ([cascade] udp_gso = false) or one GSO sendmsg per frame
    import socket
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((HOST, 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)     # drops are fine: not read
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setblocking(False)
    dest = rx.getsockname()

    def send_udp(packets, sendto=tx.sendto):
        for p in packets:
            try:
                sendto(p, dest)
            except BlockingIOError:
                pass

    from media.udpsend import UdpSender

    sender = UdpSender(tx)

    def send_gso(packets, send=sender.send):
        send(packets, dest)

    for label, fn in (("a sendto per packet", send_udp), ("UDP GSO (media.udpsend, a sendmsg per frame)", send_gso)):
        passes = max(1, round(args.run_seconds / run(fn, 1)[0]))
        noise = Noise()
        wall = [run(fn, passes)[0] for _ in range(max(1, args.repeat // 2))]
        realtime = [w / duration for w in wall]
        print(f"  with {label} to a loopback UDP socket (the kernel's loopback receive "
              f"path included): {spread(realtime, 100, '.4f')} % of a core per stream → "
              f"{spread([1 / r for r in realtime], 1, ',.0f')} streams per core; {noise.report()}", flush=True)
    gso = sender.stats()
    print(f"  GSO sender: {gso['datagrams']:,} datagrams in {gso['syscalls']:,} system calls "
          f"({gso['gso_sends']:,} GSO), {gso['blocked']} blocked, gso={gso['gso']}", flush=True)
    rx.close()
    tx.close()
    return 0


# ---- (c) forwarding live streams to an upper ---------------------------------------------------

PASSWORD = "prov-secret"
DEVICE_PASSWORD = "12345678"
TOKEN = "bench-token"


def free_port(kind=None) -> int:
    import socket
    with socket.socket(socket.AF_INET, kind or socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def city_toml(path: pathlib.Path, sip_port: int, http_port: int, province_port: int, gso: bool = True) -> None:
    path.write_text(f"""data_dir = "{path.parent / 'data'}"
[sip]
id = "{CITY}"
host = "{HOST}"
port = {sip_port}
transports = ["udp"]
[auth]
password = "{DEVICE_PASSWORD}"
[http]
host = "{HOST}"
port = {http_port}
api_token = "{TOKEN}"
[store]
backend = "memory"
[catalog]
query_delay = 0.0
[log]
level = "WARNING"
[media]
host = "{HOST}"
bind = "{HOST}"
port_min = 30000
port_max = 31999
transport = "udp"
linger = 0.0
no_media_timeout = 120.0
invite_timeout = 20.0
[cascade]
udp_gso = {"true" if gso else "false"}

[[upper]]
sip_id = "{PROVINCE}"
host = "{HOST}"
port = {province_port}
transport = "udp"
password = "{PASSWORD}"
keepalive_interval = 30
catalog_group = 20
""")


class Counter:
    """The province's media port: one UDP socket every forwarded stream is sent to (the INVITEs
    offer the same address, each with its own y= SSRC); datagrams and bytes counted, not parsed."""

    def __init__(self) -> None:
        import socket
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 64 << 20)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.packets = 0
        self.bytes = 0
        self.ssrcs: set[int] = set()
        self._buf = bytearray(2048)

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        recv_into, buf = self.sock.recv_into, self._buf
        n = packets = nbytes = 0
        try:
            while n < 4096:
                size = recv_into(buf)
                packets += 1
                nbytes += size
                n += 1
                if packets & 255 == 1:
                    self.ssrcs.add(int.from_bytes(buf[8:12], "big"))
        except BlockingIOError:
            pass
        self.packets += packets
        self.bytes += nbytes

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


def offer(port: int, ssrc: str) -> bytes:
    lines = ["v=0", f"o={PROVINCE} 0 0 IN IP4 {HOST}", "s=Play", f"c=IN IP4 {HOST}", "t=0 0",
             f"m=video {port} RTP/AVP 96", "a=recvonly", "a=rtpmap:96 PS/90000", f"y={ssrc}"]
    return ("\r\n".join(lines) + "\r\n").encode()


async def play(province, city_port: int, channel: str, port: int, ssrc: str):
    from sip28181.transport import Flow

    endpoint = province.platform.endpoint
    flow = Flow("UDP", HOST, city_port)
    target = f"sip:{channel}@{HOST}:{city_port}"
    request = endpoint.build_request(
        "INVITE", target, from_uri=f"sip:{PROVINCE}@{PROVINCE[:10]}", to_uri=target, flow=flow,
        body=offer(port, ssrc), content_type="APPLICATION/SDP",
        extra=[("Contact", f"<sip:{PROVINCE}@{HOST}:{endpoint.port}>"),
               ("Subject", f"{channel}:{ssrc},{PROVINCE}:0")])
    response, dialog = await endpoint.invite(request, flow, 30)
    return response, dialog, flow


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def forward_rung(count: int, args, pack: pathlib.Path, sender: pathlib.Path, rate: float) -> dict:
    import shutil
    import subprocess
    import tempfile

    from sip28181.config import Config
    from sip28181.device import DeviceSimulator
    from sip28181.server import Server

    work = pathlib.Path(tempfile.mkdtemp(prefix="cascade-bench-"))
    province = Server(Config(sip_id=PROVINCE, sip_host=HOST, sip_port=0, http_host=HOST, http_port=0,
                             data_dir=work / "p", password=PASSWORD, api_token=TOKEN, store="memory", log_level="WARNING",
                             catalog_query_delay=0.0))
    await province.start()
    city_sip, city_http = free_port(), free_port(__import__("socket").SOCK_STREAM)
    (work / "c").mkdir()
    city_toml(work / "c" / "city.toml", city_sip, city_http, province.platform.sip_port, args.gso)
    log = open(work / "c" / "city.log", "wb")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    city = subprocess.Popen([sys.executable, "-m", "sip28181.server", "-c", str(work / "c" / "city.toml")],
                            cwd=work / "c", env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    streams: list[tuple[int, int]] = []           # (city media port, SSRC) per device stream
    sim = counter = proc = None
    dialogs = []
    try:
        sim = DeviceSimulator(DEVICE, server_id=CITY, server_host=HOST, server_port=city_sip,
                              password=DEVICE_PASSWORD, channels=count, keepalive_interval=60,
                              request_timeout=20)

        async def record(s) -> None:                # the C sender streams instead of the simulator
            streams.append((s.dest_port, s.ssrc))
            await s.ended

        sim.media._stream = record
        await wait_until(lambda: city.poll() is not None or _tcp_open(city_http), 30, "the city to start")
        if city.poll() is not None:
            raise RuntimeError(f"the city exited; see {work / 'c' / 'city.log'}")
        await sim.start()
        await wait_until(lambda: (s := province.platform.registry.get(CITY)) is not None and s.status == "online",
                         30, "the city to register with the province")
        await wait_until(lambda: len([c for c in province.platform.channels(CITY) if c.kind == "channel"]) >= count,
                         60, f"the province to list {count} channels")
        channels = sorted(c.channel_id for c in province.platform.channels(CITY) if c.kind == "channel")[:count]
        counter = Counter()
        counter.start()
        sem = asyncio.Semaphore(16)
        t_inv = time.monotonic()

        async def one(i: int, channel: str):
            async with sem:
                return await play(province, city_sip, channel, counter.port, f"0{PROVINCE[3:8]}{i:04d}")

        results = await asyncio.gather(*(one(i, ch) for i, ch in enumerate(channels)))
        failed = [r[0].status for r in results if r[0].status != 200]
        dialogs = [(r[1], r[2]) for r in results if r[1] is not None]
        invite_s = time.monotonic() - t_inv
        await wait_until(lambda: len(streams) >= len(dialogs), 20, "the device streams")
        spec = work / "streams.txt"
        spec.write_text("".join(f"{port} {ssrc}\n" for port, ssrc in streams))
        duration = args.warmup + args.seconds + 2
        proc = await asyncio.create_subprocess_exec(
            "taskset", "-c", "1", str(sender), str(pack), HOST, f"{duration}", str(spec), "gso",
            stdout=asyncio.subprocess.PIPE)
        await asyncio.sleep(args.warmup)
        gc.collect()
        noise = Noise({city.pid, proc.pid})
        c0, p0, b0, t0 = process_cpu(city.pid), counter.packets, counter.bytes, time.monotonic()
        s0 = process_cpu(proc.pid)
        await asyncio.sleep(args.seconds)
        c1, p1, b1, t1 = process_cpu(city.pid), counter.packets, counter.bytes, time.monotonic()
        s1 = process_cpu(proc.pid)
        noise_line = noise.report({city.pid, proc.pid})
        rss = _rss_kib(city.pid) / 1024
        out = (await proc.communicate())[0].decode()
        wall = t1 - t0
        return {"streams": count, "answered": len(dialogs), "failed": failed, "invite_s": invite_s,
                "city_cpu": (c1 - c0) / wall, "sender_cpu": (s1 - s0) / wall,
                "pps": (p1 - p0) / wall, "mbit": (b1 - b0) * 8 / wall / 1e6,
                "nominal_mbit": count * rate * 8 / 1e6, "ssrcs": len(counter.ssrcs),
                "sender": out.strip(), "noise": noise_line, "rss": rss}
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        if counter is not None:
            counter.close()
        if sim is not None:
            await sim.stop()                        # unregisters while the city still answers
        if city.poll() is None:
            city.terminate()
            try:
                city.wait(15)
            except subprocess.TimeoutExpired:
                city.kill()
                city.wait()
        log.close()
        await province.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"  kept {work}")


def _tcp_open(port: int) -> bool:
    import socket
    try:
        socket.create_connection((HOST, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def forward_main(args) -> int:
    from demux import generate

    cache = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    ps_path, _, _ = generate(args.recording_seconds, cache)
    pack, nticks, loop_bytes, _ = write_pack(ps_path, cache)
    sender = build_sender(cache)
    rate = loop_bytes / (nticks * 0.04)
    os.sched_setaffinity(0, {1})
    print(f"city server (python -m sip28181.server, uvloop when installed) pinned to core 0; province "
          f"Server, device simulator (SIP only) and the UDP counter in this process and the paced sender "
          f"({rate * 8 / 1e6:.2f} Mbit/s of RTP per stream) on core 1; {args.seconds:.0f} s measured "
          f"after {args.warmup:.0f} s; city to province: "
          f"{'UDP GSO, one sendmsg per frame' if args.gso else 'one sendto per packet'}", flush=True)
    for count in args.ladder:
        row = await forward_rung(count, args, pack, sender, rate)
        print(f"{row['streams']:4d} streams ({row['answered']} answered, failed {row['failed'] or 'none'}, "
              f"INVITEs in {row['invite_s']:.1f} s): city CPU {100 * row['city_cpu']:.1f}% of a core = "
              f"{100 * row['city_cpu'] / max(1, row['answered']):.3f}% per stream; forwarded "
              f"{row['mbit']:.0f} of {row['nominal_mbit']:.0f} Mbit/s in, {row['pps']:.0f} datagrams/s, "
              f"{row['ssrcs']} SSRCs seen; city RSS {row['rss']:.0f} MiB; sender CPU "
              f"{100 * row['sender_cpu']:.0f}% ({row['sender']}); {row['noise']}", flush=True)
        await asyncio.sleep(1)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    share = sub.add_parser("share", help="(a) shared catalog build, diff, packets")
    share.add_argument("--sizes", type=ints, default=[1000, 10000, 50000])
    share.add_argument("--repeat", type=int, default=5)
    share.add_argument("--group", type=int, default=4, help="catalog_group (items per message)")
    share.add_argument("--trees", type=lambda s: s.split(","), default=["2016", "2022"])
    remux = sub.add_parser("remux", help="(b) PsRtpSink re-mux cost")
    remux.add_argument("--repeat", type=int, default=5)
    remux.add_argument("--run-seconds", type=float, default=2.0, help="length of one timed run")
    remux.add_argument("--recording-seconds", type=int, default=20)
    remux.add_argument("--cache-dir", type=pathlib.Path, default=cache_dir_default())
    fwd = sub.add_parser("forward", help="(c) a city forwarding N live streams to a province")
    fwd.add_argument("--ladder", type=ints, default=[50, 100, 200])
    fwd.add_argument("--seconds", type=float, default=10.0)
    fwd.add_argument("--warmup", type=float, default=4.0)
    fwd.add_argument("--recording-seconds", type=int, default=20)
    fwd.add_argument("--cache-dir", type=pathlib.Path, default=cache_dir_default())
    fwd.add_argument("--keep", action="store_true", help="keep the city's data directory and log")
    fwd.add_argument("--no-gso", dest="gso", action="store_false",
                     help="the city sends a sendto per packet ([cascade] udp_gso = false)")
    args = parser.parse_args(argv)
    if args.command == "share":
        return share_main(args)
    if args.command == "remux":
        return remux_main(args)
    import uvloop
    return uvloop.run(forward_main(args))


if __name__ == "__main__":
    sys.exit(main())
