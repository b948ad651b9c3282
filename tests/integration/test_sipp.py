"""SIPp (Debian's sip-tester) as a device: digest registration and keepalive against the server."""

from __future__ import annotations

import asyncio
import pathlib
import shutil

import pytest

from .conftest import SERVER_ID, wait_for

SCENARIOS = pathlib.Path(__file__).parent / "sipp"
SIPP = shutil.which("sipp")
pytestmark = pytest.mark.sipp

if SIPP is None:   # CI installs sip-tester; a missing SIPp is a failure, not a skip
    pytestmark = [pytest.mark.sipp, pytest.mark.xfail(reason="sipp not installed", strict=True, run=False)]


async def run_sipp(server, scenario: str, device_id: str, password: str, transport: str = "u1",
                   **variables) -> tuple[int, str]:
    sets = [a for k, v in {"server_id": SERVER_ID, "domain": SERVER_ID[:10], **variables}.items()
            for a in ("-set", k, str(v))]
    proc = await asyncio.create_subprocess_exec(
        SIPP, f"127.0.0.1:{server.sip_port}", "-sf", str(SCENARIOS / scenario), "-t", transport,
        "-i", "127.0.0.1", "-p", "0", "-m", "1", "-s", device_id, "-au", device_id, "-ap", password,
        *sets, "-timeout", "15s", "-timeout_error", "-nostdin", "-trace_err",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(server.config.data_dir))
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_sipp_registers_with_digest(server, api, transport):
    device_id = "34020000001320000077"
    task = asyncio.create_task(run_sipp(server, "register_digest.xml", device_id, "12345678",
                                        transport=transport))
    state = await wait_for(lambda: (s := server.platform.registry.get(device_id)) and s.status == "online" and s, 10)
    assert state.transport == ("UDP" if transport == "u1" else "TCP")
    status, body = await api.get(f"/api/v1/devices/{device_id}")
    assert status == 200 and body["status"] == "online"
    code, output = await task
    assert code == 0, output
    assert body["user_agent"] == "SIPp GB28181 device"


async def test_sipp_wrong_password_gets_403(server):
    device_id = "34020000001320000078"
    code, output = await run_sipp(server, "register_wrong_password.xml", device_id, "not-the-password")
    assert code == 0, output
    state = server.platform.registry.get(device_id)
    assert state is None or state.status == "offline"
