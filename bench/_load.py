"""A bounded, loopback-only HTTP load generator: fixed concurrency, fixed duration.

``concurrency`` connections are spread over a few processes (each with threads and one
persistent ``http.client`` connection per thread, reconnecting when the server closes it), so
the generator is not limited to one core by the GIL. Only 127.0.0.1 is accepted.
"""

from __future__ import annotations

import http.client
import multiprocessing
import threading
import time


def _worker(port: int, path: str, threads: int, start_at: float, warmup: float, stop_at: float, queue) -> None:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def loop():
        conn = None
        mine: list[float] = []
        errs = 0
        while True:
            now = time.time()
            if now >= stop_at:
                break
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers={"Host": "127.0.0.1"})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                ok = False
                if conn is not None:
                    conn.close()
                conn = None
            elapsed = time.perf_counter() - t0
            if now >= start_at + warmup:
                if ok:
                    mine.append(elapsed)
                else:
                    errs += 1
        with lock:
            latencies.extend(mine)
            errors[0] += errs

    while time.time() < start_at:
        time.sleep(0.001)
    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    queue.put((latencies, errors[0]))


def run(port: int, path: str, *, concurrency: int = 16, seconds: float = 15, warmup: float = 2,
        processes: int = 2) -> dict:
    """Hammer http://127.0.0.1:port/path; return req/s, p50/p99 latency (ms) and errors."""
    if not 1 <= concurrency <= 256 or not 0 < seconds <= 120:
        raise ValueError("bounded load only: 1..256 connections, up to 120 s")
    processes = max(1, min(processes, concurrency))
    per = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.5
    stop_at = start_at + warmup + seconds
    procs = [ctx.Process(target=_worker, args=(port, path, n, start_at, warmup, stop_at, queue)) for n in per]
    for p in procs:
        p.start()
    latencies: list[float] = []
    errors = 0
    for _ in procs:
        lat, err = queue.get(timeout=seconds + warmup + 60)
        latencies.extend(lat)
        errors += err
    for p in procs:
        p.join(10)
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2) if latencies else 0.0

    return {
        "requests": len(latencies),
        "errors": errors,
        "req_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "concurrency": concurrency,
        "seconds": seconds,
    }
