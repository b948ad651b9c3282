"""``python -m media`` tools, run as subprocesses on sample files and on captures we build."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import av
import dpkt
import pytest

from conftest import DATA
from media_gen import encode_video, g711_frames, interleave
from test_flv import parse_flv

ROOT = pathlib.Path(__file__).resolve().parents[2]
PS = DATA / "ps"
CAPTURE = PS / "device_sim_udp_digest_h264.pcapng"


def run(*args: str, no_extensions: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if no_extensions:
        env["SIP28181_NO_EXTENSIONS"] = "1"
    return subprocess.run([sys.executable, "-m", "media", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def flv_counts(path: pathlib.Path) -> tuple[dict[str, str], int, int]:
    """``({stream type: codec}, decoded video frames, audio packets)`` of an FLV file."""
    with av.open(str(path), format="flv") as c:
        codecs = {s.type: s.codec_context.name for s in c.streams}
    with av.open(str(path), format="flv") as c:
        video = sum(1 for _ in c.decode(video=0)) if "video" in codecs else 0
    with av.open(str(path), format="flv") as c:
        audio = sum(1 for p in c.demux() if p.size and p.stream.type == "audio")
    return codecs, video, audio


# ---- ps2flv -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,codec", [("libmpeg_h264_g711a.ps", "h264"),
                                        ("libmpeg_h265_g711a.ps", "hevc"),
                                        ("psmux_h264_g711a.ps", "h264")])
def test_ps2flv(tmp_path, name, codec):
    out = tmp_path / "out.flv"
    proc = run("ps2flv", str(PS / name), str(out))
    assert proc.returncode == 0, proc.stderr
    assert "150 video frames" in proc.stdout
    codecs, video, audio = flv_counts(out)
    assert codecs == {"video": codec, "audio": "pcm_alaw"}
    assert video == 150
    assert audio >= 145
    assert not (tmp_path / "out.flv.part").exists()


def test_ps2flv_hevc_legacy_and_twins_agree(tmp_path):
    legacy = tmp_path / "legacy.flv"
    proc = run("ps2flv", "--hevc-mode", "legacy", str(PS / "libmpeg_h265_g711a.ps"), str(legacy))
    assert proc.returncode == 0, proc.stderr
    data = legacy.read_bytes()
    _, tags = parse_flv(data)
    video = [body for tag_type, _, body in tags if tag_type == 9]
    assert video[0][:2] == b"\x1c\x00"                   # keyframe, CodecID 12, sequence header
    assert {body[0] for body in video[1:-1]} == {0x1C, 0x2C}
    assert flv_counts(legacy)[1] == 150
    twin = tmp_path / "twin.flv"
    proc = run("ps2flv", "--hevc-mode", "legacy", str(PS / "libmpeg_h265_g711a.ps"), str(twin),
               no_extensions=True)
    assert proc.returncode == 0, proc.stderr
    assert twin.read_bytes() == data


def test_ps2flv_no_audio(tmp_path):
    out = tmp_path / "v.flv"
    assert run("ps2flv", "--no-audio", str(PS / "libmpeg_h264_g711a.ps"), str(out)).returncode == 0
    codecs, video, audio = flv_counts(out)
    assert codecs == {"video": "h264"} and video == 150 and audio == 0


# ---- pcap2flv ---------------------------------------------------------------------------------

def test_pcap2flv_udp_capture(tmp_path):
    out = tmp_path / "cap.flv"
    proc = run("pcap2flv", str(CAPTURE), str(out))
    assert proc.returncode == 0, proc.stderr
    assert "-> 127.0.0.1:9000 SSRC 100000001" in proc.stdout
    codecs, video, _ = flv_counts(out)
    assert codecs == {"video": "h264"}
    assert 349 <= video <= 350
    with av.open(str(out)) as c:
        assert (c.streams.video[0].codec_context.width,
                c.streams.video[0].codec_context.height) == (640, 480)


def test_pcap2flv_filters(tmp_path):
    out = tmp_path / "cap.flv"
    proc = run("pcap2flv", "--port", "9000", "--ssrc", "0x05F5E101", "--transport", "udp",
               str(CAPTURE), str(out))
    assert proc.returncode == 0, proc.stderr
    assert 349 <= flv_counts(out)[1] <= 350
    proc = run("pcap2flv", "--port", "9002", str(CAPTURE), str(tmp_path / "none.flv"))
    assert proc.returncode == 1
    assert "no RTP stream found on port 9002" in proc.stderr
    assert not (tmp_path / "none.flv").exists()


def _tcp_capture(path: pathlib.Path, pcapng: bool) -> int:
    """A capture with SIP over TCP plus PS over RTP over RFC 4571 in odd-sized, partly reordered
    and retransmitted TCP segments. Returns the number of video frames sent."""
    from media import PsMuxer, RtpPacketizer

    video = encode_video("h264", frames=30, width=320, height=240, bframes=2)
    frames = interleave(video, g711_frames("g711a", count=60))
    muxer = PsMuxer("h264", "g711a")
    packetizer = RtpPacketizer(0x01020304, seq=100)
    stream = b"".join(packetizer.packetize_rfc4571(muxer.mux(f), f.pts) for f in frames)
    segments = []
    seq0 = 0xFFFFF000                                   # the TCP sequence number wraps
    pos = 0
    size = 700
    while pos < len(stream):
        segments.append((pos, stream[pos:pos + size]))
        pos += size
        size = 700 + (size * 7) % 900
    # Swap some neighbours and retransmit some segments.
    for i in range(5, len(segments) - 1, 17):
        segments[i], segments[i + 1] = segments[i + 1], segments[i]
    for i in range(3, len(segments), 23):
        segments.insert(i, segments[i - 2])
    writer_cls = dpkt.pcapng.Writer if pcapng else dpkt.pcap.Writer
    with open(path, "wb") as f:
        writer = writer_cls(f, linktype=dpkt.pcap.DLT_EN10MB)

        def emit(sport, dport, seq, payload, ts):
            tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF,
                               flags=dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, data=payload)
            ip = dpkt.ip.IP(src=bytes([10, 0, 0, 2]), dst=bytes([10, 0, 0, 1]),
                            p=dpkt.ip.IP_PROTO_TCP, data=tcp)
            ip.len = len(bytes(ip))
            eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6,
                                         type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
            writer.writepkt(bytes(eth), ts=ts)

        emit(5060, 5060, 1, b"MESSAGE sip:34020000002000000001@3402000000 SIP/2.0\r\n\r\n", 1.0)
        for k, (offset, payload) in enumerate(segments):
            emit(15060, 10000, seq0 + offset, payload, 1.0 + k / 1000)
    return len(video)


@pytest.mark.parametrize("pcapng", [False, True])
def test_pcap2flv_rfc4571_over_tcp(tmp_path, pcapng):
    cap = tmp_path / ("tcp.pcapng" if pcapng else "tcp.pcap")
    sent = _tcp_capture(cap, pcapng)
    out = tmp_path / "tcp.flv"
    proc = run("pcap2flv", "--transport", "tcp", str(cap), str(out))
    assert proc.returncode == 0, proc.stderr
    assert "RTP/TCP 10.0.0.2:15060 -> 10.0.0.1:10000 SSRC 16909060" in proc.stdout
    codecs, video, audio = flv_counts(out)
    assert codecs == {"video": "h264", "audio": "pcm_alaw"}
    assert video == sent
    assert audio >= 55


# ---- probe ------------------------------------------------------------------------------------

def test_probe_json():
    proc = run("probe", "--json", str(PS / "libmpeg_h264_g711a.ps"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    streams = {s["codec"]: s for s in result["streams"]}
    assert set(streams) == {"h264", "g711a"}
    video = streams["h264"]
    assert (video["stream_id"], video["frames"]) == ("0xE0", 150)
    assert 1 <= video["keyframes"] < 150
    assert abs(video["duration"] - 6.0) < 0.05
    assert streams["g711a"]["stream_id"] == "0xC0" and streams["g711a"]["frames"] == 150
    assert result["size"] == (PS / "libmpeg_h264_g711a.ps").stat().st_size
    assert isinstance(result["errors"], dict) and not any(result["errors"].values())


def test_probe_text_reports_errors():
    bad = pathlib.Path("/work/shared/data/ps/gbsimtool_g711a_only_bad_psm_length.mpg")
    target = bad if bad.exists() else PS / "libmpeg_h265_g711a.ps"
    proc = run("probe", str(target))
    assert proc.returncode == 0, proc.stderr
    assert "frames" in proc.stdout and "errors:" in proc.stdout
    if bad.exists():
        assert "g711a: 35353 frames" in proc.stdout
        assert "psm" in proc.stdout.split("errors:")[1].lower()


# ---- errors -----------------------------------------------------------------------------------

def test_errors_and_exit_codes(tmp_path):
    proc = run("probe", str(tmp_path / "missing.ps"))
    assert proc.returncode == 1 and proc.stderr.startswith("error: cannot read")
    garbage = tmp_path / "garbage.ps"
    garbage.write_bytes(bytes(range(256)) * 64)
    proc = run("probe", str(garbage))
    assert proc.returncode == 1 and "no streams" in proc.stdout
    proc = run("ps2flv", str(garbage), str(tmp_path / "g.flv"))
    assert proc.returncode == 1 and "no MPEG-PS frames" in proc.stderr
    proc = run("pcap2flv", str(garbage), str(tmp_path / "g.flv"))
    assert proc.returncode == 1 and "not a pcap or pcapng capture" in proc.stderr
    truncated = tmp_path / "cut.pcapng"
    truncated.write_bytes(CAPTURE.read_bytes()[:5000])
    proc = run("pcap2flv", str(truncated), str(tmp_path / "c.flv"))
    assert proc.returncode == 1 and proc.stderr.startswith("error:")
    assert run().returncode == 2
    assert run("ps2flv", "only-one-arg").returncode == 2
    assert run("pcap2flv", "--ssrc", "xyz", "a", "b").returncode == 2
