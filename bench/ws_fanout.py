"""WebSocket fan-out: N clients on one symbol, ticks at a fixed rate, /ws/market/ against bare group_send.

Setup: uvicorn (uvloop, the default websockets-sansio protocol) serves bench/_ws_app.py with the
production settings (DEBUG=0) in a subprocess; the clients run in another process
(bench/_ws_clients.py, the ``websockets`` client, split over 2 processes, no compression),
authenticated with a read token; this process publishes. Every tick carries its sequence number
and publish time (``time.time()``): /ws/market/ ticks are published with
:func:`apps.marketdata.ticks.ticks_publish` (quote ``last`` = sequence, quote ``t`` = publish time);
the baseline sockets (``/ws/bench-group/``) joined one channel-layer group and get one
``group_send`` per tick.

Per run: latency (receive - publish) of every tick message received, p50/p99/max; messages
received; and per (client, tick): *received* (that tick's own message arrived), *merged* (it did
not, but a later tick did within one conflation interval + 100 ms: conflation on purpose),
*lost* (neither it nor a later tick arrived within that deadline; for the baseline the interval is
0), and *never* (neither ever arrived). Server CPU is user+system seconds of uvicorn and its
workers during the publishing window. Clients, server and publisher share the machine's 2 CPUs.
Knobs: BENCH_WS_CLIENTS (500), BENCH_WS_SECONDS (10).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

from bench.serving import _free_port, _prepare

ROOT = Path(__file__).resolve().parents[1]
SYMBOL = "BENCH"
GROUP = "bench.ticks"
INTERVAL = 0.05  # MARKET_WS_INTERVAL default
CLIENT_PROCESSES = 2
RUNS = [("market", 50, 2), ("group", 50, 2), ("group", 10, 2), ("market", 50, 1), ("market", 10, 2)]


def _bench_token() -> str:
    from apps.accounts.models import Firm, Membership, Role, User
    from apps.accounts.services.tokens import token_create
    from apps.audit.services import Actor
    from apps.marketdata.models import Instrument

    firm, _ = Firm.objects.get_or_create(slug="bench-ws", defaults={"name": "Bench WS"})
    user, _ = User.objects.get_or_create(email="bench-ws@example.invalid")
    membership, _ = Membership.objects.get_or_create(user=user, firm=firm, defaults={"role": Role.ANALYST})
    Instrument.objects.get_or_create(symbol=SYMBOL, defaults={"asset_class": "crypto", "exchange": "CRYPTO",
                                                              "name": "Bench tick source"})
    created = token_create(membership=membership, name="bench ws_fanout", scopes=["read"], expires_days=1,
                           actor=Actor.for_user(user))
    return created.secret


def _cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _wait_http(port: int, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {server.returncode}: {server.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("uvicorn not ready")


async def _publish(mode: str, rate: int, seconds: float) -> list[float]:
    from channels.layers import get_channel_layer

    from apps.marketdata.quotes import QuoteIn
    from apps.marketdata.ticks import ticks_publish

    layer = get_channel_layer()
    count = int(rate * seconds)
    times: list[float] = []
    start = time.monotonic() + 0.05
    for k in range(count):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = time.time()
        times.append(t)
        if mode == "market":
            ticks_publish(quotes=[QuoteIn(symbol=SYMBOL, exchange="CRYPTO", bid=k - 0.5, ask=k + 0.5, last=float(k),
                                          bid_size=1.0, ask_size=1.0, ts=t)])
        else:
            await layer.group_send(GROUP, {"type": "bench.tick", "text": json.dumps({"seq": k, "t": t})})
    return times


def _stats(records: list[list], published: list[float], deadline: float) -> dict:
    pub = np.array(published)
    k = len(pub)
    latencies = []
    received = merged = lost = never = messages = 0
    for rec in records:
        messages += len(rec)
        first = np.full(k, np.inf)
        for seq, at in rec:
            if 0 <= seq < k and at < first[seq]:
                first[seq] = at
        own = np.isfinite(first)
        latencies.append(first[own] - pub[own])
        by_later = np.minimum.accumulate(first[::-1])[::-1]  # earliest arrival of this tick or a later one
        on_time = by_later - pub <= deadline
        received += int(own.sum())
        merged += int((~own & on_time).sum())
        lost += int((~on_time).sum())
        never += int((~np.isfinite(by_later)).sum())
    lat = np.concatenate(latencies) * 1000 if latencies else np.array([])
    total = k * len(records)
    return {
        "ticks_published": k, "clients": len(records), "client_ticks": total, "messages_received": messages,
        "latency_ms": ({"p50": round(float(np.percentile(lat, 50)), 1), "p99": round(float(np.percentile(lat, 99)), 1),
                        "max": round(float(lat.max()), 1)} if lat.size else None),
        "received": received, "merged": merged, "lost": lost, "never_arrived": never,
        "lost_pct": round(100 * lost / total, 2) if total else None,
        "never_arrived_pct": round(100 * never / total, 2) if total else None,
        "deadline_ms": round(deadline * 1000),
    }


def run(env: dict, token: str, mode: str, rate: int, workers: int, clients: int, seconds: float) -> dict:
    port = _free_port()
    cmd = [sys.executable, "-m", "uvicorn", "bench._ws_app:application", "--workers", str(workers),
           "--host", "127.0.0.1", "--port", str(port), "--http", "httptools", "--loop", "uvloop",
           "--no-access-log", "--log-level", "warning", "--lifespan", "off"]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    outs = [Path(tempfile.mkstemp(suffix=".json")[1]) for _ in range(CLIENT_PROCESSES)]
    client_procs: list[subprocess.Popen] = []
    try:
        _wait_http(port, server)
        path = "/ws/market/" if mode == "market" else "/ws/bench-group/"
        for i, out in enumerate(outs):
            share = clients // CLIENT_PROCESSES + (1 if i < clients % CLIENT_PROCESSES else 0)
            client_procs.append(subprocess.Popen(
                [sys.executable, "-m", "bench._ws_clients", f"ws://127.0.0.1:{port}{path}", str(share), mode, str(out)],
                cwd=ROOT, env={**env, "BENCH_TOKEN": token}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for c in client_procs:
            line = c.stdout.readline().strip()
            if not line.startswith("READY"):
                raise RuntimeError(f"clients failed: {line}")
        time.sleep(1.0)
        proc = psutil.Process(server.pid)
        cpu0, wall0 = _cpu_seconds(proc), time.monotonic()
        published = asyncio.run(_publish(mode, rate, seconds))
        time.sleep(1.5)  # let the last ticks arrive
        cpu = _cpu_seconds(proc) - cpu0
        wall = time.monotonic() - wall0
        for c in client_procs:
            c.stdin.write("STOP\n")
            c.stdin.flush()
        for c in client_procs:
            if c.stdout.readline().strip() != "DONE":
                raise RuntimeError("clients did not finish")
        records = [r for out in outs for r in json.loads(out.read_text())]
        deadline = (INTERVAL if mode == "market" else 0.0) + 0.1
        result = {"mode": mode, "rate_per_s": rate, "uvicorn_workers": workers, **_stats(records, published, deadline),
                  "server_cpu_s": round(cpu, 2), "server_cpu_pct_of_one_core": round(100 * cpu / wall, 1)}
        return result
    finally:
        for p in (*client_procs, server):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        for out in outs:
            out.unlink(missing_ok=True)


def main() -> dict:
    clients = int(os.environ.get("BENCH_WS_CLIENTS", "500"))
    seconds = float(os.environ.get("BENCH_WS_SECONDS", "10"))
    env = _prepare()
    token = _bench_token()
    from django.conf import settings

    results = []
    for mode, rate, workers in RUNS:
        result = run(env, token, mode, rate, workers, clients, seconds)
        print(f"  {mode} {rate}/s {workers} worker(s): {json.dumps(result)}", flush=True)
        results.append(result)

    def line(r: dict) -> str:
        lat = r["latency_ms"] or {}
        name = "/ws/market/" if r["mode"] == "market" else "group_send"
        return (f"{name} {r['rate_per_s']}/s x{r['uvicorn_workers']}w: p50 {lat.get('p50')} ms p99 {lat.get('p99')} ms, "
                f"lost {r['lost_pct']}% (never {r['never_arrived_pct']}%), merged {r['merged']}, "
                f"cpu {r['server_cpu_pct_of_one_core']}%")

    return {
        "summary": f"ws_fanout ({clients} clients, {seconds:.0f} s per run): " + "; ".join(line(r) for r in results),
        "clients": clients, "seconds_per_run": seconds, "conflation_interval_s": INTERVAL,
        "channel_layer_capacity": settings.CHANNEL_LAYERS["default"]["CONFIG"].get("capacity"),
        "results": results,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
