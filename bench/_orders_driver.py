"""The run behind bench/orders.py, in its own process: ``python -m bench._orders_driver OUT.json``.

Its environment (bench/_orders_world.server_env) makes its Django, gunicorn's and the Celery worker's use
bench._orders_settings against the bench-only database. It migrates, builds the world, starts gunicorn (2
sync workers, serving.py's command) and one Celery worker (prefork, 2 processes, Procfile's), runs the
phases, stops both (also on error), profiles ``order_submit`` in-process, and writes its figures as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bench import _orders_load as load
from bench import _orders_world as world

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
WORKER_CONCURRENCY = 2
ORDERS_PATH = "/api/v1/orders/"
PEER_PATH = "/bench/insert-one/"
RATE = float(os.environ.get("BENCH_ORDERS_RATE", "100"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
WARMUP = 2.0
SAT_SECONDS = float(os.environ.get("BENCH_ORDERS_SAT_SECONDS", "10"))
CONCURRENCY = 16
FILL_RATE = float(os.environ.get("BENCH_ORDERS_FILL_RATE", "10"))
FILL_SECONDS = float(os.environ.get("BENCH_ORDERS_FILL_SECONDS", "10"))
# limit orders rest in their portfolio; order_submit reads every open order of the portfolio (see the
# profile), so the fixed-rate and saturation runs spread their orders over this many portfolios
PORTFOLIOS = int(os.environ.get("BENCH_ORDERS_PORTFOLIOS", "100"))
FIRMS = 4
DRAIN_SECONDS = float(os.environ.get("BENCH_ORDERS_DRAIN_SECONDS", "6"))
ROUTED = ("new", "accepted", "pending_new", "partially_filled", "filled")
# quantities of about $60-80 per order; limit buys 5% under the market: inside the 10% price collar, never filled
QTY = {"BTC/USD": "0.0010", "ETH/USD": "0.0200", "SOL/USD": "0.5000", "LTC/USD": "1.0000"}
LIMIT = {s: str((Decimal(repr(p)) * Decimal("0.95")).quantize(Decimal("0.01"))) for s, p in world.SYMBOLS.items()}
SYMBOLS = sorted(world.SYMBOLS)


def order_request(token: str, portfolio: int, coid: str, n: int, *, kind: str = "limit") -> load.Request:
    symbol = SYMBOLS[n % len(SYMBOLS)]
    body = {"portfolio": portfolio, "symbol": symbol, "qty": QTY[symbol], "side": "buy", "type": kind,
            "time_in_force": "gtc", "client_order_id": coid}
    if kind == "limit":
        body["limit_price"] = LIMIT[symbol]
    headers = {"Host": "127.0.0.1", "Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return ORDERS_PATH, json.dumps(body).encode(), headers


def peer_request(n: int) -> load.Request:
    return PEER_PATH, json.dumps({"every": 1 + n % 1_000_000}).encode(), {"Host": "127.0.0.1",
                                                                          "Content-Type": "application/json"}


# -- processes --------------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM (gunicorn and celery shut down their children), then SIGKILL whatever of the tree is left."""
    import psutil

    if proc is None:
        return
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for p in tree:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def _start_gunicorn(port: int, logdir: Path) -> tuple[subprocess.Popen, list[str]]:
    cmd = [sys.executable, "-m", "gunicorn", "octopus.wsgi:application", "--workers", str(WORKERS),
           "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    out = open(logdir / "gunicorn.log", "wb")  # noqa: SIM115 - the child holds it
    return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT), cmd


def _start_worker(name: str, logdir: Path) -> tuple[subprocess.Popen, list[str], Path]:
    log_path = logdir / "celery.log"
    cmd = [sys.executable, "-m", "celery", "-A", "octopus", "worker", "-l", "info", "-n", f"{name}@localhost",
           "--pool", "prefork", "--concurrency", str(WORKER_CONCURRENCY), "--without-gossip", "--without-mingle"]
    out = open(log_path, "wb")  # noqa: SIM115 - the child holds it
    return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT), cmd, log_path


def _wait_http(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/one-row/", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn not ready")


def _wait_worker(proc: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        if " ready." in log_path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError("celery worker not ready")


class Cpu:
    """CPU seconds of gunicorn, the worker and PostgreSQL over a phase, and the machine's busy share."""

    def __init__(self, gunicorn: subprocess.Popen, worker: subprocess.Popen):
        self.roots = {"gunicorn": gunicorn.pid, "celery": worker.pid}

    @staticmethod
    def _tree(pid: int) -> float:
        import psutil

        total = 0.0
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
        return total

    @staticmethod
    def _postgres() -> float:
        import psutil

        total = 0.0
        for p in psutil.process_iter(["name"]):
            if (p.info["name"] or "").startswith("postgres"):
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
        return total

    def snap(self) -> dict:
        import psutil

        busy = psutil.cpu_times()
        return {"t": time.monotonic(), **{k: self._tree(v) for k, v in self.roots.items()},
                "postgres": self._postgres(), "idle": busy.idle + busy.iowait, "load": os.getloadavg()[0]}

    def since(self, before: dict) -> dict:
        after = self.snap()
        wall = after["t"] - before["t"]
        cpus = len(os.sched_getaffinity(0))
        return {"wall_s": round(wall, 1),
                **{f"{k}_cpu_s": round(after[k] - before[k], 1) for k in ("gunicorn", "celery", "postgres")},
                "machine_busy_pct": round(100 * (1 - (after["idle"] - before["idle"]) / (wall * cpus)), 1),
                "loadavg_1min_start": round(before["load"], 2), "loadavg_1min_end": round(after["load"], 2)}


# -- database reads (raw SQL over the bench database; the firms are the bench's own) ----------------------


def _sql(query: str, params: list) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _drain(firm_ids: list[int], timeout: float = DRAIN_SECONDS) -> dict:
    """Give the worker up to ``timeout`` s to route every order of these firms (none left received or
    submitting), then purge what is still queued, so a backlog never runs into the next phase."""
    started = time.monotonic()
    left = None
    while time.monotonic() - started < timeout:
        left = _sql("SELECT count(*) FROM orders_order WHERE firm_id = ANY(%s) AND status IN "
                    "('received', 'submitting')", [firm_ids])[0][0]
        if not left:
            break
        time.sleep(0.2)
    out = {"drain_s": round(time.monotonic() - started, 2), "left_unrouted": left}
    if left:
        from octopus.celery import app

        with app.connection_for_write() as conn:
            out["purged_tasks"] = app.control.purge(connection=conn)
        time.sleep(1)  # tasks the worker had prefetched finish
    return out


def _routed_per_s(firm_ids: list[int]) -> dict:
    """The worker's routing rate over these firms' orders: routed orders / (last - first routed stamp)."""
    n, first, last = _sql(
        "SELECT count(*), extract(epoch FROM min(e.received_at)), extract(epoch FROM max(e.received_at)) "
        "FROM orders_orderevent e WHERE e.firm_id = ANY(%s) AND e.status_after = ANY(%s)",
        [firm_ids, list(ROUTED)])[0]
    span = float(last - first) if n and n > 1 else 0
    return {"routed": n, "routed_per_s": round(n / span, 1) if span else None}


def _db_check(firm_ids: list[int], created: int) -> dict:
    rows, distinct = _sql("SELECT count(*), count(DISTINCT client_order_id) FROM orders_order "
                          "WHERE firm_id = ANY(%s)", [firm_ids])[0]
    statuses = dict(_sql("SELECT status, count(*) FROM orders_order WHERE firm_id = ANY(%s) GROUP BY status",
                         [firm_ids]))
    return {"orders_in_db": rows, "distinct_client_order_ids": distinct, "responses_201": created,
            "statuses_in_db": statuses, "ok": rows == distinct == created}


def _stamps(firm_ids: list[int]) -> dict[str, tuple]:
    """client_order_id -> (created_at, received_at of the first routed event): both server clock."""
    rows = _sql(
        "SELECT o.client_order_id, extract(epoch FROM o.created_at), "
        "extract(epoch FROM min(e.received_at) FILTER (WHERE e.status_after = ANY(%s))) "
        "FROM orders_order o LEFT JOIN orders_orderevent e ON e.order_id = o.id "
        "WHERE o.firm_id = ANY(%s) GROUP BY o.id", [list(ROUTED), firm_ids])
    return {coid: (float(created), float(routed) if routed is not None else None) for coid, created, routed in rows}


# -- phases -----------------------------------------------------------------------------------------------


def _open_phase(port: int, requests: list[load.Request], coids: list[str] | None, rate: float, warm: int) -> dict:
    records = load.open_loop(port, requests, rate, grace=5)
    measured = [r for r in records if r[0] >= warm]
    ok = [r for r in measured if r[1] in (200, 201)]
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r[1])] = statuses.get(str(r[1]), 0) + 1
    late = [r[3] - r[2] for r in measured]
    out = {"rate_per_s": rate, "requests": len(records), "measured": len(measured), "warmup_requests": warm,
           "statuses": statuses, "all_201": statuses == {"201": len(records)},
           **load.percentiles([r[4] - r[2] for r in ok]),
           "from_actual_send": load.percentiles([r[4] - r[3] for r in ok]),
           "client_lateness_ms_max": round(max(late) * 1000, 2) if late else None,
           "achieved_per_s": round(len(measured) / ((measured[-1][2] - measured[0][2]) or 1), 1) if measured else 0}
    if coids is not None:
        out["_sent"] = {coids[r[0]]: r[3] for r in records if r[1] == 201}
    return out


def _routing_figures(sent: dict[str, float], stamps: dict[str, tuple], measured: set[str]) -> dict:
    """Submit -> routed from the server's own stamps: the POST's send time (client, same machine clock) to the
    received_at of the order's first event in a routed status (new / filled ...), and created_at to it."""
    to_new, created_to_new, missing = [], [], 0
    for coid in measured:
        created, routed = stamps.get(coid, (None, None))
        if routed is None:
            missing += 1
            continue
        to_new.append(routed - sent[coid])
        created_to_new.append(routed - created)
    return {"orders": len(measured), "not_routed": missing, **load.percentiles(to_new),
            "created_at_to_routed": load.percentiles(created_to_new)}


class Feed(threading.Thread):
    """The market feed's part: a fresh quote per symbol every ``interval`` s for the whole run (the quote
    ages out after 90 s, and another process's cache.clear() - the test suite's - empties the cache db)."""

    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        self.interval = interval
        self.stop = threading.Event()
        self.writes = self.failures = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                world.quotes_fresh()
                self.writes += 1
            except Exception:  # noqa: BLE001 - Redis hiccup: try again next tick
                self.failures += 1
            self.stop.wait(self.interval)


class Poller(threading.Thread):
    """Polls the database every ``interval`` s for the orders sent so far that are not yet seen routed, and
    stamps the first time each is seen new/filled: what a reader sees, the worker's commit included."""

    def __init__(self, database_url: str, firm_id: int, interval: float = 0.005):
        super().__init__(daemon=True)
        self.url, self.firm_id, self.interval = database_url, firm_id, interval
        self.pending: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.polls = 0

    def expect(self, coid: str) -> None:
        with self.lock:
            self.pending[coid] = time.time()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                with self.lock:
                    ids = list(self.pending)
                if ids:
                    rows = conn.execute("SELECT client_order_id FROM orders_order WHERE firm_id = %s AND "
                                        "client_order_id = ANY(%s) AND status = ANY(%s)",
                                        [self.firm_id, ids, list(ROUTED)]).fetchall()
                    now = time.time()
                    self.polls += 1
                    with self.lock:
                        for (coid,) in rows:
                            self.pending.pop(coid, None)
                            self.seen[coid] = now
                time.sleep(self.interval)


def _fill_phase(port: int, f: dict, run: str, database_url: str) -> dict:
    """At FILL_RATE (one the worker keeps up with, so the figure is the path's and not a queue's), alternately
    a market buy, which the paper broker fills at once (crypto, fresh quote), and a limit buy resting 5%
    under the market (-> new). Sent by this process (4 threads, one connection each) so the poller knows
    each order's send time."""
    import queue as q

    n = int(FILL_RATE * (FILL_SECONDS + WARMUP))
    warm = int(FILL_RATE * WARMUP)
    kinds = ["market" if i % 2 == 0 else "limit" for i in range(n)]
    coids = [f"{run}-F-{i}" for i in range(n)]
    reqs = [order_request(f["token"], f["portfolios"][0], coids[i], i // 2, kind=kinds[i]) for i in range(n)]
    poller = Poller(database_url, f["firm_id"])
    poller.start()
    todo: q.Queue = q.Queue()
    for i in range(n):
        todo.put(i)
    start_at = time.time() + 0.3
    sent: dict[str, float] = {}
    statuses: dict[int, int] = {}
    answer: list[float] = []
    lock = threading.Lock()

    def loop():
        conn = None
        while True:
            try:
                i = todo.get_nowait()
            except q.Empty:
                break
            due = start_at + i / FILL_RATE
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            poller.expect(coids[i])
            t0 = time.time()
            conn, status = load._send(conn, port, reqs[i])
            done = time.time()
            with lock:
                sent[coids[i]] = t0
                statuses[status] = statuses.get(status, 0) + 1
                if i >= warm:
                    answer.append(done - due)

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(FILL_SECONDS + WARMUP + 60)
    deadline = time.monotonic() + DRAIN_SECONDS
    while poller.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    poller.stop.set()
    poller.join(5)
    stamps = _stamps([f["firm_id"]])
    out = {"rate_per_s": FILL_RATE, "orders": n, "warmup_orders": warm,
           "statuses": {str(k): v for k, v in statuses.items()}, "response": load.percentiles(answer),
           "poll_interval_ms": poller.interval * 1000, "polls": poller.polls}
    for kind, label in (("market", "market_to_filled"), ("limit", "limit_to_new")):
        measured = {coids[i] for i in range(warm, n) if kinds[i] == kind and coids[i] in sent}
        polled = [poller.seen[c] - sent[c] for c in measured if c in poller.seen]
        out[label] = {"polled_visible": {"orders": len(measured), "not_seen": len(measured) - len(polled),
                                         **load.percentiles(polled)},
                      "server_stamps": _routing_figures(sent, stamps, measured)}
    out["db"] = _db_check([f["firm_id"]], statuses.get(201, 0))
    return out


# -- the profile of order_submit (in-process, after the servers are stopped) ------------------------------


def _profile(run: str) -> dict:
    """order_submit in this process (DEBUG=0), one portfolio: latency at 0 / 500 / 1,000 open orders (rows
    cloned in bulk from a submitted one), the statements of one submit, and cProfile's top functions at 0
    and 500 open orders. The after-commit hand-off to Celery is replaced by a no-op here (no worker runs)."""
    import copy
    import cProfile
    import io
    import pstats
    import uuid

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.audit.services import Actor
    from apps.core.tenancy import firm_scope
    from apps.orders import routing
    from apps.orders.core import OrderSpec, OrderType, Side, TimeInForce
    from apps.orders.models import Order, Origin
    from apps.orders.services import Entry, order_submit
    from apps.portfolios.models import Portfolio

    world.quotes_fresh()
    f = world.firm_world(run, 90)
    with firm_scope(f["firm_id"]):
        portfolio = Portfolio.objects.get(pk=f["portfolios"][0])
    entry = Entry(actor=Actor.system("bench orders"), origin=Origin.API, source="api")
    counter = [0]

    def submit():
        counter[0] += 1
        symbol = SYMBOLS[counter[0] % len(SYMBOLS)]
        spec = OrderSpec(symbol=symbol, side=Side.BUY, type=OrderType.LIMIT, time_in_force=TimeInForce.GTC,
                         qty=Decimal(QTY[symbol]), limit_price=Decimal(LIMIT[symbol]),
                         client_order_id=f"{run}-P-{counter[0]}")
        result = order_submit(portfolio=portfolio, spec=spec, entry=entry)
        if not result.created or result.rejected:
            raise RuntimeError(f"profile order refused: {result.order.reject_code}")
        return result.order

    def clone_to(n: int, template: Order) -> None:
        with firm_scope(f["firm_id"]):
            have = Order.objects.filter(portfolio=portfolio, status="received").count()
            base = Order.objects.get(pk=template.pk)
            rows = []
            for k in range(n - have):
                oid = uuid.uuid4()
                row = copy.copy(base)
                row.pk, row.id = oid, oid
                row.client_order_id, row.broker_client_order_id = f"{run}-C-{n}-{k}", f"oct-{oid}"
                row.status = "received"
                rows.append(row)
            Order.objects.bulk_create(rows, batch_size=500)

    def timed(k: int) -> dict:
        lat = []
        for _ in range(k):
            t0 = time.perf_counter()
            submit()
            lat.append(time.perf_counter() - t0)
        return load.percentiles(lat)

    def profiled(k: int) -> list[str]:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(k):
            submit()
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(30)
        lines = [ln.rstrip() for ln in s.getvalue().splitlines() if ln.strip()]
        return [ln.replace(str(ROOT) + "/", "").replace(sys.prefix + "/lib/", "") for ln in lines[-31:]]

    original = routing.route_after_commit
    routing.route_after_commit = lambda order: None
    try:
        for _ in range(10):
            template = submit()  # warm: imports, connection, caches
        with firm_scope(f["firm_id"]):
            Order.objects.filter(portfolio=portfolio).update(status="canceled")  # back to no open orders
        at0 = timed(50)
        with firm_scope(f["firm_id"]):
            Order.objects.filter(portfolio=portfolio).update(status="canceled")
        with CaptureQueriesContext(connection) as captured:
            submit()
        statements = [{"ms": round(float(q["time"]) * 1000, 2), "sql": q["sql"][:110]}
                      for q in captured.captured_queries]
        with firm_scope(f["firm_id"]):
            Order.objects.filter(portfolio=portfolio).update(status="canceled")
        prof0 = profiled(50)
        with firm_scope(f["firm_id"]):
            Order.objects.filter(portfolio=portfolio).update(status="canceled")
        clone_to(500, template)
        at500 = timed(30)
        prof500 = profiled(20)
        clone_to(1000, template)
        at1000 = timed(20)
        route = _profile_route(run, counter)
        route.update(_profile_http(run))
    finally:
        routing.route_after_commit = original
    return {"open_orders_0": at0, "open_orders_500": at500, "open_orders_1000": at1000, **route,
            "statements_of_one_submit": statements,
            "cprofile_50_submits_0_open_orders": prof0, "cprofile_20_submits_500_open_orders": prof500}


def _profile_route(run: str, counter: list) -> dict:
    """``order_route`` (the worker's task body) in-process on a fresh portfolio: limit buys (-> new) and
    market buys (-> filled, booked), latency and cProfile's top functions for the limit ones."""
    import cProfile
    import io
    import pstats

    from apps.audit.services import Actor
    from apps.core.tenancy import firm_scope
    from apps.orders.core import OrderSpec, OrderType, Side, TimeInForce
    from apps.orders.models import Origin
    from apps.orders.routing import order_route
    from apps.orders.services import Entry, order_submit
    from apps.portfolios.models import Portfolio

    f = world.firm_world(run, 91)
    with firm_scope(f["firm_id"]):
        portfolio = Portfolio.objects.get(pk=f["portfolios"][0])
    entry = Entry(actor=Actor.system("bench orders"), origin=Origin.API, source="api")

    def submit(kind: str):
        world.quotes_fresh()
        counter[0] += 1
        symbol = SYMBOLS[counter[0] % len(SYMBOLS)]
        spec = OrderSpec(symbol=symbol, side=Side.BUY, type=OrderType(kind), time_in_force=TimeInForce.GTC,
                         qty=Decimal(QTY[symbol]), limit_price=Decimal(LIMIT[symbol]) if kind == "limit" else None,
                         client_order_id=f"{run}-R-{counter[0]}")
        result = order_submit(portfolio=portfolio, spec=spec, entry=entry)
        if result.rejected:
            raise RuntimeError(f"profile order refused: {result.order.reject_code} {result.order.reject_reason}")
        return result.order

    def routed(orders) -> tuple[list[float], set]:
        lat, final = [], set()
        for o in orders:
            t0 = time.perf_counter()
            done = order_route(firm_id=o.firm_id, order_id=o.pk)
            lat.append(time.perf_counter() - t0)
            final.add(done.status if done is not None else "not claimed")
        return lat, final

    limit = [submit("limit") for _ in range(60)]
    market = [submit("market") for _ in range(30)]
    routed(limit[:10])  # warm
    lat_limit, st_limit = routed(limit[10:40])
    lat_market, st_market = routed(market)
    prof = cProfile.Profile()
    prof.enable()
    routed(limit[40:])
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(25)
    lines = [ln.rstrip() for ln in s.getvalue().splitlines() if ln.strip()]
    return {"route_limit_to_new": {**load.percentiles(lat_limit), "statuses": sorted(st_limit)},
            "route_market_to_filled": {**load.percentiles(lat_market), "statuses": sorted(st_market)},
            "cprofile_20_routes_limit": [ln.replace(str(ROOT) + "/", "").replace(sys.prefix + "/lib/", "")
                                         for ln in lines[-26:]]}


def _profile_http(run: str) -> dict:
    """The whole request in-process: Django's test client POSTs /api/v1/orders/ (middleware, bearer token,
    DRF, order_submit, rendering; no socket, no gunicorn) against a fresh firm and 20 portfolios; wall
    time and cProfile's top functions. The hand-off to Celery is the no-op of ``_profile``."""
    import cProfile
    import io
    import pstats

    from django.test import Client

    f = world.firm_world(run, 92, 20)
    client = Client()
    reqs = [order_request(f["token"], f["portfolios"][i % 20], f"{run}-H-{i}", i) for i in range(130)]

    def post(req) -> None:
        path, body, headers = req
        resp = client.post(path, data=body, content_type="application/json", HTTP_HOST="127.0.0.1",
                           HTTP_AUTHORIZATION=headers["Authorization"])
        if resp.status_code != 201:
            raise RuntimeError(f"profile POST answered {resp.status_code}: {resp.content[:300]!r}")

    for req in reqs[:10]:
        post(req)
    lat = []
    for req in reqs[10:80]:
        t0 = time.perf_counter()
        post(req)
        lat.append(time.perf_counter() - t0)
    prof = cProfile.Profile()
    prof.enable()
    for req in reqs[80:]:
        post(req)
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(45)
    lines = [ln.rstrip() for ln in s.getvalue().splitlines() if ln.strip()]
    return {"http_in_process_post": {**load.percentiles(lat), "requests": len(lat)},
            "cprofile_50_http_posts": [ln.replace(str(ROOT) + "/", "").replace(sys.prefix + "/lib/", "")
                                       for ln in lines[-46:]]}


# -- main -------------------------------------------------------------------------------------------------


def _say(what: str) -> None:
    print(f"bench orders: {datetime.now(UTC):%H:%M:%S} {what}", file=sys.stderr, flush=True)


def run() -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    database_url = settings.DATABASE_URL
    t0 = time.monotonic()
    call_command("migrate", interactive=False, verbosity=0)
    migrated = time.monotonic() - t0
    from octopus.celery import app

    with app.connection_for_write() as conn:  # leftovers of an aborted run: the bench queue only
        app.control.purge(connection=conn)

    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    world.instruments()
    world.quotes_fresh()
    t0 = time.monotonic()
    fa = world.firm_world(stamp, 0, PORTFOLIOS)  # (1) fixed rate
    fc = world.firm_world(stamp, 1, PORTFOLIOS)  # (3) saturation, one firm
    fd = [world.firm_world(stamp, 2 + k, PORTFOLIOS // FIRMS) for k in range(FIRMS)]  # (3) four firms
    ff = world.firm_world(stamp, 7, 1)  # (2) market orders, filled at once
    fw = world.firm_world(stamp, 8, 1)  # warm-up
    setup_s = time.monotonic() - t0
    peer_floor = _sql("SELECT coalesce(max(id), 0) FROM django_celery_beat_intervalschedule", [])[0][0]

    _say(f"world built in {setup_s:.1f} s")
    feed = Feed()
    feed.start()
    logdir = Path(tempfile.mkdtemp(prefix="bench-orders-"))
    port = _free_port()
    gunicorn = worker = None
    results: dict = {}
    try:
        gunicorn, gcmd = _start_gunicorn(port, logdir)
        worker, wcmd, wlog = _start_worker(f"bench-orders-{stamp}", logdir)
        _wait_http(port, gunicorn)
        _wait_worker(worker, wlog)
        cpu = Cpu(gunicorn, worker)
        # warm both gunicorn workers (imports, connections) and the worker's processes
        warm = [order_request(fw["token"], fw["portfolios"][0], f"{stamp}-W-{i}", i) for i in range(20)]
        load.open_loop(port, warm, 10)
        load.open_loop(port, [peer_request(i) for i in range(20)], 10)
        _drain([fw["firm_id"]])

        def orders_for(f: dict, tag: str, n: int, kind: str = "limit") -> tuple[list, list]:
            coids = [f"{stamp}-{tag}-{i}" for i in range(n)]
            ports = f["portfolios"]
            return [order_request(f["token"], ports[i % len(ports)], coids[i], i, kind=kind)
                    for i in range(n)], coids

        _say("servers ready; fixed-rate orders")
        # (1) orders at a fixed rate, limit orders resting far from the market, routed by the worker meanwhile
        world.quotes_fresh()
        n = int(RATE * (SECONDS + WARMUP))
        warm_n = int(RATE * WARMUP)
        reqs, coids = orders_for(fa, "A", n)
        before = cpu.snap()
        fixed = _open_phase(port, reqs, coids, RATE, warm_n)
        fixed["cpu"] = cpu.since(before)
        fixed["worker"] = _routed_per_s([fa["firm_id"]])  # during the phase (its backlog not yet drained)
        fixed.update(_drain([fa["firm_id"]]))
        sent = fixed.pop("_sent")
        fixed["db"] = _db_check([fa["firm_id"]], fixed["statuses"].get("201", 0))
        fixed["submit_to_new"] = _routing_figures(sent, _stamps([fa["firm_id"]]),
                                                  {c for c in coids[warm_n:] if c in sent})
        fixed["open_orders_per_portfolio_at_end"] = round(n / len(fa["portfolios"]), 1)
        results["fixed_rate_orders"] = fixed

        _say("fixed-rate peer")
        # (1) the floor: a bare one-row DRF POST at the same rate
        before = cpu.snap()
        peer = _open_phase(port, [peer_request(i) for i in range(n)], None, RATE, warm_n)
        peer["cpu"] = cpu.since(before)
        results["fixed_rate_peer"] = peer

        _say("saturation")
        # (3) saturation: one firm, then four firms (orders spread round-robin over them), then the peer
        world.quotes_fresh()
        before = cpu.snap()

        def one_firm(tag: str) -> load.Request:
            i = hash(tag) & 0x7FFFFFFF
            return order_request(fc["token"], fc["portfolios"][i % len(fc["portfolios"])], f"{stamp}-C-{tag}", i)

        sat1 = load.closed_loop(port, one_firm, concurrency=CONCURRENCY, seconds=SAT_SECONDS, warmup=WARMUP)
        sat1["cpu"] = cpu.since(before)
        sat1["worker"] = _routed_per_s([fc["firm_id"]])
        sat1.update(_drain([fc["firm_id"]]))
        sat1["db"] = _db_check([fc["firm_id"]], sat1["statuses"].get("201", 0))
        results["saturation_orders_1_firm"] = sat1

        world.quotes_fresh()
        before = cpu.snap()

        def four_firms(tag: str) -> load.Request:
            i = hash(tag) & 0x7FFFFFFF
            f = fd[i % FIRMS]
            return order_request(f["token"], f["portfolios"][(i // FIRMS) % len(f["portfolios"])],
                                 f"{stamp}-D-{tag}", i)

        sat4 = load.closed_loop(port, four_firms, concurrency=CONCURRENCY, seconds=SAT_SECONDS, warmup=WARMUP)
        sat4["cpu"] = cpu.since(before)
        ids = [f["firm_id"] for f in fd]
        sat4["worker"] = _routed_per_s(ids)
        sat4.update(_drain(ids))
        sat4["db"] = _db_check(ids, sat4["statuses"].get("201", 0))
        sat4["per_firm_201"] = dict(_sql("SELECT firm_id, count(*) FROM orders_order WHERE firm_id = ANY(%s) "
                                         "GROUP BY firm_id", [ids]))
        results["saturation_orders_4_firms"] = sat4

        before = cpu.snap()
        satp = load.closed_loop(port, lambda tag: peer_request(hash(tag) & 0xFFFFF), concurrency=CONCURRENCY,
                                seconds=SAT_SECONDS, warmup=WARMUP)
        satp["cpu"] = cpu.since(before)
        results["saturation_peer"] = satp

        _say("submit -> routed")
        # (2) submit -> filled on the paper broker
        world.quotes_fresh()
        before = cpu.snap()
        fill = _fill_phase(port, ff, stamp, database_url)
        fill["cpu"] = cpu.since(before)
        results["submit_to_routed"] = fill
        results["commands"] = {"gunicorn": " ".join(gcmd[2:]), "celery": " ".join(wcmd[2:])}
        wtext = wlog.read_text(errors="replace").splitlines()
        results["worker_errors"] = [ln for ln in wtext if "ERROR" in ln or "Traceback" in ln][:5]
        results["worker_broker_reconnects"] = sum("Connection to broker lost" in ln for ln in wtext)
        # a route task that found nothing to claim (order_route -> None) leaves its order received
        results["worker_route_tasks"] = {"new": sum("s: 'new'" in ln for ln in wtext),
                                         "filled": sum("s: 'filled'" in ln for ln in wtext),
                                         "none_claimed": sum("s: None" in ln for ln in wtext)}
        results["gunicorn_log_tail"] = (logdir / "gunicorn.log").read_text(errors="replace")[-1500:]
    finally:
        _stop(gunicorn)
        _stop(worker)
        feed.stop.set()
        feed.join(5)
        shutil.rmtree(logdir, ignore_errors=True)
        results["quote_feed"] = {"interval_ms": feed.interval * 1000, "writes": feed.writes,
                                 "failures": feed.failures}

    _say("profile")
    results["profile"] = _profile(stamp) if os.environ.get("BENCH_ORDERS_PROFILE", "1") != "0" else {}
    deleted = _sql("DELETE FROM django_celery_beat_intervalschedule WHERE id > %s AND period = 'microseconds' "
                   "RETURNING id", [peer_floor])
    results["setup"] = {"database": settings.DATABASES["default"]["NAME"], "migrate_s": round(migrated, 1),
                        "world_s": round(setup_s, 1), "run": stamp, "peer_rows_deleted": len(deleted),
                        "celery_queue": settings.CELERY_TASK_DEFAULT_QUEUE,
                        "portfolios": {"fixed_rate": PORTFOLIOS, "saturation_1_firm": PORTFOLIOS,
                                       "saturation_4_firms": f"{FIRMS} x {PORTFOLIOS // FIRMS}"}}
    return results


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.write_text(json.dumps(run(), indent=2, default=str) + "\n")
