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
