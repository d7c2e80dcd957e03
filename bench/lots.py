"""The pure tax-lot engine: 1,000,000 fills over 500 instruments, FIFO with wash-sale detection.

Fills are generated first (seeded: a random walk in cents per instrument, one fill a minute across
two portfolios of one tax entity, round lots of 10 to 100 shares, cent fees, sells never beyond the
position) and not timed; then ``TaxLotEngine.apply`` books them all. Reports the booking seconds
(the figure of issue #4, aim under 10 s), fills per second and what came out (records, wash
sales, open lots); then, to show where the time goes, the same fills through bare ``LotBook``s
(lot matching only: no wash sales, checks or snapshots). ``BENCH_FILLS`` and ``BENCH_INSTRUMENTS`` override the sizes,
``BENCH_SPACING_MINUTES`` the time between fills (default 1: every instrument trades every ~8
hours, so nearly every loss is washed — the stress case).

Then a sparser scenario, to show what the stress case costs: the same sizes with
``BENCH_SPARSE_SPACING_MINUTES`` (default 60: each instrument trades every ~3 weeks, so fewer losses
find replacement shares and fewer lots are split); ``BENCH_SPARSE=0`` skips it. For each run the
figures include the seconds spent in Python's cyclic garbage collector (the engine keeps every
record, so full collections grow with the run) and how many lot snapshots the results carried.

Run: ``python -m bench lots`` (writes bench/results/lots.json).
"""

from __future__ import annotations

import gc
import os
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from apps.portfolios.lots import Fill, LotBook, Side
from apps.portfolios.wash import TaxLotEngine

SEED = 20261122
AIM_SECONDS = 10.0


def generate(n: int, instruments: int, spacing_minutes: int = 1, seed: int = SEED) -> list[Fill]:
    rng = random.Random(seed)
    symbols = [f"SYM{i:03d}" for i in range(instruments)]
    price = dict.fromkeys(symbols, 10_000)  # cents
    held: dict[tuple[int, str], int] = {}
    start = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    minute = timedelta(minutes=spacing_minutes)
    fee = Decimal("1.00")
    fills = []
    for i in range(n):
        symbol = symbols[rng.randrange(instruments)]
        portfolio = rng.randrange(2)
        step = rng.randint(-150, 150)
        price[symbol] = max(100, price[symbol] + step)
        key = (portfolio, symbol)
        position = held.get(key, 0)
        # sell more often when holding more, so positions (and open lots) stay bounded
        if position and rng.random() < (0.5 if position <= 300 else 0.7):
            side, qty = Side.SELL, min(position, 10 * rng.randint(1, 10))
            held[key] = position - qty
        else:
            side, qty = Side.BUY, 10 * rng.randint(1, 10)
            held[key] = position + qty
        fills.append(Fill(f"F{i}", portfolio, symbol, side, Decimal(qty), Decimal(price[symbol]).scaleb(-2),
                          start + i * minute, fee))
    return fills


class GcTimer:
    """Seconds spent in cyclic garbage collection while active (``gc.callbacks``)."""

    def __init__(self):
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1

    def __enter__(self):
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self)


def book_all(fills: list[Fill]) -> dict:
    """Book the fills through one ``TaxLotEngine``; the timed part of the benchmark."""
    engine = TaxLotEngine()
    apply = engine.apply
    updated = snapshots = 0
    with GcTimer() as collector:
        t0 = time.perf_counter()
        for fill in fills:
            result = apply(fill)
            updated += len(result.updated_gains)
            snapshots += len(result.lots)
        seconds = time.perf_counter() - t0
    gains = list(engine.gains.values())
    losses = sum(1 for gain in gains if gain.gain < 0 and gain.direction == "long")
    washed = sum(1 for gain in gains if gain.wash_code)
    return {
        "apply_seconds": round(seconds, 2),
        "fills_per_second": round(len(fills) / seconds),
        "gc_seconds": round(collector.seconds, 2),
        "gc_collections": collector.collections,
        "realized_records": len(gains),
        "loss_records": losses,
        "wash_sale_records": washed,
        "records_washed_by_a_later_buy": updated,
        "lot_snapshots_returned": snapshots,
        "split_lots_open": sum(1 for book in engine.books.values() for lot in book.lots if "." in lot.lot_id),
        "open_lots": sum(len(book.lots) for book in engine.books.values()),
    }


def main() -> dict:
    n = int(os.environ.get("BENCH_FILLS", "1000000"))
    instruments = int(os.environ.get("BENCH_INSTRUMENTS", "500"))
    spacing = int(os.environ.get("BENCH_SPACING_MINUTES", "1"))
    t0 = time.perf_counter()
    fills = generate(n, instruments, spacing)
    generate_seconds = time.perf_counter() - t0

    booked = book_all(fills)
    seconds = booked["apply_seconds"]

    # where the time goes: the same fills through bare LotBooks (matching and records, no wash sales,
    # no duplicate/order checks, no lot snapshots)
    books: dict[tuple[int, str], LotBook] = {}
    t0 = time.perf_counter()
    bare_records = 0
    for fill in fills:
        key = (fill.portfolio_id, fill.instrument)
        book = books.get(key)
        if book is None:
            book = books[key] = LotBook(*key)
        bare_records += len(book.apply(fill).gains)
    matching_seconds = time.perf_counter() - t0

    sparse = None
    if os.environ.get("BENCH_SPARSE", "1") != "0":
        sparse_spacing = int(os.environ.get("BENCH_SPARSE_SPACING_MINUTES", "60"))
        sparse_fills = generate(n, instruments, sparse_spacing)
        del fills
        sparse = {"minutes_between_fills": sparse_spacing, "days_covered": round(n * sparse_spacing / 1440),
                  **book_all(sparse_fills)}
        del sparse_fills

    return {
        "fills": n,
        "instruments": instruments,
        "method": "fifo",
        "minutes_between_fills": spacing,
        "days_covered": round(n * spacing / 1440),
        "generate_seconds": round(generate_seconds, 2),
        **booked,
        "aim_seconds": AIM_SECONDS,
        "meets_aim": seconds < AIM_SECONDS,
        "matching_only_seconds": round(matching_seconds, 2),
        "matching_only_records": bare_records,
        "sparse": sparse,
        "summary": f"lots: {n:,} fills over {instruments} instruments (FIFO + wash sales) in {seconds:.2f} s "
                   f"({n / seconds:,.0f} fills/s; aim < {AIM_SECONDS:.0f} s {'met' if seconds < AIM_SECONDS else 'NOT met'}); "
                   f"{booked['realized_records']:,} records, {booked['wash_sale_records']:,} washed, "
                   f"GC {booked['gc_seconds']:.1f} s; matching only {matching_seconds:.2f} s"
                   + (f"; sparse ({sparse['minutes_between_fills']} min apart): {sparse['apply_seconds']:.2f} s, "
                      f"{sparse['wash_sale_records']:,} of {sparse['loss_records']:,} losses washed" if sparse else ""),
    }
