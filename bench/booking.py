"""Booking fills through ``apps.portfolios.booking.book_fill`` into PostgreSQL (journal, lots, gains,
position, audit, after-commit event): the second figure of issue #4 (aim: at least 1,000 fills/s
with one writer).

- single: one writer, a realistic mix — buys and sells over 50 instruments of one portfolio, FIFO,
  round lots, a seeded random walk in cents, one fill every few minutes (losses rebought within 30
  days become wash sales); fills/s and p50/p99 latency of one ``book_fill`` call (its commit included).
- parallel_instruments: 4 writers (separate processes, each its own connection) on disjoint
  instruments of one portfolio; total fills/s and the scaling ratio against ``single``.
- same_instrument: 4 writers on one instrument of one portfolio at once (all fills share one
  timestamp, so the order the advisory lock grants them in never makes one "out of order"); fills/s
  and the no-lost-update check: final position = opening + sum of the signed quantities booked,
  open lots sum to the position, one fill row per successful call, journal cash = deposit + the
  fills' cash (principal - fees).
- peer: a bare single-row INSERT through the ORM in its own transaction (``TaxEntity.objects.create``
  in ``transaction.atomic()``), per second, on the same machine and database — the ratio
  single/peer says how lean the service is against the cheapest write Django can do.

Every run books into a fresh firm (ledger rows are append-only, so nothing is deleted; the firm's
slug carries the run's timestamp). Sizes: ``BENCH_BOOKING_FILLS`` (single, default 5000, at most
``BENCH_BOOKING_SINGLE_SECONDS``, default 25), ``BENCH_BOOKING_PARALLEL_FILLS`` (per writer, default
1500, at most ``BENCH_BOOKING_PARALLEL_SECONDS``, default 15), ``BENCH_BOOKING_WRITERS`` (default 4),
``BENCH_BOOKING_PEER`` (default 1000),
``BENCH_BOOKING_BREAKDOWN`` (default 100).

Where the time goes (``breakdown``): the same kind of fills again, in a fresh portfolio, with every
SQL statement captured (statements per fill, time waiting on PostgreSQL per fill) and the
after-commit event delivery (Redis) timed; the rest is Python in the service and the engine.

Run: ``python -m bench booking`` (writes bench/results/booking.json).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

SEED = 20261122
AIM_FILLS_PER_SECOND = 1000
INSTRUMENTS = 50
SYMBOL_PREFIX = "BKB"  # bench-only instruments BKB000..BKB049 (equities, NASDAQ), reused across runs
START = datetime(2025, 1, 2, 14, 30, tzinfo=UTC)
DEPOSIT = Decimal("100000000")
SAME_OPENING = Decimal(100000)

SINGLE = int(os.environ.get("BENCH_BOOKING_FILLS", "5000"))
PARALLEL = int(os.environ.get("BENCH_BOOKING_PARALLEL_FILLS", "1500"))
# each phase also stops at a time budget, so the whole bench stays under ~2 minutes however slow
SINGLE_SECONDS = float(os.environ.get("BENCH_BOOKING_SINGLE_SECONDS", "25"))
PARALLEL_SECONDS = float(os.environ.get("BENCH_BOOKING_PARALLEL_SECONDS", "15"))
BREAKDOWN = int(os.environ.get("BENCH_BOOKING_BREAKDOWN", "100"))
WRITERS = int(os.environ.get("BENCH_BOOKING_WRITERS", "4"))
PEER = int(os.environ.get("BENCH_BOOKING_PEER", "1000"))


def _setup(migrate: bool = False) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "octopus.settings")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)


# -- the fills ---------------------------------------------------------------------------------


def generate(n: int, symbols: list[str], *, seed: int, spacing_minutes: int = 7,
             start: datetime = START) -> list[tuple]:
    """(symbol, side, quantity, price, executed_at, fill_id suffix) tuples: a random walk in cents per
    symbol, round lots of 10 to 100, sells never beyond the position (the portfolio is long only)."""
    rng = random.Random(seed)
    price = dict.fromkeys(symbols, 10_000)
    held = dict.fromkeys(symbols, 0)
    step = timedelta(minutes=spacing_minutes)
    out = []
    for i in range(n):
        symbol = symbols[rng.randrange(len(symbols))]
        price[symbol] = max(100, price[symbol] + rng.randint(-150, 150))
        position = held[symbol]
        if position and rng.random() < (0.45 if position <= 300 else 0.7):
            side, qty = "sell", min(position, 10 * rng.randint(1, 10))
            held[symbol] -= qty
        else:
            side, qty = "buy", 10 * rng.randint(1, 10)
            held[symbol] += qty
        out.append((symbol, side, Decimal(qty), Decimal(price[symbol]).scaleb(-2), start + i * step, i))
    return out


def _fill_cash(side: str, qty: Decimal, price: Decimal, fees: Decimal) -> Decimal:
    gross = qty * price
    return (gross if side == "sell" else -gross) - fees


# -- setup in the parent -----------------------------------------------------------------------


def _instruments() -> dict:
    from apps.marketdata.models import Instrument

    made = {}
    for i in range(INSTRUMENTS):
        symbol = f"{SYMBOL_PREFIX}{i:03d}"
        made[symbol], _ = Instrument.objects.get_or_create(
            symbol=symbol, asset_class="equity",
            defaults={"exchange": "NASDAQ", "name": f"booking bench {i}", "shortable": True})
    return made


def _firm(run: str):
    from apps.accounts.models import Firm

    return Firm.objects.create(name=f"Booking bench {run}", slug=f"bench-booking-{run}")


def _portfolio(firm, name: str, **options):
    from apps.audit.services import Actor
    from apps.portfolios import services

    actor = Actor.system("bench booking")
    # its own tax entity: wash sales and the fill order are per (tax entity, instrument), so the
    # phases do not see each other's fills
    entity = services.tax_entity_create(firm_id=firm.pk, name=name, actor=actor)
    portfolio = services.portfolio_create(firm_id=firm.pk, name=name, actor=actor, tax_entity=entity, **options)
    services.cash_post(portfolio=portfolio, kind="deposit", amount=DEPOSIT, actor=actor, on=START.date())
    return portfolio


# -- one writer (in the parent, or in a child process) -----------------------------------------


def _book_all(portfolio, instruments: dict, fills: list[tuple], tag: str, *, fees: Decimal,
              seconds: float | None = None) -> dict:
    from apps.audit.services import Actor
    from apps.core.errors import DomainError
    from apps.portfolios.booking import book_fill

    actor = Actor.system("bench booking")
    latencies, errors = [], {}
    signed = Decimal(0)
    cash = Decimal(0)
    booked = 0
    started = time.monotonic()
    deadline = started + seconds if seconds else None
    for symbol, side, qty, price, when, i in fills:
        if deadline is not None and time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        try:
            book_fill(portfolio=portfolio, instrument=instruments[symbol], side=side, quantity=qty, price=price,
                      executed_at=when, fill_id=f"{tag}-{i}", fees=fees, source="import", actor=actor)
        except DomainError as exc:
            errors[exc.code] = errors.get(exc.code, 0) + 1
            continue
        latencies.append(time.perf_counter() - t0)
        booked += 1
        signed += qty if side == "buy" else -qty
        cash += _fill_cash(side, qty, price, fees)
    return {"booked": booked, "errors": errors, "started": started, "ended": time.monotonic(),
            "latencies": latencies, "signed": str(signed), "cash": str(cash)}


def _writer(firm_id: int, portfolio_id: int, symbols: list[str], n: int, seed: int, tag: str, same_ts: bool,
            barrier, queue):
    """A child process: its own Django and connection; books after every writer is ready."""
    _setup()
    from django.db import connection

    from apps.core.tenancy import firm_scope
    from apps.marketdata.models import Instrument
    from apps.portfolios.models import Portfolio

    try:
        with firm_scope(firm_id):
            portfolio = Portfolio.objects.get(pk=portfolio_id)
        instruments = {i.symbol: i for i in Instrument.objects.filter(symbol__in=symbols, asset_class="equity")}
        fills = generate(n, symbols, seed=seed)
        if same_ts:
            # one instrument, four writers: alternate buys and sells from a large opening position,
            # all at one timestamp (the lock decides the order; equal timestamps are never out of order)
            rng = random.Random(seed)
            when = START + timedelta(days=200)
            fills = [(symbols[0], "buy" if k % 2 == 0 else "sell", Decimal(10 * rng.randint(1, 10)),
                      Decimal(rng.randint(9000, 11000)).scaleb(-2), when, k) for k in range(n)]
        connection.ensure_connection()
        barrier.wait()
        queue.put(_book_all(portfolio, instruments, fills, tag, fees=Decimal("1.00"), seconds=PARALLEL_SECONDS))
    except Exception as exc:  # noqa: BLE001 - the parent reports it
        queue.put({"error": repr(exc)})
        barrier.abort()
    finally:
        connection.close()


def _parallel(portfolio, symbol_sets: list[list[str]], n: int, tag: str, same_ts: bool) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(symbol_sets) + 1)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(portfolio.firm_id, portfolio.pk, symbols, n, SEED + 100 + w,
                                               f"{tag}{w}", same_ts, barrier, queue))
             for w, symbols in enumerate(symbol_sets)]
    for p in procs:
        p.start()
    barrier.wait(timeout=120)
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    failed = [r["error"] for r in results if "error" in r]
    if failed:
        raise RuntimeError(f"writer failed: {failed[0]}")
    wall = max(r["ended"] for r in results) - min(r["started"] for r in results)
    booked = sum(r["booked"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    errors: dict[str, int] = {}
    for r in results:
        for code, count in r["errors"].items():
            errors[code] = errors.get(code, 0) + count
    return {"writers": len(symbol_sets), "fills_planned_per_writer": n, "booked": booked, "refused": errors,
            "seconds": round(wall, 2), "fills_per_second": round(booked / wall), **_percentiles(latencies),
            "signed": sum((Decimal(r["signed"]) for r in results), Decimal(0)),
            "cash": sum((Decimal(r["cash"]) for r in results), Decimal(0))}


def _percentiles(latencies: list[float]) -> dict:
    if not latencies:
        return {}
    ordered = sorted(latencies)
    return {"latency_ms_p50": round(statistics.median(ordered) * 1000, 2),
            "latency_ms_p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
            "latency_ms_max": round(ordered[-1] * 1000, 2)}


# -- the checks --------------------------------------------------------------------------------


def _books(portfolio, instrument=None) -> dict:
    from django.db.models import Sum

    from apps.core.tenancy import firm_scope
    from apps.portfolios.models import Account, Fill, JournalLine, Lot, Position, RealizedGain

    with firm_scope(portfolio.firm_id):
        fills = Fill.objects.filter(portfolio=portfolio)
        lots = Lot.objects.filter(portfolio=portfolio)
        positions = Position.objects.filter(portfolio=portfolio)
        if instrument is not None:
            fills, lots, positions = (qs.filter(instrument=instrument) for qs in (fills, lots, positions))
        lines = JournalLine.objects.filter(portfolio=portfolio)
        unbalanced = (lines.values("entry_id").annotate(total=Sum("amount")).exclude(total=0).count())
        gains = RealizedGain.objects.filter(portfolio=portfolio)
        return {
            "fills": fills.count(),
            "position": positions.aggregate(q=Sum("quantity"))["q"] or Decimal(0),
            "open_lots": lots.exclude(quantity=0).aggregate(q=Sum("quantity"))["q"] or Decimal(0),
            "open_lot_rows": lots.exclude(quantity=0).count(),
            "cash": lines.filter(account=Account.CASH).aggregate(s=Sum("amount"))["s"] or Decimal(0),
            "unbalanced_entries": unbalanced,
            "realized_records": gains.count(),
            "wash_sale_records": gains.exclude(wash_code="").count(),
        }


# -- where the time goes ------------------------------------------------------------------------


def _breakdown(firm, instruments: dict, n: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.core import events
    from apps.core.tenancy import firm_scope

    portfolio = _portfolio(firm, "breakdown")
    fills = generate(n, sorted(instruments), seed=SEED + 7)
    delivered = [0.0, 0]
    original = events._deliver

    def timed_deliver(**event):
        t0 = time.perf_counter()
        try:
            original(**event)
        finally:
            delivered[0] += time.perf_counter() - t0
            delivered[1] += 1

    events._deliver = timed_deliver
    # the log is a deque of at most 9,000 queries, and CaptureQueriesContext slices it by length: once
    # earlier phases (DEBUG) filled it, a capture would come back empty
    connection.queries_log.clear()
    try:
        with firm_scope(firm.pk), CaptureQueriesContext(connection) as captured:
            result = _book_all(portfolio, instruments, fills, "B", fees=Decimal("1.00"))
    finally:
        events._deliver = original
    booked = result["booked"] or 1
    wall = result["ended"] - result["started"]
    sql = sum(float(q["time"]) for q in captured.captured_queries)
    kinds: dict[str, list] = {}
    for q in captured.captured_queries:
        key = _statement_kind(q["sql"])
        count_ms = kinds.setdefault(key, [0, 0.0])
        count_ms[0] += 1
        count_ms[1] += float(q["time"]) * 1000
    return {
        "fills": booked,
        "ms_per_fill": round(wall / booked * 1000, 2),
        "statements_per_fill": round(len(captured.captured_queries) / booked, 1),
        "sql_ms_per_fill": round(sql / booked * 1000, 2),
        "event_delivery_ms_per_fill": round(delivered[0] / booked * 1000, 2),
        "events_per_fill": round(delivered[1] / booked, 2),
        "python_and_other_ms_per_fill": round((wall - sql - delivered[0]) / booked * 1000, 2),
        "per_fill_by_statement": {k: {"count": round(c / booked, 2), "ms": round(ms / booked, 2)}
                                  for k, (c, ms) in sorted(kinds.items(), key=lambda kv: -kv[1][1])},
        "note": "captured with DEBUG cursors: adds a little to every statement",
    }


def _statement_kind(sql: str) -> str:
    import re

    words = sql.lstrip("( ").split()
    if not words:
        return "?"
    if words[0] in ("INSERT", "UPDATE", "DELETE"):
        return " ".join(words[:3]).replace('"', "")
    if words[0] == "WITH":
        return "WITH ... " + (re.search(r"INSERT INTO (\w+)", sql) or re.search(r"FROM (\w+)", sql) or [""])[0]
    if words[0] == "SELECT":
        found = re.search(r"(pg_advisory_xact_lock)|FROM \"?(\w+)", sql)
        return "SELECT " + (next(g for g in found.groups() if g) if found else "")
    return words[0]


# -- the peer ----------------------------------------------------------------------------------


def _peer(firm, n: int) -> dict:
    from django.db import transaction

    from apps.core.tenancy import firm_scope
    from apps.portfolios.models import TaxEntity

    with firm_scope(firm.pk):
        started = time.perf_counter()
        for i in range(n):
            with transaction.atomic():
                TaxEntity.objects.create(firm_id=firm.pk, name=f"peer-{i}")
        seconds = time.perf_counter() - started
        TaxEntity.objects.filter(firm_id=firm.pk, name__startswith="peer-").delete()
    return {"inserts": n, "seconds": round(seconds, 2), "per_second": round(n / seconds)}


# -- main --------------------------------------------------------------------------------------


def main() -> dict:
    _setup(migrate=True)
    from apps.core.tenancy import firm_scope

    run = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    instruments = _instruments()
    symbols = sorted(instruments)
    firm = _firm(run)

    # (a) one writer
    single_p = _portfolio(firm, "single")
    fills = generate(SINGLE, symbols, seed=SEED)
    with firm_scope(firm.pk):
        single = _book_all(single_p, instruments, fills, "S", fees=Decimal("1.00"), seconds=SINGLE_SECONDS)
    seconds = single["ended"] - single["started"]
    single_books = _books(single_p)
    single_out = {
        "fills_planned": SINGLE, "booked": single["booked"], "refused": single["errors"], "seconds": round(seconds, 2),
        "fills_per_second": round(single["booked"] / seconds), **_percentiles(single["latencies"]),
        "sells": sum(1 for f in fills[:single["booked"]] if f[1] == "sell"),
        "realized_records": single_books["realized_records"], "wash_sale_records": single_books["wash_sale_records"],
        "open_lots": single_books["open_lot_rows"],
        "consistent": (single_books["position"] == single_books["open_lots"] == Decimal(single["signed"])
                       and single_books["cash"] == DEPOSIT + Decimal(single["cash"])
                       and single_books["unbalanced_entries"] == 0 and single_books["fills"] == single["booked"]),
    }

    # (b) 4 writers, disjoint instruments of one portfolio
    par_p = _portfolio(firm, "parallel")
    sets = [symbols[w::WRITERS] for w in range(WRITERS)]
    par = _parallel(par_p, sets, PARALLEL, "P", same_ts=False)
    par_books = _books(par_p)
    par["consistent"] = (par_books["position"] == par_books["open_lots"] == par["signed"]
                         and par_books["cash"] == DEPOSIT + par["cash"] and par_books["fills"] == par["booked"]
                         and par_books["unbalanced_entries"] == 0)
    par["scaling_vs_single"] = round(par["fills_per_second"] / single_out["fills_per_second"], 2)

    # (c) 4 writers, one instrument
    same_p = _portfolio(firm, "same")
    target = instruments[symbols[0]]
    with firm_scope(firm.pk):
        opening = _book_all(same_p, instruments, [(symbols[0], "buy", SAME_OPENING, Decimal("100.00"),
                                                   START + timedelta(days=199), 0)], "OPEN", fees=Decimal(0))
    same = _parallel(same_p, [[symbols[0]]] * WRITERS, PARALLEL, "X", same_ts=True)
    same_books = _books(same_p, target)
    expected_position = SAME_OPENING + same["signed"]
    same["checks"] = {
        "position": str(same_books["position"]), "expected_position": str(expected_position),
        "open_lots_sum": str(same_books["open_lots"]),
        "fill_rows": same_books["fills"], "expected_fill_rows": same["booked"] + opening["booked"],
        "journal_cash": str(same_books["cash"]),
        "expected_cash": str(DEPOSIT + Decimal(opening["cash"]) + same["cash"]),
        "unbalanced_entries": same_books["unbalanced_entries"],
    }
    same["no_lost_update"] = (same_books["position"] == expected_position == same_books["open_lots"]
                              and same_books["fills"] == same["booked"] + opening["booked"]
                              and same_books["cash"] == DEPOSIT + Decimal(opening["cash"]) + same["cash"]
                              and same_books["unbalanced_entries"] == 0)
    for block in (par, same):
        block["signed"], block["cash"] = str(block["signed"]), str(block["cash"])

    breakdown = _breakdown(firm, instruments, BREAKDOWN) if BREAKDOWN else {}
    peer = _peer(firm, PEER)
    ratio = round(single_out["fills_per_second"] / peer["per_second"], 2)
    summary = (
        f"booking: one writer {single_out['fills_per_second']:,} fills/s (p50 {single_out.get('latency_ms_p50')} ms, "
        f"p99 {single_out.get('latency_ms_p99')} ms; aim >= {AIM_FILLS_PER_SECOND:,}); "
        f"{WRITERS} writers on different instruments {par['fills_per_second']:,} fills/s "
        f"(x{par['scaling_vs_single']}); on the same instrument {same['fills_per_second']:,} fills/s, "
        f"no lost update: {same['no_lost_update']}; bare ORM insert {peer['per_second']:,}/s "
        f"(booking = {ratio} x insert)"
    )
    return {
        "aim_fills_per_second": AIM_FILLS_PER_SECOND,
        "meets_aim": single_out["fills_per_second"] >= AIM_FILLS_PER_SECOND,
        "firm": firm.slug,
        "single": single_out,
        "parallel_instruments": par,
        "same_instrument": same,
        "breakdown": breakdown,
        "peer_orm_insert": peer,
        "single_vs_peer": ratio,
        "summary": summary,
    }
