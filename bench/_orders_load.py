"""Bounded, loopback-only POST load for bench/orders.py: open loop (a fixed rate) and closed loop (a fixed
number of connections, as bench/_load.py does for GETs).

Every request is ``(path, body, headers)``, built by the caller with its own unique client_order_id.
Open loop: request i is due at ``start + i / rate`` whatever happened before it; its response time is
counted from when it was due (so a server or client falling behind shows up in the figure instead of
slowing the schedule down: no coordinated omission) and, separately, from when it was actually sent.
Connections are persistent ``http.client`` ones, reopened when the server closes them (gunicorn's sync
workers answer ``Connection: close``). Only 127.0.0.1 is ever addressed; both loops stop by themselves.
"""

from __future__ import annotations

import http.client
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable

Request = tuple[str, bytes, dict]
MAX_SECONDS = 120
MAX_REQUESTS = 50_000


def _send(conn: http.client.HTTPConnection | None, port: int, req: Request):
    path, body, headers = req
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        status = resp.status
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = None
    except (OSError, http.client.HTTPException):
        status = 0
        conn.close()
        conn = None
    return conn, status


# -- open loop --------------------------------------------------------------------------------------------


def _open_worker(port: int, requests: list[Request], indexes: list[int], start_at: float, rate: float,
                 threads: int, give_up_at: float, queue) -> None:
    lock = threading.Lock()
    todo = iter(indexes)
    out: list[tuple] = []

    def loop():
        conn = None
        mine = []
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                break
            due = start_at + i / rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            sent = time.time()
            if sent > give_up_at:
                mine.append((i, -1, due, sent, sent))
                continue
            conn, status = _send(conn, port, requests[i])
            mine.append((i, status, due, sent, time.time()))
        if conn is not None:
            conn.close()
        with lock:
            out.extend(mine)

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    queue.put(out)


def open_loop(port: int, requests: list[Request], rate: float, *, processes: int = 2, threads: int = 8,
              grace: float = 30) -> list[tuple]:
    """Send ``requests`` at ``rate`` per second; returns (index, status, due, sent, done) per request, wall
    clock seconds (status 0: connection error, -1: not sent, the run's time limit passed)."""
    seconds = len(requests) / rate
    if not 0 < rate <= 2000 or len(requests) > MAX_REQUESTS or seconds > MAX_SECONDS:
        raise ValueError("bounded load only: up to 2,000/s, 50,000 requests, 120 s")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.5
    give_up_at = start_at + seconds + grace
    procs = [ctx.Process(target=_open_worker, args=(port, requests, list(range(k, len(requests), processes)),
                                                    start_at, rate, threads, give_up_at, queue))
             for k in range(processes)]
    for p in procs:
        p.start()
    out: list[tuple] = []
    try:
        for _ in procs:
            out.extend(queue.get(timeout=seconds + grace + 30))
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    return sorted(out)


# -- closed loop ------------------------------------------------------------------------------------------


def _closed_worker(port: int, make: Callable[[str], Request], tag: str, threads: int, start_at: float,
                   warmup: float, stop_at: float, queue) -> None:
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()

    def loop(t: int):
        conn = None
        mine, counts, n = [], Counter(), 0
        while time.time() < stop_at:
            req = make(f"{tag}-{t}-{n}")
            n += 1
            t0 = time.perf_counter()
            measured = time.time() >= start_at + warmup
            conn, status = _send(conn, port, req)
            elapsed = time.perf_counter() - t0
            counts[status] += 1
            if measured and status:
                mine.append(elapsed)
        if conn is not None:
            conn.close()
        with lock:
            latencies.extend(mine)
            statuses.update(counts)

    while time.time() < start_at:
        time.sleep(0.001)
    pool = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    queue.put((latencies, dict(statuses)))


def closed_loop(port: int, make: Callable[[str], Request], *, concurrency: int = 16, seconds: float = 10,
                warmup: float = 2, processes: int = 2) -> dict:
    """``concurrency`` connections, each sending its next request as soon as the last one is answered, for
    ``warmup`` + ``seconds``; ``make(unique_tag)`` builds each request. Returns the measured seconds' req/s
    and latency percentiles, and the status of every request sent (warm-up included)."""
    if not 1 <= concurrency <= 256 or not 0 < seconds <= MAX_SECONDS:
        raise ValueError("bounded load only: 1..256 connections, up to 120 s")
    processes = max(1, min(processes, concurrency))
    per = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.5
    stop_at = start_at + warmup + seconds
    procs = [ctx.Process(target=_closed_worker, args=(port, make, f"p{k}", n, start_at, warmup, stop_at, queue))
             for k, n in enumerate(per)]
    for p in procs:
        p.start()
    latencies: list[float] = []
    statuses: Counter = Counter()
    try:
        for _ in procs:
            lat, st = queue.get(timeout=seconds + warmup + 60)
            latencies.extend(lat)
            statuses.update(st)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    return {"requests_measured": len(latencies), "req_per_s": round(len(latencies) / seconds, 1),
            **percentiles(latencies), "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "sent": sum(statuses.values()), "concurrency": concurrency, "seconds": seconds, "warmup": warmup}


def percentiles(values: list[float], prefix: str = "") -> dict:
    """p50/p90/p99/max in ms of values in seconds."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {f"{prefix}p50_ms": at(0.50), f"{prefix}p90_ms": at(0.90), f"{prefix}p99_ms": at(0.99),
            f"{prefix}max_ms": round(ordered[-1] * 1000, 2)}
