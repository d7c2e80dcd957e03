"""Candlestick patterns against TA-Lib's CDL* functions and hand-built candles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from apps.marketdata.patterns import PATTERNS, detect


def _random_candles(n: int, seed: int) -> pd.DataFrame:
    """Candles with a wide mix of body and shadow sizes and gaps, so every pattern occurs."""
    rng = np.random.default_rng(seed)
    gap = rng.normal(0, 0.006, n) * rng.choice([0.0, 1.0, 3.0], n, p=[0.2, 0.6, 0.2])
    body = rng.normal(0, 0.01, n) * rng.choice([0.02, 0.3, 1.0, 2.5], n, p=[0.15, 0.3, 0.35, 0.2])
    # open_i = close_{i-1} * (1 + gap_i); close_i = open_i * (1 + body_i)
    close = 100.0 * np.cumprod((1 + gap) * (1 + body))
    open_ = close / (1 + body)
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    wick = [0.0, 0.2, 1.0, 3.0]
    high = top * (1 + np.abs(rng.normal(0, 0.004, n)) * rng.choice(wick, n, p=[0.15, 0.25, 0.4, 0.2]))
    low = bottom * (1 - np.abs(rng.normal(0, 0.004, n)) * rng.choice(wick, n, p=[0.15, 0.25, 0.4, 0.2]))
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close})


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return _random_candles(20_000, 20261122)


def _talib(name: str, frame: pd.DataFrame) -> np.ndarray:
    cols = [frame[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")]
    return np.asarray(getattr(talib, name)(*cols))


# minimum number of TA-Lib hits in the random series, so each comparison exercises the pattern
MIN_HITS = {"CDL3BLACKCROWS": 2, "CDL3WHITESOLDIERS": 10, "CDLPIERCING": 10, "CDLDARKCLOUDCOVER": 10}


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_matches_talib_on_long_random_series(candles, name):
    ref = _talib(name, candles)
    out = detect(name, candles)
    assert out.dtype == np.int32 and out.shape == ref.shape
    assert np.count_nonzero(ref) >= MIN_HITS.get(name, 50)
    mismatches = np.flatnonzero(out != ref)
    assert mismatches.size == 0, f"{name} differs at {mismatches[:10].tolist()}"


def test_at_least_ten_patterns():
    assert len(PATTERNS) >= 10


# ----------------------------------------------------------------------------- hand-built candles


def _base(n: int = 12) -> list[tuple[float, float, float, float]]:
    """Alternating white/black candles: body 1, high-low 2 (averages: body 1, doji 0.2, near 0.4)."""
    rows = []
    for i in range(n):
        o, c = (100.0, 101.0) if i % 2 == 0 else (101.0, 100.0)
        rows.append((o, max(o, c) + 0.5, min(o, c) - 0.5, c))
    return rows


def _frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"])


# name -> list of (candles appended after the base, expected value on the last candle)
HAND_BUILT = {
    "CDLDOJI": [([(100.5, 101.5, 99.5, 100.55)], 100)],
    "CDLMARUBOZU": [([(100.0, 103.05, 99.95, 103.0)], 100), ([(103.0, 103.05, 99.95, 100.0)], -100)],
    # small body, lower shadow 1.1 > body, upper shadow 0.05, body bottom 99.6 <= prior low 99.5 + 0.4
    "CDLHAMMER": [([(99.6, 99.85, 98.5, 99.8)], 100)],
    # same shape with the body at the prior high (101.5 - 0.4 <= 101.4)
    "CDLHANGINGMAN": [([(101.4, 101.65, 100.3, 101.6)], -100)],
    # long upper shadow, body gapping below the prior body (bottom 100)
    "CDLINVERTEDHAMMER": [([(99.6, 100.9, 99.55, 99.8)], 100)],
    # long upper shadow, body gapping above the prior body (top 101)
    "CDLSHOOTINGSTAR": [([(101.2, 102.5, 101.15, 101.4)], -100)],
    "CDLENGULFING": [
        ([(101.0, 101.5, 99.5, 100.0), (99.8, 101.3, 99.7, 101.2)], 100),
        ([(100.0, 101.5, 99.5, 101.0), (101.2, 101.3, 99.7, 99.8)], -100),
        ([(101.0, 101.5, 99.5, 100.0), (100.0, 101.3, 99.7, 101.2)], 80),  # opens at the prior close
    ],
    "CDLHARAMI": [
        ([(103.0, 103.2, 99.8, 100.0), (101.0, 101.6, 100.9, 101.5)], 100),
        ([(100.0, 103.2, 99.8, 103.0), (101.5, 101.6, 100.9, 101.0)], -100),
        ([(100.0, 103.2, 99.8, 103.0), (103.0, 103.1, 102.4, 102.5)], -80),  # touches the first body's top
    ],
    # long black, long white opening under its low, closing above its midpoint 101.5
    "CDLPIERCING": [([(103.0, 103.2, 99.8, 100.0), (99.5, 102.1, 99.4, 102.0)], 100)],
    # long white, black opening above its high, closing below its midpoint 101.5
    "CDLDARKCLOUDCOVER": [([(100.0, 103.2, 99.8, 103.0), (103.5, 103.6, 100.9, 101.0)], -100)],
    "CDLMORNINGSTAR": [([(103.0, 103.2, 99.8, 100.0), (99.5, 99.8, 99.3, 99.6), (99.8, 102.1, 99.7, 102.0)], 100)],
    "CDLEVENINGSTAR": [
        ([(100.0, 103.2, 99.8, 103.0), (103.5, 103.7, 103.2, 103.4), (103.2, 103.3, 100.9, 101.0)], -100),
    ],
    "CDL3BLACKCROWS": [
        (
            [
                (100.0, 103.5, 99.9, 103.0),
                (103.2, 103.3, 101.95, 102.0),
                (102.5, 102.6, 100.95, 101.0),
                (101.5, 101.6, 99.95, 100.0),
            ],
            -100,
        )
    ],
    # three rising whites, very short upper shadows, each opening inside the previous body
    "CDL3WHITESOLDIERS": [
        ([(100.0, 101.55, 99.9, 101.5), (101.0, 102.65, 100.9, 102.6), (102.2, 103.85, 102.1, 103.8)], 100)
    ],
}


def _hand_cases():
    for name, cases in HAND_BUILT.items():
        for i, (rows, expected) in enumerate(cases):
            yield pytest.param(name, rows, expected, id=f"{name}-{i}")


@pytest.mark.parametrize(("name", "rows", "expected"), list(_hand_cases()))
def test_hand_built_candles_trigger_pattern(name, rows, expected):
    frame = _frame(_base() + rows)
    out = detect(name, frame)
    assert out[-1] == expected
    np.testing.assert_array_equal(out, _talib(name, frame))
    # the same candles without the pattern's last candle do not end on a hit of this sign
    assert detect(name, _frame(_base() + rows[:-1]))[-1] != expected


def test_hand_built_cases_cover_every_pattern():
    assert set(HAND_BUILT) == set(PATTERNS)


def test_base_candles_trigger_nothing_but_the_warmup_is_zero():
    frame = _frame(_base(30))
    for name in PATTERNS:
        out = detect(name, frame)
        np.testing.assert_array_equal(out, _talib(name, frame), err_msg=name)
        assert not out.any(), name


def test_warmup_is_zero_even_when_the_shape_matches():
    # a doji on bar 3 has no 10-candle average yet: TA-Lib reports 0 there
    rows = _base(3) + [(100.5, 101.5, 99.5, 100.5)] + _base(12)
    out = detect("CDLDOJI", _frame(rows))
    assert out[3] == 0
    np.testing.assert_array_equal(out, _talib("CDLDOJI", _frame(rows)))


def test_unknown_pattern_and_missing_column():
    with pytest.raises(ValueError, match="unknown pattern 'CDLNOPE'"):
        detect("CDLNOPE", _frame(_base()))
    with pytest.raises(ValueError, match="CDLDOJI: input column 'open' is missing"):
        detect("cdldoji", _frame(_base()).drop(columns=["open"]))
    broken = _frame(_base())
    broken.loc[3, "high"] = np.inf
    with pytest.raises(ValueError, match="CDLDOJI: input column 'high' contains NaN or infinite values"):
        detect("CDLDOJI", broken)
