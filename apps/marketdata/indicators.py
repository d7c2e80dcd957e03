"""Technical indicators: a pure numpy/pandas module (no Django, no ORM).

Every indicator follows the TA-Lib definition, including its warm-up ("lookback"): the first
``lookback`` outputs are NaN exactly where TA-Lib gives no value, EMA-type averages are seeded with
the simple average of their first ``n`` inputs, Wilder smoothing is seeded with a simple sum/average,
and the same quirks are kept (MACD's fast EMA is seeded so it starts on the slow EMA's first bar,
ADOSC seeds its EMAs with the first A/D value, SAR picks its first direction from -DM).
Indicators TA-Lib lacks (VWAP, Keltner, Donchian, Ichimoku) follow their common definitions,
documented on each function.

Inputs are 1-D float64 arrays (or pandas Series) of equal length without NaN; outputs are float64
numpy arrays of the same length. Linear recursions run through ``scipy.signal.lfilter``; only the
SAR and KAMA recursions (state-dependent) use a tight Python loop over float64 values.

``INDICATORS`` lists every indicator (inputs, parameters with defaults, outputs) and
``compute(name, frame, **params)`` runs one generically; bad names or parameters raise ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter1d, minimum_filter1d
from scipy.signal import lfilter

__all__ = ["INDICATORS", "IndicatorSpec", "catalog", "compute"]

_ZERO = 1e-8  # TA-Lib's TA_IS_ZERO tolerance


# --------------------------------------------------------------------------------------- helpers


def _arr(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64))


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def _is_zero(x):
    return (x > -_ZERO) & (x < _ZERO)


def _pad(values: np.ndarray, total: int) -> np.ndarray:
    """Right-align ``values`` in a NaN array of length ``total``."""
    out = _nan(total)
    if len(values):
        out[total - len(values) :] = values
    return out


def _first_valid(x: np.ndarray) -> int:
    idx = np.flatnonzero(~np.isnan(x))
    return int(idx[0]) if len(idx) else len(x)


def _windows(x: np.ndarray, n: int) -> np.ndarray:
    return sliding_window_view(x, n)


def _rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Sum of the last n values (NaN for the first n-1); compensated, O(len)."""
    return pd.Series(x).rolling(n, min_periods=n).sum().to_numpy()


def _rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    return pd.Series(x).rolling(n, min_periods=n).mean().to_numpy()


def _rolling_max(x: np.ndarray, n: int) -> np.ndarray:
    """Highest of the last n values (NaN for the first n-1); O(len) van Herk/Gil-Werman filter."""
    out = _nan(len(x))
    if len(x) >= n:
        out[n - 1 :] = maximum_filter1d(x, n, origin=(n - 1) // 2)[n - 1 :]
    return out


def _rolling_min(x: np.ndarray, n: int) -> np.ndarray:
    out = _nan(len(x))
    if len(x) >= n:
        out[n - 1 :] = minimum_filter1d(x, n, origin=(n - 1) // 2)[n - 1 :]
    return out


def _recur(x: np.ndarray, alpha: float, seed: float) -> np.ndarray:
    """y[i] = (1 - alpha) * y[i-1] + alpha * x[i] with y[-1] = seed, for all of x."""
    if len(x) == 0:
        return np.empty(0)
    y, _ = lfilter([alpha], [1.0, -(1.0 - alpha)], x, zi=[(1.0 - alpha) * seed])
    return y


def _ema_core(x: np.ndarray, n: int, k: float | None = None) -> np.ndarray:
    """TA-Lib EMA of a NaN-free array: SMA seed at index n-1, then the EMA recursion."""
    k = 2.0 / (n + 1) if k is None else k
    out = _nan(len(x))
    if len(x) < n:
        return out
    seed = x[:n].sum() / n
    out[n - 1] = seed
    out[n:] = _recur(x[n:], k, seed)
    return out


def _on_valid(func: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Apply ``func`` to the part of x after its NaN warm-up and re-pad."""
    start = _first_valid(x)
    return _pad(func(x[start:]), len(x))


def _prev(x: np.ndarray) -> np.ndarray:
    p = np.empty_like(x)
    if len(x):
        p[0] = np.nan
        p[1:] = x[:-1]
    return p


def _check_len(*arrays: np.ndarray) -> int:
    n = len(arrays[0])
    for a in arrays[1:]:
        if len(a) != n:
            raise ValueError("all input series must have the same length")
    return n


# ------------------------------------------------------------------------------ overlap studies


def sma(close, timeperiod: int = 30) -> np.ndarray:
    """Simple moving average; lookback n-1."""
    return _rolling_mean(_arr(close), timeperiod)


def ema(close, timeperiod: int = 30) -> np.ndarray:
    """Exponential moving average, k = 2/(n+1), seeded with the SMA of the first n values."""
    return _ema_core(_arr(close), timeperiod)


def wma(close, timeperiod: int = 30) -> np.ndarray:
    """Linearly weighted moving average (weights 1..n, newest heaviest); lookback n-1."""
    x = _arr(close)
    n = timeperiod
    out = _nan(len(x))
    if len(x) >= n:
        w = np.arange(1, n + 1, dtype=np.float64)
        out[n - 1 :] = _windows(x, n) @ w / (n * (n + 1) / 2.0)
    return out


def dema(close, timeperiod: int = 30) -> np.ndarray:
    """Double EMA: 2*EMA - EMA(EMA); lookback 2(n-1)."""
    e1 = ema(close, timeperiod)
    e2 = _on_valid(lambda v: _ema_core(v, timeperiod), e1)
    return 2.0 * e1 - e2


def tema(close, timeperiod: int = 30) -> np.ndarray:
    """Triple EMA: 3*E1 - 3*E2 + E3; lookback 3(n-1)."""
    e1 = ema(close, timeperiod)
    e2 = _on_valid(lambda v: _ema_core(v, timeperiod), e1)
    e3 = _on_valid(lambda v: _ema_core(v, timeperiod), e2)
    return 3.0 * e1 - 3.0 * e2 + e3


def trima(close, timeperiod: int = 30) -> np.ndarray:
    """Triangular MA: SMA of an SMA (n odd: both (n+1)/2; n even: n/2 and n/2+1); lookback n-1."""
    x = _arr(close)
    n = timeperiod
    if n % 2:
        a = b = (n + 1) // 2
    else:
        a, b = n // 2, n // 2 + 1
    first = _rolling_mean(x, a)
    return _on_valid(lambda v: _rolling_mean(v, b), first)


def kama(close, timeperiod: int = 30) -> np.ndarray:
    """Kaufman adaptive MA (fast 2, slow 30); lookback n, seeded with close[n-1]."""
    x = _arr(close)
    n = timeperiod
    out = _nan(len(x))
    if len(x) <= n:
        return out
    fast, slow = 2.0 / 3.0, 2.0 / 31.0
    diff = np.abs(np.diff(x))
    volatility = _rolling_sum(diff, n)[n - 1 :]  # sum of |dx| over the last n changes, for index n..
    change = x[n:] - x[:-n]
    with np.errstate(divide="ignore", invalid="ignore"):
        er = np.abs(change / volatility)
    er = np.where((volatility <= change) | _is_zero(volatility), 1.0, er)
    sc = (er * (fast - slow) + slow) ** 2
    values = x[n:].tolist()
    scs = sc.tolist()
    prev = float(x[n - 1])
    res = [0.0] * len(values)
    for i, (v, s) in enumerate(zip(values, scs, strict=True)):
        prev = (v - prev) * s + prev
        res[i] = prev
    out[n:] = res
    return out


def bbands(close, timeperiod: int = 5, nbdevup: float = 2.0, nbdevdn: float = 2.0):
    """Bollinger Bands: SMA ± k * population standard deviation; lookback n-1."""
    x = _arr(close)
    mid = sma(x, timeperiod)
    sd = stddev(x, timeperiod, 1.0)
    return mid + nbdevup * sd, mid, mid - nbdevdn * sd


def midpoint(close, timeperiod: int = 14) -> np.ndarray:
    """(highest + lowest) / 2 of close over n bars; lookback n-1."""
    x = _arr(close)
    return (_rolling_max(x, timeperiod) + _rolling_min(x, timeperiod)) / 2.0


def midprice(high, low, timeperiod: int = 14) -> np.ndarray:
    """(highest high + lowest low) / 2 over n bars; lookback n-1."""
    return (_rolling_max(_arr(high), timeperiod) + _rolling_min(_arr(low), timeperiod)) / 2.0


def sar(high, low, acceleration: float = 0.02, maximum: float = 0.2) -> np.ndarray:
    """Parabolic SAR exactly as TA-Lib's TA_SAR (direction from -DM of bars 0..1); lookback 1."""
    h = _arr(high)
    lo = _arr(low)
    n = _check_len(h, lo)
    out = _nan(n)
    if n < 2:
        return out
    af = acceleration = min(acceleration, maximum)
    minus_dm = lo[0] - lo[1]
    plus_dm = h[1] - h[0]
    is_long = not (minus_dm > 0 and plus_dm < minus_dm)
    if is_long:
        ep, s = h[1], lo[0]
    else:
        ep, s = lo[1], h[0]
    hs = h.tolist()
    ls = lo.tolist()
    new_low, new_high = ls[1], hs[1]
    res = [0.0] * (n - 1)
    for j in range(1, n):
        prev_low, prev_high = new_low, new_high
        new_low, new_high = ls[j], hs[j]
        if is_long:
            if new_low <= s:
                is_long = False
                s = max(ep, prev_high, new_high)
                res[j - 1] = s
                af = acceleration
                ep = new_low
                s = max(s + af * (ep - s), prev_high, new_high)
            else:
                res[j - 1] = s
                if new_high > ep:
                    ep = new_high
                    af = min(af + acceleration, maximum)
                s = min(s + af * (ep - s), prev_low, new_low)
        else:
            if new_high >= s:
                is_long = True
                s = min(ep, prev_low, new_low)
                res[j - 1] = s
                af = acceleration
                ep = new_high
                s = min(s + af * (ep - s), prev_low, new_low)
            else:
                res[j - 1] = s
                if new_low < ep:
                    ep = new_low
                    af = min(af + acceleration, maximum)
                s = max(s + af * (ep - s), prev_high, new_high)
    out[1:] = res
    return out


def keltner(high, low, close, timeperiod: int = 20, atr_period: int = 10, multiplier: float = 2.0):
    """Keltner channels: middle = EMA(close, n); bands = middle ± multiplier * ATR(atr_period).

    Not in TA-Lib. Warm-up: NaN until both the EMA (n-1) and the ATR (atr_period) exist.
    """
    mid = ema(close, timeperiod)
    rng = atr(high, low, close, atr_period)
    upper = mid + multiplier * rng
    lower = mid - multiplier * rng
    mid = np.where(np.isnan(rng), np.nan, mid)
    return upper, mid, lower


def donchian(high, low, timeperiod: int = 20):
    """Donchian channels: highest high, lowest low over n bars (current bar included), and their mean.

    Not in TA-Lib; lookback n-1.
    """
    upper = _rolling_max(_arr(high), timeperiod)
    lower = _rolling_min(_arr(low), timeperiod)
    return upper, (upper + lower) / 2.0, lower


def ichimoku(high, low, close, tenkan: int = 9, kijun: int = 26, senkou: int = 52, displacement: int = 26):
    """Ichimoku Kinko Hyo, aligned to the input bars (same length, no future rows added).

    tenkan = (HH + LL)/2 over ``tenkan`` bars; kijun likewise over ``kijun``; senkou A =
    (tenkan + kijun)/2 and senkou B = (HH + LL)/2 over ``senkou`` bars, both plotted ``displacement``
    bars ahead (value at i was computed at i - displacement); chikou = close plotted
    ``displacement`` bars back (value at i is close[i + displacement], NaN for the last bars).
    Not in TA-Lib.
    """
    h, lo, c = _arr(high), _arr(low), _arr(close)
    n = _check_len(h, lo, c)
    t = midprice(h, lo, tenkan)
    k = midprice(h, lo, kijun)
    a = (t + k) / 2.0
    b = midprice(h, lo, senkou)
    d = displacement
    span_a, span_b, chikou = _nan(n), _nan(n), _nan(n)
    if d < n:
        span_a[d:] = a[: n - d]
        span_b[d:] = b[: n - d]
        chikou[: n - d] = c[d:]
    return t, k, span_a, span_b, chikou


def vwap(high, low, close, volume, session=None) -> np.ndarray:
    """Volume-weighted average price of the typical price (h+l+c)/3.

    Cumulative from the first bar, or reset whenever ``session`` (one key per bar, e.g. the session
    date) changes. NaN while the cumulative volume is zero. Not in TA-Lib.
    """
    h, lo, c, v = _arr(high), _arr(low), _arr(close), _arr(volume)
    n = _check_len(h, lo, c, v)
    pv = (h + lo + c) / 3.0 * v
    if session is None:
        cpv, cv = np.cumsum(pv), np.cumsum(v)
    else:
        keys = pd.Series(np.asarray(session))
        if len(keys) != n:
            raise ValueError("session must have one key per bar")
        group = (keys != keys.shift()).cumsum().to_numpy()
        cpv = pd.Series(pv).groupby(group).cumsum().to_numpy()
        cv = pd.Series(v).groupby(group).cumsum().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cv > 0, cpv / cv, np.nan)


# -------------------------------------------------------------------------- momentum indicators


def _wilder_gain_loss(x: np.ndarray, n: int):
    """RSI/CMO smoothing: average gain/loss over the first n changes, then Wilder; from index n."""
    d = np.diff(x)
    gain = np.where(d > 0, d, 0.0)
    loss = np.where(d < 0, -d, 0.0)
    g0 = gain[:n].sum() / n
    l0 = loss[:n].sum() / n
    g = np.concatenate([[g0], _recur(gain[n:], 1.0 / n, g0)])
    ls = np.concatenate([[l0], _recur(loss[n:], 1.0 / n, l0)])
    return g, ls


def rsi(close, timeperiod: int = 14) -> np.ndarray:
    """Relative strength index with Wilder smoothing seeded by simple averages; lookback n."""
    x = _arr(close)
    n = timeperiod
    out = _nan(len(x))
    if len(x) <= n:
        return out
    g, ls = _wilder_gain_loss(x, n)
    tot = g + ls
    with np.errstate(divide="ignore", invalid="ignore"):
        out[n:] = np.where(_is_zero(tot), 0.0, 100.0 * (g / tot))
    return out


def cmo(close, timeperiod: int = 14) -> np.ndarray:
    """Chande momentum oscillator, TA-Lib flavour (Wilder-smoothed gains/losses like RSI); lookback n."""
    x = _arr(close)
    n = timeperiod
    out = _nan(len(x))
    if len(x) <= n:
        return out
    g, ls = _wilder_gain_loss(x, n)
    tot = g + ls
    with np.errstate(divide="ignore", invalid="ignore"):
        out[n:] = np.where(_is_zero(tot), 0.0, 100.0 * ((g - ls) / tot))
    return out


def macd(close, fastperiod: int = 12, slowperiod: int = 26, signalperiod: int = 9):
    """MACD line, signal and histogram; lookback (slow-1)+(signal-1).

    As in TA-Lib the fast EMA is seeded over the ``fast`` bars ending on the slow EMA's first bar.
    """
    x = _arr(close)
    if slowperiod < fastperiod:
        fastperiod, slowperiod = slowperiod, fastperiod
    total = len(x)
    start = slowperiod - 1
    line = _nan(total)
    if total > start:
        slow = _ema_core(x, slowperiod)
        offset = start - (fastperiod - 1)
        fast = _pad(_ema_core(x[offset:], fastperiod), total)
        line = fast - slow
    signal = _on_valid(lambda v: _ema_core(v, signalperiod), line)
    line = np.where(np.isnan(signal), np.nan, line)
    return line, signal, line - signal


def _po_mas(x: np.ndarray, fastperiod: int, slowperiod: int, matype: int):
    if slowperiod < fastperiod:
        fastperiod, slowperiod = slowperiod, fastperiod
    if matype not in (0, 1):
        raise ValueError("matype must be 0 (SMA) or 1 (EMA)")
    ma = sma if matype == 0 else ema
    return ma(x, fastperiod), ma(x, slowperiod)


def apo(close, fastperiod: int = 12, slowperiod: int = 26, matype: int = 1) -> np.ndarray:
    """Absolute price oscillator MA(fast) - MA(slow); matype 1 = EMA (TA-Lib's default), 0 = SMA;
    lookback slow-1."""
    f, s = _po_mas(_arr(close), fastperiod, slowperiod, matype)
    return np.where(np.isnan(s), np.nan, f - s)


def ppo(close, fastperiod: int = 12, slowperiod: int = 26, matype: int = 1) -> np.ndarray:
    """Percentage price oscillator 100*(fast-slow)/slow (0 where slow is 0); matype 1 = EMA
    (TA-Lib's default), 0 = SMA; lookback slow-1."""
    f, s = _po_mas(_arr(close), fastperiod, slowperiod, matype)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isnan(s), np.nan, np.where(_is_zero(s), 0.0, ((f - s) / s) * 100.0))


def mom(close, timeperiod: int = 10) -> np.ndarray:
    """Momentum: close - close n bars ago; lookback n."""
    x = _arr(close)
    out = _nan(len(x))
    n = timeperiod
    if len(x) > n:
        out[n:] = x[n:] - x[:-n]
    return out


def roc(close, timeperiod: int = 10) -> np.ndarray:
    """Rate of change in percent: (close/close[n ago] - 1) * 100 (0 when the old close is 0); lookback n."""
    x = _arr(close)
    out = _nan(len(x))
    n = timeperiod
    if len(x) > n:
        old = x[:-n]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[n:] = np.where(old != 0.0, ((x[n:] / old) - 1.0) * 100.0, 0.0)
    return out


def trix(close, timeperiod: int = 30) -> np.ndarray:
    """1-bar rate of change (percent) of a triple EMA; lookback 3(n-1)+1."""
    e1 = ema(close, timeperiod)
    e2 = _on_valid(lambda v: _ema_core(v, timeperiod), e1)
    e3 = _on_valid(lambda v: _ema_core(v, timeperiod), e2)
    return _on_valid(lambda v: roc(v, 1), e3)


def _true_range(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> np.ndarray:
    pc = _prev(c)
    tr = np.maximum(h, pc) - np.minimum(lo, pc)
    if len(tr):
        tr[0] = np.nan
    return tr


def trange(high, low, close) -> np.ndarray:
    """True range: max(high, prev close) - min(low, prev close); lookback 1."""
    h, lo, c = _arr(high), _arr(low), _arr(close)
    _check_len(h, lo, c)
    return _true_range(h, lo, c)


def atr(high, low, close, timeperiod: int = 14) -> np.ndarray:
    """Average true range: SMA of the first n true ranges, then Wilder; lookback n."""
    h, lo, c = _arr(high), _arr(low), _arr(close)
    _check_len(h, lo, c)
    tr = _true_range(h, lo, c)
    n = timeperiod
    out = _nan(len(tr))
    if n == 1:
        return tr
    if len(tr) <= n:
        return out
    seed = tr[1 : n + 1].sum() / n
    out[n] = seed
    out[n + 1 :] = _recur(tr[n + 1 :], 1.0 / n, seed)
    return out


def natr(high, low, close, timeperiod: int = 14) -> np.ndarray:
    """Normalized ATR: 100 * ATR / close; lookback n."""
    c = _arr(close)
    a = atr(high, low, c, timeperiod)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isnan(a), np.nan, np.where(c != 0.0, (a / c) * 100.0, 0.0))


def _dm(h: np.ndarray, lo: np.ndarray):
    up = np.diff(h)
    down = -np.diff(lo)
    plus = np.where((up > 0) & (up > down), up, 0.0)
    minus = np.where((down > 0) & (up < down), down, 0.0)
    if not len(h):
        return np.empty(0), np.empty(0)
    return np.concatenate([[np.nan], plus]), np.concatenate([[np.nan], minus])


def _smoothed_dm_tr(h, lo, c, n):
    plus, minus = _dm(h, lo)
    tr = _true_range(h, lo, c)
    out = [_dm_smooth(v, n) for v in (plus, minus, tr)]
    for v in out:
        v[: min(n, len(v))] = np.nan  # the DI family starts one smoothing step after the seed
    return out


def plus_dm(high, low, timeperiod: int = 14) -> np.ndarray:
    """Smoothed +DM (sum of the first n-1, then S - S/n + DM); lookback n-1."""
    h, lo = _arr(high), _arr(low)
    _check_len(h, lo)
    plus, _ = _dm(h, lo)
    return _dm_smooth(plus, timeperiod)


def minus_dm(high, low, timeperiod: int = 14) -> np.ndarray:
    """Smoothed -DM; lookback n-1."""
    h, lo = _arr(high), _arr(low)
    _check_len(h, lo)
    _, minus = _dm(h, lo)
    return _dm_smooth(minus, timeperiod)


def _dm_smooth(v: np.ndarray, n: int) -> np.ndarray:
    out = _nan(len(v))
    if n == 1:
        out[1:] = v[1:]
        return out
    if len(v) < n:
        return out
    seed = v[1:n].sum()
    out[n - 1] = seed
    out[n:] = _recur(v[n:] * n, 1.0 / n, seed)
    return out


def _di(dm: np.ndarray, tr: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isnan(tr), np.nan, np.where(_is_zero(tr), 0.0, 100.0 * (dm / tr)))


def plus_di(high, low, close, timeperiod: int = 14) -> np.ndarray:
    """+DI = 100 * smoothed +DM / smoothed TR; lookback n."""
    p, _, tr = _smoothed_dm_tr(_arr(high), _arr(low), _arr(close), timeperiod)
    return _di(p, tr)


def minus_di(high, low, close, timeperiod: int = 14) -> np.ndarray:
    """-DI = 100 * smoothed -DM / smoothed TR; lookback n."""
    _, m, tr = _smoothed_dm_tr(_arr(high), _arr(low), _arr(close), timeperiod)
    return _di(m, tr)


def dx(high, low, close, timeperiod: int = 14) -> np.ndarray:
    """Directional movement index 100*|+DI - -DI|/(+DI + -DI); lookback n."""
    p, m, tr = _smoothed_dm_tr(_arr(high), _arr(low), _arr(close), timeperiod)
    pdi, mdi = _di(p, tr), _di(m, tr)
    tot = pdi + mdi
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isnan(tot), np.nan, np.where(_is_zero(tot), 0.0, 100.0 * (np.abs(mdi - pdi) / tot)))


def adx(high, low, close, timeperiod: int = 14) -> np.ndarray:
    """Average directional index: mean of the first n DX values, then Wilder; lookback 2n-1."""
    d = dx(high, low, close, timeperiod)
    n = timeperiod
    out = _nan(len(d))
    first = 2 * n - 1
    if len(d) <= first:
        return out
    seed = d[n : first + 1].sum() / n
    out[first] = seed
    out[first + 1 :] = _recur(d[first + 1 :], 1.0 / n, seed)
    return out


def _stoch_k(h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int) -> np.ndarray:
    hh, ll = _rolling_max(h, n), _rolling_min(lo, n)
    diff = (hh - ll) / 100.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isnan(diff), np.nan, np.where(diff != 0.0, (c - ll) / diff, 0.0))


def stoch(high, low, close, fastk_period: int = 5, slowk_period: int = 3, slowd_period: int = 3):
    """Slow stochastic (%K smoothed by an SMA, %D = SMA of slow %K); lookback sum of (periods-1)."""
    h, lo, c = _arr(high), _arr(low), _arr(close)
    _check_len(h, lo, c)
    fastk = _stoch_k(h, lo, c, fastk_period)
    slowk = _on_valid(lambda v: _rolling_mean(v, slowk_period), fastk)
    slowd = _on_valid(lambda v: _rolling_mean(v, slowd_period), slowk)
    slowk = np.where(np.isnan(slowd), np.nan, slowk)
    return slowk, slowd


def stochf(high, low, close, fastk_period: int = 5, fastd_period: int = 3):
    """Fast stochastic (%K raw, %D = SMA of %K); lookback (fastk-1)+(fastd-1)."""
    h, lo, c = _arr(high), _arr(low), _arr(close)
    _check_len(h, lo, c)
    fastk = _stoch_k(h, lo, c, fastk_period)
    fastd = _on_valid(lambda v: _rolling_mean(v, fastd_period), fastk)
    fastk = np.where(np.isnan(fastd), np.nan, fastk)
    return fastk, fastd


def stochrsi(close, timeperiod: int = 14, fastk_period: int = 5, fastd_period: int = 3):
    """Fast stochastic of RSI(n) (TA-Lib STOCHRSI); lookback n + (fastk-1) + (fastd-1)."""
    r = rsi(close, timeperiod)
    start = _first_valid(r)
    v = r[start:]
    k, d = stochf(v, v, v, fastk_period, fastd_period)
    return _pad(k, len(r)), _pad(d, len(r))


def willr(high, low, close, timeperiod: int = 14) -> np.ndarray:
    """Williams %R: -100 * (HH - close) / (HH - LL) over n bars (0 if flat); lookback n-1."""
    h, lo, c = _arr(high), _arr(low), _arr(close)
    _check_len(h, lo, c)
    hh, ll = _rolling_max(h, timeperiod), _rolling_min(lo, timeperiod)
    diff = (hh - ll) / -100.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isnan(diff), np.nan, np.where(diff != 0.0, (hh - c) / diff, 0.0))


def cci(high, low, close, timeperiod: int = 14) -> np.ndarray:
    """Commodity channel index: (tp - SMA(tp)) / (0.015 * mean |tp - SMA(tp)|); lookback n-1."""
    h, lo, c = _arr(high), _arr(low), _arr(close)
    total = _check_len(h, lo, c)
    n = timeperiod
    out = _nan(total)
    if total < n:
        return out
    tp = (h + lo + c) / 3.0
    win = _windows(tp, n)
    avg = win.sum(axis=1) / n
    md = np.abs(win - avg[:, None]).sum(axis=1) / n
    dev = tp[n - 1 :] - avg
    with np.errstate(divide="ignore", invalid="ignore"):
        out[n - 1 :] = np.where((dev != 0.0) & (md != 0.0), dev / (0.015 * md), 0.0)
    return out


def mfi(high, low, close, volume, timeperiod: int = 14) -> np.ndarray:
    """Money flow index over n typical-price changes (0 when total flow < 1, as TA-Lib); lookback n."""
    h, lo, c, v = _arr(high), _arr(low), _arr(close), _arr(volume)
    total = _check_len(h, lo, c, v)
    n = timeperiod
    out = _nan(total)
    if total <= n:
        return out
    tp = (h + lo + c) / 3.0
    flow = tp * v
    d = np.diff(tp)
    pos = np.where(d > 0, flow[1:], 0.0)
    neg = np.where(d < 0, flow[1:], 0.0)
    ps, ns = _rolling_sum(pos, n)[n - 1 :], _rolling_sum(neg, n)[n - 1 :]
    tot = ps + ns
    with np.errstate(divide="ignore", invalid="ignore"):
        out[n:] = np.where(tot < 1.0, 0.0, 100.0 * (ps / tot))
    return out


def aroon(high, low, timeperiod: int = 14):
    """Aroon down/up over the last n+1 bars (latest extreme wins ties); lookback n. Returns (down, up)."""
    h, lo = _arr(high), _arr(low)
    total = _check_len(h, lo)
    n = timeperiod
    down, up = _nan(total), _nan(total)
    if total <= n:
        return down, up
    # argmax on the reversed window finds the most recent extreme: its distance back from today
    since_high = _windows(h, n + 1)[:, ::-1].argmax(axis=1)
    since_low = _windows(lo, n + 1)[:, ::-1].argmin(axis=1)
    factor = 100.0 / n
    up[n:] = factor * (n - since_high)
    down[n:] = factor * (n - since_low)
    return down, up


def aroonosc(high, low, timeperiod: int = 14) -> np.ndarray:
    """Aroon oscillator: up - down; lookback n."""
    h, lo = _arr(high), _arr(low)
    total = _check_len(h, lo)
    n = timeperiod
    out = _nan(total)
    if total <= n:
        return out
    since_high = _windows(h, n + 1)[:, ::-1].argmax(axis=1)
    since_low = _windows(lo, n + 1)[:, ::-1].argmin(axis=1)
    out[n:] = (100.0 / n) * (since_low - since_high)
    return out


def ultosc(high, low, close, timeperiod1: int = 7, timeperiod2: int = 14, timeperiod3: int = 28) -> np.ndarray:
    """Ultimate oscillator 100*(4*A1 + 2*A2 + A3)/7, A = sum(buying pressure)/sum(true range);
    the periods are sorted so the shortest gets weight 4; lookback = longest period."""
    h, lo, c = _arr(high), _arr(low), _arr(close)
    total = _check_len(h, lo, c)
    p1, p2, p3 = sorted((timeperiod1, timeperiod2, timeperiod3))
    out = _nan(total)
    if total <= p3:
        return out
    pc = _prev(c)
    true_low = np.minimum(lo, pc)
    bp = (c - true_low)[1:]
    tr = (np.maximum(h, pc) - true_low)[1:]
    acc = np.zeros(total - p3)
    for p, w in ((p1, 4.0), (p2, 2.0), (p3, 1.0)):
        b = _rolling_sum(bp, p)[p3 - 1 :]
        t = _rolling_sum(tr, p)[p3 - 1 :]
        with np.errstate(divide="ignore", invalid="ignore"):
            acc += np.where(_is_zero(t), 0.0, w * (b / t))
    out[p3:] = 100.0 * (acc / 7.0)
    return out


# ---------------------------------------------------------------------------- volume indicators


def obv(close, volume) -> np.ndarray:
    """On-balance volume starting at volume[0]; lookback 0."""
    c, v = _arr(close), _arr(volume)
    _check_len(c, v)
    if not len(c):
        return np.empty(0)
    d = np.diff(c)
    step = np.concatenate([[v[0]], np.where(d > 0, v[1:], np.where(d < 0, -v[1:], 0.0))])
    return np.cumsum(step)


def ad(high, low, close, volume) -> np.ndarray:
    """Chaikin accumulation/distribution line (bars with high == low add nothing); lookback 0."""
    h, lo, c, v = _arr(high), _arr(low), _arr(close), _arr(volume)
    _check_len(h, lo, c, v)
    rng = h - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(rng > 0.0, (((c - lo) - (h - c)) / rng) * v, 0.0)
    return np.cumsum(step)


def adosc(high, low, close, volume, fastperiod: int = 3, slowperiod: int = 10) -> np.ndarray:
    """Chaikin A/D oscillator: EMA(fast) - EMA(slow) of the A/D line, both EMAs seeded with the first
    A/D value (TA-Lib); lookback max(fast, slow) - 1."""
    line = ad(high, low, close, volume)
    total = len(line)
    start = max(fastperiod, slowperiod) - 1
    out = _nan(total)
    if total <= start:
        return out
    f = _recur(line[1:], 2.0 / (fastperiod + 1), line[0])
    s = _recur(line[1:], 2.0 / (slowperiod + 1), line[0])
    out[start:] = (f - s)[start - 1 :] if start else np.concatenate([[0.0], f - s])
    return out


# ----------------------------------------------------------------------- statistic functions


def var(close, timeperiod: int = 5, nbdev: float = 1.0) -> np.ndarray:
    """Population variance over n bars, TA-Lib formula mean(x^2) - mean(x)^2; lookback n-1.

    (TA-Lib's VAR ignores nbdev; kept for signature parity.)"""
    x = _arr(close)
    return _rolling_mean(x * x, timeperiod) - _rolling_mean(x, timeperiod) ** 2


def stddev(close, timeperiod: int = 5, nbdev: float = 1.0) -> np.ndarray:
    """Population standard deviation * nbdev (0 where the variance is <= 0); lookback n-1."""
    v = var(close, timeperiod)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(v), np.nan, np.where(v > _ZERO, np.sqrt(np.maximum(v, 0.0)), 0.0) * nbdev)


def _linreg_parts(x: np.ndarray, n: int):
    sum_x = n * (n - 1) * 0.5
    sum_x_sqr = n * (n - 1) * (2 * n - 1) / 6.0
    divisor = sum_x * sum_x - n * sum_x_sqr
    win = _windows(x, n)
    lag = np.arange(n - 1, -1, -1, dtype=np.float64)  # window position j is lag n-1-j
    sum_xy = win @ lag
    sum_y = win.sum(axis=1)
    m = (n * sum_xy - sum_x * sum_y) / divisor
    b = (sum_y - m * sum_x) / n
    return m, b


def linearreg_slope(close, timeperiod: int = 14) -> np.ndarray:
    """Least-squares slope over the last n bars (per bar); lookback n-1."""
    x = _arr(close)
    out = _nan(len(x))
    if len(x) >= timeperiod:
        out[timeperiod - 1 :] = _linreg_parts(x, timeperiod)[0]
    return out


def linearreg(close, timeperiod: int = 14) -> np.ndarray:
    """Least-squares line's value at the last bar (TA-Lib's LINEARREG); lookback n-1."""
    x = _arr(close)
    out = _nan(len(x))
    n = timeperiod
    if len(x) >= n:
        m, b = _linreg_parts(x, n)
        out[n - 1 :] = b + m * (n - 1)
    return out


# ------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class Param:
    default: float | int
    minimum: float | int
    kind: type = int


@dataclass(frozen=True)
class IndicatorSpec:
    name: str
    func: Callable
    inputs: tuple[str, ...]
    params: dict[str, Param] = field(default_factory=dict)
    outputs: tuple[str, ...] = ("value",)
    group: str = ""
    description: str = ""

    def describe(self) -> dict:
        return {
            "name": self.name,
            "group": self.group,
            "description": self.description,
            "inputs": list(self.inputs),
            "params": {
                k: {"default": p.default, "minimum": p.minimum, "type": p.kind.__name__} for k, p in self.params.items()
            },
            "outputs": list(self.outputs),
        }


def _p(default, minimum, kind=int) -> Param:
    return Param(default, minimum, kind)


C = ("close",)
HL = ("high", "low")
HLC = ("high", "low", "close")
HLCV = ("high", "low", "close", "volume")
CV = ("close", "volume")


def _n(default: int, minimum: int = 2) -> dict[str, Param]:
    return {"timeperiod": _p(default, minimum)}


_SPECS = [
    IndicatorSpec("SMA", sma, C, _n(30), group="overlap", description="Simple moving average"),
    IndicatorSpec("EMA", ema, C, _n(30), group="overlap", description="Exponential moving average"),
    IndicatorSpec("WMA", wma, C, _n(30), group="overlap", description="Weighted moving average"),
    IndicatorSpec("DEMA", dema, C, _n(30), group="overlap", description="Double exponential moving average"),
    IndicatorSpec("TEMA", tema, C, _n(30), group="overlap", description="Triple exponential moving average"),
    IndicatorSpec("TRIMA", trima, C, _n(30), group="overlap", description="Triangular moving average"),
    IndicatorSpec("KAMA", kama, C, _n(30), group="overlap", description="Kaufman adaptive moving average"),
    IndicatorSpec(
        "BBANDS",
        bbands,
        C,
        {"timeperiod": _p(5, 2), "nbdevup": _p(2.0, 0.0, float), "nbdevdn": _p(2.0, 0.0, float)},
        ("upper", "middle", "lower"),
        "overlap",
        "Bollinger bands",
    ),
    IndicatorSpec("MIDPOINT", midpoint, C, _n(14), group="overlap", description="Midpoint over period"),
    IndicatorSpec("MIDPRICE", midprice, HL, _n(14), group="overlap", description="Midpoint price over period"),
    IndicatorSpec(
        "SAR",
        sar,
        HL,
        {"acceleration": _p(0.02, 0.0, float), "maximum": _p(0.2, 0.0, float)},
        group="overlap",
        description="Parabolic SAR",
    ),
    IndicatorSpec(
        "KELTNER",
        keltner,
        HLC,
        {"timeperiod": _p(20, 2), "atr_period": _p(10, 1), "multiplier": _p(2.0, 0.0, float)},
        ("upper", "middle", "lower"),
        "overlap",
        "Keltner channels (EMA ± k·ATR)",
    ),
    IndicatorSpec("DONCHIAN", donchian, HL, _n(20, 1), ("upper", "middle", "lower"), "overlap", "Donchian channels"),
    IndicatorSpec(
        "ICHIMOKU",
        ichimoku,
        HLC,
        {"tenkan": _p(9, 1), "kijun": _p(26, 1), "senkou": _p(52, 1), "displacement": _p(26, 0)},
        ("tenkan", "kijun", "senkou_a", "senkou_b", "chikou"),
        "overlap",
        "Ichimoku cloud",
    ),
    IndicatorSpec(
        "VWAP",
        vwap,
        HLCV,
        {},
        group="overlap",
        description="Volume-weighted average price (cumulative, or per session with a session key)",
    ),
    IndicatorSpec("RSI", rsi, C, _n(14), group="momentum", description="Relative strength index (Wilder)"),
    IndicatorSpec("CMO", cmo, C, _n(14), group="momentum", description="Chande momentum oscillator"),
    IndicatorSpec(
        "MACD",
        macd,
        C,
        {"fastperiod": _p(12, 2), "slowperiod": _p(26, 2), "signalperiod": _p(9, 1)},
        ("macd", "signal", "hist"),
        "momentum",
        "Moving average convergence/divergence",
    ),
    IndicatorSpec(
        "APO",
        apo,
        C,
        {"fastperiod": _p(12, 2), "slowperiod": _p(26, 2), "matype": _p(1, 0)},
        group="momentum",
        description="Absolute price oscillator (matype 0 SMA, 1 EMA)",
    ),
    IndicatorSpec(
        "PPO",
        ppo,
        C,
        {"fastperiod": _p(12, 2), "slowperiod": _p(26, 2), "matype": _p(1, 0)},
        group="momentum",
        description="Percentage price oscillator (matype 0 SMA, 1 EMA)",
    ),
    IndicatorSpec("MOM", mom, C, _n(10, 1), group="momentum", description="Momentum"),
    IndicatorSpec("ROC", roc, C, _n(10, 1), group="momentum", description="Rate of change (percent)"),
    IndicatorSpec("TRIX", trix, C, _n(30, 1), group="momentum", description="1-bar ROC of a triple EMA"),
    IndicatorSpec("ADX", adx, HLC, _n(14), group="momentum", description="Average directional index"),
    IndicatorSpec("DX", dx, HLC, _n(14), group="momentum", description="Directional movement index"),
    IndicatorSpec("PLUS_DI", plus_di, HLC, _n(14), group="momentum", description="Plus directional indicator"),
    IndicatorSpec("MINUS_DI", minus_di, HLC, _n(14), group="momentum", description="Minus directional indicator"),
    IndicatorSpec("PLUS_DM", plus_dm, HL, _n(14), group="momentum", description="Plus directional movement"),
    IndicatorSpec("MINUS_DM", minus_dm, HL, _n(14), group="momentum", description="Minus directional movement"),
    IndicatorSpec(
        "STOCH",
        stoch,
        HLC,
        {"fastk_period": _p(5, 1), "slowk_period": _p(3, 1), "slowd_period": _p(3, 1)},
        ("slowk", "slowd"),
        "momentum",
        "Slow stochastic",
    ),
    IndicatorSpec(
        "STOCHF",
        stochf,
        HLC,
        {"fastk_period": _p(5, 1), "fastd_period": _p(3, 1)},
        ("fastk", "fastd"),
        "momentum",
        "Fast stochastic",
    ),
    IndicatorSpec(
        "STOCHRSI",
        stochrsi,
        C,
        {"timeperiod": _p(14, 2), "fastk_period": _p(5, 1), "fastd_period": _p(3, 1)},
        ("fastk", "fastd"),
        "momentum",
        "Stochastic RSI",
    ),
    IndicatorSpec("WILLR", willr, HLC, _n(14), group="momentum", description="Williams %R"),
    IndicatorSpec("CCI", cci, HLC, _n(14), group="momentum", description="Commodity channel index"),
    IndicatorSpec("MFI", mfi, HLCV, _n(14), group="momentum", description="Money flow index"),
    IndicatorSpec("AROON", aroon, HL, _n(14), ("aroondown", "aroonup"), "momentum", "Aroon down/up"),
    IndicatorSpec("AROONOSC", aroonosc, HL, _n(14), group="momentum", description="Aroon oscillator"),
    IndicatorSpec(
        "ULTOSC",
        ultosc,
        HLC,
        {"timeperiod1": _p(7, 1), "timeperiod2": _p(14, 1), "timeperiod3": _p(28, 1)},
        group="momentum",
        description="Ultimate oscillator",
    ),
    IndicatorSpec("TRANGE", trange, HLC, {}, group="volatility", description="True range"),
    IndicatorSpec("ATR", atr, HLC, _n(14, 1), group="volatility", description="Average true range (Wilder)"),
    IndicatorSpec("NATR", natr, HLC, _n(14, 1), group="volatility", description="Normalized ATR (percent)"),
    IndicatorSpec("OBV", obv, CV, {}, group="volume", description="On-balance volume"),
    IndicatorSpec("AD", ad, HLCV, {}, group="volume", description="Chaikin A/D line"),
    IndicatorSpec(
        "ADOSC",
        adosc,
        HLCV,
        {"fastperiod": _p(3, 2), "slowperiod": _p(10, 2)},
        group="volume",
        description="Chaikin A/D oscillator",
    ),
    IndicatorSpec(
        "STDDEV",
        stddev,
        C,
        {"timeperiod": _p(5, 2), "nbdev": _p(1.0, 0.0, float)},
        group="statistic",
        description="Standard deviation (population)",
    ),
    IndicatorSpec("VAR", var, C, _n(5, 1), group="statistic", description="Variance (population)"),
    IndicatorSpec(
        "LINEARREG_SLOPE", linearreg_slope, C, _n(14), group="statistic", description="Linear regression slope"
    ),
    IndicatorSpec("LINEARREG", linearreg, C, _n(14), group="statistic", description="Linear regression value"),
]

INDICATORS: dict[str, IndicatorSpec] = {s.name: s for s in _SPECS}

MAX_PERIOD = 100_000


def catalog() -> list[dict]:
    """Every indicator described (name, group, inputs, params with defaults/minimums, outputs), by name."""
    return [INDICATORS[name].describe() for name in sorted(INDICATORS)]


def _validate_params(spec: IndicatorSpec, params: Mapping) -> dict:
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        allowed = ", ".join(spec.params) or "none"
        raise ValueError(f"{spec.name}: unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}")
    clean = {}
    for key, p in spec.params.items():
        value = params.get(key, p.default)
        if isinstance(value, bool):
            raise ValueError(f"{spec.name}: parameter {key} must be a number")
        if p.kind is int:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int | np.integer):
                raise ValueError(f"{spec.name}: parameter {key} must be an integer, got {value!r}")
            value = int(value)
            if value > MAX_PERIOD:
                raise ValueError(f"{spec.name}: parameter {key} must be at most {MAX_PERIOD}")
        else:
            if not isinstance(value, int | float | np.integer | np.floating) or not math.isfinite(value):
                raise ValueError(f"{spec.name}: parameter {key} must be a finite number, got {value!r}")
            value = float(value)
        if value < p.minimum:
            raise ValueError(f"{spec.name}: parameter {key} must be >= {p.minimum}, got {value}")
        clean[key] = value
    return clean


def input_columns(frame, names, *, who: str) -> list[np.ndarray]:
    """The named columns of ``frame`` as finite, one-dimensional float64 arrays (shared with
    patterns.py); a ValueError naming ``who`` and the column otherwise."""
    columns = []
    for col in names:
        try:
            values = _arr(frame[col])
        except KeyError:
            raise ValueError(f"{who}: input column {col!r} is missing") from None
        except (TypeError, ValueError):
            raise ValueError(f"{who}: input column {col!r} is not numeric") from None
        if values.ndim != 1:
            raise ValueError(f"{who}: input column {col!r} must be one-dimensional")
        if not np.isfinite(values).all():
            raise ValueError(f"{who}: input column {col!r} contains NaN or infinite values")
        columns.append(values)
    return columns


def compute(name: str, frame, session=None, **params) -> dict[str, np.ndarray]:
    """Run indicator ``name`` on ``frame`` (a DataFrame or mapping of columns open/high/low/close/volume).

    Returns ``{output_name: float64 array}``, each as long as the frame. ``session`` (VWAP only) is
    one key per bar at which the VWAP resets. Raises ValueError for an unknown indicator, unknown or
    invalid parameters, or missing input columns.
    """
    spec = INDICATORS.get(str(name).upper())
    if spec is None:
        raise ValueError(f"unknown indicator {name!r}; known: {', '.join(sorted(INDICATORS))}")
    clean = _validate_params(spec, params)
    columns = input_columns(frame, spec.inputs, who=spec.name)
    _check_len(*columns)
    if session is not None:
        if spec.name != "VWAP":
            raise ValueError(f"{spec.name}: session is only accepted by VWAP")
        clean["session"] = session
    result = spec.func(*columns, **clean)
    if not isinstance(result, tuple):
        result = (result,)
    return dict(zip(spec.outputs, result, strict=True))
