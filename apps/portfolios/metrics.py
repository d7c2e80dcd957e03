"""Performance analytics over a daily equity curve: returns, risk, drawdowns, benchmark, attribution.

Pure: no ORM, float64 numpy/pandas. End-of-day snapshots and the backtester both feed it.

Inputs and conventions
- ``equity``: a Series of end-of-day portfolio values indexed by date (sorted here; duplicates
  refused). Gaps in dates are fine: a return is measured between consecutive observations.
- ``flows``: external cash flows (deposits positive, withdrawals negative) indexed by date;
  several on one date are summed. Trades, fees and dividends are *not* external flows.
- Flows happen at the **start of the day**: the day's return is
  ``r_t = V_t / (V_{t-1} + F_t) - 1``, so money deposited in the morning earns that day's return.
  Flows on the first date are already in the opening value; a flow dated between two observations
  (a gap) belongs to the next observation. Flows outside the equity's date range are refused.
- When the start-of-day capital ``V_{t-1} + F_t`` is zero the return is 0 if ``V_t`` is also zero
  (nothing invested) and NaN otherwise; when it is negative the return is NaN (undefined). The
  TWR is then None; the risk metrics skip undefined returns.
- Returns are simple daily returns; annualization uses ``periods_per_year`` (252 trading days for
  exchange-traded portfolios, 365 for crypto). The risk-free rate is an annual rate converted to
  a per-period rate geometrically: ``(1 + rf) ** (1 / periods_per_year) - 1``.
- A metric that is undefined (too few points, zero volatility, no downside, no drawdown) is
  ``None``, never a ZeroDivisionError. Volatility is the sample standard deviation (ddof=1);
  a standard deviation below ``ZERO_STD`` counts as zero, since float noise on a constant series
  would otherwise give a Sharpe ratio of 1e15.
- Drawdowns are measured on the growth index (the time-weighted wealth of one unit invested),
  so a withdrawal is not mistaken for a loss. They are non-positive fractions (-0.25 = 25 % down).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date

import numpy as np
import pandas as pd
from scipy.optimize import brentq

TRADING_DAYS_PER_YEAR = 252
ZERO_STD = 1e-12
AT_PEAK = 1e-12  # a drawdown this small counts as back at the peak (compounding leaves float dust)
XIRR_DAY_COUNT = 365.0  # actual/365, as spreadsheet XIRR


class NoRootError(ValueError):
    """No rate makes the net present value of the cash flows zero."""


# ---------------------------------------------------------------------------- inputs


def _dated(series: pd.Series, name: str) -> pd.Series:
    if not isinstance(series, pd.Series):
        raise TypeError(f"{name} must be a pandas Series indexed by date")
    out = pd.Series(np.asarray(series.to_numpy(), dtype="float64"),
                    index=pd.DatetimeIndex(pd.to_datetime(series.index)).normalize(), name=name)
    if out.index.tz is not None:
        out.index = out.index.tz_localize(None)
    return out.sort_index()


def _equity(equity: pd.Series) -> pd.Series:
    eq = _dated(equity, "equity")
    if eq.index.has_duplicates:
        dups = sorted({d.date().isoformat() for d in eq.index[eq.index.duplicated()]})
        raise ValueError(f"equity has duplicate dates: {', '.join(dups)}")
    if not np.isfinite(eq.to_numpy()).all():
        raise ValueError("equity must be finite")
    return eq


def _flows_on(eq: pd.Series, flows: pd.Series | None) -> pd.Series:
    """External flows assigned to the observation whose day they start (zero where none)."""
    on = pd.Series(0.0, index=eq.index)
    if flows is None or len(flows) == 0:
        return on
    fl = _dated(flows, "flows")
    if not np.isfinite(fl.to_numpy()).all():
        raise ValueError("flows must be finite")
    if len(eq) == 0 or fl.index[0] < eq.index[0] or fl.index[-1] > eq.index[-1]:
        raise ValueError("flows must be dated within the equity's date range")
    # A flow on an unobserved date (a gap) goes to the next observation.
    slot = eq.index.searchsorted(fl.index, side="left")
    on.iloc[:] = np.bincount(slot, weights=fl.to_numpy(), minlength=len(eq))
    return on


def _returns(returns: pd.Series) -> pd.Series:
    return _dated(returns, "returns").dropna()


def _rf_per_period(risk_free: float, periods_per_year: int) -> float:
    return (1.0 + risk_free) ** (1.0 / periods_per_year) - 1.0


def _std(values: np.ndarray) -> float | None:
    if len(values) < 2:
        return None
    std = float(np.std(values, ddof=1))
    return None if std < ZERO_STD else std


# ---------------------------------------------------------------------------- returns


def daily_returns(equity: pd.Series, flows: pd.Series | None = None) -> pd.Series:
    """Cash-flow-adjusted returns between consecutive observations, indexed by the later date."""
    eq = _equity(equity)
    if len(eq) < 2:
        return pd.Series([], index=pd.DatetimeIndex([]), dtype="float64", name="return")
    on = _flows_on(eq, flows).to_numpy()[1:]
    prev, cur = eq.to_numpy()[:-1], eq.to_numpy()[1:]
    base = prev + on
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(base > 0, cur / base - 1.0, np.nan)
    r = np.where((base == 0) & (cur == 0), 0.0, r)
    return pd.Series(r, index=eq.index[1:], name="return")


def price_returns(prices: pd.Series) -> pd.Series:
    """Simple returns of a price series (a benchmark's closes), indexed by the later date."""
    px = _equity(prices)
    return (px / px.shift(1) - 1.0).iloc[1:].rename("return")


def growth_index(equity: pd.Series, flows: pd.Series | None = None, base: float = 1.0) -> pd.Series:
    """Time-weighted wealth of ``base`` invested at the first date (the chained daily returns)."""
    eq = _equity(equity)
    if len(eq) == 0:
        return pd.Series([], index=pd.DatetimeIndex([]), dtype="float64", name="index")
    r = daily_returns(eq, flows).to_numpy()
    levels = base * np.concatenate(([1.0], np.cumprod(1.0 + r)))
    return pd.Series(levels, index=eq.index, name="index")


def time_weighted_return(equity: pd.Series, flows: pd.Series | None = None) -> float | None:
    """Chain-linked return over the whole period (not annualized).

    None for fewer than 2 points, or when a period's return is undefined (capital <= 0).
    """
    r = daily_returns(equity, flows)
    if len(r) == 0 or r.isna().any():
        return None
    return float(np.prod(1.0 + r.to_numpy()) - 1.0)


def cumulative_return(returns: pd.Series) -> float | None:
    """Compounded return of a return series (NaNs skipped); for a portfolio, equal to the TWR."""
    r = _returns(returns).to_numpy()
    if len(r) == 0:
        return None
    return float(np.prod(1.0 + r) - 1.0)


def annualized_return(returns: pd.Series, periods_per_year: int = TRADING_DAYS_PER_YEAR) -> float | None:
    """Geometric annual return: ``(1 + cumulative) ** (periods_per_year / n) - 1``; -1 after a total loss."""
    r = _returns(returns).to_numpy()
    if len(r) == 0:
        return None
    growth = float(np.prod(1.0 + r))
    if growth <= 0:
        return -1.0
    return growth ** (periods_per_year / len(r)) - 1.0


# ---------------------------------------------------------------------------- money-weighted


def xirr(cashflows: Sequence[tuple[date, float]]) -> float:
    """Annual internal rate of return of dated cash flows (actual/365, as spreadsheet XIRR).

    Solves ``sum(c_i * (1 + r) ** -((d_i - d_0) / 365)) = 0`` for ``r > -1`` by scanning
    ``x = ln(1 + r)`` for sign changes of the NPV and refining each with Brent's method. Flows
    changing sign several times can have several roots: the one with the smallest |ln(1 + r)| wins.
    Raises NoRootError when no rate exists (e.g. all flows of one sign).
    """
    if not cashflows:
        raise NoRootError("no cash flows")
    days = np.array([np.datetime64(pd.Timestamp(d).date(), "D") for d, _ in cashflows])
    amounts = np.array([float(a) for _, a in cashflows], dtype="float64")
    if not np.isfinite(amounts).all():
        raise ValueError("cash flows must be finite")
    if not (amounts > 0).any() or not (amounts < 0).any():
        raise NoRootError("cash flows need at least one positive and one negative amount")
    years = (days - days.min()).astype("float64") / XIRR_DAY_COUNT
    span = float(years.max())
    if span == 0:
        raise NoRootError("cash flows all fall on one date: no rate makes their NPV zero")
    unit = amounts / np.abs(amounts).max()  # same roots; keeps sums of exp() terms finite

    def npv(x: float) -> float:
        return float(np.sum(unit * np.exp(-x * years)))

    # Search x = ln(1 + r) where every discount factor stays below e^600 (and r below 1e260).
    hi = min(600.0 / span, 600.0)
    grid = np.sinh(np.linspace(np.arcsinh(-hi), np.arcsinh(hi), 4001))  # dense around 0 %
    values = unit @ np.exp(-np.outer(years, grid))
    roots = [float(x) for x, v in zip(grid, values, strict=True) if v == 0.0]
    sign_change = np.nonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0)[0]
    roots += [brentq(npv, grid[i], grid[i + 1], xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200)
              for i in sign_change]
    if not roots:
        raise NoRootError("no rate between -100 % and the largest representable rate makes the NPV zero")
    return math.expm1(min(roots, key=abs))


def money_weighted_return(equity: pd.Series, flows: pd.Series | None = None) -> float | None:
    """XIRR of the investor's flows: the opening value in, deposits in, withdrawals out, final value out.

    Annualized (actual/365). None for fewer than 2 points; -1.0 (-100 %) when money went in and
    nothing came back; NoRootError when no rate exists.
    """
    eq = _equity(equity)
    if len(eq) < 2:
        return None
    on = _flows_on(eq, flows)
    if eq.iloc[-1] == 0 and not (on.iloc[1:] < 0).any() and (eq.iloc[0] > 0 or (on.iloc[1:] > 0).any()):
        return -1.0  # a total loss: the NPV tends to zero only as the rate tends to -100 %
    cash: list[tuple[date, float]] = [(eq.index[0].date(), -float(eq.iloc[0]))]
    cash += [(d.date(), -float(f)) for d, f in on.iloc[1:].items() if f != 0]
    cash.append((eq.index[-1].date(), float(eq.iloc[-1])))
    return xirr(cash)


# ---------------------------------------------------------------------------- risk


def annualized_volatility(returns: pd.Series, periods_per_year: int = TRADING_DAYS_PER_YEAR) -> float | None:
    r = _returns(returns).to_numpy()
    if len(r) < 2:
        return None
    return float(np.std(r, ddof=1)) * math.sqrt(periods_per_year)


def sharpe_ratio(returns: pd.Series, risk_free: float = 0.0,
                 periods_per_year: int = TRADING_DAYS_PER_YEAR) -> float | None:
    """Annualized Sharpe: ``mean(r - rf) / std(r - rf) * sqrt(periods_per_year)``; None at zero volatility."""
    excess = _returns(returns).to_numpy() - _rf_per_period(risk_free, periods_per_year)
    std = _std(excess)
    if std is None:
        return None
    return float(np.mean(excess)) / std * math.sqrt(periods_per_year)


def downside_deviation(returns: pd.Series, target: float = 0.0) -> float | None:
    """Per-period downside deviation (Sortino & Price): ``sqrt(mean(min(r - target, 0) ** 2))``.

    The mean runs over *all* periods (those above the target count as zero), not only the losing
    ones. None for an empty series.
    """
    r = _returns(returns).to_numpy()
    if len(r) == 0:
        return None
    shortfall = np.minimum(r - target, 0.0)
    return float(np.sqrt(np.mean(shortfall**2)))


def sortino_ratio(returns: pd.Series, risk_free: float = 0.0,
                  periods_per_year: int = TRADING_DAYS_PER_YEAR) -> float | None:
    """Annualized Sortino: mean excess over the per-period risk-free rate (the target) divided by
    the downside deviation below that target, times ``sqrt(periods_per_year)``. None when there is
    no downside (or fewer than 2 returns)."""
    r = _returns(returns)
    if len(r) < 2:
        return None
    target = _rf_per_period(risk_free, periods_per_year)
    dd = downside_deviation(r, target)
    if dd is None or dd < ZERO_STD:
        return None
    return float(np.mean(r.to_numpy() - target)) / dd * math.sqrt(periods_per_year)


# ---------------------------------------------------------------------------- drawdowns


@dataclass(frozen=True)
class Drawdown:
    depth: float  # non-positive fraction of the peak
    peak: date  # last high before the fall
    trough: date
    recovery: date | None  # first date back at the peak; None if not recovered
    duration_days: int  # calendar days from peak to recovery, or to the last date if not recovered
    duration_periods: int  # observations from peak to recovery (or to the last date)


def drawdown_series(levels: pd.Series) -> pd.Series:
    """Drawdown from the running peak at each date (0 at highs, -0.25 when 25 % below the peak).

    ``levels`` is a growth index (see growth_index) or prices; feed the drawdown chart with it.
    """
    lv = _equity(levels)
    peak = lv.cummax()
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, lv.to_numpy() / peak.to_numpy() - 1.0, 0.0)
    return pd.Series(dd, index=lv.index, name="drawdown")


def max_drawdown(levels: pd.Series) -> Drawdown | None:
    """The deepest drawdown of a level series with its dates; None if it never falls below a peak."""
    dd = drawdown_series(levels)
    if len(dd) == 0 or dd.min() >= -AT_PEAK:
        return None
    values = dd.to_numpy()
    at_peak = values >= -AT_PEAK
    trough_i = int(np.argmin(values))  # first occurrence of the deepest point
    peak_i = int(np.nonzero(at_peak[: trough_i + 1])[0][-1])
    later = np.nonzero(at_peak[trough_i:])[0]
    end_i = trough_i + int(later[0]) if len(later) else len(values) - 1
    idx = dd.index
    return Drawdown(
        depth=float(values[trough_i]),
        peak=idx[peak_i].date(),
        trough=idx[trough_i].date(),
        recovery=idx[end_i].date() if len(later) else None,
        duration_days=(idx[end_i] - idx[peak_i]).days,
        duration_periods=end_i - peak_i,
    )


def calmar_ratio(returns: pd.Series, periods_per_year: int = TRADING_DAYS_PER_YEAR) -> float | None:
    """Annualized return over the magnitude of the maximum drawdown; None without a drawdown."""
    r = _returns(returns).to_numpy()
    if len(r) == 0:
        return None
    # The unit invested before the first return is the first possible peak.
    levels = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    peak = np.maximum.accumulate(levels)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = float(np.min(np.where(peak > 0, levels / peak - 1.0, 0.0)))
    if depth >= -AT_PEAK:
        return None
    ann = annualized_return(returns, periods_per_year)
    return None if ann is None else ann / -depth


# ---------------------------------------------------------------------------- benchmark


@dataclass(frozen=True)
class BetaAlpha:
    beta: float
    alpha: float  # Jensen's alpha, annualized by compounding: (1 + per-period alpha) ** ppy - 1
    observations: int


def align_returns(returns: pd.Series, benchmark_returns: pd.Series) -> pd.DataFrame:
    """Portfolio and benchmark returns on the dates both have (inner join, NaNs dropped)."""
    both = pd.concat([_returns(returns).rename("portfolio"), _returns(benchmark_returns).rename("benchmark")],
                     axis=1, join="inner")
    return both.dropna()


def beta_alpha(returns: pd.Series, benchmark_returns: pd.Series, risk_free: float = 0.0,
               periods_per_year: int = TRADING_DAYS_PER_YEAR) -> BetaAlpha | None:
    """CAPM beta and Jensen's alpha of excess returns on aligned dates.

    beta = cov(Rp - rf, Rb - rf) / var(Rb - rf); per-period alpha = mean(Rp - rf) - beta * mean(Rb - rf).
    None with fewer than 2 common dates or a benchmark of zero variance.
    """
    both = align_returns(returns, benchmark_returns)
    rf = _rf_per_period(risk_free, periods_per_year)
    p = both["portfolio"].to_numpy() - rf
    b = both["benchmark"].to_numpy() - rf
    if _std(b) is None:
        return None
    cov = np.cov(p, b, ddof=1)
    beta = float(cov[0, 1] / cov[1, 1])
    alpha_period = float(np.mean(p) - beta * np.mean(b))
    return BetaAlpha(beta=beta, alpha=(1.0 + alpha_period) ** periods_per_year - 1.0, observations=len(both))


def normalize_curves(portfolio_levels: pd.Series, benchmark_prices: pd.Series, base: float = 100.0) -> pd.DataFrame:
    """Portfolio growth index and benchmark rebased to ``base`` at their first common date.

    Pass the growth index (growth_index), not raw equity, so deposits do not look like gains.

    The result is on the portfolio's dates from that first common date; the benchmark is carried
    forward over dates it lacks (a crypto portfolio's weekends against an equity index).
    """
    pf = _equity(portfolio_levels)
    bm = _equity(benchmark_prices)
    common = pf.index.intersection(bm.index)
    if len(common) == 0:
        return pd.DataFrame({"portfolio": [], "benchmark": []}, index=pd.DatetimeIndex([]), dtype="float64")
    start = common[0]
    pf = pf.loc[start:]
    bm = bm.reindex(bm.index.union(pf.index)).ffill().reindex(pf.index)
    if pf.iloc[0] == 0 or bm.iloc[0] == 0:
        raise ValueError("cannot rebase a series that is zero on its first common date")
    return pd.DataFrame({"portfolio": pf / pf.iloc[0] * base, "benchmark": bm / bm.iloc[0] * base})


# ---------------------------------------------------------------------------- days and attribution


@dataclass(frozen=True)
class DayReturn:
    day: date
    value: float


def best_day(returns: pd.Series) -> DayReturn | None:
    r = _returns(returns)
    if len(r) == 0:
        return None
    return DayReturn(day=r.idxmax().date(), value=float(r.max()))


def worst_day(returns: pd.Series) -> DayReturn | None:
    r = _returns(returns)
    if len(r) == 0:
        return None
    return DayReturn(day=r.idxmin().date(), value=float(r.min()))


@dataclass(frozen=True)
class Attribution:
    total: float
    by_instrument: dict[str, float]  # P&L per instrument, largest first
    by_asset_class: dict[str, float]
    share_by_instrument: dict[str, float] | None  # fraction of the total; None when the total is 0
    share_by_asset_class: dict[str, float] | None


def attribute_pnl(pnl: pd.DataFrame, asset_classes: Mapping[str, str]) -> Attribution:
    """Sum-based P&L attribution: each instrument's P&L over the period, grouped by asset class.

    ``pnl`` has one column per instrument and one row per day (NaN = not held = 0). The
    contributions add up to the total exactly in the sense of float summation of the same numbers.
    """
    missing = sorted(str(c) for c in pnl.columns if c not in asset_classes)
    if missing:
        raise ValueError(f"no asset class for: {', '.join(missing)}")
    per_instrument = pnl.astype("float64").fillna(0.0).sum(axis=0)
    if not np.isfinite(per_instrument.to_numpy()).all():
        raise ValueError("pnl must be finite")
    per_instrument = per_instrument.sort_values(ascending=False, kind="stable")
    per_class = per_instrument.groupby(lambda sym: asset_classes[sym], sort=True).sum()
    per_class = per_class.sort_values(ascending=False, kind="stable")
    total = float(per_instrument.sum())

    def shares(s: pd.Series) -> dict[str, float] | None:
        return None if total == 0 else {str(k): float(v) / total for k, v in s.items()}

    return Attribution(
        total=total,
        by_instrument={str(k): float(v) for k, v in per_instrument.items()},
        by_asset_class={str(k): float(v) for k, v in per_class.items()},
        share_by_instrument=shares(per_instrument),
        share_by_asset_class=shares(per_class),
    )


# ---------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class PerformanceSummary:
    start: date | None
    end: date | None
    observations: int
    time_weighted_return: float | None
    money_weighted_return: float | None  # None also when no rate exists
    cumulative_return: float | None
    annualized_return: float | None
    annualized_volatility: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: Drawdown | None
    calmar: float | None
    beta: float | None
    alpha: float | None
    best_day: DayReturn | None
    worst_day: DayReturn | None

    def as_dict(self) -> dict:
        return asdict(self)


def performance_summary(equity: pd.Series, flows: pd.Series | None = None, *,
                        benchmark_prices: pd.Series | None = None, risk_free: float = 0.0,
                        periods_per_year: int = TRADING_DAYS_PER_YEAR) -> PerformanceSummary:
    """Every headline metric of one equity curve, for the snapshots' performance view and backtests."""
    eq = _equity(equity)
    r = daily_returns(eq, flows).dropna()
    levels = growth_index(eq, flows).dropna()
    try:
        mwr = money_weighted_return(eq, flows)
    except NoRootError:
        mwr = None
    ba = None
    if benchmark_prices is not None and len(benchmark_prices) > 1:
        ba = beta_alpha(r, price_returns(benchmark_prices), risk_free, periods_per_year)
    return PerformanceSummary(
        start=eq.index[0].date() if len(eq) else None,
        end=eq.index[-1].date() if len(eq) else None,
        observations=len(eq),
        time_weighted_return=time_weighted_return(eq, flows),
        money_weighted_return=mwr,
        cumulative_return=cumulative_return(r),
        annualized_return=annualized_return(r, periods_per_year),
        annualized_volatility=annualized_volatility(r, periods_per_year),
        sharpe=sharpe_ratio(r, risk_free, periods_per_year),
        sortino=sortino_ratio(r, risk_free, periods_per_year),
        max_drawdown=max_drawdown(levels),
        calmar=calmar_ratio(r, periods_per_year),
        beta=ba.beta if ba else None,
        alpha=ba.alpha if ba else None,
        best_day=best_day(r),
        worst_day=worst_day(r),
    )
