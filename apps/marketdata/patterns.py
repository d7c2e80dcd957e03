"""Candlestick patterns with TA-Lib's definitions (pure numpy, no Django).

Each function takes open/high/low/close arrays and returns an int32 array of the same length:
100 (bullish), -100 (bearish), 80/-80 where TA-Lib grades a weaker match (engulfing, harami), 0
otherwise -- and 0 for the first ``lookback`` bars, exactly where TA-Lib gives 0.

Size tests ("long body", "very short shadow", "near") use TA-Lib's CandleSettings with their
defaults: a candle's range (real body, high-low, or the shadows' sum / 2) is compared with
``factor x`` the average of that range over the ``period`` candles *before* the candle tested
(period 0 = the candle's own range):

    BodyLong        real body   10  1.0      ShadowLong      real body  0  1.0
    BodyVeryLong    real body   10  3.0      ShadowVeryLong  real body  0  2.0
    BodyShort       real body   10  1.0      ShadowShort     shadows   10  1.0
    BodyDoji        high-low    10  0.1      ShadowVeryShort high-low  10  0.1
    Near            high-low     5  0.2      Far             high-low   5  0.6
    Equal           high-low     5  0.05

``PATTERNS`` maps TA-Lib's names (CDLDOJI, ...) to the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from apps.marketdata.indicators import input_columns

__all__ = ["CANDLE_SETTINGS", "PATTERNS", "PatternSpec", "detect"]


@dataclass(frozen=True)
class CandleSetting:
    range_type: str  # "body" | "hl" | "shadows"
    period: int
    factor: float


CANDLE_SETTINGS: dict[str, CandleSetting] = {
    "BodyLong": CandleSetting("body", 10, 1.0),
    "BodyVeryLong": CandleSetting("body", 10, 3.0),
    "BodyShort": CandleSetting("body", 10, 1.0),
    "BodyDoji": CandleSetting("hl", 10, 0.1),
    "ShadowLong": CandleSetting("body", 0, 1.0),
    "ShadowVeryLong": CandleSetting("body", 0, 2.0),
    "ShadowShort": CandleSetting("shadows", 10, 1.0),
    "ShadowVeryShort": CandleSetting("hl", 10, 0.1),
    "Near": CandleSetting("hl", 5, 0.2),
    "Far": CandleSetting("hl", 5, 0.6),
    "Equal": CandleSetting("hl", 5, 0.05),
}


class _Candles:
    """Per-bar candle geometry plus TA-Lib's trailing candle averages."""

    def __init__(self, open_, high, low, close):
        self.o = np.asarray(open_, dtype=np.float64)
        self.h = np.asarray(high, dtype=np.float64)
        self.lo = np.asarray(low, dtype=np.float64)
        self.c = np.asarray(close, dtype=np.float64)
        n = len(self.o)
        if not (len(self.h) == len(self.lo) == len(self.c) == n):
            raise ValueError("open, high, low and close must have the same length")
        self.n = n
        self.top = np.maximum(self.o, self.c)
        self.bottom = np.minimum(self.o, self.c)
        self.body = np.abs(self.c - self.o)
        self.hl = self.h - self.lo
        self.upper = self.h - self.top
        self.lower = self.bottom - self.lo
        self.color = np.where(self.c >= self.o, 1, -1)
        self._avg: dict[str, np.ndarray] = {}

    def _range(self, kind: str) -> np.ndarray:
        if kind == "body":
            return self.body
        if kind == "hl":
            return self.hl
        return self.upper + self.lower

    def avg(self, name: str, back: int = 0) -> np.ndarray:
        """TA_CANDLEAVERAGE(name) evaluated for candle i-back, aligned at i (NaN where undefined)."""
        if name not in self._avg:
            s = CANDLE_SETTINGS[name]
            r = self._range(s.range_type)
            if s.period:
                trailing = pd.Series(r).rolling(s.period, min_periods=s.period).sum().shift(1).to_numpy()
                base = trailing / s.period
            else:
                base = r
            self._avg[name] = s.factor * base / (2.0 if s.range_type == "shadows" else 1.0)
        return self.shift(self._avg[name], back)

    def shift(self, x: np.ndarray, back: int) -> np.ndarray:
        """x[i-back] aligned at i."""
        if back == 0:
            return x
        out = np.full(self.n, np.nan if x.dtype.kind == "f" else 0, dtype=x.dtype)
        if back < self.n:
            out[back:] = x[:-back]
        return out

    def b(self, name: str, back: int) -> np.ndarray:
        return self.shift(getattr(self, name), back)


def _finish(values: np.ndarray, lookback: int) -> np.ndarray:
    out = np.asarray(values, dtype=np.int32).copy()
    out[: min(lookback, len(out))] = 0
    return out


def _lookback(*names: str) -> int:
    return max(CANDLE_SETTINGS[n].period for n in names)


def cdl_doji(open_, high, low, close) -> np.ndarray:
    """Doji: real body <= BodyDoji average. 100."""
    k = _Candles(open_, high, low, close)
    with np.errstate(invalid="ignore"):
        hit = k.body <= k.avg("BodyDoji")
    return _finish(np.where(hit, 100, 0), _lookback("BodyDoji"))


def cdl_marubozu(open_, high, low, close) -> np.ndarray:
    """Marubozu: long body, both shadows very short. +-100 by colour."""
    k = _Candles(open_, high, low, close)
    svs = k.avg("ShadowVeryShort")
    with np.errstate(invalid="ignore"):
        hit = (k.body > k.avg("BodyLong")) & (k.upper < svs) & (k.lower < svs)
    return _finish(np.where(hit, k.color * 100, 0), _lookback("BodyLong", "ShadowVeryShort"))


def cdl_engulfing(open_, high, low, close) -> np.ndarray:
    """Engulfing: the second body engulfs the first of opposite colour; 100/-100, or 80/-80 when an
    open or close equals the first body's edge (TA-Lib 0.6 grading)."""
    k = _Candles(open_, high, low, close)
    o, c = k.o, k.c
    o1, c1, col1 = k.b("o", 1), k.b("c", 1), k.shift(k.color, 1)
    white = (k.color == 1) & (col1 == -1) & (((c >= o1) & (o < c1)) | ((c > o1) & (o <= c1)))
    black = (k.color == -1) & (col1 == 1) & (((o >= c1) & (c < o1)) | ((o > c1) & (c <= o1)))
    strength = np.where((o != c1) & (c != o1), 100, 80)
    return _finish(np.where(white | black, k.color * strength, 0), 2)


def cdl_harami(open_, high, low, close) -> np.ndarray:
    """Harami: long first body, short second body inside it; -colour(first) * 100 (strictly inside)
    or * 80 (touching an edge)."""
    k = _Candles(open_, high, low, close)
    top1, bottom1 = k.b("top", 1), k.b("bottom", 1)
    with np.errstate(invalid="ignore"):
        base = (k.b("body", 1) > k.avg("BodyLong", 1)) & (k.body <= k.avg("BodyShort"))
    inside = (k.top < top1) & (k.bottom > bottom1)
    touching = (k.top <= top1) & (k.bottom >= bottom1)
    col1 = k.shift(k.color, 1)
    out = np.where(base & inside, -col1 * 100, np.where(base & touching, -col1 * 80, 0))
    return _finish(out, _lookback("BodyShort", "BodyLong") + 1)


def _hammer_shape(k: _Candles, long_shadow: np.ndarray, short_shadow: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (
            (k.body < k.avg("BodyShort"))
            & (long_shadow > k.avg("ShadowLong"))
            & (short_shadow < k.avg("ShadowVeryShort"))
        )


_HAMMER_LOOKBACK = _lookback("BodyShort", "ShadowLong", "ShadowVeryShort", "Near") + 1


def cdl_hammer(open_, high, low, close) -> np.ndarray:
    """Hammer: small body, long lower shadow, very short upper shadow, body near the prior low. 100."""
    k = _Candles(open_, high, low, close)
    with np.errstate(invalid="ignore"):
        hit = _hammer_shape(k, k.lower, k.upper) & (k.bottom <= k.b("lo", 1) + k.avg("Near", 1))
    return _finish(np.where(hit, 100, 0), _HAMMER_LOOKBACK)


def cdl_hanging_man(open_, high, low, close) -> np.ndarray:
    """Hanging man: hammer shape with the body near/above the prior high. -100."""
    k = _Candles(open_, high, low, close)
    with np.errstate(invalid="ignore"):
        hit = _hammer_shape(k, k.lower, k.upper) & (k.bottom >= k.b("h", 1) - k.avg("Near", 1))
    return _finish(np.where(hit, -100, 0), _HAMMER_LOOKBACK)


_STAR_LOOKBACK = _lookback("BodyShort", "ShadowLong", "ShadowVeryShort") + 1


def cdl_inverted_hammer(open_, high, low, close) -> np.ndarray:
    """Inverted hammer: small body, long upper shadow, very short lower shadow, body gapping down. 100."""
    k = _Candles(open_, high, low, close)
    hit = _hammer_shape(k, k.upper, k.lower) & (k.top < k.b("bottom", 1))
    return _finish(np.where(hit, 100, 0), _STAR_LOOKBACK)


def cdl_shooting_star(open_, high, low, close) -> np.ndarray:
    """Shooting star: small body, long upper shadow, very short lower shadow, body gapping up. -100."""
    k = _Candles(open_, high, low, close)
    hit = _hammer_shape(k, k.upper, k.lower) & (k.bottom > k.b("top", 1))
    return _finish(np.where(hit, -100, 0), _STAR_LOOKBACK)


def cdl_piercing(open_, high, low, close) -> np.ndarray:
    """Piercing line: long black, then long white opening below its low and closing above its
    body's midpoint but below its open. 100."""
    k = _Candles(open_, high, low, close)
    with np.errstate(invalid="ignore"):
        hit = (
            (k.shift(k.color, 1) == -1)
            & (k.b("body", 1) > k.avg("BodyLong", 1))
            & (k.color == 1)
            & (k.body > k.avg("BodyLong"))
            & (k.o < k.b("lo", 1))
            & (k.c < k.b("o", 1))
            & (k.c > k.b("c", 1) + k.b("body", 1) * 0.5)
        )
    return _finish(np.where(hit, 100, 0), _lookback("BodyLong") + 1)


def cdl_dark_cloud_cover(open_, high, low, close, penetration: float = 0.5) -> np.ndarray:
    """Dark cloud cover: long white, then black opening above its high and closing inside its body
    below close - penetration * body. -100."""
    k = _Candles(open_, high, low, close)
    with np.errstate(invalid="ignore"):
        hit = (
            (k.shift(k.color, 1) == 1)
            & (k.b("body", 1) > k.avg("BodyLong", 1))
            & (k.color == -1)
            & (k.o > k.b("h", 1))
            & (k.c > k.b("o", 1))
            & (k.c < k.b("c", 1) - k.b("body", 1) * penetration)
        )
    return _finish(np.where(hit, -100, 0), _lookback("BodyLong") + 1)


def _star(k: _Candles, direction: int, penetration: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        first = (k.b("body", 2) > k.avg("BodyLong", 2)) & (k.shift(k.color, 2) == -direction)
        if direction == 1:
            gap = k.b("top", 1) < k.b("bottom", 2)
            beyond = k.c > k.b("c", 2) + k.b("body", 2) * penetration
        else:
            gap = k.b("bottom", 1) > k.b("top", 2)
            beyond = k.c < k.b("c", 2) - k.b("body", 2) * penetration
        second = (k.b("body", 1) <= k.avg("BodyShort", 1)) & gap
        third = (k.body > k.avg("BodyShort")) & (k.color == direction) & beyond
    return first & second & third


def cdl_morning_star(open_, high, low, close, penetration: float = 0.3) -> np.ndarray:
    """Morning star: long black, short body gapping down, white closing well into the first body. 100."""
    k = _Candles(open_, high, low, close)
    return _finish(np.where(_star(k, 1, penetration), 100, 0), _lookback("BodyShort", "BodyLong") + 2)


def cdl_evening_star(open_, high, low, close, penetration: float = 0.3) -> np.ndarray:
    """Evening star: long white, short body gapping up, black closing well into the first body. -100."""
    k = _Candles(open_, high, low, close)
    return _finish(np.where(_star(k, -1, penetration), -100, 0), _lookback("BodyShort", "BodyLong") + 2)


def cdl_three_black_crows(open_, high, low, close) -> np.ndarray:
    """Three black crows: a white candle, then three declining blacks with very short lower shadows,
    each opening inside the previous body, the first closing under the white's high. -100."""
    k = _Candles(open_, high, low, close)
    col = k.color
    with np.errstate(invalid="ignore"):
        hit = k.shift(col, 3) == 1
        for back in (2, 1, 0):
            hit &= (k.shift(col, back) == -1) & (k.b("lower", back) < k.avg("ShadowVeryShort", back))
        o2, o1, o0 = k.b("o", 2), k.b("o", 1), k.o
        c2, c1, c0 = k.b("c", 2), k.b("c", 1), k.c
        hit &= (o1 < o2) & (o1 > c2) & (o0 < o1) & (o0 > c1)
        hit &= (k.b("h", 3) > c2) & (c2 > c1) & (c1 > c0)
    return _finish(np.where(hit, -100, 0), _lookback("ShadowVeryShort") + 3)


def cdl_three_white_soldiers(open_, high, low, close) -> np.ndarray:
    """Three white soldiers: three rising whites with very short upper shadows, each opening inside
    (or near) the previous body, none far shorter than the one before, the last not short. 100."""
    k = _Candles(open_, high, low, close)
    with np.errstate(invalid="ignore"):
        hit = np.ones(k.n, dtype=bool)
        for back in (2, 1, 0):
            hit &= (k.shift(k.color, back) == 1) & (k.b("upper", back) < k.avg("ShadowVeryShort", back))
        o2, o1, o0 = k.b("o", 2), k.b("o", 1), k.o
        c2, c1, c0 = k.b("c", 2), k.b("c", 1), k.c
        b2, b1 = k.b("body", 2), k.b("body", 1)
        hit &= (c0 > c1) & (c1 > c2)
        hit &= (o1 > o2) & (o1 <= c2 + k.avg("Near", 2)) & (o0 > o1) & (o0 <= c1 + k.avg("Near", 1))
        hit &= (b1 > b2 - k.avg("Far", 2)) & (k.body > b1 - k.avg("Far", 1))
        hit &= k.body > k.avg("BodyShort")
    return _finish(np.where(hit, 100, 0), _lookback("ShadowVeryShort", "BodyShort", "Far", "Near") + 2)


@dataclass(frozen=True)
class PatternSpec:
    name: str
    func: Callable
    label: str
    candles: int


PATTERNS: dict[str, PatternSpec] = {
    s.name: s
    for s in [
        PatternSpec("CDLDOJI", cdl_doji, "Doji", 1),
        PatternSpec("CDLMARUBOZU", cdl_marubozu, "Marubozu", 1),
        PatternSpec("CDLHAMMER", cdl_hammer, "Hammer", 1),
        PatternSpec("CDLHANGINGMAN", cdl_hanging_man, "Hanging man", 1),
        PatternSpec("CDLINVERTEDHAMMER", cdl_inverted_hammer, "Inverted hammer", 1),
        PatternSpec("CDLSHOOTINGSTAR", cdl_shooting_star, "Shooting star", 1),
        PatternSpec("CDLENGULFING", cdl_engulfing, "Engulfing", 2),
        PatternSpec("CDLHARAMI", cdl_harami, "Harami", 2),
        PatternSpec("CDLPIERCING", cdl_piercing, "Piercing line", 2),
        PatternSpec("CDLDARKCLOUDCOVER", cdl_dark_cloud_cover, "Dark cloud cover", 2),
        PatternSpec("CDLMORNINGSTAR", cdl_morning_star, "Morning star", 3),
        PatternSpec("CDLEVENINGSTAR", cdl_evening_star, "Evening star", 3),
        PatternSpec("CDL3BLACKCROWS", cdl_three_black_crows, "Three black crows", 4),
        PatternSpec("CDL3WHITESOLDIERS", cdl_three_white_soldiers, "Three white soldiers", 3),
    ]
}


def detect(name: str, frame) -> np.ndarray:
    """Run pattern ``name`` (e.g. "CDLDOJI") on a frame with open/high/low/close columns."""
    spec = PATTERNS.get(str(name).upper())
    if spec is None:
        raise ValueError(f"unknown pattern {name!r}; known: {', '.join(sorted(PATTERNS))}")
    cols = input_columns(frame, ("open", "high", "low", "close"), who=spec.name)
    return spec.func(*cols)
