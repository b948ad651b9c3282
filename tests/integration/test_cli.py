"""``python -m sip28181.server`` and ``python -m sip28181.device`` as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import urllib.request

import pytest

from .conftest import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, token: str | None = None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None, None


async def test_server_cli_layers_config_and_shuts_down_cleanly(tmp_path):
    sip_port, http_port = free_port(), free_port()
    config = tmp_path / "sip28181.toml"
    config.write_text(f'''
data_dir = "{tmp_path / 'data'}"
[sip]
id = "44010600002000000001"
host = "127.0.0.1"
port = 1
[http]
host = "127.0.0.1"
port = {http_port}
api_token = "from-toml"
[devices."44010600001320000010"]
password = "per-device"
''')
    env = dict(os.environ, SIP28181_API_TOKEN="from-env", SIP28181_LOG_LEVEL="INFO")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sip28181.server", "--config", str(config), "--sip-port", str(sip_port),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        loop = asyncio.get_running_loop()
        base = f"http://127.0.0.1:{http_port}/api/v1"
        await wait_for(lambda: loop.run_in_executor(None, lambda: http_get(base + "/health")[0] == 200), 15)
        _, health = http_get(base + "/health")
        assert health["sip_id"] == "44010600002000000001"      # TOML
        assert health["domain"] == "4401060000"                 # derived from the TOML ID
        assert health["sip_port"] == sip_port                   # the flag beat the TOML port
        assert http_get(base + "/devices", "from-toml")[0] == 401   # env beat TOML
        assert http_get(base + "/devices", "from-env")[0] == 200

        device = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sip28181.device", "--device-id", "44010600001320000010",
            "--server-id", "44010600002000000001", "--server-port", str(sip_port), "--password", "per-device",
            "--duration", "1.5", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)

        async def online():
            _, body = await loop.run_in_executor(None, http_get, base + "/devices/44010600001320000010", "from-env")
            return body and body.get("status") == "online"

        await wait_for(online, 10)
        out, _ = await asyncio.wait_for(device.communicate(), 15)
        assert device.returncode == 0, out.decode()
        assert b"registered with sip:44010600002000000001@4401060000" in out
        assert b"[44010600001320000010 " in out                 # logs carry the device ID

        async def offline():
            _, body = await loop.run_in_executor(None, http_get, base + "/devices/44010600001320000010", "from-env")
            return body and body.get("status") == "offline"

        await wait_for(offline, 5)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), 15)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "shutting down" in text and "stopped" in text
    assert "(uvloop event loop)" in text
    assert "Traceback" not in text


async def test_server_cli_rejects_bad_configuration(tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sip28181.server", "--sip-id", "12345", "--data-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 2
    assert b"20 digits" in out and b"Traceback" not in out


@pytest.mark.parametrize("signum", [signal.SIGINT])
async def test_server_cli_generates_a_token_when_none_given(tmp_path, signum):
    http_port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sip28181.server", "--sip-host", "127.0.0.1", "--sip-port", str(free_port()),
        "--http-host", "127.0.0.1", "--http-port", str(http_port), "--data-dir", str(tmp_path / "d"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    loop = asyncio.get_running_loop()
    base = f"http://127.0.0.1:{http_port}/api/v1"
    try:
        await wait_for(lambda: loop.run_in_executor(None, lambda: http_get(base + "/health")[0] == 200), 15)
        token_file = tmp_path / "d" / "api-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert http_get(base + "/devices")[0] == 401
        assert http_get(base + "/devices", token)[0] == 200
    finally:
        proc.send_signal(signum)
    _out, _ = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0
