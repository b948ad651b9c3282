"""Support for the output tests: sample frames, PyAV read-back, and a real nginx-rtmp server.

:class:`NginxRtmp` writes its own nginx.conf (loopback port chosen free, ``daemon off``, pid, log
and recordings in a temporary directory, the Debian rtmp module loaded) and starts/stops nginx
itself. Without nginx the tests fail under ``CI=true`` and are skipped elsewhere.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import threading
import time

import av
import pytest

from media import Frame, PsDemuxer

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "ps"
#: One pass of a sample file: 150 video frames (25 fps, keyframe every 50) and 150 G.711A frames.
SAMPLE_TICKS = 150 * 3600

MODULE_PATHS = ("/usr/lib/nginx/modules/ngx_rtmp_module.so",
                "/usr/share/nginx/modules/ngx_rtmp_module.so")


def sample_frames(name: str = "libmpeg_h264_g711a.ps") -> list[Frame]:
    demuxer = PsDemuxer()
    return demuxer.feed((DATA / name).read_bytes()) + demuxer.flush()


def codec_sample(codec: str) -> list[Frame]:
    return sample_frames(f"libmpeg_{codec}_g711a.ps")


def looped(frames: list[Frame], times: int, start: int = 0) -> list[Frame]:
    """``frames`` repeated ``times`` times, timestamps continuing (pass ``start`` to go on)."""
    out = []
    for k in range(start, start + times):
        shift = k * SAMPLE_TICKS
        out += [Frame(f.codec, None if f.pts is None else (f.pts + shift) % (1 << 33),
                      None if f.dts is None else (f.dts + shift) % (1 << 33), f.keyframe, f.data,
                      f.stream_id) for f in frames]
    return out


def batches(frames: list[Frame], size: int = 10) -> list[list[Frame]]:
    return [frames[i:i + size] for i in range(0, len(frames), size)]


def count_frames(path_or_url: str, **open_options) -> dict[str, int]:
    """Decoded frames per stream type, read back with PyAV."""
    counts = {"video": 0, "audio": 0}
    with av.open(str(path_or_url), **open_options) as container:
        streams = [s for s in container.streams if s.type in counts]
        for frame in container.decode(*streams):
            counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
    return counts


def ffprobe(path: str) -> dict:
    """Stream codec names, frame counts and the duration as ffprobe reads them."""
    import json
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_type,codec_name,nb_read_frames,width,height,duration:format=duration", "-of", "json",
         str(path)], capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)


def running_output_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name in ("hls", "rtmp-push", "record", "media-output")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_nginx() -> tuple[str, str | None]:
    """``(nginx binary, rtmp module path or None when built in)``; fails in CI, skips elsewhere."""
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)
    module = next((p for p in MODULE_PATHS if os.path.exists(p)), None)
    if binary is None or module is None:
        missing = "nginx" if binary is None else "the nginx rtmp module (libnginx-mod-rtmp)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{missing} is not installed; CI installs it (.ci/run)")
        pytest.skip(f"{missing} is not installed (apt-get install nginx libnginx-mod-rtmp)")
    return binary, module


class NginxRtmp:
    """An nginx-rtmp server on 127.0.0.1 that records every published stream to an FLV file."""

    def __init__(self, workdir: pathlib.Path, port: int | None = None) -> None:
        self.binary, self.module = find_nginx()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.records = self.dir / "records"
        self.records.mkdir(exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def url(self, stream: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{stream}"

    def record(self, stream: str) -> pathlib.Path:
        return self.records / f"{stream}.flv"

    def _conf(self) -> str:
        load = f"load_module {self.module};\n" if self.module else ""
        return f"""{load}daemon off;
master_process off;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log info;
events {{ worker_connections 128; }}
rtmp {{
    server {{
        listen 127.0.0.1:{self.port};
        chunk_size 4096;
        application live {{
            live on;
            record all;
            record_path {self.records};
            record_unique off;
        }}
    }}
}}
"""

    def start(self, timeout: float = 10.0) -> None:
        conf = self.dir / "nginx.conf"
        conf.write_text(self._conf())
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {err}{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.port}: {self.log()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)     # fast shutdown: closes connections, ends records
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr:
            proc.stderr.close()

    def log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.fixture
def nginx(tmp_path):
    """An nginx-rtmp server of its own on a free loopback port (import this fixture to use it)."""
    server = NginxRtmp(tmp_path / "nginx")
    server.start()
    try:
        yield server
    finally:
        server.stop()
