"""Indicators against independent references.

TA-Lib (the ``ta-lib`` package, a test-only dependency) is the reference for every indicator it
has: same seeded random OHLCV series, every output compared element-wise INCLUDING the warm-up
(NaN positions must be identical). Indicators TA-Lib lacks (VWAP, Keltner, Donchian, Ichimoku) are
checked against hand-computed numbers and a plain pandas implementation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from apps.marketdata import indicators as ind
from apps.marketdata.indicators import INDICATORS, compute

N = 3000
RTOL = 1e-9
ATOL = 1e-9  # for oscillators crossing zero, where a relative tolerance means nothing


def _series(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * (1 + rng.normal(0, 0.002, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.004, n)))
    volume = rng.integers(100, 10_000, n).astype(np.float64)
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume})


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return _series(N, 20261122)


def _assert_same(actual: np.ndarray, expected: np.ndarray, label: str) -> None:
    assert actual.dtype == np.float64, label
    assert actual.shape == expected.shape, label
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{label}: NaN positions differ")
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=label)


def _args(frame, names):
    return [frame[n].to_numpy() for n in names]


# (registry name, params for ours, TA-Lib call given the frame)
TALIB_CASES = [
    ("SMA", {}, lambda f: talib.SMA(f.close, 30)),
    ("SMA", {"timeperiod": 7}, lambda f: talib.SMA(f.close, 7)),
    ("EMA", {}, lambda f: talib.EMA(f.close, 30)),
    ("EMA", {"timeperiod": 9}, lambda f: talib.EMA(f.close, 9)),
    ("WMA", {}, lambda f: talib.WMA(f.close, 30)),
    ("WMA", {"timeperiod": 5}, lambda f: talib.WMA(f.close, 5)),
    ("DEMA", {}, lambda f: talib.DEMA(f.close, 30)),
    ("DEMA", {"timeperiod": 10}, lambda f: talib.DEMA(f.close, 10)),
    ("TEMA", {}, lambda f: talib.TEMA(f.close, 30)),
    ("TEMA", {"timeperiod": 10}, lambda f: talib.TEMA(f.close, 10)),
    ("TRIMA", {}, lambda f: talib.TRIMA(f.close, 30)),
    ("TRIMA", {"timeperiod": 5}, lambda f: talib.TRIMA(f.close, 5)),
    ("TRIMA", {"timeperiod": 4}, lambda f: talib.TRIMA(f.close, 4)),
    ("KAMA", {}, lambda f: talib.KAMA(f.close, 30)),
    ("KAMA", {"timeperiod": 10}, lambda f: talib.KAMA(f.close, 10)),
    ("BBANDS", {}, lambda f: talib.BBANDS(f.close, 5, 2.0, 2.0)),
    ("BBANDS", {"timeperiod": 20, "nbdevup": 2.5, "nbdevdn": 1.5}, lambda f: talib.BBANDS(f.close, 20, 2.5, 1.5)),
    ("MIDPOINT", {}, lambda f: talib.MIDPOINT(f.close, 14)),
    ("MIDPRICE", {}, lambda f: talib.MIDPRICE(f.high, f.low, 14)),
    ("SAR", {}, lambda f: talib.SAR(f.high, f.low, 0.02, 0.2)),
    ("SAR", {"acceleration": 0.05, "maximum": 0.3}, lambda f: talib.SAR(f.high, f.low, 0.05, 0.3)),
    ("RSI", {}, lambda f: talib.RSI(f.close, 14)),
    ("RSI", {"timeperiod": 2}, lambda f: talib.RSI(f.close, 2)),
    ("CMO", {}, lambda f: talib.CMO(f.close, 14)),
    ("MACD", {}, lambda f: talib.MACD(f.close, 12, 26, 9)),
    ("MACD", {"fastperiod": 5, "slowperiod": 35, "signalperiod": 5}, lambda f: talib.MACD(f.close, 5, 35, 5)),
    ("MACD", {"fastperiod": 26, "slowperiod": 12, "signalperiod": 9}, lambda f: talib.MACD(f.close, 26, 12, 9)),
    ("APO", {}, lambda f: talib.APO(f.close, 12, 26, 1)),
    ("APO", {"matype": 0}, lambda f: talib.APO(f.close, 12, 26, 0)),
    ("PPO", {}, lambda f: talib.PPO(f.close, 12, 26, 1)),
    ("PPO", {"matype": 0, "fastperiod": 5, "slowperiod": 20}, lambda f: talib.PPO(f.close, 5, 20, 0)),
    ("MOM", {}, lambda f: talib.MOM(f.close, 10)),
    ("ROC", {}, lambda f: talib.ROC(f.close, 10)),
    ("TRIX", {}, lambda f: talib.TRIX(f.close, 30)),
    ("TRIX", {"timeperiod": 5}, lambda f: talib.TRIX(f.close, 5)),
    ("ADX", {}, lambda f: talib.ADX(f.high, f.low, f.close, 14)),
    ("ADX", {"timeperiod": 5}, lambda f: talib.ADX(f.high, f.low, f.close, 5)),
    ("DX", {}, lambda f: talib.DX(f.high, f.low, f.close, 14)),
    ("PLUS_DI", {}, lambda f: talib.PLUS_DI(f.high, f.low, f.close, 14)),
    ("MINUS_DI", {}, lambda f: talib.MINUS_DI(f.high, f.low, f.close, 14)),
    ("PLUS_DM", {}, lambda f: talib.PLUS_DM(f.high, f.low, 14)),
    ("MINUS_DM", {}, lambda f: talib.MINUS_DM(f.high, f.low, 14)),
    ("STOCH", {}, lambda f: talib.STOCH(f.high, f.low, f.close, 5, 3, 0, 3, 0)),
    (
        "STOCH",
        {"fastk_period": 14, "slowk_period": 3, "slowd_period": 5},
        lambda f: talib.STOCH(f.high, f.low, f.close, 14, 3, 0, 5, 0),
    ),
    ("STOCHF", {}, lambda f: talib.STOCHF(f.high, f.low, f.close, 5, 3, 0)),
    ("STOCHRSI", {}, lambda f: talib.STOCHRSI(f.close, 14, 5, 3, 0)),
    (
        "STOCHRSI",
        {"timeperiod": 10, "fastk_period": 10, "fastd_period": 4},
        lambda f: talib.STOCHRSI(f.close, 10, 10, 4, 0),
    ),
    ("WILLR", {}, lambda f: talib.WILLR(f.high, f.low, f.close, 14)),
    ("CCI", {}, lambda f: talib.CCI(f.high, f.low, f.close, 14)),
    ("CCI", {"timeperiod": 20}, lambda f: talib.CCI(f.high, f.low, f.close, 20)),
    ("MFI", {}, lambda f: talib.MFI(f.high, f.low, f.close, f.volume, 14)),
    ("AROON", {}, lambda f: talib.AROON(f.high, f.low, 14)),
    ("AROON", {"timeperiod": 25}, lambda f: talib.AROON(f.high, f.low, 25)),
    ("AROONOSC", {}, lambda f: talib.AROONOSC(f.high, f.low, 14)),
    ("ULTOSC", {}, lambda f: talib.ULTOSC(f.high, f.low, f.close, 7, 14, 28)),
    (
        "ULTOSC",
        {"timeperiod1": 20, "timeperiod2": 5, "timeperiod3": 10},
        lambda f: talib.ULTOSC(f.high, f.low, f.close, 20, 5, 10),
    ),
    ("TRANGE", {}, lambda f: talib.TRANGE(f.high, f.low, f.close)),
    ("ATR", {}, lambda f: talib.ATR(f.high, f.low, f.close, 14)),
    ("ATR", {"timeperiod": 1}, lambda f: talib.ATR(f.high, f.low, f.close, 1)),
    ("NATR", {}, lambda f: talib.NATR(f.high, f.low, f.close, 14)),
    ("OBV", {}, lambda f: talib.OBV(f.close, f.volume)),
    ("AD", {}, lambda f: talib.AD(f.high, f.low, f.close, f.volume)),
    ("ADOSC", {}, lambda f: talib.ADOSC(f.high, f.low, f.close, f.volume, 3, 10)),
    ("ADOSC", {"fastperiod": 5, "slowperiod": 20}, lambda f: talib.ADOSC(f.high, f.low, f.close, f.volume, 5, 20)),
    ("STDDEV", {}, lambda f: talib.STDDEV(f.close, 5, 1.0)),
    ("STDDEV", {"timeperiod": 20, "nbdev": 2.0}, lambda f: talib.STDDEV(f.close, 20, 2.0)),
    ("VAR", {}, lambda f: talib.VAR(f.close, 5)),
    ("LINEARREG_SLOPE", {}, lambda f: talib.LINEARREG_SLOPE(f.close, 14)),
    ("LINEARREG_SLOPE", {"timeperiod": 50}, lambda f: talib.LINEARREG_SLOPE(f.close, 50)),
    ("LINEARREG", {}, lambda f: talib.LINEARREG(f.close, 14)),
]

NON_TALIB = {"VWAP", "KELTNER", "DONCHIAN", "ICHIMOKU"}


def _case_id(case) -> str:
    name, params, _ = case
    return name + "".join(f"-{k}={v}" for k, v in params.items())


@pytest.mark.parametrize("case", TALIB_CASES, ids=_case_id)
def test_matches_talib_including_warmup(bars, case):
    name, params, reference = case
    frame = bars.astype(np.float64)
    ref = reference(frame)
    ref = ref if isinstance(ref, tuple) else (ref,)
    out = compute(name, frame, **params)
    assert list(out) == list(INDICATORS[name].outputs)
    assert len(out) == len(ref)
    for (label, actual), expected in zip(out.items(), ref, strict=True):
        assert np.isnan(expected).any() or name in {"OBV", "AD"}, "reference has a warm-up"
        assert np.isfinite(expected).sum() > N - 200
        _assert_same(actual, np.asarray(expected, dtype=np.float64), f"{name}.{label}")


@pytest.mark.parametrize("length", [1, 15, 40])
@pytest.mark.parametrize("case", TALIB_CASES, ids=_case_id)
def test_short_series_warmup_like_talib(case, length):
    """Series shorter than, around, or just past the warm-up: NaN exactly where TA-Lib has NaN."""
    name, params, reference = case
    frame = _series(length, length)
    ref = reference(frame)
    ref = ref if isinstance(ref, tuple) else (ref,)
    for (label, actual), expected in zip(compute(name, frame, **params).items(), ref, strict=True):
        _assert_same(actual, np.asarray(expected, dtype=np.float64), f"{name}.{label}")


def test_every_registered_indicator_has_a_reference_test():
    covered = {name for name, _, _ in TALIB_CASES} | NON_TALIB
    assert covered == set(INDICATORS)
    assert len(INDICATORS) >= 30


def test_registry_describes_inputs_params_outputs():
    spec = INDICATORS["MACD"].describe()
    assert spec == {
        "name": "MACD",
        "group": "momentum",
        "description": "Moving average convergence/divergence",
        "inputs": ["close"],
        "params": {
            "fastperiod": {"default": 12, "minimum": 2, "type": "int"},
            "slowperiod": {"default": 26, "minimum": 2, "type": "int"},
            "signalperiod": {"default": 9, "minimum": 1, "type": "int"},
        },
        "outputs": ["macd", "signal", "hist"],
    }
    assert INDICATORS["MFI"].inputs == ("high", "low", "close", "volume")
    listed = ind.catalog()
    assert [item["name"] for item in listed] == sorted(INDICATORS)
    assert next(item for item in listed if item["name"] == "VWAP")["params"] == {}


def test_accepts_series_and_returns_arrays(bars):
    out = ind.rsi(bars["close"], 14)
    assert isinstance(out, np.ndarray) and len(out) == N
    _assert_same(out, talib.RSI(bars["close"].to_numpy(), 14), "RSI(series)")


# ------------------------------------------------------------------------ hand-computed values


def test_sma_ema_rsi_hand_computed():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 4.0])
    np.testing.assert_allclose(ind.sma(x, 3), [np.nan, np.nan, 2.0, 3.0, 4.0, 13 / 3])
    # EMA(3): k = 0.5, seeded with SMA(1,2,3) = 2 at index 2
    np.testing.assert_allclose(ind.ema(x, 3), [np.nan, np.nan, 2.0, 3.0, 4.0, 4.0])
    # RSI(2): changes +1,+1 seed avg gain 1, loss 0 -> 100 at idx2; +1,+1 keep g=1, l=0 -> 100;
    # the -1 at idx5 gives g = (1*1 + 0)/2 = 0.5, l = (0*1 + 1)/2 = 0.5 -> 50
    np.testing.assert_allclose(ind.rsi(x, 2), [np.nan, np.nan, 100.0, 100.0, 100.0, 50.0])


def test_williams_r_hand_computed():
    high = np.array([10.0, 12.0, 11.0, 11.0])
    low = np.array([8.0, 9.0, 7.0, 9.0])
    close = np.array([9.0, 11.0, 8.0, 10.0])
    # idx2: HH 12, LL 7 -> -100*(12-8)/5 = -80; idx3: HH 12, LL 7 -> -100*(12-10)/5 = -40
    expected = [np.nan, np.nan, -80.0, -40.0]
    np.testing.assert_allclose(ind.willr(high, low, close, 3), expected)
    np.testing.assert_allclose(talib.WILLR(high, low, close, 3), expected)


def test_vwap_hand_computed_cumulative_and_session_reset():
    high = np.array([10.0, 12.0, 11.0, 13.0])
    low = np.array([8.0, 10.0, 9.0, 11.0])
    close = np.array([9.0, 11.0, 10.0, 12.0])
    volume = np.array([100.0, 300.0, 0.0, 200.0])
    # typical prices 9, 11, 10, 12
    np.testing.assert_allclose(ind.vwap(high, low, close, volume), [9.0, 10.5, 10.5, 11.0])
    session = ["2026-01-05", "2026-01-05", "2026-01-06", "2026-01-06"]
    out = compute("VWAP", {"high": high, "low": low, "close": close, "volume": volume}, session=session)
    np.testing.assert_allclose(out["value"], [9.0, 10.5, np.nan, 12.0])


def test_vwap_matches_pandas_reference(bars):
    session = np.repeat(np.arange(N // 390 + 1), 390)[:N]
    tp = (bars.high + bars.low + bars.close) / 3
    ref = (tp * bars.volume).groupby(session).cumsum() / bars.volume.groupby(session).cumsum()
    _assert_same(ind.vwap(bars.high, bars.low, bars.close, bars.volume, session=session), ref.to_numpy(), "VWAP")
    ref_cum = (tp * bars.volume).cumsum() / bars.volume.cumsum()
    _assert_same(ind.vwap(bars.high, bars.low, bars.close, bars.volume), ref_cum.to_numpy(), "VWAP cum")


def test_donchian_hand_computed_and_pandas(bars):
    upper, middle, lower = ind.donchian(np.array([1.0, 3, 2, 5, 4]), np.array([0.0, 1, 1, 2, 3]), 3)
    np.testing.assert_allclose(upper, [np.nan, np.nan, 3, 5, 5])
    np.testing.assert_allclose(lower, [np.nan, np.nan, 0, 1, 1])
    np.testing.assert_allclose(middle, [np.nan, np.nan, 1.5, 3, 3])
    out = compute("DONCHIAN", bars, timeperiod=20)
    hh = bars.high.rolling(20).max().to_numpy()
    ll = bars.low.rolling(20).min().to_numpy()
    _assert_same(out["upper"], hh, "upper")
    _assert_same(out["lower"], ll, "lower")
    _assert_same(out["middle"], (hh + ll) / 2, "middle")


def test_keltner_hand_computed_and_reference(bars):
    high = np.array([11.0, 12, 13, 12])
    low = np.array([9.0, 10, 11, 10])
    close = np.array([10.0, 11, 12, 11])
    # EMA(2), k=2/3: 10.5 at idx1, 11.5 at idx2, 11.5 + 2/3*(11-11.5) = 67/6 at idx3
    # TR = 2, 2, 2 -> ATR(2) = 2 from idx2; the channel starts when both exist (idx2)
    upper, middle, lower = ind.keltner(high, low, close, timeperiod=2, atr_period=2, multiplier=1.0)
    np.testing.assert_allclose(middle, [np.nan, np.nan, 11.5, 67 / 6])
    np.testing.assert_allclose(upper, [np.nan, np.nan, 13.5, 67 / 6 + 2])
    np.testing.assert_allclose(lower, [np.nan, np.nan, 9.5, 67 / 6 - 2])
    out = compute("KELTNER", bars)
    mid = talib.EMA(bars.close.to_numpy(), 20)
    rng = talib.ATR(bars.high.to_numpy(), bars.low.to_numpy(), bars.close.to_numpy(), 10)
    _assert_same(out["middle"], mid, "middle")  # EMA warm-up (19) is longer than ATR's (10)
    _assert_same(out["upper"], mid + 2 * rng, "upper")
    _assert_same(out["lower"], mid - 2 * rng, "lower")


def test_ichimoku_hand_computed():
    high = np.array([10.0, 11, 12, 13, 12, 11])
    low = np.array([8.0, 9, 10, 11, 10, 9])
    close = np.array([9.0, 10, 11, 12, 11, 10])
    t, k, a, b, ch = ind.ichimoku(high, low, close, tenkan=2, kijun=3, senkou=4, displacement=2)
    np.testing.assert_allclose(t, [np.nan, 9.5, 10.5, 11.5, 11.5, 10.5])
    np.testing.assert_allclose(k, [np.nan, np.nan, 10, 11, 11.5, 11])
    np.testing.assert_allclose(a, [np.nan, np.nan, np.nan, np.nan, 10.25, 11.25])
    np.testing.assert_allclose(b, [np.nan, np.nan, np.nan, np.nan, np.nan, 10.5])
    np.testing.assert_allclose(ch, [11, 12, 11, 10, np.nan, np.nan])


def test_ichimoku_matches_pandas_reference(bars):
    out = compute("ICHIMOKU", bars)

    def mid(n):
        return (bars.high.rolling(n).max() + bars.low.rolling(n).min()) / 2

    tenkan, kijun = mid(9), mid(26)
    _assert_same(out["tenkan"], tenkan.to_numpy(), "tenkan")
    _assert_same(out["kijun"], kijun.to_numpy(), "kijun")
    _assert_same(out["senkou_a"], ((tenkan + kijun) / 2).shift(26).to_numpy(), "senkou_a")
    _assert_same(out["senkou_b"], mid(52).shift(26).to_numpy(), "senkou_b")
    _assert_same(out["chikou"], bars.close.shift(-26).to_numpy(), "chikou")


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("NOPE", {}, "unknown indicator 'NOPE'"),
        ("RSI", {"period": 14}, "RSI: unknown parameter(s) period; allowed: timeperiod"),
        ("RSI", {"timeperiod": 1}, "RSI: parameter timeperiod must be >= 2, got 1"),
        ("RSI", {"timeperiod": 2.5}, "RSI: parameter timeperiod must be an integer, got 2.5"),
        ("RSI", {"timeperiod": "14"}, "RSI: parameter timeperiod must be an integer, got '14'"),
        ("RSI", {"timeperiod": True}, "RSI: parameter timeperiod must be a number"),
        ("BBANDS", {"nbdevup": float("nan")}, "BBANDS: parameter nbdevup must be a finite number, got nan"),
        ("SMA", {"timeperiod": 10**6}, "SMA: parameter timeperiod must be at most 100000"),
        ("APO", {"matype": 2}, "matype must be 0 (SMA) or 1 (EMA)"),
        ("TRANGE", {"timeperiod": 3}, "TRANGE: unknown parameter(s) timeperiod; allowed: none"),
    ],
)
def test_bad_names_and_parameters_raise_value_error(bars, name, params, message):
    with pytest.raises(ValueError) as exc:
        compute(name, bars, **params)
    assert message in str(exc.value)


def test_missing_column_and_misuse_raise_value_error(bars):
    with pytest.raises(ValueError, match="MFI: input column 'volume' is missing"):
        compute("MFI", bars.drop(columns=["volume"]))
    with pytest.raises(ValueError, match="RSI: session is only accepted by VWAP"):
        compute("RSI", bars, session=np.zeros(N))
    with pytest.raises(ValueError, match="same length"):
        compute("ATR", {"high": [1.0, 2.0], "low": [1.0], "close": [1.0, 2.0]})


def test_non_finite_or_non_numeric_input_raises_value_error(bars):
    broken = bars.copy()
    broken.loc[7, "close"] = np.nan
    with pytest.raises(ValueError, match="RSI: input column 'close' contains NaN or infinite values"):
        compute("RSI", broken)
    with pytest.raises(ValueError, match="SMA: input column 'close' is not numeric"):
        compute("SMA", {"close": ["a", "b"]})


def test_empty_input_gives_empty_outputs():
    empty = {c: np.empty(0) for c in ("open", "high", "low", "close", "volume")}
    for name, spec in INDICATORS.items():
        out = compute(name, empty)
        assert list(out) == list(spec.outputs)
        assert all(v.shape == (0,) for v in out.values()), name


def test_name_is_case_insensitive_and_float_integers_accepted(bars):
    a = compute("rsi", bars, timeperiod=14.0)["value"]
    _assert_same(a, talib.RSI(bars.close.to_numpy(), 14), "rsi")
