"""All indicators and candlestick patterns on 1,000,000 synthetic 1-minute bars.

Every indicator in ``apps.marketdata.indicators.INDICATORS`` runs once with its default parameters
through ``compute`` (VWAP with a session key resetting every 390 bars, one US equity session), then
every pattern in ``apps.marketdata.patterns.PATTERNS``. Reports the total and per-item seconds
(wall clock, single process). ``BENCH_BARS`` overrides the bar count.

Run: ``python -m bench indicators`` (writes bench/results/indicators.json).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pandas as pd

from apps.marketdata.indicators import INDICATORS, compute
from apps.marketdata.patterns import PATTERNS, detect

SEED = 20261122
SESSION_BARS = 390


def synthetic_bars(n: int, seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * (1 + rng.normal(0, 0.0002, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.0004, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.0004, n)))
    volume = rng.integers(100, 50_000, n).astype(np.float64)
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume})


def main() -> dict:
    n = int(os.environ.get("BENCH_BARS", "1000000"))
    frame = synthetic_bars(n)
    session = np.arange(n) // SESSION_BARS
    per_indicator: dict[str, float] = {}
    per_pattern: dict[str, float] = {}
    started = time.perf_counter()
    for name in INDICATORS:
        t0 = time.perf_counter()
        out = compute(name, frame, session=session) if name == "VWAP" else compute(name, frame)
        per_indicator[name] = round(time.perf_counter() - t0, 4)
        for values in out.values():
            assert len(values) == n and np.isfinite(values[-1]) or name == "ICHIMOKU", name
    indicators_seconds = time.perf_counter() - started
    t_patterns = time.perf_counter()
    hits = {}
    for name in PATTERNS:
        t0 = time.perf_counter()
        out = detect(name, frame)
        per_pattern[name] = round(time.perf_counter() - t0, 4)
        hits[name] = int(np.count_nonzero(out))
    patterns_seconds = time.perf_counter() - t_patterns
    total = time.perf_counter() - started
    slowest = sorted(per_indicator.items(), key=lambda kv: kv[1], reverse=True)[:3]
    summary = (
        f"indicators: {len(INDICATORS)} indicators + {len(PATTERNS)} patterns on {n:,} bars in {total:.2f} s "
        f"(indicators {indicators_seconds:.2f} s, patterns {patterns_seconds:.2f} s; slowest "
        + ", ".join(f"{k} {v:.2f} s" for k, v in slowest)
        + ")"
    )
    return {
        "summary": summary,
        "bars": n,
        "indicator_count": len(INDICATORS),
        "pattern_count": len(PATTERNS),
        "total_seconds": round(total, 3),
        "indicators_seconds": round(indicators_seconds, 3),
        "patterns_seconds": round(patterns_seconds, 3),
        "per_indicator_seconds": per_indicator,
        "per_pattern_seconds": per_pattern,
        "pattern_hits": hits,
    }


if __name__ == "__main__":
    from bench.__main__ import run

    print(json.dumps(run("indicators"), indent=2))
