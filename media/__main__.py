"""Command-line media tools.

``python -m media ps2flv IN.ps OUT.flv``
    Convert a GB/T 28181 MPEG-PS file to FLV.
``python -m media pcap2flv CAPTURE OUT.flv [--port N] [--ssrc N] [--transport udp|tcp]``
    Extract PS-over-RTP from a pcap/pcapng capture (RTP over UDP, or RFC 4571 over TCP) and
    convert it to FLV.
``python -m media probe IN.ps [--json]``
    List the streams of a PS file (codec, frames, keyframes, duration) and the demuxer's error
    counters.

Exit status: 0 on success, 1 when the input cannot be read or holds nothing usable, 2 on usage
errors.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from ._flv_py import AUDIO_CODECS, VIDEO_CODECS, normalize_codec
from ._frame import Frame

READ_SIZE = 1 << 16
MASK33 = (1 << 33) - 1
#: A step between consecutive timestamps larger than this (90 kHz) is a jump.
JUMP = 90000


class ToolError(Exception):
    """A problem with the input or output that ends the tool with exit status 1."""


# ---- PS files ---------------------------------------------------------------------------------

def _new_demuxer() -> Any:
    try:
        from .ps import PsDemuxer
    except ImportError as exc:
        raise ToolError(f"the PS demuxer is not available ({exc})") from None
    return PsDemuxer()


def demuxer_counters(demuxer: Any) -> tuple[dict[str, int], dict[str, int]]:
    """``(statistics, error counters)`` a PS demuxer exposes (``stats()`` and ``errors``)."""
    found = []
    for name in ("stats", "errors"):
        value = getattr(demuxer, name, None)
        if callable(value):
            value = value()
        found.append(dict(value) if isinstance(value, dict) else {})
    return found[0], found[1]


def ps_file_frames(path: str, demuxer: Any | None = None) -> Iterator[Frame]:
    """Frames of a PS file, read in chunks and demuxed as a stream."""
    demuxer = demuxer if demuxer is not None else _new_demuxer()
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror or exc}") from None
    with f:
        while True:
            chunk = f.read(READ_SIZE)
            if not chunk:
                break
            yield from demuxer.feed(chunk)
    yield from demuxer.flush()


# ---- captures ---------------------------------------------------------------------------------

def _open_capture(f: BinaryIO) -> Any:
    import dpkt

    magic = f.read(4)
    f.seek(0)
    try:
        if magic == b"\x0a\x0d\x0d\x0a":
            return dpkt.pcapng.Reader(f)
        return dpkt.pcap.Reader(f)
    except (ValueError, dpkt.dpkt.Error) as exc:
        raise ToolError(f"not a pcap or pcapng capture ({exc})") from None


def _ip_layer(datalink: int, buf: bytes) -> Any:
    """The IPv4/IPv6 packet of one captured frame, or None."""
    import dpkt

    try:
        if datalink == dpkt.pcap.DLT_EN10MB:
            pkt = dpkt.ethernet.Ethernet(buf).data
        elif datalink == dpkt.pcap.DLT_LINUX_SLL:
            pkt = dpkt.sll.SLL(buf).data
        elif datalink == 276:  # LINKTYPE_LINUX_SLL2
            pkt = dpkt.sll2.SLL2(buf).data
        elif datalink in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
            pkt = dpkt.loopback.Loopback(buf).data
        elif datalink in (dpkt.pcap.DLT_RAW, 12, 14, 228, 229):
            version = buf[0] >> 4 if buf else 0
            pkt = dpkt.ip.IP(buf) if version == 4 else dpkt.ip6.IP6(buf) if version == 6 else None
        else:
            return None
    except (dpkt.dpkt.Error, IndexError, ValueError):
        return None
    if isinstance(pkt, (dpkt.ip.IP, dpkt.ip6.IP6)):
        return pkt
    return None


def _ip_str(addr: bytes) -> str:
    import socket

    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)


Flow = tuple[str, int, str, int]


def read_capture(path: str) -> tuple[list[tuple[Flow, bytes]], dict[Flow, list[tuple[int, bytes]]]]:
    """``(udp datagrams [(flow, payload)], tcp segments {flow: [(seq, payload)]})``.

    A flow is ``(src, sport, dst, dport)``; fragments that did not reassemble are skipped.
    """
    import dpkt

    udp: list[tuple[Flow, bytes]] = []
    tcp: dict[Flow, list[tuple[int, bytes]]] = defaultdict(list)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror or exc}") from None
    with f:
        reader = _open_capture(f)
        datalink = reader.datalink()
        try:
            for _, buf in reader:
                ip = _ip_layer(datalink, buf)
                if ip is None:
                    continue
                l4 = ip.data
                if isinstance(l4, dpkt.udp.UDP):
                    flow = (_ip_str(ip.src), l4.sport, _ip_str(ip.dst), l4.dport)
                    udp.append((flow, bytes(l4.data)))
                elif isinstance(l4, dpkt.tcp.TCP) and l4.data:
                    flow = (_ip_str(ip.src), l4.sport, _ip_str(ip.dst), l4.dport)
                    tcp[flow].append((l4.seq, bytes(l4.data)))
        except (dpkt.dpkt.Error, ValueError, struct.error) as exc:
            raise ToolError(f"{path}: damaged capture ({exc})") from None
    return udp, tcp


def reassemble_tcp(segments: list[tuple[int, bytes]]) -> bytes:
    """Concatenate TCP segments in sequence order, dropping retransmitted/overlapping bytes."""
    if not segments:
        return b""
    first = segments[0][0]
    # Sequence numbers relative to the first segment, modulo 2**32.
    ordered = sorted(((seq - first) & 0xFFFFFFFF, data) for seq, data in segments)
    out = bytearray()
    for rel, data in ordered:
        end = len(out)
        if rel + len(data) <= end:
            continue
        if rel > end:
            # A gap: data was not captured. Keep going; the RFC 4571 framer resynchronises.
            out += data
            continue
        out += data[end - rel:]
    return bytes(out)


def rtp_packets_from_capture(path: str, transport: str = "auto", port: int | None = None,
                             ssrc: int | None = None) -> tuple[list[Any], str]:
    """RTP packets of the chosen stream in capture order, and a description of that stream.

    Without ``ssrc`` the stream with the most packets is chosen (per transport, flow and SSRC).
    """
    from .errors import MediaFormatError
    from .rtp import Rfc4571Framer, parse_rtp

    udp, tcp = read_capture(path)
    streams: dict[tuple, list[Any]] = defaultdict(list)
    if transport in ("auto", "udp"):
        for flow, payload in udp:
            if port is not None and port not in (flow[1], flow[3]):
                continue
            try:
                pkt = parse_rtp(payload)
            except MediaFormatError:
                continue
            if ssrc is not None and pkt.ssrc != ssrc:
                continue
            streams[("udp", flow, pkt.ssrc)].append(pkt)
    if transport in ("auto", "tcp"):
        for flow, segments in tcp.items():
            if port is not None and port not in (flow[1], flow[3]):
                continue
            framer = Rfc4571Framer(ssrc=ssrc)
            for raw in framer.feed(reassemble_tcp(segments)):
                try:
                    pkt = parse_rtp(raw)
                except MediaFormatError:
                    continue
                if ssrc is not None and pkt.ssrc != ssrc:
                    continue
                streams[("tcp", flow, pkt.ssrc)].append(pkt)
    if not streams:
        raise ToolError(f"{path}: no RTP stream found"
                        + (f" on port {port}" if port is not None else "")
                        + (f" with SSRC {ssrc}" if ssrc is not None else ""))
    key = max(streams, key=lambda k: len(streams[k]))
    proto, (src, sport, dst, dport), chosen = key
    description = (f"RTP/{proto.upper()} {src}:{sport} -> {dst}:{dport} SSRC {chosen} "
                   f"(0x{chosen:08X}), {len(streams[key])} packets")
    return streams[key], description


def rtp_frames(packets: Iterable[Any], demuxer: Any | None = None,
               on_loss: Callable[[int], None] | None = None) -> Iterator[Frame]:
    """Frames of a PS-over-RTP packet sequence: reorder, tell the demuxer about losses, demux."""
    from .rtp import JitterBuffer, seq_diff

    demuxer = demuxer if demuxer is not None else _new_demuxer()
    jitter = JitterBuffer()
    previous: int | None = None

    def feed(released: list[Any]) -> Iterator[Frame]:
        nonlocal previous
        for pkt in released:
            if previous is not None and seq_diff(pkt.sequence, previous) != 1:
                if on_loss is not None:
                    on_loss(seq_diff(pkt.sequence, previous) - 1)
                discontinuity = getattr(demuxer, "discontinuity", None)
                if discontinuity is not None:
                    discontinuity()
            previous = pkt.sequence
            yield from demuxer.feed(pkt.payload)

    for pkt in packets:
        yield from feed(jitter.add(pkt))
    yield from feed(jitter.flush())
    yield from demuxer.flush()


# ---- FLV writing ------------------------------------------------------------------------------

def stream_codecs(frames: Iterable[Frame]) -> tuple[str | None, str | None, Counter]:
    """First video and audio codec FLV can carry, and a count of frames per codec name."""
    video = audio = None
    seen: Counter = Counter()
    for frame in frames:
        seen[frame.codec] += 1
        codec = normalize_codec(frame.codec)
        if video is None and codec in VIDEO_CODECS:
            video = codec
        elif audio is None and codec in AUDIO_CODECS:
            audio = codec
    return video, audio, seen


def write_flv(frames: Iterable[Frame], out_path: str, video: str | None, audio: str | None,
              hevc_mode: str) -> dict[str, int]:
    """Mux ``frames`` into ``out_path``; the header is written once the first tags exist."""
    from .flv import FlvMuxer

    if video is None and audio is None:
        raise ToolError("no H.264/H.265/G.711/AAC stream to convert")
    muxer = FlvMuxer(video, audio, hevc_mode=hevc_mode)
    counts = {"video": 0, "audio": 0}
    tmp = out_path + ".part"
    try:
        with open(tmp, "wb") as out:
            pending = True
            for frame in frames:
                tags = muxer.mux(frame)
                if not tags:
                    continue
                if pending:
                    out.write(muxer.header())
                    pending = False
                out.write(tags)
                kind = "video" if normalize_codec(frame.codec) == video else "audio"
                counts[kind] += 1
            if pending:
                raise ToolError("nothing to write: no decodable frame (no keyframe with "
                                "parameter sets?)")
            out.write(muxer.end())
        os.replace(tmp, out_path)
    except OSError as exc:
        raise ToolError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    counts["dropped"] = muxer.frames_dropped
    counts["width"] = muxer.width
    counts["height"] = muxer.height
    return counts


def _report_flv(out_path: str, counts: dict[str, int], video: str | None,
                audio: str | None) -> None:
    size = f" {counts['width']}x{counts['height']}" if counts["width"] else ""
    print(f"{out_path}: {counts['video']} video frames ({video or 'none'}{size}), "
          f"{counts['audio']} audio frames ({audio or 'none'}), "
          f"{counts['dropped']} frames dropped")


# ---- commands ---------------------------------------------------------------------------------

def cmd_ps2flv(args: argparse.Namespace) -> int:
    video, audio, seen = stream_codecs(ps_file_frames(args.input))
    if not seen:
        raise ToolError(f"{args.input}: no MPEG-PS frames found")
    if args.no_audio:
        audio = None
    counts = write_flv(ps_file_frames(args.input), args.output, video, audio, args.hevc_mode)
    _report_flv(args.output, counts, video, audio)
    return 0


def cmd_pcap2flv(args: argparse.Namespace) -> int:
    packets, description = rtp_packets_from_capture(args.capture, args.transport, args.port,
                                                    args.ssrc)
    print(description)
    video, audio, seen = stream_codecs(rtp_frames(packets))
    if not seen:
        raise ToolError(f"{args.capture}: the RTP stream carries no MPEG-PS frames")
    if args.no_audio:
        audio = None
    lost = [0]

    def on_loss(n: int) -> None:
        lost[0] += n

    counts = write_flv(rtp_frames(packets, on_loss=on_loss), args.output, video, audio,
                       args.hevc_mode)
    if lost[0]:
        print(f"{lost[0]} RTP packets lost")
    _report_flv(args.output, counts, video, audio)
    return 0


def probe(path: str) -> dict[str, Any]:
    """Streams and demuxer counters of a PS file."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror or exc}") from None
    demuxer = _new_demuxer()
    streams: dict[tuple[int, str], dict[str, Any]] = {}
    times: dict[tuple[int, str], list[int]] = defaultdict(list)
    for frame in ps_file_frames(path, demuxer):
        key = (frame.stream_id, frame.codec)
        info = streams.get(key)
        if info is None:
            info = streams[key] = {"stream_id": f"0x{frame.stream_id:02X}", "codec": frame.codec,
                                   "frames": 0, "keyframes": 0, "bytes": 0,
                                   "frames_without_timestamp": 0}
        info["frames"] += 1
        info["keyframes"] += 1 if frame.keyframe else 0
        info["bytes"] += len(frame.data)
        t = frame.dts if frame.dts is not None else frame.pts
        if t is None:
            info["frames_without_timestamp"] += 1
        else:
            series = times[key]
            if series:
                prev = series[-1]
                d = (t - prev) & MASK33
                if d >= 1 << 32:
                    d -= 1 << 33
                series.append(prev + d)
            else:
                series.append(t)
    stats, errors = demuxer_counters(demuxer)
    for key, info in streams.items():
        series = times[key]
        steps = [b - a for a, b in zip(series, series[1:])]
        regular = [d for d in steps if 0 <= d <= JUMP]
        positive = [d for d in regular if d > 0]
        step = statistics.median(positive) if positive else 0
        # Timestamps that go backwards or leap more than a second are counted, not timed.
        info["timestamp_jumps"] = len(steps) - len(regular)
        info["duration"] = round((sum(regular) + step) / 90000, 3) if series else 0.0
        info["first_timestamp"] = series[0] & MASK33 if series else None
    return {"file": path, "size": size,
            "streams": sorted(streams.values(), key=lambda s: (s["stream_id"], s["codec"])),
            "demuxer": stats, "errors": errors}


def cmd_probe(args: argparse.Namespace) -> int:
    result = probe(args.input)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['file']}: {result['size']} bytes")
        for s in result["streams"]:
            line = (f"  stream {s['stream_id']} {s['codec']}: {s['frames']} frames, "
                    f"{s['keyframes']} keyframes, {s['duration']:.3f} s, {s['bytes']} bytes")
            if s["frames_without_timestamp"]:
                line += f", {s['frames_without_timestamp']} without timestamp"
            if s["timestamp_jumps"]:
                line += f", {s['timestamp_jumps']} timestamp jumps"
            print(line)
        if not result["streams"]:
            print("  no streams")
        errors = {k: v for k, v in result["errors"].items() if v}
        print("  errors: " + (", ".join(f"{k}={v}" for k, v in errors.items()) or "none"))
        if result["demuxer"]:
            print("  demuxer: " + ", ".join(f"{k}={v}" for k, v in result["demuxer"].items()))
    if not result["streams"]:
        return 1
    return 0


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m media", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ps2flv", help="convert an MPEG-PS file to FLV")
    p.add_argument("input", help="PS file (GB/T 28181 PS as carried over RTP, concatenated)")
    p.add_argument("output", help="FLV file to write")
    p.add_argument("--hevc-mode", choices=("enhanced", "legacy"), default="enhanced",
                   help="H.265 as Enhanced RTMP 'hvc1' (default) or legacy CodecID 12")
    p.add_argument("--no-audio", action="store_true", help="leave audio out")
    p.set_defaults(func=cmd_ps2flv)

    p = sub.add_parser("pcap2flv", help="convert PS-over-RTP from a capture to FLV")
    p.add_argument("capture", help="pcap or pcapng file")
    p.add_argument("output", help="FLV file to write")
    p.add_argument("--port", type=_int, help="only packets from/to this UDP/TCP port")
    p.add_argument("--ssrc", type=_int, help="only this SSRC (decimal or 0x hex)")
    p.add_argument("--transport", choices=("auto", "udp", "tcp"), default="auto",
                   help="RTP over UDP, RFC 4571 over TCP, or both (default)")
    p.add_argument("--hevc-mode", choices=("enhanced", "legacy"), default="enhanced")
    p.add_argument("--no-audio", action="store_true", help="leave audio out")
    p.set_defaults(func=cmd_pcap2flv)

    p = sub.add_parser("probe", help="list the streams and error counters of a PS file")
    p.add_argument("input", help="PS file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_probe)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
