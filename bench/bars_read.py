"""Reading one year of 1-minute bars: database -> pandas DataFrame, and the same range through the REST API.

Data: one year (2025) of simulated 1m bars for an equity (NYSE sessions, ~97k bars) and for a
24/7 crypto pair (~525k bars), written with ``bars_upsert`` into their own instruments of the real
``marketdata_bar`` table, plus BENCH_READ_FILLERS (default 6) other symbols' years of flat bars so
the planner sees a multi-symbol table, as in production; then ANALYZEd. Deleted (and the table
vacuumed) at the end.

Database layer (BENCH_READ_RUNS warm runs each, default 15; p50/p95):
- selector: ``apps.marketdata.selectors.bars_frame`` (one query returning each column packed as
  float8 bytes -> numpy).
- raw_fetchall: the same rows with a plain psycopg query and ``fetchall()`` (Decimal values, what
  a straightforward client gets); raw_packed_query: the selector's query alone, bytes received and
  not turned into a DataFrame (the floor of that design); raw_one_day: one session's bars with a
  plain query.

REST (production serving layout: gunicorn, 2 workers, DEBUG=0, persistent DB connections, a
read-scoped API token): ``GET /api/v1/bars/?symbol=..&timeframe=1m&start=2025-01-01&end=2026-01-01``
as JSON (following ``next`` links, 50,000 bars a page) and CSV (one response up to 600,000 bars),
timed from the first request to the last byte of the last page on one keep-alive connection, and
with the client's ``json.loads`` of every page added. The load generator shares the machine.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import time
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

from bench import serving

RUNS = int(os.environ.get("BENCH_READ_RUNS", "15"))
HTTP_RUNS = int(os.environ.get("BENCH_READ_HTTP_RUNS", "7"))
START, END = datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
SERIES = {"equity": ("BENCHREADEQ", "equity", "NYSE", "AAPL"), "crypto": ("BENCHREADBTC", "crypto", "CRYPTO", "BTC/USD")}
# Other symbols' bars, so the table looks like production (many symbols) to the planner: with only
# the two series above, a year of one symbol is 15% of the table and PostgreSQL prefers a parallel
# sequential scan + sort over the primary-key range scan it uses once the symbol is a small share.
FILLERS = int(os.environ.get("BENCH_READ_FILLERS", "6"))
FILLER_SYMBOL = "BENCHREADFILL{}"
BENCH_FIRM = "bench-reads"


def _load() -> dict:
    """The two instruments with a year of bars each (simulated, seeded), and the seconds it took."""
    from apps.marketdata import calendars, feed
    from apps.marketdata.ingest import bars_upsert
    from apps.marketdata.models import Instrument
    from apps.marketdata.simulator import MarketStepper, continuous_minute_grid, session_minute_grid

    _cleanup()
    started = time.perf_counter()
    sessions = calendars.sessions("NYSE", START.date(), END.date())
    grids = {"equity": session_minute_grid([(s.open, s.close) for s in sessions if s.open < END]),
             "crypto": continuous_minute_grid(START, END)}
    bars = MarketStepper(feed.universe()).backfill({SERIES[k][3]: grids[k] for k in SERIES})
    out = {}
    for kind, (symbol, asset_class, exchange, source) in SERIES.items():
        instrument = Instrument.objects.create(symbol=symbol, asset_class=asset_class, exchange=exchange,
                                               name=f"bench read {kind}")
        written = bars_upsert(instrument_id=instrument.pk, timeframe="1m", bars=feed.sim_frame(bars[source]))
        out[kind] = {"instrument": instrument, "rows": written.inserted}
    for n in range(FILLERS):  # a year of 24/7 minutes each, flat prices: only their volume matters here
        filler = Instrument.objects.create(symbol=FILLER_SYMBOL.format(n), asset_class="crypto", exchange="CRYPTO",
                                           name="bench read filler")
        _sql("INSERT INTO marketdata_bar (instrument_id, timeframe, ts, open, high, low, close, volume) "
             f"SELECT {int(filler.pk)}, '1m', t, 100, 101, 99, 100, 10 FROM generate_series("
             f"'{START.isoformat()}'::timestamptz, '{END.isoformat()}'::timestamptz - interval '1 minute', "
             "interval '1 minute') AS t")
    _sql("ANALYZE marketdata_bar")
    return {"series": out, "load_seconds": round(time.perf_counter() - started, 1),
            "table_rows": sum(s["rows"] for s in out.values()) + FILLERS * 525_600}


def _sql(statement: str) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(statement)


def _cleanup() -> None:
    from apps.marketdata.models import Bar, Instrument

    symbols = [s[0] for s in SERIES.values()] + [FILLER_SYMBOL.format(n) for n in range(FILLERS)]
    if Bar.objects.filter(instrument__symbol__in=symbols).delete()[0]:
        _sql("VACUUM ANALYZE marketdata_bar")
    Instrument.objects.filter(symbol__in=symbols).delete()


def _percentiles(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 1),
            "min_ms": round(ordered[0] * 1000, 1), "runs": len(ordered)}


def _timed(fn, runs: int) -> tuple[dict, object]:
    fn()  # warm: plans, caches, imports
    seconds, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - started)
    return _percentiles(seconds), result


def _database(instrument) -> dict:
    from django.db import connection

    from apps.marketdata import selectors

    where = ("FROM marketdata_bar WHERE instrument_id = %(i)s AND timeframe = '1m' AND ts >= %(s)s AND ts < %(e)s "
             "ORDER BY ts")
    params = {"i": instrument.pk, "s": START, "e": END}

    def selector():
        return selectors.bars_frame(instrument=instrument, timeframe="1m", start=START, end=END)[0]

    def raw_fetchall():
        with connection.cursor() as cur:
            cur.execute(f"SELECT ts, open, high, low, close, volume, vwap, trade_count {where}", params)
            return cur.fetchall()

    def raw_packed_query():
        import psycopg

        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cur:
            cur.execute(selectors._SELECT_PACKED, {"instrument": instrument.pk, "timeframe": "1m", "start": START,
                                                   "end": END, "limit": None}, binary=True)
            return sum(len(v) for v in cur.fetchone()[1:])

    day = {"i": instrument.pk, "s": datetime(2025, 7, 1, tzinfo=UTC), "e": datetime(2025, 7, 2, tzinfo=UTC)}

    def raw_one_day():
        with connection.cursor() as cur:
            cur.execute(f"SELECT ts, open, high, low, close, volume, vwap, trade_count {where}", day)
            return cur.fetchall()

    out = {}
    stats, frame = _timed(selector, RUNS)
    out["selector"] = stats | {"rows": len(frame)}
    stats, rows = _timed(raw_fetchall, max(3, RUNS // 3))
    out["raw_fetchall"] = stats | {"rows": len(rows)}
    stats, size = _timed(raw_packed_query, RUNS)
    out["raw_packed_query"] = stats | {"bytes": size}
    stats, rows = _timed(raw_one_day, RUNS * 2)
    out["raw_one_day"] = stats | {"rows": len(rows)}
    # The selector returns exactly what the plain query returns, as float64.
    exact = _same_values(frame, raw_fetchall())
    assert exact, "selector values differ from float(Decimal) of the stored rows"
    return out


def _same_values(frame, rows) -> bool:
    import numpy as np

    if len(frame) != len(rows):
        return False
    for i, name in enumerate(("open", "high", "low", "close", "volume", "vwap")):
        expected = np.array([np.nan if r[i + 1] is None else float(r[i + 1]) for r in rows])
        if not np.array_equal(frame[name].to_numpy(), expected, equal_nan=True):
            return False
    return True


def _token() -> str:
    from apps.accounts.models import Firm, Membership, User
    from apps.accounts.services import token_create
    from apps.audit.services import Actor

    firm, _ = Firm.objects.get_or_create(slug=BENCH_FIRM, defaults={"name": "Bench reads"})
    user = User.objects.filter(email=f"analyst@{BENCH_FIRM}.invalid").first() or User.objects.create_user(
        email=f"analyst@{BENCH_FIRM}.invalid", password=None, full_name="Bench analyst")
    membership, _ = Membership.objects.get_or_create(firm=firm, user=user, defaults={"role": "analyst"})
    return token_create(membership=membership, name="bench bars_read", scopes=["read"], expires_days=1,
                        actor=Actor.system("bench bars_read")).secret


def _fetch_all(port: int, path: str, token: str, *, parse: bool, follow: bool = True) -> tuple[int, int, int]:
    """Every page of ``path`` (only the first unless ``follow``) on one keep-alive connection: (bars, bytes, pages)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Host": "127.0.0.1"}
    bars = size = pages = 0
    try:
        while path:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status} {body[:300]!r}")
            pages += 1
            size += len(body)
            nxt = None
            if resp.getheader("Content-Type", "").startswith("text/csv"):
                bars += body.count(b"\n") - 1
                link = resp.getheader("Link")
                nxt = link[1:link.index(">")] if link else None
            elif parse:
                page = json.loads(body)
                bars += page["count"]
                nxt = page["next"]
            else:
                # count and next come before the bars: read them without parsing the whole body
                header = json.loads(body[:body.index(b'"bars"')].rstrip(b", ") + b"}")
                bars += header["count"]
                nxt = header["next"]
            path = None if nxt is None or not follow else _path(nxt)
    finally:
        conn.close()
    return bars, size, pages


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _http(instrument, expected_rows: int) -> dict:
    env = serving._prepare()
    env["DJANGO_SETTINGS_MODULE"] = "octopus.settings"  # the real URLs
    env["API_RATE"] = "100000/min"
    token = _token()
    port = serving._free_port()
    cmd = serving._servers(port)["gunicorn"]
    proc = subprocess.Popen(cmd, cwd=serving.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    query = {"symbol": instrument.symbol, "timeframe": "1m", "start": START.isoformat().replace("+00:00", "Z"),
             "end": END.isoformat().replace("+00:00", "Z")}
    paths = {"json": f"/api/v1/bars/?{urlencode(query)}", "csv": f"/api/v1/bars/?{urlencode(query | {'format': 'csv'})}"}
    out = {}
    try:
        _wait(port, paths["json"] + "&limit=1", token, proc)
        for _ in range(4):  # both workers warm
            _fetch_all(port, paths["csv"], token, parse=False)
        for name, parse in (("json", False), ("json_parsed", True), ("csv", False)):
            path = paths["csv" if name == "csv" else "json"]

            def get(path=path, parse=parse):
                return _fetch_all(port, path, token, parse=parse)

            stats, (bars, size, pages) = _timed(get, HTTP_RUNS)
            assert bars == expected_rows, (name, bars, expected_rows)
            out[name] = stats | {"bars": bars, "bytes": size, "pages": pages}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    out["command"] = " ".join(cmd[2:])
    return out


def _wait(port: int, path: str, token: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}: {proc.stderr.read()[-2000:]!r}")
        try:
            _fetch_all(port, path, token, parse=True, follow=False)
            return
        except (OSError, http.client.HTTPException):
            time.sleep(0.3)
    raise RuntimeError("server not ready")


def main() -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "octopus.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    results: dict[str, dict] = {}
    try:
        loaded = _load()
        for kind, series in loaded["series"].items():
            results[kind] = {"rows": series["rows"], "database": _database(series["instrument"])}
        equity = loaded["series"]["equity"]
        results["equity"]["rest"] = _http(equity["instrument"], equity["rows"])
    finally:
        _cleanup()

    eq = results["equity"]
    db_ms = eq["database"]["selector"]["p50_ms"]
    rest = eq["rest"]
    ratios = {name: round(rest[name]["p50_ms"] / db_ms, 1) for name in ("json", "json_parsed", "csv")}
    load = os.getloadavg()
    crypto = results["crypto"]["database"]
    summary = (
        f"bars_read (one year of 1m bars, {eq['rows']:,} equity rows): selector -> DataFrame p50 {db_ms} ms "
        f"p95 {eq['database']['selector']['p95_ms']} ms (aim < 50); raw psycopg fetchall p50 "
        f"{eq['database']['raw_fetchall']['p50_ms']} ms; the selector's query alone p50 "
        f"{eq['database']['raw_packed_query']['p50_ms']} ms; one day raw p50 {eq['database']['raw_one_day']['p50_ms']} ms. "
        f"REST via gunicorn, whole year: JSON {rest['json']['p50_ms']} ms ({rest['json']['pages']} pages, "
        f"{ratios['json']}x the selector), JSON parsed by the client {rest['json_parsed']['p50_ms']} ms "
        f"({ratios['json_parsed']}x), CSV {rest['csv']['p50_ms']} ms ({ratios['csv']}x) (aim within 5x). "
        f"Crypto year ({results['crypto']['rows']:,} rows): selector p50 {crypto['selector']['p50_ms']} ms. "
        f"Load average {load[0]:.2f} on {len(os.sched_getaffinity(0))} CPUs"
    )
    return {"summary": summary, "range": [START.isoformat(), END.isoformat()], "load_seconds": loaded["load_seconds"],
            "table_rows": loaded["table_rows"],
            "results": results, "rest_over_selector_p50": ratios, "loadavg_1_5_15_at_end": [round(x, 2) for x in load],
            "aims": {"selector_ms": "< 50", "rest_over_database": "<= 5x"}}


if __name__ == "__main__":
    print(json.dumps(main(), indent=2, default=str))
