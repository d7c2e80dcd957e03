"""The paper matching engine: order-bar evaluations per second in bar mode (aim >= 100,000/s).

10,000 working GTC orders (buy/sell limits and stops, 100 per symbol over 100 symbols, their prices
1 % to 10 % away from the start) are submitted first (timed separately), then 100 one-minute bars per
symbol (a seeded random walk of about 0.1 % a bar) go through ``PaperEngine.on_bar``. An evaluation is one
open order looked at for one bar; most do not trigger, so they cost the hot path's one comparison.
Reports evaluations per second, the fills and events produced, and the same run in quote mode
(one quote per bar: bid, ask and last around the bar's close), and a worst case: 10,000 trailing stops, which
skip the fast path (their water marks move every bar). ``BENCH_ORDERS``, ``BENCH_SYMBOLS`` and
``BENCH_BARS`` override the sizes.

Run: ``python -m bench matching`` (writes bench/results/matching.json).
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from apps.orders.core import Bar, OrderSpec, OrderType, Quote, Side, TimeInForce
from apps.orders.matching import PaperConfig, PaperEngine, SessionInfo, WorkingOrder

SEED = 20240304
AIM_PER_SECOND = 100_000
OPEN_AT = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
SESSION = SessionInfo(is_open=True, open_at=OPEN_AT, close_at=OPEN_AT + timedelta(hours=6, minutes=30))
CENT = Decimal("0.01")


def make_orders(n: int, symbols: list[str], seed: int = SEED, trailing: bool = False) -> list[WorkingOrder]:
    rng = random.Random(seed)
    orders = []
    for i in range(n):
        symbol = symbols[i % len(symbols)]
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        if trailing:  # every bar goes through the full evaluation (the water mark moves)
            spec = OrderSpec(symbol=symbol, side=side, type=OrderType.TRAILING_STOP, time_in_force=TimeInForce.GTC,
                             qty=Decimal(100), trail_percent=Decimal(rng.randint(20, 100)) / 10)
            orders.append(WorkingOrder(order_id=f"O{i}", spec=spec, submitted_at=OPEN_AT))
            continue
        kind = OrderType.LIMIT if rng.random() < 0.5 else OrderType.STOP
        away = Decimal(rng.randint(100, 1000)) / 10_000  # 1 % .. 10 %
        below = (side == Side.BUY) == (kind == OrderType.LIMIT)  # buy limits and sell stops sit below
        price = (Decimal(100) * (1 - away if below else 1 + away)).quantize(CENT)
        spec = OrderSpec(symbol=symbol, side=side, type=kind, time_in_force=TimeInForce.GTC,
                         qty=Decimal(rng.randint(1, 10) * 10),
                         limit_price=price if kind == OrderType.LIMIT else None,
                         stop_price=price if kind == OrderType.STOP else None)
        orders.append(WorkingOrder(order_id=f"O{i}", spec=spec, submitted_at=OPEN_AT))
    return orders


def make_bars(symbols: list[str], bars: int, seed: int = SEED) -> list[tuple[str, Bar]]:
    rng = random.Random(seed + 1)
    out = []
    last = dict.fromkeys(symbols, 10_000)  # cents
    for minute in range(bars):
        at = OPEN_AT + timedelta(minutes=minute)
        for symbol in symbols:
            open_ = last[symbol]
            close = max(100, open_ + rng.randint(-10, 10))
            high = max(open_, close) + rng.randint(0, 5)
            low = min(open_, close) - rng.randint(0, 5)
            last[symbol] = close
            out.append((symbol, Bar(at=at, open=Decimal(open_).scaleb(-2), high=Decimal(high).scaleb(-2),
                                    low=Decimal(low).scaleb(-2), close=Decimal(close).scaleb(-2),
                                    volume=Decimal(rng.randint(10_000, 100_000)))))
    return out


def run(mode: str, n: int, symbols: list[str], bars: list[tuple[str, Bar]], trailing: bool = False) -> dict:
    engine = PaperEngine(PaperConfig(fill_on=mode))
    orders = make_orders(n, symbols, trailing=trailing)
    t0 = time.perf_counter()
    for o in orders:
        engine.submit(o, now=OPEN_AT)
    submit_seconds = time.perf_counter() - t0
    quotes = [(symbol, Quote(bid=b.close - CENT, ask=b.close + CENT, last=b.close, at=b.at)) for symbol, b in bars]
    evaluations = events = fills = 0
    t0 = time.perf_counter()
    if mode == "bar":
        for symbol, b in bars:
            evaluations += len(engine._open.get(symbol, ()))
            out = engine.on_bar(symbol, b, session=SESSION)
            events += len(out)
            fills += sum(1 for e in out if e.execution)
    else:
        for symbol, q in quotes:
            evaluations += len(engine._open.get(symbol, ()))
            out = engine.on_quote(symbol, q, now=q.at, session=SESSION)
            events += len(out)
            fills += sum(1 for e in out if e.execution)
    seconds = time.perf_counter() - t0
    return {
        "mode": mode,
        "submit_seconds": round(submit_seconds, 3),
        "evaluations": evaluations,
        "seconds": round(seconds, 3),
        "evaluations_per_second": round(evaluations / seconds),
        "events": events,
        "fills": fills,
        "open_orders_left": len(engine.open_orders()),
    }


def main() -> dict:
    n = int(os.environ.get("BENCH_ORDERS", "10000"))
    n_symbols = int(os.environ.get("BENCH_SYMBOLS", "100"))
    n_bars = int(os.environ.get("BENCH_BARS", "100"))
    symbols = [f"SYM{i:03d}" for i in range(n_symbols)]
    bars = make_bars(symbols, n_bars)
    bar_mode = run("bar", n, symbols, bars)
    quote_mode = run("quote", n, symbols, bars)
    slow_path = run("bar", n, symbols, bars, trailing=True)
    rate = bar_mode["evaluations_per_second"]
    return {
        "orders": n,
        "symbols": n_symbols,
        "bars_per_symbol": n_bars,
        "aim_evaluations_per_second": AIM_PER_SECOND,
        "bar_mode": bar_mode,
        "quote_mode": quote_mode,
        "bar_mode_all_trailing_stops": slow_path,
        "summary": (f"matching: {bar_mode['evaluations']:,} order-bar evaluations in {bar_mode['seconds']} s = "
                    f"{rate:,}/s (aim {AIM_PER_SECOND:,}/s: {'met' if rate >= AIM_PER_SECOND else 'MISSED'}); "
                    f"{bar_mode['fills']:,} fills; quote mode {quote_mode['evaluations_per_second']:,}/s; "
                    f"all trailing stops (no fast path) {slow_path['evaluations_per_second']:,}/s"),
    }
