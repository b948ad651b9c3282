"""``python -m sip28181.device``: run one or many simulated devices against a platform."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from ..logutil import setup_logging
from .simulator import DeviceSimulator, RegistrationError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sip28181.device",
                                description="Simulated GB/T 28181 device(s): register, keep alive, unregister on exit.")
    p.add_argument("--device-id", default="34020000001320000001", help="20-digit ID of the (first) device")
    p.add_argument("--count", type=int, default=1, help="number of devices, consecutive IDs from --device-id")
    p.add_argument("--server-id", default="34020000002000000001", help="the platform's 20-digit SIP ID")
    p.add_argument("--domain", default=None, help="SIP domain (default: first 10 digits of --server-id)")
    p.add_argument("--server-host", default="127.0.0.1", help="platform address")
    p.add_argument("--server-port", type=int, default=5060)
    p.add_argument("--password", default="12345678")
    p.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    p.add_argument("--local-host", default="127.0.0.1")
    p.add_argument("--local-port", type=int, default=0, help="0: any free port")
    p.add_argument("--expires", type=int, default=3600)
    p.add_argument("--keepalive-interval", type=float, default=60.0)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--channels", type=int, default=1, help="video channels per device (type 131 IDs in its domain)")
    p.add_argument("--groups", type=int, default=0,
                   help="virtual organisations (under one business group) the channels are spread over")
    p.add_argument("--items-per-message", type=int, default=2, help="catalog/record items per MESSAGE")
    p.add_argument("--window", type=int, default=1,
                   help="catalog packets awaiting their 200 OK at once (1: each after the previous one)")
    p.add_argument("--pacing", type=float, default=0.0, help="seconds between two catalog packets")
    p.add_argument("--charset", choices=("GB2312", "GBK", "GB18030", "UTF-8"), default="GB2312",
                   help="charset of MANSCDP bodies")
    p.add_argument("--log-level", default="INFO")
    return p


async def amain(args: argparse.Namespace) -> int:
    base = int(args.device_id)
    devices = [
        DeviceSimulator(f"{base + i:020d}", server_id=args.server_id, server_host=args.server_host,
                        server_port=args.server_port, domain=args.domain, password=args.password,
                        transport=args.transport, local_host=args.local_host,
                        local_port=args.local_port if args.count == 1 else 0, expires=args.expires,
                        keepalive_interval=args.keepalive_interval, channels=args.channels, charset=args.charset,
                        management={"groups": args.groups, "items_per_message": args.items_per_message,
                                    "window": args.window, "pacing": args.pacing})
        for i in range(args.count)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    status = 0
    started = []
    try:
        for device in devices:
            try:
                await device.start()
                started.append(device)
            except RegistrationError as exc:
                logging.getLogger("sip28181.device").error("%s: registration refused: %s", device.device_id, exc)
                await device.stop(unregister=False)
                status = 1
        if not started:
            return status or 1
        try:
            await asyncio.wait_for(stop.wait(), args.duration)
        except asyncio.TimeoutError:
            pass
    finally:
        await asyncio.gather(*(d.stop() for d in started), return_exceptions=True)
    return status


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.count < 1:
        raise SystemExit("--count must be at least 1")
    if not 0 <= args.channels <= 999_999:
        raise SystemExit("--channels must be in 0..999999")
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(run())
