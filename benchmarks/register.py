"""Registrar throughput and memory: authenticated REGISTERs/s and keepalives/s on one core, and
the server's memory for 100,000 registered devices.

The server (``python -m sip28181.server``) runs in its own process pinned to core 0 on 127.0.0.1
(free ports, temporary data directory, SQLite store, uvloop when installed). SIPp runs on core 1
(``benchmarks/sipp/register.xml``, ``keepalive.xml``) over UDP, one device per CSV line. For each
run we read the server's CPU time (utime + stime of all its threads, from ``/proc/PID/stat``)
before and after, and SIPp's final statistics (successful and failed calls, retransmissions,
mean response time). Nothing here asserts timings: the script prints a table.

Phases, each on a fresh server:

1. registrations into a small registry: closed-loop runs (SIPp keeps ``--concurrency`` calls in
   flight, new device IDs for every call) give the saturated rate and registrations per
   server CPU-second; then open-loop runs at fixed rates (fractions of the saturated rate) find
   the highest rate with < 0.1 % failed calls, < 1 % retransmitted requests and >= 95 % of the
   offered rate, repeated at that rate;
2. keepalives (MESSAGE with a MANSCDP Keepalive → 200) from the devices registered in phase 1:
   same closed-loop and open-loop runs;
3. memory: RSS of the empty server, then register ``--devices`` (100,000) distinct devices,
   check ``devices_online`` through ``GET /api/v1/health``, read VmRSS / VmHWM; registrations
   and keepalives at that registry size (closed loop); with ``--settle`` the RSS again once
   the transaction table has drained (Timer J, 32 s).

    python benchmarks/register.py [--quick] [--repeat 3] [--devices 100000] [--profile]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "benchmarks" / "sipp"
SERVER_ID = "34020000002000000001"
DOMAIN = SERVER_ID[:10]
PASSWORD = "12345678"
TOKEN = "bench-token"
TICK = os.sysconf("SC_CLK_TCK")
SERVER_CORE, LOAD_CORE = 0, 1

# Open-loop rates tried, as fractions of the closed-loop (saturated) rate.
LADDER = (0.6, 0.8, 0.9, 1.0)
QUICK_LADDER = (0.7, 0.9)
MAX_FAILED = 0.001          # < 0.1 % failed calls
MAX_RETRANS = 0.01          # < 1 % of requests retransmitted
MAX_BACKLOG = 0.5           # the last call ends within 0.5 s of the offered duration
MAX_MEAN_RT = 100.0         # ms; a server that keeps up answers in a few ms on loopback

_children: list[subprocess.Popen] = []


def device_id(n: int) -> str:
    return f"{DOMAIN}132{n:07d}"


def write_csv(path: pathlib.Path, first: int, count: int) -> pathlib.Path:
    """SIPp injection file: field 0 the device ID, field 1 its ``[authentication]`` keyword."""
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for n in range(first, first + count):
            d = device_id(n)
            f.write(f"{d};[authentication username={d} password={PASSWORD}]\n")
    return path


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def core_busy(core: int) -> int:
    """Busy ticks of one CPU (everything but idle and iowait) from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                return sum(v) - v[3] - v[4]
    return 0


# ---- the server -----------------------------------------------------------------------------------

class ServerProcess:
    def __init__(self, workdir: pathlib.Path, name: str, log_level: str) -> None:
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        self.sip_port = free_port()
        self.http_port = free_port()
        env = dict(os.environ, SIP28181_AUTH_MAX_FAILURES="1000000", SIP28181_PASSWORD=PASSWORD,
                   SIP28181_STORE_FLUSH_INTERVAL="1", SIP28181_LOG_LEVEL=log_level,
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [sys.executable, "-m", "sip28181.server", "--sip-host", "127.0.0.1",
               "--sip-port", str(self.sip_port), "--http-host", "127.0.0.1",
               "--http-port", str(self.http_port), "--data-dir", str(self.dir / "data"),
               "--api-token", TOKEN, "--sip-id", SERVER_ID, "--keepalive-interval", "86400"]
        self.log = open(self.dir / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CORE}))
        _children.append(self.proc)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.health()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start; see {self.dir / 'server.log'}")
                time.sleep(0.1)
        self.next_id = 0             # device numbers from here on were never used
        self.registered = 0          # device numbers [0, registered) are registered

    def health(self) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/api/v1/health",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)

    def cpu(self) -> float:
        """CPU seconds used so far by the server process (all threads)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM in KiB."""
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
        return out

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited ({self.proc.returncode}); see {self.dir / 'server.log'}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---- SIPp -----------------------------------------------------------------------------------------

@dataclass
class Run:
    kind: str                   # "register" | "keepalive"
    mode: str                   # "closed" | "open" | "fill"
    offered: float              # calls/s asked of SIPp (0: closed loop)
    calls: int
    ok: int = 0
    failed: int = 0
    retrans: int = 0
    elapsed: float = 0.0        # SIPp's first call to last statistics dump
    rt_ms: float = 0.0          # mean response time of the whole exchange
    cpu: float = 0.0            # server CPU seconds over the run (plus the store flush after it)
    other0: float = 0.0         # busy seconds of core 0 not used by the server (noise, softirq)
    other1: float = 0.0         # busy seconds of core 1 not used by SIPp (noise on the load side)
    window: float = 0.0         # wall seconds over which cpu and other0 were counted
    registry: tuple[int, int] = (0, 0)
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    @property
    def per_cpu(self) -> float:
        return self.ok / self.cpu if self.cpu else 0.0

    @property
    def requests(self) -> int:
        return self.calls * (2 if self.kind == "register" else 1)

    @property
    def sustained(self) -> bool:
        return (self.failed <= MAX_FAILED * self.calls and self.retrans <= MAX_RETRANS * self.requests
                and self.ok + self.failed == self.calls
                and (self.offered == 0 or (self.elapsed <= self.calls / self.offered + MAX_BACKLOG
                                           and self.rt_ms <= MAX_MEAN_RT)))


def _rt(text: str) -> float:
    """SIPp's ``HH:MM:SS:uuuuuu`` → milliseconds."""
    h, m, s, us = (int(x) for x in text.split(":"))
    return ((h * 60 + m) * 60 + s) * 1000 + us / 1000


def run_sipp(server: ServerProcess, workdir: pathlib.Path, run: Run, injection: pathlib.Path,
             concurrency: int, tail: float, limit_s: float = 0) -> Run:
    server.alive()
    scenario = SCENARIOS / ("register.xml" if run.kind == "register" else "keepalive.xml")
    stat = workdir / f"sipp-{time.monotonic_ns()}.csv"
    rate = run.offered or 1_000_000
    limit = concurrency if not run.offered else max(1000, int(run.offered * 2))
    expected = run.calls / run.offered if run.offered else run.calls / 500
    timeout = limit_s or expected * 3 + 60
    cmd = [shutil.which("sipp") or "sipp", f"127.0.0.1:{server.sip_port}", "-sf", str(scenario),
           "-inf", str(injection), "-t", "u1", "-i", "127.0.0.1", "-p", "0",
           "-m", str(run.calls), "-r", str(int(rate)), "-rp", "1000", "-l", str(limit),
           "-set", "server_id", SERVER_ID, "-set", "domain", DOMAIN, "-nd", "-nostdin",
           "-buff_size", "4194304", "-trace_stat", "-stf", str(stat), "-fd", "60",
           "-timeout", f"{int(timeout)}s",
           "-trace_err", "-error_file", str(workdir / "sipp-errors.log")]
    before = server.health()["devices_online"]
    cpu0, busy0, t0 = server.cpu(), core_busy(SERVER_CORE), time.monotonic()
    load0, kids0 = core_busy(LOAD_CORE), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, preexec_fn=lambda: os.sched_setaffinity(0, {LOAD_CORE}))
    _children.append(proc)
    try:
        proc.wait(timeout + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _children.remove(proc)
    kids1, load1 = resource.getrusage(resource.RUSAGE_CHILDREN), core_busy(LOAD_CORE)
    sipp_cpu = kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime
    run.other1 = max(0.0, (load1 - load0) / TICK - sipp_cpu)
    time.sleep(tail)                                   # the store flush of what the run changed
    cpu1, busy1, run.window = server.cpu(), core_busy(SERVER_CORE), time.monotonic() - t0
    run.cpu = cpu1 - cpu0
    run.other0 = max(0.0, (busy1 - busy0) / TICK - run.cpu)
    after = server.health()["devices_online"]
    run.registry = (before, after)
    with open(stat) as f:
        rows = list(csv.reader(f, delimiter=";"))
    last = dict(zip(rows[0], rows[-1]))
    run.ok = int(last["SuccessfulCall(C)"])
    run.failed = int(last["FailedCall(C)"])
    run.retrans = int(last["Retransmissions(C)"])
    start = float(last["StartTime"].split("\t")[-1])
    end = float(last["CurrentTime"].split("\t")[-1])
    run.elapsed = end - start
    run.rt_ms = _rt(last["ResponseTime1(C)"])
    run.failures = {k[6:-3]: int(v) for k, v in last.items()
                    if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)" and v != "0"}
    stat.unlink()
    return run


# ---- phases ---------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace, workdir: pathlib.Path) -> None:
        self.args = args
        self.workdir = workdir
        self.runs: list[tuple[str, Run]] = []
        self.memory: list[dict] = []
        self.profiles: dict[str, list[str]] = {}

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def show(self, label: str, run: Run) -> None:
        self.runs.append((label, run))
        fails = ", ".join(f"{k} {v}" for k, v in run.failures.items())
        self.say(f"  {label:<34} {run.ok:>7}/{run.calls:<7} {run.rate:>8.0f}/s  {run.per_cpu:>7.0f}/CPU-s"
                 f"  fail {run.failed} retr {run.retrans}  rt {run.rt_ms:.1f} ms  core0 other "
                 f"{run.other0:.2f}s core1 other {run.other1:.2f}s  registry {run.registry[0]}→{run.registry[1]}"
                 + (f"  [{fails}]" if fails else ""))

    def register_run(self, server: ServerProcess, label: str, mode: str, calls: int, offered: float = 0,
                     limit_s: float = 0) -> Run:
        first = server.next_id
        inj = write_csv(self.workdir / "register.csv", first, calls)
        run = run_sipp(server, self.workdir, Run("register", mode, offered, calls), inj,
                       self.args.concurrency, self.args.tail, limit_s)
        server.next_id += calls
        if first == server.registered:   # keepalives come from devices known to be registered
            done = calls if run.ok == calls else max(0, run.ok - self.args.concurrency)
            server.registered = first + done
        self.show(label, run)
        return run

    def keepalive_run(self, server: ServerProcess, label: str, mode: str, calls: int, offered: float = 0) -> Run:
        inj = self.workdir / f"keepalive-{server.registered}.csv"
        if not inj.exists():
            write_csv(inj, 0, server.registered)
        run = run_sipp(server, self.workdir, Run("keepalive", mode, offered, calls), inj,
                       self.args.concurrency, self.args.tail)
        self.show(label, run)
        return run

    def search(self, server: ServerProcess, kind: str) -> None:
        """Closed-loop runs, then the open-loop ladder and repeats at the highest sustained rate."""
        a = self.args
        do = self.register_run if kind == "register" else self.keepalive_run
        estimate = do(server, f"{kind} warm-up (closed loop)", "warmup", 2000).rate
        closed = []
        for i in range(a.repeat):
            calls = max(2000, int(estimate * a.seconds))
            closed.append(do(server, f"{kind} closed loop #{i + 1}", "closed", calls))
            estimate = closed[-1].rate         # registrations slow down as the registry grows
        saturated = statistics.median(r.rate for r in closed)
        best: Run | None = None
        for frac in (QUICK_LADDER if a.quick else LADDER):
            rate = max(50, round(saturated * frac / 50) * 50)
            run = do(server, f"{kind} open loop {rate}/s", "open", int(rate * a.seconds), rate)
            if not run.sustained:
                break
            best = run
        if best is not None:
            for i in range(a.repeat - 1):
                do(server, f"{kind} open loop {best.offered:.0f}/s (repeat)", "open",
                   int(best.offered * a.seconds), best.offered)
        if a.profile:
            self.profile(server, kind, do, max(2000, int(estimate * a.seconds)))

    def profile(self, server: ServerProcess, kind: str, do, calls: int) -> None:
        """One extra closed-loop run (not counted) under py-spy; hot spots by self and total time."""
        spy = shutil.which("py-spy")
        if spy is None:
            self.say("  (py-spy not installed: no profile)")
            return
        raw = self.workdir / f"profile-{kind}.txt"
        duration = max(3, int(self.args.seconds))
        proc = subprocess.Popen([spy, "record", "-p", str(server.proc.pid), "-d", str(duration), "-r", "200",
                                 "--nonblocking", "--threads", "--format", "raw", "-o", str(raw)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=lambda: os.sched_setaffinity(0, {LOAD_CORE}))
        _children.append(proc)
        time.sleep(0.5)
        do(server, f"{kind} closed loop (profiled, not counted)", "profile", calls)
        self.runs.pop()
        proc.wait(duration + 30)
        _children.remove(proc)
        if raw.exists():
            self.profiles[kind] = hot_spots(raw)

    def phase_memory(self) -> None:
        a = self.args
        self.say(f"memory: {a.devices} devices into a fresh server")
        server = ServerProcess(self.workdir, "memory", a.log_level)
        try:
            time.sleep(1)
            empty = server.memory()
            fill = self.register_run(server, f"register {a.devices} devices (closed loop)", "fill",
                                     a.devices, limit_s=a.fill_limit)
            if fill.ok < a.devices:
                self.say(f"  stopped at the {a.fill_limit:.0f} s limit (--fill-limit) with {fill.ok} devices")
            health = server.health()
            full = server.memory()
            self.memory.append({"devices": a.devices, "online": health["devices_online"],
                                "total": health["devices"], "empty": empty, "full": full,
                                "fill": fill})
            calls = max(2000, int(fill.rate * a.seconds))
            self.register_run(server, f"register at {a.devices // 1000}k (closed loop)", "closed-full", calls)
            self.keepalive_run(server, f"keepalive at {a.devices // 1000}k (closed loop)", "closed-full",
                               int(5000 * a.seconds))
            if a.settle:
                self.say("  waiting 35 s for the transaction table to drain (Timer J) …")
                time.sleep(35)
                self.memory[-1]["settled"] = server.memory()
        finally:
            server.stop()

    def phase_rates(self) -> None:
        a = self.args
        self.say("registrations and keepalives: fresh server")
        server = ServerProcess(self.workdir, "rates", a.log_level)
        try:
            self.search(server, "register")
            self.search(server, "keepalive")
        finally:
            server.stop()


def hot_spots(raw: pathlib.Path, top: int = 12) -> list[str]:
    own, total, n = Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        frames = [f.replace(str(ROOT) + "/", "") for f in stack.split(";")]
        n += c
        own[frames[-1]] += c
        for f in set(frames):
            total[f] += c
    if not n:
        return []
    out = [f"{n} samples; self time:"]
    out += [f"  {v / n * 100:5.1f}%  {k}" for k, v in own.most_common(top)]
    out.append("total time (sip28181/media frames and threads):")
    out += [f"  {v / n * 100:5.1f}%  {k}" for k, v in total.most_common(200)
            if "sip28181/" in k or "aiosqlite" in k or k.startswith("thread")][:top]
    return out


# ---- report ---------------------------------------------------------------------------------------

def spread(values: list[float], fmt: str = "{:,.0f}") -> tuple[str, str]:
    if not values:
        return "–", ""
    med = statistics.median(values)
    rng = f"{fmt.format(min(values))}–{fmt.format(max(values))}" if len(values) > 1 else ""
    return fmt.format(med), rng


def report(bench: Bench, args: argparse.Namespace, started: float, load: tuple) -> None:
    rows: list[tuple[str, str, str, str]] = []

    def group(label: str, runs: list[Run], what: str) -> None:
        if not runs:
            return
        rate_med, rate_rng = spread([r.rate for r in runs])
        cpu_med, cpu_rng = spread([r.per_cpu for r in runs])
        fails = sum(r.failed for r in runs)
        retr = sum(r.retrans for r in runs)
        calls = sum(r.calls for r in runs)
        rt_med, _ = spread([r.rt_ms for r in runs], "{:.1f}")
        noise = max(r.other0 / r.window for r in runs if r.window) * 100 if runs else 0
        noise1 = max(r.other1 / r.window for r in runs if r.window) * 100 if runs else 0
        reg = f"{runs[0].registry[0]:,}→{runs[-1].registry[1]:,}"
        rows.append((f"{label}: {what}/s (wall)", rate_med, rate_rng,
                     f"n={len(runs)}, failed {fails}/{calls}, retrans {retr}, mean rt {rt_med} ms"))
        rows.append((f"{label}: {what} per server CPU-s", cpu_med, cpu_rng,
                     f"registry {reg}, other load ≤ {noise:.0f}% core 0, ≤ {noise1:.0f}% core 1"))

    for kind, what in (("register", "registrations"), ("keepalive", "keepalives")):
        runs = [r for _, r in bench.runs if r.kind == kind]
        group(f"{kind} closed loop (c={args.concurrency})", [r for r in runs if r.mode == "closed"], what)
        opened = [r for r in runs if r.mode == "open"]
        sustained = [r for r in opened if r.sustained]
        if sustained:
            top = max(r.offered for r in sustained)
            group(f"{kind} open loop {top:,.0f}/s offered", [r for r in opened if r.offered == top], what)
        failing = [r for r in opened if not r.sustained]
        if failing:
            r = failing[0]
            rows.append((f"{kind} open loop {r.offered:,.0f}/s offered: not sustained", f"{r.rate:,.0f}", "",
                         f"failed {r.failed}/{r.calls}, retrans {r.retrans}, mean rt {r.rt_ms:.1f} ms"
                         + (f" {r.failures}" if r.failures else "")))
        for r in [r for r in runs if r.mode in ("fill", "closed-full")]:
            rows.append((f"{kind} {'fill 0→' if r.mode == 'fill' else 'closed loop at '}"
                         f"{r.registry[1] if r.mode == 'fill' else r.registry[0]:,}: {what}/s (wall)",
                         f"{r.rate:,.0f}", "", f"failed {r.failed}/{r.calls}, retrans {r.retrans}, "
                         f"mean rt {r.rt_ms:.1f} ms"))
            rows.append((f"  … {what} per server CPU-s", f"{r.per_cpu:,.0f}", "",
                         f"other load {r.other0 / r.window * 100 if r.window else 0:.0f}% core 0, "
                         f"{r.other1 / r.window * 100 if r.window else 0:.0f}% core 1"))
    for m in bench.memory:
        mib = lambda kib: kib / 1024  # noqa: E731
        per = (m["full"]["VmRSS"] - m["empty"]["VmRSS"]) / 1024 * 100_000 / max(1, m["online"])
        rows.append(("memory: devices_online (API) after the fill", f"{m['online']:,}", "",
                     f"of {m['devices']:,} to register" + ("" if m["online"] >= m["devices"] else
                                                            f" (stopped at --fill-limit {args.fill_limit:.0f} s)")))
        rows.append(("memory: RSS empty server, MiB", f"{mib(m['empty']['VmRSS']):.0f}", "", ""))
        rows.append((f"memory: RSS with {m['online']:,} devices, MiB", f"{mib(m['full']['VmRSS']):.0f}", "",
                     f"VmHWM {mib(m['full']['VmHWM']):.0f} MiB"))
        rows.append(("memory: RSS growth per 100k devices, MiB", f"{per:.0f}", "",
                     "includes the transactions of the last 32 s (Timer J)"))
        if "settled" in m:
            s = m["settled"]
            rows.append(("memory: RSS after 35 s idle (+ runs at full size), MiB", f"{mib(s['VmRSS']):.0f}", "",
                         f"VmHWM {mib(s['VmHWM']):.0f} MiB"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    print()
    print(f"{'measurement':<{w0}}  {'median':>{w1}}  {'min–max':<{w2}}  notes")
    print("-" * (w0 + w1 + w2 + 40))
    for a, b, c, d in rows:
        print(f"{a:<{w0}}  {b:>{w1}}  {c:<{w2}}  {d}")
    print()
    print("targets: ≥ 5,000 authenticated REGISTER/s, ≥ 20,000 keepalives/s, < 1 GiB for 100,000 devices "
          "(expressway standard: 300 logins/s, 100,000 cameras)")
    print(f"machine: {os.cpu_count()} cores; server on core {SERVER_CORE}, SIPp on core {LOAD_CORE}; "
          f"loadavg before {load[0]}, after {open('/proc/loadavg').read().split()[0]}; "
          f"log level {args.log_level}; total {time.monotonic() - started:.0f} s")
    for kind, lines in bench.profiles.items():
        print(f"\npy-spy profile of the server, {kind} (closed loop):")
        print("\n".join(lines))


# ---- main -----------------------------------------------------------------------------------------

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short run: 10,000 devices, 2 s runs, 1 repeat")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    p.add_argument("--seconds", type=float, default=4.0, help="length of each rate run (default 4)")
    p.add_argument("--devices", type=int, default=100_000, help="devices for the memory phase")
    p.add_argument("--concurrency", type=int, default=256,
                   help="calls in flight in closed-loop runs (enough to keep one server core busy)")
    p.add_argument("--fill-limit", type=float, default=150,
                   help="stop registering the memory-phase devices after this many seconds (0: no limit)")
    p.add_argument("--log-level", default="INFO", help="server log level (default INFO, as shipped)")
    p.add_argument("--tail", type=float, default=1.3,
                   help="seconds of server CPU counted after each run (the store flushes every 1 s)")
    p.add_argument("--settle", action=argparse.BooleanOptionalAction, default=None,
                   help="read RSS again after 35 s idle (default: on unless --quick)")
    p.add_argument("--profile", action="store_true", help="one extra run per kind under py-spy")
    p.add_argument("--skip", choices=("rates", "memory"), action="append", default=[])
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = p.parse_args()
    if args.quick:
        args.repeat, args.seconds = 1, 2.0
        if args.devices == 100_000:
            args.devices = 10_000
    if args.settle is None:
        args.settle = not args.quick
    if shutil.which("sipp") is None:
        print("sipp not found (Debian: apt-get install sip-tester)", file=sys.stderr)
        return 2
    if len(os.sched_getaffinity(0)) < 2:
        print("warning: fewer than 2 usable cores; server and SIPp share one", file=sys.stderr)

    started = time.monotonic()
    load = tuple(open("/proc/loadavg").read().split()[:3])
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="sip28181-bench-register-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(args, workdir)
    try:
        if "rates" not in args.skip:
            bench.phase_rates()
        if "memory" not in args.skip:
            bench.phase_memory()
    finally:
        for proc in list(_children):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(bench, args, started, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
