"""Orders and execution (issue #5): the order path's figures, in the production serving layout.

1. ``POST /api/v1/orders/`` through gunicorn (WSGI, 2 sync workers, serving.py's command) at a FIXED rate
   (open loop: 100 orders/s for BENCH_SECONDS, default 20, after a 2 s warm-up): p50/p90/p99/max of the
   response time (validated, checked, persisted, audited, outbox written: the 201), counted from when each
   request was due (no coordinated omission). Limit buys on crypto 5% under the market (inside the 10%
   price collar, never filled), unique client_order_ids, a Celery worker routing them to the paper broker
   meanwhile, orders spread over BENCH_ORDERS_PORTFOLIOS (default 100) funded portfolios of one firm
   (one trader token, 'trade' scope). Aim: p99 < 15 ms. The floor in the same run: a bare one-row DRF
   POST (bench/_orders_urls.py: no authentication, a ModelSerializer, one INSERT) at the same rate. Both
   also at saturation (closed loop, 16 connections, BENCH_ORDERS_SAT_SECONDS, default 10).
2. Submit -> routed on the paper broker with a real worker (``celery -A octopus worker``, prefork, 2
   processes, Procfile's): for (1)'s limit orders, from the POST's send time to the ``received_at`` of the
   order's first event in a routed status (the server's own stamp, same machine clock); and at
   BENCH_ORDERS_FILL_RATE (default 10/s) for BENCH_ORDERS_FILL_SECONDS (default 10), alternately market
   buys, which the paper broker fills at once, and resting limit buys: the same figure plus the time until
   a reader polling the database every 5 ms sees the order filled / new (the worker's commit included;
   ``received_at`` is stamped when the routing task starts). A thread refreshes the quotes every 50 ms.
   Aim: p99 < 50 ms.
3. Saturation throughput with 4 firms (each its own trader token and 25 portfolios, orders round-robin
   over them) against 1 firm (one token, 100 portfolios).

Every phase checks that each response was a 201 and that the database holds exactly the orders answered
201, with no duplicate client_order_id. Then, with the servers stopped, ``order_submit`` is profiled
in-process (cProfile; latency at 0 / 500 / 1,000 open orders in one portfolio).

Isolation: a bench-only database ``octopus_bench_orders`` on the server of DATABASE_URL (created when
missing, migrated each run; every run adds fresh firms), and in Redis the bench's own cache prefix, channel
prefix and Celery queue (bench/_orders_settings.py). The production throttle (1,200 requests/min per
principal) is raised for the run (API_RATE), its counter still kept. Bounded: loopback only, fixed request
counts and time limits; the run is a child process (bench/_orders_driver.py) in its own process group,
killed with its servers if it overruns BENCH_ORDERS_TIMEOUT (default 300 s); gunicorn and the worker are
stopped in a ``finally``.

Run: ``python -m bench orders`` (writes bench/results/orders.json).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import _orders_world as world

ROOT = Path(__file__).resolve().parents[1]
AIM_SUBMIT_P99_MS = 15
AIM_ROUTED_P99_MS = 50
TIMEOUT = float(os.environ.get("BENCH_ORDERS_TIMEOUT", "300"))


def _base_urls() -> tuple[str, str]:
    database, redis = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if database and redis:
        return database, redis
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "octopus.settings")
    import django

    django.setup()
    from django.conf import settings

    return database or settings.DATABASE_URL, redis or settings.REDIS_URL


def _drive(env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-orders-") as tmp:
        out = Path(tmp) / "orders.json"
        proc = subprocess.Popen([sys.executable, "-m", "bench._orders_driver", str(out)], cwd=ROOT, env=env,
                                start_new_session=True)
        try:
            code = proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            if proc.poll() is None or code is None:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        break
                    try:
                        proc.wait(15)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            else:  # the driver ended: its servers are stopped; anything left in its group goes too
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if code is None:
            raise RuntimeError(f"bench orders: the run overran {TIMEOUT:.0f} s and was stopped")
        if code != 0:
            raise RuntimeError(f"bench orders: the run failed (exit {code}); see its output above")
        return json.loads(out.read_text())


def main() -> dict:
    database, redis = _base_urls()
    bench_db = world.bench_database_url(database)
    world.ensure_database(bench_db)
    r = _drive(world.server_env(bench_db, redis))
    fx, peer = r["fixed_rate_orders"], r["fixed_rate_peer"]
    s1, s4, sp = r["saturation_orders_1_firm"], r["saturation_orders_4_firms"], r["saturation_peer"]
    new, routed = fx["submit_to_new"], r["submit_to_routed"]
    fill, rnew = routed["market_to_filled"], routed["limit_to_new"]
    checks_ok = all(x["db"]["ok"] for x in (fx, s1, s4, routed)) and fx["all_201"] and peer["all_201"] and all(
        set(x["statuses"]) == {"201"} for x in (s1, s4, sp))
    scaling = round(s4["req_per_s"] / s1["req_per_s"], 2) if s1["req_per_s"] else None
    aims = {
        "submit_p99_ms_under_15": fx.get("p99_ms", 1e9) < AIM_SUBMIT_P99_MS,
        "submit_to_new_at_fixed_rate_p99_ms_under_50": new.get("p99_ms", 1e9) < AIM_ROUTED_P99_MS,
        "submit_to_new_visible_p99_ms_under_50": rnew["polled_visible"].get("p99_ms", 1e9) < AIM_ROUTED_P99_MS,
        "submit_to_filled_visible_p99_ms_under_50": fill["polled_visible"].get("p99_ms", 1e9) < AIM_ROUTED_P99_MS,
    }
    prof = r.get("profile") or {}
    summary = (
        f"orders: POST at {fx['rate_per_s']:.0f}/s p50 {fx.get('p50_ms')} p90 {fx.get('p90_ms')} p99 {fx.get('p99_ms')} "
        f"max {fx.get('max_ms')} ms (aim p99 < {AIM_SUBMIT_P99_MS}); bare DRF POST p50 {peer.get('p50_ms')} "
        f"p99 {peer.get('p99_ms')} ms; saturation 1 firm {s1['req_per_s']:.0f}/s (p99 {s1.get('p99_ms')} ms), "
        f"4 firms {s4['req_per_s']:.0f}/s (x{scaling}), bare POST {sp['req_per_s']:.0f}/s; worker routing during "
        f"the fixed-rate run {fx['worker'].get('routed_per_s')}/s; submit->new stamped at {fx['rate_per_s']:.0f}/s "
        f"p50 {new.get('p50_ms')} p99 {new.get('p99_ms')} ms ({new['not_routed']} not routed in time); at "
        f"{routed['rate_per_s']:.0f}/s, seen in the database: limit->new p50 {rnew['polled_visible'].get('p50_ms')} "
        f"p99 {rnew['polled_visible'].get('p99_ms')} ms, market->filled p50 {fill['polled_visible'].get('p50_ms')} "
        f"p99 {fill['polled_visible'].get('p99_ms')} ms (aim p99 < {AIM_ROUTED_P99_MS}); checks ok: {checks_ok}; "
        f"in-process order_submit p50 at 0/500/1000 open orders in one portfolio: "
        f"{prof.get('open_orders_0', {}).get('p50_ms')}/{prof.get('open_orders_500', {}).get('p50_ms')}/"
        f"{prof.get('open_orders_1000', {}).get('p50_ms')} ms; whole POST in-process p50 "
        f"{prof.get('http_in_process_post', {}).get('p50_ms')} ms; order_route in-process p50 limit "
        f"{prof.get('route_limit_to_new', {}).get('p50_ms')} ms, market {prof.get('route_market_to_filled', {}).get('p50_ms')} ms; "
        f"route tasks that claimed nothing (order left received): {r.get('worker_route_tasks', {}).get('none_claimed')}"
    )
    return {"summary": summary, "aims": aims, "checks_ok": checks_ok, "saturation_4_over_1_firm": scaling,
            "orders_over_peer_p99": round(fx["p99_ms"] / peer["p99_ms"], 2) if peer.get("p99_ms") else None,
            **r}


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
