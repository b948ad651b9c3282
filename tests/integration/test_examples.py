"""The examples run as documented: an embedded platform and a simulated camera talking to it."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys

from .test_cli import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


async def test_embedded_platform_and_simulated_camera(tmp_path):
    port = free_port()
    platform = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "embed_platform.py"), str(port), str(tmp_path / "data"),
        env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await asyncio.sleep(1.0)
        camera = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLES / "simulated_camera.py"), str(port),
            env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(camera.communicate(), 30)
        text = out.decode()
        assert camera.returncode == 0, text
        assert "registered; platform time 20" in text
        assert text.count("keepalive: 200") == 3 and "unregistered" in text
    finally:
        if platform.returncode is None:
            platform.send_signal(signal.SIGINT)
    log, _ = await asyncio.wait_for(platform.communicate(), 15)
    log = log.decode()
    assert platform.returncode == 0, log
    assert "34020000001320000001 is online (register)" in log
    assert "34020000001320000001 is offline (unregistered)" in log


async def test_watch_channel_example():
    """Catalog, live video through the relay, PTZ and an HJ alarm, as the example prints them."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "watch_channel.py"), str(free_port()),
        env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "catalog: 2 of 2 items, partial=False" in text
    assert text.count("channel 3402000000131000000") == 2
    watched = next(line for line in text.splitlines() if line.startswith("watched "))
    video = int(watched.split()[1])
    assert video >= 25 and "(0 keyframes)" not in watched and "h264" in watched, watched
    assert "PTZ right: A50F0101" in text and "PTZ stop: A50F0100000000" in text
    assert "method 5 type 100001 image http://127.0.0.1/outfall-2.jpg" in text


async def test_cascade_example():
    """City → province: registration, the camera's channels, live frames, PTZ and an HJ alarm at
    the province, and the city going offline there when it stops."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "cascade.py"), str(free_port()), str(free_port()),
        env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "[[upper]]" in text
    assert "registered with province 44000000002000000001: online" in text
    assert "province: 44010000002000000001 is online (register)" in text
    assert "2 channels" in text and text.count("province: channel 4401060000131000000") == 2
    watched = next(line for line in text.splitlines() if line.startswith("province: watched "))
    assert int(watched.split()[2]) >= 25 and "(0 keyframes)" not in watched, watched
    assert "camera: PTZ A50F0101" in text
    assert "method 5 type 100001 image http://127.0.0.1/outfall-2.jpg" in text
    assert "province: 44010000002000000001 is offline (unregistered)" in text


def test_upper_example_in_the_sample_config_is_valid(tmp_path):
    """The commented ``[[upper]]`` table of examples/sip28181.toml, uncommented, loads as written."""
    from sip28181.config import Config

    lines = (EXAMPLES / "sip28181.toml").read_text(encoding="utf-8").splitlines()
    start = lines.index("# [[upper]]")
    block = [line[2:] for line in lines[start:] if line.startswith("# ")]
    path = tmp_path / "upper.toml"
    path.write_text("\n".join(block) + "\n", encoding="utf-8")
    (upper,) = Config.load(["--config", str(path)], {}).upper
    assert upper.sip_id == "44000000002000000001" and upper.host == "198.51.100.7"
    assert upper.domain == "4400000000" and upper.transport == "udp" and upper.share == "all"
    assert upper.id_map == {"44010600001310000001": "44000000001310000101"}
    assert upper.tree == "2016" and upper.charset == "GB2312" and upper.catalog_group == 4
