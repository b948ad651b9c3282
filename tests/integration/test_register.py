"""Devices register, keep alive and unregister against a real server over loopback UDP and TCP."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sip28181.device import DeviceSimulator, RegistrationError
from sip28181.platform import DeviceOffline, DeviceOnline, DeviceRegistered
from sip28181.server import Server

from .conftest import SERVER_ID, wait_for

DEVICE = "34020000001320000001"


def simulator(server: Server, device_id: str = DEVICE, **kw) -> DeviceSimulator:
    kw.setdefault("keepalive_interval", 0.2)
    return DeviceSimulator(device_id, server_id=SERVER_ID, server_host="127.0.0.1",
                           server_port=server.sip_port, **kw)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_register_keepalive_unregister(server, api, transport):
    events = server.platform.events.subscribe()
    device = simulator(server, transport=transport)
    await device.start()
    try:
        assert device.registered
        registered = await events.get(timeout=2)
        assert isinstance(registered, DeviceRegistered) and registered.device_id == DEVICE
        assert registered.transport == transport.upper()
        online = await events.get(timeout=2)
        assert isinstance(online, DeviceOnline) and online.reason == "register"

        # the 200 OK carries the GB time-sync Date and the granted Expires
        date = device.last_response.headers.get("Date")
        assert date and len(date) == 23 and date[10] == "T" and date[19] == "."
        assert device.last_response.headers.get("Expires") == "3600"

        await wait_for(lambda: device.keepalives_sent >= 2)
        status, body = await api.get(f"/api/v1/devices/{DEVICE}")
        assert status == 200
        assert body["status"] == "online" and body["registered"] is True
        assert body["transport"] == transport.upper()
        assert body["remote_address"] == f"127.0.0.1:{device.local_port}" or transport == "tcp"
        assert body["last_keepalive_at"] is not None and body["registered_at"] is not None

        status, listing = await api.get("/api/v1/devices")
        assert status == 200 and listing["total"] == 1
        assert listing["items"][0]["device_id"] == DEVICE
    finally:
        await device.stop()
    offline = await wait_for(lambda: next((e for e in _drain(events) if isinstance(e, DeviceOffline)), None))
    assert offline.reason == "unregistered"
    status, body = await api.get(f"/api/v1/devices/{DEVICE}")
    assert body["status"] == "offline" and body["registered"] is False


def _drain(sub):
    out = []
    while not sub._queue.empty():
        out.append(sub._queue.get_nowait())
    return out


async def test_wrong_password_refused_then_throttled(config_factory):
    server = Server(config_factory(auth_max_failures=3, auth_block_seconds=60))
    await server.start()
    try:
        bad = simulator(server, password="wrong")
        await bad.endpoint.start("127.0.0.1", 0)
        for _ in range(3):
            with pytest.raises(RegistrationError) as err:
                await bad.register()
            assert err.value.status == 403
        assert "Wrong password" in err.value.reason or "password" in err.value.reason.lower()
        await bad.endpoint.close()

        # the device ID is now blocked: even the right password is refused for a while
        good = simulator(server)
        await good.endpoint.start("127.0.0.1", 0)
        with pytest.raises(RegistrationError) as err:
            await good.register()
        assert err.value.status == 403 and "Too many" in err.value.reason
        assert good.last_response is None or good.last_response.status != 200
        await good.endpoint.close()
        assert server.platform.registry.online_count() == 0
    finally:
        await server.stop()


async def test_per_device_password(config_factory):
    from sip28181.config import DeviceSettings

    server = Server(config_factory(devices={DEVICE: DeviceSettings(password="s3cret!")}))
    await server.start()
    try:
        with pytest.raises(RegistrationError):
            async with simulator(server):        # the default password is not this device's
                pass
        async with simulator(server, password="s3cret!") as dev:
            assert dev.registered
        other = "34020000001320000002"
        async with simulator(server, other) as dev:   # others still use the default
            assert dev.registered
    finally:
        await server.stop()


async def test_keepalive_timeout_marks_offline(config_factory):
    server = Server(config_factory(keepalive_interval=1, keepalive_count=1))
    await server.start()
    try:
        events = server.platform.events.subscribe(DeviceOnline, DeviceOffline)
        device = simulator(server)
        await device.start(keepalive=False)
        assert isinstance(await events.get(timeout=2), DeviceOnline)
        offline = await events.get(timeout=4)
        assert isinstance(offline, DeviceOffline) and offline.reason == "keepalive timeout"
        # a keepalive brings it back
        response = await device.keepalive()
        assert response.status == 200
        back = await events.get(timeout=2)
        assert isinstance(back, DeviceOnline) and back.reason == "keepalive"
        await device.stop()
    finally:
        await server.stop()


async def test_registration_expiry_marks_offline(config_factory):
    server = Server(config_factory(register_expires_min=1, keepalive_interval=60))
    await server.start()
    try:
        events = server.platform.events.subscribe(DeviceOnline, DeviceOffline)
        device = simulator(server, expires=1, keepalive_interval=0.2)
        await device.endpoint.start("127.0.0.1", 0)
        await device.register()
        assert isinstance(await events.get(timeout=2), DeviceOnline)
        offline = await events.get(timeout=4)
        assert isinstance(offline, DeviceOffline) and offline.reason == "registration expired"
        # keepalives after expiry are refused: the device must register again
        response = await device.keepalive()
        assert response.status == 404
        await device.endpoint.close()
    finally:
        await server.stop()


async def test_expires_bounds(server):
    device = simulator(server, expires=10)
    await device.endpoint.start("127.0.0.1", 0)
    try:
        with pytest.raises(RegistrationError) as err:
            await device.register()
        assert err.value.status == 423
        device.expires = 10 ** 6
        response = await device.register()
        assert response.headers.get("Expires") == "86400"
    finally:
        await device.endpoint.close()


async def test_tcp_disconnect_is_offline(server):
    events = server.platform.events.subscribe(DeviceOffline)
    device = simulator(server, transport="tcp")
    await device.start(keepalive=False)
    device.endpoint.transport.close_flow(await device.server_flow())
    offline = await events.get(timeout=3)
    assert offline.reason == "connection lost"
    await device.stop(unregister=False)


async def test_restart_keeps_registry(config_factory):
    config = config_factory()
    server = Server(config)
    await server.start()
    device = simulator(server)
    await device.start()
    await device.stop(unregister=False)
    await server.stop()

    server = Server(config)
    await server.start()
    try:
        state = server.platform.registry.get(DEVICE)
        assert state is not None, "registry lost across a restart"
        assert state.status == "offline"           # live state does not survive; the record does
        assert state.registered_at is not None and state.flow is not None
        device = simulator(server)
        await device.start()
        assert server.platform.registry.get(DEVICE).status == "online"
        await device.stop()
    finally:
        await server.stop()


async def test_unknown_device_keepalive_is_404(server):
    device = simulator(server)
    await device.endpoint.start("127.0.0.1", 0)
    try:
        response = await device.keepalive()
        assert response.status == 404
    finally:
        await device.endpoint.close()


def _raw_udp(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        return s.recvfrom(65535)[0]


BAD_CSEQ = (b"REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK-bad-1\r\n"
            b"From: <sip:34020000001320000001@3402000000>;tag=1\r\n"
            b"To: <sip:34020000001320000001@3402000000>\r\n"
            b"Call-ID: bad-1\r\nCSeq: one REGISTER\r\nContent-Length: 0\r\n\r\n")


async def test_malformed_sip_gets_400_and_server_survives(server, api):
    loop = asyncio.get_running_loop()
    reply = await loop.run_in_executor(None, _raw_udp, server.sip_port, BAD_CSEQ)
    assert reply.startswith(b"SIP/2.0 400 ")
    assert b"CSeq" in reply.split(b"\r\n")[0]
    assert b"Call-ID: bad-1" in reply

    bad_id = BAD_CSEQ.replace(b"CSeq: one", b"CSeq: 1").replace(b"34020000001320000001@", b"camera1@")
    reply = await loop.run_in_executor(None, _raw_udp, server.sip_port, bad_id)
    assert reply.startswith(b"SIP/2.0 400 ") and b"20-digit" in reply.split(b"\r\n")[0]

    # garbage on TCP: the connection is closed, nothing else is affected
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sip_port)
    writer.write(b"\x00" * 20000)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 3) is not None
    writer.close()

    async with simulator(server) as dev:
        assert dev.registered
    status, metrics = await api.get("/metrics")
    assert status == 200 and "sip28181_sip_parse_errors_total" in metrics


async def test_message_from_nat_rebinding_updates_address(server):
    device = simulator(server)
    await device.start(keepalive=False)
    try:
        assert server.platform.registry.get(DEVICE).flow.port == device.local_port
        other = simulator(server)          # same device ID, another source port (a NAT rebinding)
        await other.endpoint.start("127.0.0.1", 0)
        assert (await other.keepalive()).status == 200
        assert server.platform.registry.get(DEVICE).flow.port == other.endpoint.port
        await other.endpoint.close()
    finally:
        await device.stop()


UNAUTHENTICATED = (b"REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n"
                   b"Via: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK-retrans-1\r\n"
                   b"From: <sip:34020000001320000001@3402000000>;tag=1\r\n"
                   b"To: <sip:34020000001320000001@3402000000>\r\n"
                   b"Call-ID: retrans-1\r\nCSeq: 1 REGISTER\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n")


async def test_challenges_are_stateless_and_answer_retransmissions(server):
    loop = asyncio.get_running_loop()
    before = len(server.platform.endpoint.layer)
    first = await loop.run_in_executor(None, _raw_udp, server.sip_port, UNAUTHENTICATED)
    again = await loop.run_in_executor(None, _raw_udp, server.sip_port, UNAUTHENTICATED)
    for reply in (first, again):
        assert reply.startswith(b"SIP/2.0 401 ") and b"WWW-Authenticate: Digest" in reply
        assert b";rport=" in reply and b";received=127.0.0.1" in reply
    nonce = lambda r: r.split(b'nonce="')[1].split(b'"')[0]   # noqa: E731
    assert nonce(first) != nonce(again)                          # each answer is a fresh challenge
    assert len(server.platform.endpoint.layer) == before         # and no transaction was kept


async def test_keepalives_are_stateless_other_messages_keep_transactions(server):
    device = simulator(server)
    await device.start(keepalive=False)
    try:
        layer = server.platform.endpoint.layer
        # server transactions only: the platform's own requests (queries after registration, the
        # alarm's Response) are client transactions
        before = len(layer) - layer.client_count
        assert (await device.keepalive()).status == 200
        assert len(layer) - layer.client_count == before          # answered without a transaction
        # a non-keepalive MESSAGE goes through a transaction: its retransmission is absorbed
        body = (f"<Notify><CmdType>Alarm</CmdType><SN>9</SN><DeviceID>{DEVICE}</DeviceID>"
                "<AlarmPriority>1</AlarmPriority></Notify>")
        assert (await device.send_manscdp(body)).status == 200
        assert len(layer) - layer.client_count == before + 1
    finally:
        await device.stop()
