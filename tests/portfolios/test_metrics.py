"""Performance metrics against hand calculations, published examples and independent formulas."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from datetime import date

import numpy as np
import pandas as pd
import pytest

from apps.portfolios import metrics as m


def series(values, days) -> pd.Series:
    return pd.Series(values, index=pd.DatetimeIndex([pd.Timestamp(d) for d in days]), dtype="float64")


def bdays(n: int, start: str = "2024-01-02") -> list[pd.Timestamp]:
    return list(pd.bdate_range(start, periods=n))


D = [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5)]

# A small return series worked by hand below: mean 0.002, sample variance 3.7e-4,
# downside (target 0) sqrt((0.02² + 0.01²) / 5) = 0.01.
SMALL = [0.01, -0.02, 0.03, 0.00, -0.01]


def test_pure_module_imports_no_django():
    code = ("import sys, apps.portfolios.metrics, apps.portfolios.settlement; "
            "print(sorted(m for m in sys.modules if m.startswith('django')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- returns and flows


def test_daily_returns_start_of_day_flows():
    # 100 -> 110 (+10 %); 100 deposited on the morning of day 2: 220 / (110 + 100); then 200 / 220.
    eq = series([100, 110, 220, 200], D)
    flows = series([100], [D[2]])
    r = m.daily_returns(eq, flows)
    assert list(r.index.date) == D[1:]
    assert r.to_numpy() == pytest.approx([0.1, 220 / 210 - 1, 200 / 220 - 1], abs=1e-15)
    # Chain-linked: 1.1 * 22/21 * 10/11 = 242/231.
    assert m.time_weighted_return(eq, flows) == pytest.approx(242 / 231 - 1, abs=1e-15)
    assert m.growth_index(eq, flows, base=100).to_numpy() == pytest.approx(
        [100, 110, 110 * 22 / 21, 100 * 242 / 231], abs=1e-12)


def test_flow_in_a_date_gap_belongs_to_the_next_observation():
    eq = series([100, 160], [date(2024, 1, 1), date(2024, 1, 3)])
    r = m.daily_returns(eq, series([30, 20], [date(2024, 1, 2), date(2024, 1, 2)]))  # summed: 50
    assert r.tolist() == pytest.approx([160 / 150 - 1], abs=1e-15)


def test_flow_on_first_date_is_already_in_the_opening_value():
    eq = series([200, 220], D[:2])
    assert m.daily_returns(eq, series([100], [D[0]])).tolist() == pytest.approx([0.1], abs=1e-15)


def test_flows_outside_the_range_or_duplicate_dates_are_refused():
    eq = series([100, 110], D[:2])
    with pytest.raises(ValueError, match="flows must be dated within the equity's date range"):
        m.daily_returns(eq, series([5], [D[3]]))
    with pytest.raises(ValueError, match="equity has duplicate dates: 2024-01-02"):
        m.daily_returns(series([100, 101, 102], [D[0], D[0], D[1]]))
    with pytest.raises(ValueError, match="equity must be finite"):
        m.daily_returns(series([100, np.nan], D[:2]))


def test_unsorted_input_and_date_objects_are_accepted():
    eq = pd.Series([110.0, 100.0], index=[D[1], D[0]])
    assert m.daily_returns(eq).tolist() == pytest.approx([0.1])


def test_empty_and_one_point_series():
    empty = series([], [])
    one = series([100], D[:1])
    for eq in (empty, one):
        assert len(m.daily_returns(eq)) == 0
        assert m.time_weighted_return(eq) is None
        assert m.money_weighted_return(eq) is None
    r = m.daily_returns(one)
    assert m.cumulative_return(r) is None
    assert m.annualized_return(r) is None
    assert m.annualized_volatility(r) is None
    assert m.sharpe_ratio(r) is None
    assert m.sortino_ratio(r) is None
    assert m.calmar_ratio(r) is None
    assert m.best_day(r) is None and m.worst_day(r) is None
    assert m.max_drawdown(m.growth_index(one)) is None
    summary = m.performance_summary(one)
    assert summary.observations == 1 and summary.start == summary.end == D[0]
    assert summary.time_weighted_return is None and summary.sharpe is None and summary.max_drawdown is None
    assert m.performance_summary(empty).start is None


def test_total_loss():
    eq = series([100, 50, 0, 0], D)
    r = m.daily_returns(eq)
    assert r.tolist() == [-0.5, -1.0, 0.0]  # nothing invested after the loss: 0 %, not NaN
    assert m.time_weighted_return(eq) == -1.0
    assert m.annualized_return(r) == -1.0
    assert m.money_weighted_return(eq) == -1.0
    dd = m.max_drawdown(m.growth_index(eq))
    assert dd == m.Drawdown(depth=-1.0, peak=D[0], trough=D[2], recovery=None, duration_days=3, duration_periods=3)
    assert m.calmar_ratio(r) == -1.0


def test_negative_capital_makes_the_return_undefined():
    eq = series([100, -20, 10], D[:3])
    r = m.daily_returns(eq)
    assert r.iloc[0] == -1.2 and math.isnan(r.iloc[1])
    assert m.time_weighted_return(eq) is None


def test_cumulative_and_annualized_return():
    r = series([0.1, 0.1], D[1:3])
    assert m.cumulative_return(r) == pytest.approx(0.21, abs=1e-15)
    # Two periods of a four-period year: 1.21 ** 2 - 1.
    assert m.annualized_return(r, periods_per_year=4) == pytest.approx(0.4641, abs=1e-14)
    assert m.annualized_return(r) == pytest.approx(1.21**126 - 1, rel=1e-12)


# ---------------------------------------------------------------------------- money-weighted (XIRR)


def test_xirr_excel_documented_example():
    # Microsoft's documented XIRR example: 0.373362535 (shown to 9 decimals; Excel iterates to 1e-8).
    flows = [(date(2008, 1, 1), -10000), (date(2008, 3, 1), 2750), (date(2008, 10, 30), 4250),
             (date(2009, 2, 15), 3250), (date(2009, 4, 1), 2750)]
    rate = m.xirr(flows)
    assert rate == pytest.approx(0.373362535, abs=2e-9)
    # And the NPV at that rate, computed independently, is zero to float precision.
    npv = sum(c / (1 + rate) ** ((d - flows[0][0]).days / 365) for d, c in flows)
    assert abs(npv) < 1e-9


def test_xirr_simple_and_multiple_roots():
    assert m.xirr([(date(2023, 1, 1), -100), (date(2024, 1, 1), 110)]) == pytest.approx(0.1, abs=1e-13)
    # -100 x² + 230 x - 132 = 0 with x = 1 + r has roots r = 10 % and 20 %: the one nearer 0 wins.
    flows = [(date(2021, 1, 1), -100), (date(2022, 1, 1), 230), (date(2023, 1, 1), -132)]
    assert m.xirr(flows) == pytest.approx(0.1, abs=1e-12)
    # A one-day 10 % gain annualizes to 1.1 ** 365 - 1.
    assert m.xirr([(date(2024, 1, 1), -1), (date(2024, 1, 2), 1.1)]) == pytest.approx(1.1**365 - 1, rel=1e-9)


def test_xirr_without_a_root():
    with pytest.raises(m.NoRootError, match="at least one positive and one negative"):
        m.xirr([(date(2023, 1, 1), 100), (date(2024, 1, 1), 110)])
    with pytest.raises(m.NoRootError, match="all fall on one date"):
        m.xirr([(date(2023, 1, 1), -100), (date(2023, 1, 1), 110)])
    with pytest.raises(m.NoRootError, match="no cash flows"):
        m.xirr([])
    # Always-negative NPV: -100, +50, -100 has no real rate (discriminant < 0).
    with pytest.raises(m.NoRootError, match="no rate between"):
        m.xirr([(date(2021, 1, 1), -100), (date(2022, 1, 1), 50), (date(2023, 1, 1), -100)])


def test_money_weighted_vs_time_weighted():
    # 100 invested, 100 more a year later at start of day; both years earn 10 % for the money
    # invested: final 100 * 1.21 + 100 * 1.1 = 231. The TWR sees 5 % then 10 %.
    days = [date(2021, 1, 1), date(2022, 1, 1), date(2023, 1, 1)]
    eq = series([100, 210, 231], days)
    flows = series([100], [days[1]])
    assert m.money_weighted_return(eq, flows) == pytest.approx(0.1, abs=1e-12)
    assert m.time_weighted_return(eq, flows) == pytest.approx(1.05 * 1.1 - 1, abs=1e-15)


# ---------------------------------------------------------------------------- risk


def test_volatility_sharpe_sortino_by_hand():
    r = series(SMALL, bdays(5))
    assert m.annualized_volatility(r) == pytest.approx(math.sqrt(3.7e-4) * math.sqrt(252), abs=1e-14)
    assert m.sharpe_ratio(r) == pytest.approx(0.002 / math.sqrt(3.7e-4) * math.sqrt(252), abs=1e-12)
    assert m.downside_deviation(r) == pytest.approx(0.01, abs=1e-16)
    assert m.sortino_ratio(r) == pytest.approx(0.2 * math.sqrt(252), abs=1e-12)


def test_sharpe_sortino_with_risk_free_rate():
    r = series(SMALL, bdays(5))
    rf = 1.001**252 - 1  # 0.1 % per period
    assert m.sharpe_ratio(r, risk_free=rf) == pytest.approx(0.001 / math.sqrt(3.7e-4) * math.sqrt(252), abs=1e-12)
    # Shortfalls below 0.001: -0.021, -0.001, -0.011 over 5 periods.
    dd = math.sqrt((0.021**2 + 0.001**2 + 0.011**2) / 5)
    assert m.sortino_ratio(r, risk_free=rf) == pytest.approx(0.001 / dd * math.sqrt(252), abs=1e-11)
    assert m.sortino_ratio(r, risk_free=rf, periods_per_year=365) is not None


def test_zero_volatility():
    steady = m.daily_returns(series([100, 101, 102.01, 103.0301], D))  # +1 % every day
    assert m.annualized_volatility(steady) < 1e-12
    assert m.sharpe_ratio(steady) is None
    assert m.sortino_ratio(steady) is None  # no downside
    flat = m.daily_returns(series([100, 100, 100], D[:3]))
    assert m.annualized_volatility(flat) == 0.0
    assert m.sharpe_ratio(flat) is None
    assert m.max_drawdown(series([1, 1, 1], D[:3])) is None
    assert m.calmar_ratio(flat) is None


# ---------------------------------------------------------------------------- drawdowns

DD_DAYS = [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 5), date(2024, 1, 8), date(2024, 1, 10),
           date(2024, 1, 11)]


def test_drawdown_series_and_max_drawdown_with_gaps():
    levels = series([1.0, 1.25, 0.9375, 1.0, 1.25, 1.125], DD_DAYS)
    dd = m.drawdown_series(levels)
    assert dd.tolist() == pytest.approx([0.0, 0.0, -0.25, -0.2, 0.0, -0.1], abs=1e-15)
    assert m.max_drawdown(levels) == m.Drawdown(
        depth=-0.25, peak=date(2024, 1, 3), trough=date(2024, 1, 5), recovery=date(2024, 1, 10),
        duration_days=7, duration_periods=3)


def test_unrecovered_drawdown_runs_to_the_last_date():
    levels = series([1.0, 0.8, 0.9], DD_DAYS[:3])
    assert m.max_drawdown(levels) == m.Drawdown(
        depth=pytest.approx(-0.2), peak=date(2024, 1, 2), trough=date(2024, 1, 3), recovery=None,
        duration_days=3, duration_periods=2)


def test_recovery_through_compounded_returns_counts_despite_float_dust():
    # Equity 100 -> 106 -> 95.4 -> 106: the chained index ends 2.2e-16 below its peak 1.06.
    levels = m.growth_index(series([100, 106, 95.4, 106], D))
    assert levels.iloc[3] < levels.iloc[1]
    dd = m.max_drawdown(levels)
    assert (dd.peak, dd.trough, dd.recovery) == (D[1], D[2], D[3])


def test_calmar():
    levels = [1.0, 1.25, 0.9375, 1.0, 1.25, 1.125]
    r = series(np.array(levels[1:]) / np.array(levels[:-1]) - 1, DD_DAYS[1:])
    assert m.calmar_ratio(r, periods_per_year=5) == pytest.approx((1.125 - 1) / 0.25, abs=1e-14)
    # The unit before the first return is a peak: a first-day loss is a drawdown.
    first_loss = series([-0.1, 0.05], DD_DAYS[1:3])
    assert m.calmar_ratio(first_loss, periods_per_year=2) == pytest.approx((0.9 * 1.05 - 1) / 0.1, abs=1e-14)


# ---------------------------------------------------------------------------- benchmark


def test_beta_alpha_constructed_exactly():
    days = bdays(6)
    b = [0.01, -0.02, 0.015, 0.005, -0.01]
    bench = series(b, days[1:])
    # The portfolio has one extra date the benchmark lacks: it is dropped by the alignment.
    port = series([2 * x + 0.001 for x in b] + [0.5], days[1:] + [pd.Timestamp("2024-02-01")])
    ba = m.beta_alpha(port, bench)
    assert ba.beta == pytest.approx(2.0, abs=1e-12)
    assert ba.alpha == pytest.approx(1.001**252 - 1, abs=1e-10)
    assert ba.observations == 5
    # With a risk-free rate: Rp - rf = 2 (Rb - rf) + 0.001.
    rf = 1.0002**252 - 1
    port_rf = series([2 * x - 0.0002 + 0.001 for x in b], days[1:])
    ba_rf = m.beta_alpha(port_rf, bench, risk_free=rf)
    assert ba_rf.beta == pytest.approx(2.0, abs=1e-10)
    assert ba_rf.alpha == pytest.approx(1.001**252 - 1, abs=1e-8)


def test_beta_matches_least_squares_fit():
    rng = np.random.default_rng(7)
    days = bdays(300)
    b = rng.normal(0.0004, 0.01, 300)
    p = 0.8 * b + rng.normal(0.0001, 0.005, 300)
    slope, intercept = np.polyfit(b, p, 1)
    ba = m.beta_alpha(series(p, days), series(b, days))
    assert ba.beta == pytest.approx(slope, rel=1e-10)
    assert ba.alpha == pytest.approx((1 + intercept) ** 252 - 1, rel=1e-8)


def test_beta_undefined_for_a_flat_benchmark_or_too_few_dates():
    assert m.beta_alpha(series(SMALL, bdays(5)), series([0.0] * 5, bdays(5))) is None
    assert m.beta_alpha(series([0.01], bdays(1)), series([0.02], bdays(1))) is None


def test_normalize_curves_rebases_and_carries_the_benchmark_over_weekends():
    days = list(pd.date_range("2024-01-05", "2024-01-09"))  # Fri..Tue, every day (a crypto book)
    pf = series([2.0, 2.2, 2.4, 2.0, 2.1], days)
    bench = series([400.0, 410.0, 420.0], [days[0] - pd.Timedelta(days=1), days[3], days[4]])
    # The first common date is Monday 2024-01-08.
    out = m.normalize_curves(pf, bench)
    assert list(out.index.date) == [date(2024, 1, 8), date(2024, 1, 9)]
    assert out["portfolio"].tolist() == pytest.approx([100.0, 105.0])
    assert out["benchmark"].tolist() == pytest.approx([100.0, 420 / 410 * 100])
    bench_all = series([400.0, 404.0], [days[0], days[3]])
    out = m.normalize_curves(pf, bench_all, base=1.0)
    assert out["benchmark"].tolist() == [1.0, 1.0, 1.0, 1.01, 1.01]  # Sat, Sun, Tue carried forward
    assert m.normalize_curves(pf, series([1.0], [date(2020, 1, 1)])).empty


def test_best_and_worst_day():
    r = series(SMALL, bdays(5))
    assert m.best_day(r) == m.DayReturn(day=date(2024, 1, 4), value=0.03)
    assert m.worst_day(r) == m.DayReturn(day=date(2024, 1, 3), value=-0.02)


# ---------------------------------------------------------------------------- attribution


def test_attribution_by_instrument_and_asset_class():
    pnl = pd.DataFrame({"AAPL": [10.0, -5.0, np.nan], "MSFT": [3.0, 4.0, 1.0], "BTC/USD": [-20.0, 50.0, 7.0],
                        "SPY": [1.0, 1.0, 1.0]}, index=bdays(3))
    classes = {"AAPL": "equity", "MSFT": "equity", "BTC/USD": "crypto", "SPY": "etf", "UNUSED": "option"}
    a = m.attribute_pnl(pnl, classes)
    assert a.total == 53.0
    assert a.by_instrument == {"BTC/USD": 37.0, "MSFT": 8.0, "AAPL": 5.0, "SPY": 3.0}
    assert a.by_asset_class == {"crypto": 37.0, "equity": 13.0, "etf": 3.0}
    assert sum(a.by_instrument.values()) == a.total == sum(a.by_asset_class.values())
    assert a.share_by_asset_class == pytest.approx({"crypto": 37 / 53, "equity": 13 / 53, "etf": 3 / 53})
    assert sum(a.share_by_instrument.values()) == pytest.approx(1.0, abs=1e-15)


def test_attribution_zero_total_and_unknown_class():
    flat = pd.DataFrame({"AAPL": [5.0], "MSFT": [-5.0]})
    a = m.attribute_pnl(flat, {"AAPL": "equity", "MSFT": "equity"})
    assert a.total == 0.0 and a.share_by_instrument is None and a.by_asset_class == {"equity": 0.0}
    with pytest.raises(ValueError, match="no asset class for: MSFT"):
        m.attribute_pnl(flat, {"AAPL": "equity"})


# ---------------------------------------------------------------------------- summary and references


def _reference_metrics(returns: np.ndarray, rf_period: float, ppy: int) -> dict[str, float]:
    """Plain-Python formulas, written independently of the module (loops, no pandas)."""
    n = len(returns)
    mean = sum(returns) / n
    var = sum((x - mean) ** 2 for x in returns) / (n - 1)
    ex = [x - rf_period for x in returns]
    ex_mean = sum(ex) / n
    ex_sd = math.sqrt(sum((x - ex_mean) ** 2 for x in ex) / (n - 1))
    down = math.sqrt(sum(min(x, 0.0) ** 2 for x in ex) / n)
    wealth, peak, worst = 1.0, 1.0, 0.0
    for x in returns:
        wealth *= 1 + x
        peak = max(peak, wealth)
        worst = min(worst, wealth / peak - 1)
    ann = wealth ** (ppy / n) - 1
    return {"vol": math.sqrt(var * ppy), "sharpe": ex_mean / ex_sd * math.sqrt(ppy),
            "sortino": ex_mean / down * math.sqrt(ppy), "mdd": worst, "ann": ann, "calmar": ann / -worst,
            "cum": wealth - 1}


@pytest.mark.parametrize("ppy", [252, 365])
def test_summary_matches_independent_formulas_on_random_data(ppy):
    rng = np.random.default_rng(42)
    n = 400
    days = bdays(n + 1)
    returns = rng.normal(0.0005, 0.012, n)
    equity = series(np.concatenate(([1000.0], 1000.0 * np.cumprod(1 + returns))), days)
    bench_prices = series(np.concatenate(([50.0], 50.0 * np.cumprod(1 + rng.normal(0.0003, 0.01, n)))), days)
    rf = 0.03
    s = m.performance_summary(equity, benchmark_prices=bench_prices, risk_free=rf, periods_per_year=ppy)
    ref = _reference_metrics(returns.tolist(), (1 + rf) ** (1 / ppy) - 1, ppy)
    assert s.observations == n + 1 and s.start == days[0].date() and s.end == days[-1].date()
    assert s.time_weighted_return == pytest.approx(ref["cum"], rel=1e-10)
    assert s.cumulative_return == pytest.approx(ref["cum"], rel=1e-10)
    assert s.annualized_return == pytest.approx(ref["ann"], rel=1e-10)
    assert s.annualized_volatility == pytest.approx(ref["vol"], rel=1e-10)
    assert s.sharpe == pytest.approx(ref["sharpe"], rel=1e-9)
    assert s.sortino == pytest.approx(ref["sortino"], rel=1e-9)
    assert s.max_drawdown.depth == pytest.approx(ref["mdd"], rel=1e-10)
    assert s.calmar == pytest.approx(ref["calmar"], rel=1e-9)
    # No external flows: the money-weighted return is the compound annual growth over actual/365.
    years = (days[-1] - days[0]).days / 365
    assert s.money_weighted_return == pytest.approx((1 + ref["cum"]) ** (1 / years) - 1, rel=1e-9)
    assert s.beta == m.beta_alpha(m.daily_returns(equity), m.price_returns(bench_prices), rf, ppy).beta
    assert s.best_day.value == pytest.approx(returns.max()) and s.worst_day.value == pytest.approx(returns.min())
    d = s.as_dict()
    assert d["max_drawdown"]["depth"] == s.max_drawdown.depth and d["best_day"]["day"] == s.best_day.day


def test_summary_with_flows_uses_flow_adjusted_returns():
    days = [date(2021, 1, 1), date(2022, 1, 1), date(2023, 1, 1)]
    s = m.performance_summary(series([100, 210, 231], days), series([100], [days[1]]), periods_per_year=1)
    assert s.time_weighted_return == pytest.approx(0.155, abs=1e-15)
    assert s.money_weighted_return == pytest.approx(0.1, abs=1e-12)
    assert s.max_drawdown is None  # the deposit is not a gain, and nothing fell
    assert s.best_day == m.DayReturn(day=days[2], value=pytest.approx(0.1))


# ---------------------------------------------------------------------------- empyrical-reloaded reference


@pytest.mark.parametrize(("ppy", "period"), [(252, "daily"), (52, "weekly")])
def test_matches_empyrical_reference(ppy, period):
    """empyrical-reloaded (test-only) uses the same definitions: geometric annualization, sample
    std, downside deviation over all periods, drawdown from a starting unit, compounded alpha."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import empyrical as ep

    rng = np.random.default_rng(11)
    n = 300
    idx = pd.bdate_range("2023-01-02", periods=n)
    r = pd.Series(rng.normal(0.0004, 0.013, n), index=idx)
    b = pd.Series(0.6 * r.to_numpy() + rng.normal(0.0002, 0.009, n), index=idx)
    rf = 0.04
    rfp = (1 + rf) ** (1 / ppy) - 1
    ba = m.beta_alpha(r, b, rf, ppy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            "cum": ep.cum_returns_final(r),
            "ann": ep.annual_return(r, period=period),
            "vol": ep.annual_volatility(r, period=period),
            "sharpe": ep.sharpe_ratio(r, risk_free=rfp, period=period),
            "sortino": ep.sortino_ratio(r, required_return=rfp, period=period),
            "calmar": ep.calmar_ratio(r, period=period),
            "beta": ep.beta(r, b, risk_free=rfp),
            "alpha": ep.alpha(r, b, risk_free=rfp, period=period),
        }
    ours = {
        "cum": m.cumulative_return(r),
        "ann": m.annualized_return(r, ppy),
        "vol": m.annualized_volatility(r, ppy),
        "sharpe": m.sharpe_ratio(r, rf, ppy),
        "sortino": m.sortino_ratio(r, rf, ppy),
        "calmar": m.calmar_ratio(r, ppy),
        "beta": ba.beta,
        "alpha": ba.alpha,
    }
    assert ours == pytest.approx(expected, rel=1e-12)
    levels = m.growth_index(pd.Series(np.concatenate(([1.0], np.cumprod(1 + r.to_numpy()))),
                                      index=[idx[0] - pd.Timedelta(days=1), *idx]))
    assert m.max_drawdown(levels).depth == pytest.approx(ep.max_drawdown(r), rel=1e-12)


def test_xirr_large_amounts_over_decades_stay_finite():
    # 1e9-sized flows over 25 years: the NPV scan must neither overflow nor lose the root.
    flows = [(date(2000, 1, 3), -1e9), (date(2012, 6, 1), -5e8), (date(2025, 1, 2), 4.2e9)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rate = m.xirr(flows)
    npv = sum(c / (1 + rate) ** ((d - flows[0][0]).days / 365) for d, c in flows)
    assert abs(npv) < 1e-3
    assert m.xirr([(d, c / 1e9) for d, c in flows]) == pytest.approx(rate, rel=1e-12)
