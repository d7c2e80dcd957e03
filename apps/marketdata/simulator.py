"""Seeded synthetic market: the pure core of the *Simulated* market-data provider.

No Django, no ORM: plain numpy (float64) in, plain numpy out, so the demo seeding task, the live feed
task and the tests share one model.

Model, per symbol, in log price:

    d log S = (mu - lambda * k - v / 2) dtau + sqrt(v) dW + J dN

* ``dW`` correlated across symbols through the Cholesky factor of the universe correlation matrix;
* ``v`` a Heston (CIR) variance, stepped hourly on the calendar clock with full truncation
  (``v+ = max(v, 0)`` in drift, diffusion and use), so it never feeds a negative variance;
* ``J dN`` Merton jumps (Poisson intensity per year, normal log-size), drift-compensated with
  ``k = exp(mu_J + sigma_J^2 / 2) - 1`` so ``drift`` stays the expected return;
* ``dtau`` the *variance clock* in years: a trading minute counts 1, a non-trading minute counts
  ``non_trading_weight`` (overnight and weekend gaps get variance proportional to elapsed time, but
  smaller), normalised so that one year of the asset class's schedule sums to 1. ``volatility`` is
  therefore the annualised vol of daily close-to-close returns (252 sessions for equities, 365 days
  for crypto).

Bars are built from ``substeps`` points per bar on a Brownian bridge between the bar's open and close
mid, each point printed as a trade at the bid or the ask (rounded to the tick), so
``low <= open, close <= high`` holds by construction and VWAP is a convex combination of the trades.

Time is supplied by the caller: bar start timestamps per symbol (from the exchange calendar for equities,
a 24/7 grid for crypto). :func:`session_minute_grid` and :func:`continuous_minute_grid` build grids
without the calendar module. :func:`simulate` takes and returns a :class:`MarketState`, so history can
be generated in chunks and :class:`MarketStepper` (live mode) continues from the backfill through the very
same code path; the state round-trips through a JSON-safe dict.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

NS_PER_MINUTE = 60 * 1_000_000_000
NS_PER_HOUR = 60 * NS_PER_MINUTE
MINUTES_PER_YEAR = 365.25 * 24 * 60

ASSET_CLASSES = ("equity", "etf", "crypto")
# Trading minutes in a year of the class's regular schedule (the variance clock's "1").
TRADING_MINUTES_PER_YEAR = {"equity": 252 * 390.0, "etf": 252 * 390.0, "crypto": MINUTES_PER_YEAR}
SESSION_MINUTES = {"equity": 390, "etf": 390, "crypto": 24 * 60}

STATE_VERSION = 1
_CHUNK_ROWS = 1 << 16
_VOLUME_NOISE_SIGMA = 0.45

# Intraday U-shape (equities): relative volume at session fraction u in [0, 1].
_U_OPEN, _U_OPEN_TAU, _U_CLOSE, _U_CLOSE_TAU = 3.0, 0.04, 2.0, 0.03
_U_MEAN = (
    1.0
    + _U_OPEN * _U_OPEN_TAU * (1 - math.exp(-1 / _U_OPEN_TAU))
    + _U_CLOSE * _U_CLOSE_TAU * (1 - math.exp(-1 / _U_CLOSE_TAU))
)


@dataclass(frozen=True)
class SymbolConfig:
    """Parameters of one simulated instrument. Rates and vols are annual, on the variance clock."""

    symbol: str
    asset_class: str
    start_price: float
    drift: float = 0.07
    volatility: float = 0.25
    jump_intensity: float = 3.0
    jump_mean: float = -0.01
    jump_std: float = 0.04
    tick_size: float = 0.01
    spread_bps: float = 2.0
    avg_daily_volume: float = 1_000_000.0
    avg_trade_size: float = 100.0
    volume_decimals: int = 0
    mean_reversion: float = 4.0
    # Vol of variance as a fraction of the Feller bound sqrt(2 * kappa * theta); < 1 keeps v off zero.
    vol_of_vol: float = 0.7
    sector: str = ""
    market_loading: float = 0.6
    sector_loading: float = 0.3

    def __post_init__(self) -> None:
        where = f"symbol {self.symbol!r}"
        if not self.symbol:
            raise ValueError("symbol must be a non-empty string")
        if self.asset_class not in ASSET_CLASSES:
            raise ValueError(f"{where}: asset_class must be one of {ASSET_CLASSES}, got {self.asset_class!r}")
        _require(self.start_price > 0, f"{where}: start_price must be > 0, got {self.start_price}")
        _require(self.volatility > 0, f"{where}: volatility must be > 0, got {self.volatility}")
        _require(self.jump_intensity >= 0, f"{where}: jump_intensity must be >= 0, got {self.jump_intensity}")
        _require(self.jump_std >= 0, f"{where}: jump_std must be >= 0, got {self.jump_std}")
        _require(self.tick_size > 0, f"{where}: tick_size must be > 0, got {self.tick_size}")
        _require(self.spread_bps >= 0, f"{where}: spread_bps must be >= 0, got {self.spread_bps}")
        _require(self.avg_daily_volume >= 0, f"{where}: avg_daily_volume must be >= 0, got {self.avg_daily_volume}")
        _require(self.avg_trade_size > 0, f"{where}: avg_trade_size must be > 0, got {self.avg_trade_size}")
        _require(self.volume_decimals >= 0, f"{where}: volume_decimals must be >= 0, got {self.volume_decimals}")
        _require(self.mean_reversion >= 0, f"{where}: mean_reversion must be >= 0, got {self.mean_reversion}")
        _require(self.vol_of_vol >= 0, f"{where}: vol_of_vol must be >= 0, got {self.vol_of_vol}")
        _require(math.isfinite(self.drift), f"{where}: drift must be finite, got {self.drift}")
        _require(math.isfinite(self.jump_mean), f"{where}: jump_mean must be finite, got {self.jump_mean}")
        loading = self.market_loading**2 + self.sector_loading**2
        _require(loading < 1, f"{where}: market_loading^2 + sector_loading^2 must be < 1, got {loading:.4f}")

    @property
    def theta(self) -> float:
        return self.volatility**2

    @property
    def xi(self) -> float:
        return self.vol_of_vol * math.sqrt(2 * self.mean_reversion * self.theta)


def _require(ok: bool, message: str) -> None:
    if not ok:  # also catches NaN, for which every comparison is False
        raise ValueError(message)


def factor_correlation(symbols: Sequence[SymbolConfig]) -> np.ndarray:
    """Correlation implied by a market factor + one sector factor + idiosyncratic noise per symbol.

    ``rho_ij = a_i a_j + [sector_i == sector_j != ""] b_i b_j``; positive definite by construction
    because every symbol keeps ``1 - a^2 - b^2 > 0`` of idiosyncratic variance.
    """
    a = np.array([s.market_loading for s in symbols], dtype=np.float64)
    b = np.array([s.sector_loading for s in symbols], dtype=np.float64)
    sectors = np.array([s.sector for s in symbols])
    same = (sectors[:, None] == sectors[None, :]) & (sectors[:, None] != "")
    corr = np.outer(a, a) + np.where(same, np.outer(b, b), 0.0)
    np.fill_diagonal(corr, 1.0)
    return corr


@dataclass(frozen=True, eq=False)
class UniverseConfig:
    """Symbols, their correlation (default: :func:`factor_correlation`) and the seed."""

    symbols: tuple[SymbolConfig, ...]
    seed: int = 0
    correlation: np.ndarray | None = None
    non_trading_weight: float = 0.1
    substeps: int = 6
    # Share of each variance shock that is common to all symbols (volatility regimes move together).
    variance_correlation: float = 0.6
    cholesky: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        symbols = tuple(self.symbols)
        if not symbols:
            raise ValueError("universe needs at least one symbol")
        names = [s.symbol for s in symbols]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate symbols in universe: {dupes}")
        _require(
            0 <= self.non_trading_weight <= 1, f"non_trading_weight must be in [0, 1], got {self.non_trading_weight}"
        )
        _require(
            0 <= self.variance_correlation <= 1,
            f"variance_correlation must be in [0, 1], got {self.variance_correlation}",
        )
        _require(int(self.substeps) >= 1, f"substeps must be >= 1, got {self.substeps}")
        n = len(symbols)
        corr = factor_correlation(symbols) if self.correlation is None else np.array(self.correlation, dtype=np.float64)
        if corr.shape != (n, n):
            raise ValueError(f"correlation matrix must be {n}x{n} for {n} symbols, got shape {corr.shape}")
        if not np.all(np.isfinite(corr)):
            raise ValueError("correlation matrix contains NaN or inf")
        if not np.allclose(corr, corr.T, atol=1e-12):
            raise ValueError("correlation matrix must be symmetric")
        if not np.allclose(np.diag(corr), 1.0, atol=1e-12):
            raise ValueError("correlation matrix must have ones on the diagonal")
        if np.any(np.abs(corr) > 1 + 1e-12):
            raise ValueError("correlation matrix entries must lie in [-1, 1]")
        try:
            chol = np.linalg.cholesky(corr)
        except np.linalg.LinAlgError:
            raise ValueError("correlation matrix is not positive definite (Cholesky factorisation failed)") from None
        corr.setflags(write=False)
        chol.setflags(write=False)
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "correlation", corr)
        object.__setattr__(self, "cholesky", chol)
        object.__setattr__(self, "substeps", int(self.substeps))

    @property
    def names(self) -> list[str]:
        return [s.symbol for s in self.symbols]

    def index(self, symbol: str) -> int:
        try:
            return self.names.index(symbol)
        except ValueError:
            raise ValueError(f"unknown symbol {symbol!r}; universe has {self.names}") from None


def _eq(symbol, price, vol, adv, spread, sector, a, b, *, jumps=(3.0, -0.01, 0.04), drift=0.08, asset_class="equity"):
    lam, mu_j, sd_j = jumps
    return SymbolConfig(
        symbol=symbol, asset_class=asset_class, start_price=price, drift=drift, volatility=vol,
        jump_intensity=lam, jump_mean=mu_j, jump_std=sd_j, tick_size=0.01, spread_bps=spread,
        avg_daily_volume=adv, avg_trade_size=200.0 if asset_class == "etf" else 100.0,
        sector=sector, market_loading=a, sector_loading=b,
    )  # fmt: skip


def _crypto(symbol, price, vol, adv, spread, trade_size, b):
    return SymbolConfig(
        symbol=symbol, asset_class="crypto", start_price=price, drift=0.15, volatility=vol,
        jump_intensity=10.0, jump_mean=-0.01, jump_std=0.05, tick_size=0.01, spread_bps=spread,
        avg_daily_volume=adv, avg_trade_size=trade_size, volume_decimals=4, mean_reversion=6.0,
        sector="crypto", market_loading=0.3, sector_loading=b,
    )  # fmt: skip


_ETF_JUMPS = (1.0, -0.01, 0.02)
_HOT_JUMPS = (5.0, -0.005, 0.06)


def demo_symbols() -> tuple[SymbolConfig, ...]:
    """20 US equities/ETFs and 3 crypto pairs with plausible prices, vols, spreads and volumes."""
    return (
        _eq("SPY", 470.0, 0.16, 70e6, 0.3, "", 0.97, 0.0, jumps=_ETF_JUMPS, drift=0.07, asset_class="etf"),
        _eq("QQQ", 400.0, 0.21, 40e6, 0.4, "tech", 0.92, 0.25, jumps=_ETF_JUMPS, drift=0.09, asset_class="etf"),
        _eq("IWM", 200.0, 0.22, 30e6, 0.6, "", 0.85, 0.0, jumps=_ETF_JUMPS, drift=0.06, asset_class="etf"),
        _eq("TLT", 95.0, 0.15, 25e6, 1.0, "rates", -0.25, 0.0, jumps=_ETF_JUMPS, drift=0.03, asset_class="etf"),
        _eq("AAPL", 190.0, 0.26, 55e6, 0.8, "tech", 0.70, 0.35),
        _eq("MSFT", 370.0, 0.25, 22e6, 0.8, "tech", 0.72, 0.35),
        _eq("NVDA", 120.0, 0.50, 200e6, 1.0, "tech", 0.60, 0.45, jumps=_HOT_JUMPS, drift=0.20),
        _eq("AMD", 140.0, 0.52, 50e6, 1.2, "tech", 0.55, 0.45, jumps=_HOT_JUMPS, drift=0.12),
        _eq("GOOGL", 140.0, 0.30, 25e6, 1.0, "tech", 0.65, 0.35),
        _eq("META", 350.0, 0.38, 15e6, 1.0, "tech", 0.60, 0.35),
        _eq("AMZN", 150.0, 0.32, 45e6, 1.0, "tech", 0.65, 0.30),
        _eq("NFLX", 480.0, 0.42, 4e6, 2.0, "media", 0.50, 0.30, jumps=_HOT_JUMPS),
        _eq("DIS", 90.0, 0.30, 9e6, 1.5, "media", 0.55, 0.30),
        _eq("TSLA", 250.0, 0.60, 100e6, 1.0, "autos", 0.50, 0.0, jumps=_HOT_JUMPS, drift=0.10),
        _eq("JPM", 170.0, 0.24, 9e6, 1.0, "financials", 0.65, 0.40),
        _eq("V", 260.0, 0.21, 6e6, 1.0, "financials", 0.65, 0.30),
        _eq("XOM", 100.0, 0.26, 16e6, 1.0, "energy", 0.45, 0.50, drift=0.05),
        _eq("JNJ", 155.0, 0.17, 7e6, 1.0, "staples", 0.40, 0.35, drift=0.05),
        _eq("PG", 150.0, 0.17, 6e6, 1.0, "staples", 0.45, 0.45, drift=0.05),
        _eq("KO", 60.0, 0.16, 13e6, 1.5, "staples", 0.45, 0.45, drift=0.05),
        _crypto("BTC/USD", 60_000.0, 0.55, 1_500.0, 2.0, 0.05, 0.85),
        _crypto("ETH/USD", 3_000.0, 0.70, 15_000.0, 3.0, 0.5, 0.85),
        _crypto("SOL/USD", 100.0, 0.95, 150_000.0, 5.0, 10.0, 0.80),
    )


def demo_universe(seed: int = 20240101) -> UniverseConfig:
    return UniverseConfig(symbols=demo_symbols(), seed=seed)


# --------------------------------------------------------------------------------------------- time grids


def _to_ns(timestamps) -> np.ndarray:
    """Bar starts as int64 UTC nanoseconds; tz-aware pandas input is converted to UTC first."""
    tz = getattr(timestamps, "tz", None)
    if tz is not None:
        timestamps = timestamps.tz_convert("UTC").tz_localize(None)
    arr = np.asarray(timestamps)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[ns]").astype(np.int64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    raise ValueError(f"timestamps must be datetime64 values or int64 nanoseconds, got dtype {arr.dtype}")


def _instant_ns(value) -> int:
    """One instant as UTC nanoseconds: datetime64, ISO string, or (tz-aware or naive-UTC) datetime/Timestamp."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return int(np.datetime64(value, "ns").astype(np.int64))


def session_minute_grid(sessions: Iterable[tuple], bar_seconds: int = 60) -> np.ndarray:
    """Bar starts ``[open, close)`` every ``bar_seconds`` for each (open, close) pair, as UTC datetime64[ns].

    Open/close may be datetime64 (UTC), naive-UTC or tz-aware datetimes (e.g. ``calendars.Session``).
    """
    step = int(bar_seconds) * 1_000_000_000
    parts = []
    for open_, close in sessions:
        o, c = _instant_ns(open_), _instant_ns(close)
        if c <= o:
            raise ValueError(f"session close {close} must be after open {open_}")
        parts.append(np.arange(o, c, step, dtype=np.int64))
    grid = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    if grid.size > 1 and np.any(np.diff(grid) <= 0):
        raise ValueError("sessions must be in increasing order and must not overlap")
    return grid.astype("datetime64[ns]")


def continuous_minute_grid(start, end, bar_seconds: int = 60) -> np.ndarray:
    """24/7 grid (crypto): every ``bar_seconds`` from ``start`` (inclusive) to ``end`` (exclusive)."""
    return session_minute_grid([(start, end)], bar_seconds)


# --------------------------------------------------------------------------------------------- state


@dataclass
class MarketState:
    """Everything needed to continue the market: per-symbol last mid/bar end/session position, variance, RNG."""

    symbols: list[str]
    log_mid: np.ndarray
    variance: np.ndarray
    last_end_ns: list[int | None]
    session_pos: list[int]
    knot_ns: int | None
    rng_state: dict

    @classmethod
    def initial(cls, universe: UniverseConfig) -> MarketState:
        n = len(universe.symbols)
        return cls(
            symbols=universe.names,
            log_mid=np.log([s.start_price for s in universe.symbols]).astype(np.float64),
            variance=np.array([s.theta for s in universe.symbols], dtype=np.float64),
            last_end_ns=[None] * n,
            session_pos=[0] * n,
            knot_ns=None,
            rng_state=np.random.Generator(np.random.PCG64(universe.seed)).bit_generator.state,
        )

    def copy(self) -> MarketState:
        return MarketState.from_dict(self.to_dict())

    def to_dict(self) -> dict:
        """JSON-safe: 128-bit RNG words as strings, floats as floats (exact through JSON)."""
        rng = self.rng_state
        return {
            "version": STATE_VERSION,
            "symbols": list(self.symbols),
            "log_mid": [float(x) for x in self.log_mid],
            "variance": [float(x) for x in self.variance],
            "last_end_ns": [None if t is None else int(t) for t in self.last_end_ns],
            "session_pos": [int(p) for p in self.session_pos],
            "knot_ns": None if self.knot_ns is None else int(self.knot_ns),
            "rng": {
                "bit_generator": rng["bit_generator"],
                "state": str(rng["state"]["state"]),
                "inc": str(rng["state"]["inc"]),
                "has_uint32": int(rng["has_uint32"]),
                "uinteger": int(rng["uinteger"]),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> MarketState:
        try:
            if data["version"] != STATE_VERSION:
                raise ValueError(f"unsupported simulator state version {data['version']!r}")
            rng = data["rng"]
            n = len(data["symbols"])
            state = cls(
                symbols=list(data["symbols"]),
                log_mid=np.array(data["log_mid"], dtype=np.float64),
                variance=np.array(data["variance"], dtype=np.float64),
                last_end_ns=[None if t is None else int(t) for t in data["last_end_ns"]],
                session_pos=[int(p) for p in data["session_pos"]],
                knot_ns=None if data["knot_ns"] is None else int(data["knot_ns"]),
                rng_state={
                    "bit_generator": rng["bit_generator"],
                    "state": {"state": int(rng["state"]), "inc": int(rng["inc"])},
                    "has_uint32": int(rng["has_uint32"]),
                    "uinteger": int(rng["uinteger"]),
                },
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed simulator state: {exc!r}") from None
        sizes = {len(state.log_mid), len(state.variance), len(state.last_end_ns), len(state.session_pos)}
        if sizes != {n}:
            raise ValueError("malformed simulator state: per-symbol lists differ in length")
        return state


# --------------------------------------------------------------------------------------------- bars


@dataclass
class SimBars:
    """Bars of one symbol. ``ts`` is the bar start (UTC, datetime64[ns]); bid/ask are the quote at bar close."""

    symbol: str
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    vwap: np.ndarray
    trade_count: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    # Only with ``keep_ticks=True``: the bar's trade path, shape (bars, substeps + 1), at
    # ``ts + j * bar / substeps`` for j = 0..substeps (last point = close and closing quote).
    tick_bid: np.ndarray | None = None
    tick_ask: np.ndarray | None = None
    tick_last: np.ndarray | None = None

    COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "trade_count", "bid", "ask")

    def __len__(self) -> int:
        return len(self.ts)

    def to_frame(self):
        """pandas DataFrame indexed by tz-aware UTC bar start (pandas imported lazily)."""
        import pandas as pd

        index = pd.DatetimeIndex(self.ts, name="ts").tz_localize("UTC")
        return pd.DataFrame({c: getattr(self, c) for c in self.COLUMNS}, index=index)


def _tick_scale(tick: float) -> tuple[float, bool]:
    """Prices are integer tick counts; dividing by an integral 1/tick gives the correctly rounded decimal."""
    inv = 1.0 / tick
    if abs(inv - round(inv)) < 1e-9:
        return float(round(inv)), True
    return tick, False


def _session_positions(starts: np.ndarray, bar_ns: int, last_end: int | None, carried: int) -> np.ndarray:
    """Bars since the start of each session; a session is a run of back-to-back bars."""
    idx = np.arange(len(starts))
    new = np.empty(len(starts), dtype=bool)
    new[0] = last_end is None or starts[0] != last_end
    new[1:] = np.diff(starts) != bar_ns
    first = np.maximum.accumulate(np.where(new, idx, 0))
    pos = idx - first
    if not new[0]:
        pos[first == 0] += carried
    return pos


def _intraday_profile(cfg: SymbolConfig, starts: np.ndarray, pos: np.ndarray, bar_ns: int) -> np.ndarray:
    if cfg.asset_class == "crypto":
        hour = (starts % (24 * NS_PER_HOUR)) / NS_PER_HOUR
        return 1.0 + 0.3 * np.cos(2 * np.pi * (hour - 15.0) / 24.0)  # busiest around the US/EU overlap
    session_bars = SESSION_MINUTES[cfg.asset_class] * NS_PER_MINUTE / bar_ns
    u = np.clip((pos + 0.5) / session_bars, 0.0, 1.0)
    return (1.0 + _U_OPEN * np.exp(-u / _U_OPEN_TAU) + _U_CLOSE * np.exp(-(1.0 - u) / _U_CLOSE_TAU)) / _U_MEAN


def _build_bars(
    cfg: SymbolConfig,
    starts: np.ndarray,
    open_lm: np.ndarray,
    close_lm: np.ndarray,
    bar_var: np.ndarray,
    v_ratio: np.ndarray,
    pos: np.ndarray,
    bar_ns: int,
    substeps: int,
    rng: np.random.Generator,
    keep_ticks: bool = False,
) -> SimBars:
    nbars = len(starts)
    m = substeps
    # Mid path: Brownian bridge pinned at the bar's open and close log mid.
    steps = rng.standard_normal((nbars, m)) * np.sqrt(bar_var / m)[:, None]
    walk = np.cumsum(steps, axis=1)
    frac = np.arange(1, m + 1, dtype=np.float64) / m
    path = np.empty((nbars, m + 1))
    path[:, 0] = open_lm
    path[:, 1:] = open_lm[:, None] + walk - frac[None, :] * (walk[:, -1] - (close_lm - open_lm))[:, None]
    mid = np.exp(path)

    # Spread widens with volatility and during the first minutes of a session.
    open_factor = 1.0 if cfg.asset_class == "crypto" else 1.0 + 2.0 * np.exp(-pos * bar_ns / (10 * NS_PER_MINUTE))
    spread_bps = cfg.spread_bps * np.sqrt(v_ratio) * open_factor
    in_ticks = mid[:, 0] / cfg.tick_size
    spread_ticks = np.maximum(1.0, np.rint(in_ticks * spread_bps / 1e4))
    bid_ticks = np.maximum(1.0, np.floor(mid / cfg.tick_size - spread_ticks[:, None] / 2 + 0.5))
    ask_ticks = bid_ticks + spread_ticks[:, None]
    at_ask = rng.random((nbars, m + 1)) < 0.5
    trade_ticks = np.where(at_ask, ask_ticks, bid_ticks)

    scale, divide = _tick_scale(cfg.tick_size)

    def price(ticks: np.ndarray) -> np.ndarray:
        return ticks / scale if divide else ticks * scale

    trades = price(trade_ticks)
    high = trades.max(axis=1)
    low = trades.min(axis=1)
    weights = rng.exponential(1.0, (nbars, m + 1))
    vwap = np.clip((weights * trades).sum(axis=1) / weights.sum(axis=1), low, high)

    # Volume: intraday profile x vol regime x |move| x lognormal noise, mean ~ ADV / bars per day.
    per_bar = cfg.avg_daily_volume * bar_ns / (SESSION_MINUTES[cfg.asset_class] * NS_PER_MINUTE)
    sd = np.sqrt(bar_var)
    move = np.divide(np.abs(close_lm - open_lm), sd, out=np.zeros(nbars), where=sd > 0)
    activity = np.sqrt(v_ratio) * (0.5 + 0.5 * move / math.sqrt(2 / math.pi))
    noise = np.exp(_VOLUME_NOISE_SIGMA * rng.standard_normal(nbars) - _VOLUME_NOISE_SIGMA**2 / 2)
    volume = np.round(per_bar * _intraday_profile(cfg, starts, pos, bar_ns) * activity * noise, cfg.volume_decimals)
    volume = np.maximum(volume, 0.0)
    trade_count = rng.poisson(volume / cfg.avg_trade_size).astype(np.int64)
    trade_count = np.where(volume > 0, np.maximum(trade_count, 1), 0)

    return SimBars(
        symbol=cfg.symbol,
        ts=starts.astype("datetime64[ns]"),
        open=trades[:, 0].copy(),
        high=high,
        low=low,
        close=trades[:, -1].copy(),
        volume=volume,
        vwap=vwap,
        trade_count=trade_count,
        bid=price(bid_ticks[:, -1]),
        ask=price(ask_ticks[:, -1]),
        tick_bid=price(bid_ticks) if keep_ticks else None,
        tick_ask=price(ask_ticks) if keep_ticks else None,
        tick_last=trades if keep_ticks else None,
    )


# --------------------------------------------------------------------------------------------- engine


def simulate(
    universe: UniverseConfig,
    timestamps: Mapping[str, object],
    *,
    state: MarketState | None = None,
    bar_seconds: int = 60,
    keep_ticks: bool = False,
) -> tuple[dict[str, SimBars], MarketState]:
    """Bars for the given bar starts per symbol, continuing from ``state`` (``None``: a fresh market).

    Returns the bars per symbol and the new state; the input state is not modified. Same universe, state
    and timestamps give bit-identical bars. Symbols absent from ``timestamps`` keep their state untouched.
    """
    state = MarketState.initial(universe) if state is None else state.copy()
    if state.symbols != universe.names:
        raise ValueError(f"state is for symbols {state.symbols}, universe has {universe.names}")
    bar_ns = int(bar_seconds) * 1_000_000_000
    if bar_ns <= 0:
        raise ValueError(f"bar_seconds must be > 0, got {bar_seconds}")

    starts: dict[int, np.ndarray] = {}
    for symbol, raw in timestamps.items():
        i = universe.index(symbol)
        arr = _to_ns(raw)
        if arr.size == 0:
            continue
        if arr.size > 1 and np.any(np.diff(arr) < bar_ns):
            raise ValueError(f"{symbol}: bar starts must increase by at least {bar_seconds}s (no overlapping bars)")
        last_end = state.last_end_ns[i]
        if last_end is not None and arr[0] < last_end:
            raise ValueError(f"{symbol}: first bar start is before the end of the last simulated bar")
        if state.knot_ns is not None and arr[0] < state.knot_ns:
            raise ValueError(f"{symbol}: first bar start is before the hour the market state has reached")
        starts[i] = arr
    if not starts:
        return {}, state

    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = state.rng_state
    cfgs = universe.symbols
    n = len(cfgs)
    anchors = {i: (s[0] if state.last_end_ns[i] is None else state.last_end_ns[i]) for i, s in starts.items()}
    grids: list[np.ndarray] = []  # symbols of one exchange share a grid: dedupe before the (costly) union
    for s in starts.values():
        if not any(len(g) == len(s) and np.array_equal(g, s) for g in grids):
            grids.append(s)
    anchor_arr = np.array(list(anchors.values()), dtype=np.int64)
    breaks = np.unique(np.concatenate([*grids, *(g + bar_ns for g in grids), anchor_arr]))
    nsteps = len(breaks) - 1

    # Variance: CIR with full truncation on an hourly calendar clock shared by every symbol.
    origin = state.knot_ns if state.knot_ns is not None else int(breaks[0] // NS_PER_HOUR * NS_PER_HOUR)
    knot_of = lambda t: np.maximum((t - origin) // NS_PER_HOUR, 0)  # noqa: E731
    n_knots = int(knot_of(breaks[-1])) + 1
    kappa = np.array([c.mean_reversion for c in cfgs])
    theta = np.array([c.theta for c in cfgs])
    xi = np.array([c.xi for c in cfgs])
    dt_h = 1.0 / (365.25 * 24)
    knots = np.empty((n_knots, n))
    knots[0] = state.variance
    vc = universe.variance_correlation
    raw = rng.standard_normal((n_knots - 1, n + 1))
    shocks = (math.sqrt(vc) * raw[:, :1] + math.sqrt(1 - vc) * raw[:, 1:]) * (xi * math.sqrt(dt_h))
    for k in range(1, n_knots):
        vp = np.maximum(knots[k - 1], 0.0)
        knots[k] = knots[k - 1] + kappa * (theta - vp) * dt_h + np.sqrt(vp) * shocks[k - 1]
    knots_pos = np.maximum(knots, 0.0)

    # Log-return increments on the union of every bar boundary, correlated across symbols.
    w = universe.non_trading_weight
    unit = np.array(
        [
            1.0
            / (
                TRADING_MINUTES_PER_YEAR[c.asset_class]
                + w * (MINUTES_PER_YEAR - TRADING_MINUTES_PER_YEAR[c.asset_class])
            )
            for c in cfgs
        ]
    )  # years of variance clock per trading minute
    lam = np.array([c.jump_intensity for c in cfgs])
    mu_j = np.array([c.jump_mean for c in cfgs])
    sd_j = np.array([c.jump_std for c in cfgs])
    drift = np.array([c.drift for c in cfgs]) - lam * (np.exp(mu_j + 0.5 * sd_j**2) - 1.0)
    chol_t = universe.cholesky.T
    minutes = np.diff(breaks) / NS_PER_MINUTE
    ends_last = {i: s[-1] + bar_ns for i, s in starts.items()}
    cum = np.zeros((nsteps + 1, n))
    for a in range(0, nsteps, _CHUNK_ROWS):
        b = min(a + _CHUNK_ROWS, nsteps)
        t0 = breaks[a:b]
        weight = np.zeros((b - a, n))
        for i, s in starts.items():
            j = np.searchsorted(s, t0, side="right") - 1
            inside = (j >= 0) & (t0 < s[np.maximum(j, 0)] + bar_ns)
            active = (t0 >= anchors[i]) & (t0 < ends_last[i])
            weight[:, i] = np.where(inside, 1.0, np.where(active, w, 0.0))
        dtau = minutes[a:b, None] * unit[None, :] * weight
        v = knots_pos[knot_of(t0)]
        z = rng.standard_normal((b - a, n)) @ chol_t
        inc = (drift - 0.5 * v) * dtau + np.sqrt(v * dtau) * z
        jumps = rng.poisson(lam * dtau)
        hit = jumps > 0
        if hit.any():
            cols = np.nonzero(hit)[1]
            count = jumps[hit]
            inc[hit] += count * mu_j[cols] + np.sqrt(count) * sd_j[cols] * rng.standard_normal(len(count))
        cum[a + 1 : b + 1] = inc
    np.cumsum(cum, axis=0, out=cum)

    bars: dict[str, SimBars] = {}
    for i in sorted(starts):
        s, cfg = starts[i], cfgs[i]
        si = np.searchsorted(breaks, s)
        ei = np.searchsorted(breaks, s + bar_ns)
        open_lm = state.log_mid[i] + cum[si, i]
        close_lm = state.log_mid[i] + cum[ei, i]
        v_bar = knots_pos[knot_of(s), i]
        bar_var = v_bar * unit[i] * (bar_ns / NS_PER_MINUTE)
        pos = _session_positions(s, bar_ns, state.last_end_ns[i], state.session_pos[i])
        bars[cfg.symbol] = _build_bars(
            cfg, s, open_lm, close_lm, bar_var, v_bar / cfg.theta, pos, bar_ns, universe.substeps, rng, keep_ticks
        )
        state.log_mid[i] = close_lm[-1]
        state.last_end_ns[i] = int(s[-1] + bar_ns)
        state.session_pos[i] = int(pos[-1] + 1)
    state.variance = knots[-1].copy()
    state.knot_ns = int(origin + (n_knots - 1) * NS_PER_HOUR)
    state.rng_state = rng.bit_generator.state
    return bars, state


# --------------------------------------------------------------------------------------------- live mode


@dataclass(frozen=True)
class Quote:
    symbol: str
    ts: np.datetime64
    bid: float
    ask: float
    last: float
    bid_size: float
    ask_size: float


@dataclass(frozen=True)
class LiveStep:
    bars: dict[str, SimBars]
    quotes: dict[str, Quote]
    ticks: dict[str, list[Quote]]


class MarketStepper:
    """Live mode: backfill, then one bar at a time, through :func:`simulate` and the same state.

    ``step(ts, symbols)`` simulates the bar starting at ``ts`` for the symbols trading then (the caller
    asks the calendar) and returns it with the quote at the bar's close. Persist ``to_dict()`` between
    task runs and rebuild with ``MarketStepper.from_dict(universe, data)``.
    """

    def __init__(self, universe: UniverseConfig, state: MarketState | None = None, bar_seconds: int = 60):
        self.universe = universe
        self.bar_seconds = int(bar_seconds)
        self.state = MarketState.initial(universe) if state is None else state.copy()
        if self.state.symbols != universe.names:
            raise ValueError(f"state is for symbols {self.state.symbols}, universe has {universe.names}")

    def backfill(self, timestamps: Mapping[str, object]) -> dict[str, SimBars]:
        bars, self.state = simulate(self.universe, timestamps, state=self.state, bar_seconds=self.bar_seconds)
        return bars

    def step(self, ts, symbols: Sequence[str] | None = None) -> LiveStep:
        """The bar starting at ``ts`` for ``symbols`` (default: all), its intra-bar ticks and closing quote.

        ``ticks[symbol]`` are ``substeps + 1`` quotes spread over the bar (a live feed publishes them as
        time passes); the last one is at the bar's end and equals ``quotes[symbol]``.
        """
        names = self.universe.names if symbols is None else list(symbols)
        start = np.array([_instant_ns(ts)], dtype=np.int64)
        bars, self.state = simulate(
            self.universe,
            {s: start for s in names},
            state=self.state,
            bar_seconds=self.bar_seconds,
            keep_ticks=True,
        )
        m = self.universe.substeps
        rng = np.random.Generator(np.random.PCG64())
        rng.bit_generator.state = self.state.rng_state
        sizes = rng.exponential(3.0, (len(names), m + 1, 2))
        self.state.rng_state = rng.bit_generator.state
        bar_ns = self.bar_seconds * 1_000_000_000
        times = (start[0] + np.arange(m + 1, dtype=np.int64) * bar_ns // m).astype("datetime64[ns]")
        ticks: dict[str, list[Quote]] = {}
        for k, name in enumerate(names):
            cfg, bar = self.universe.symbols[self.universe.index(name)], bars[name]
            lot = 10.0**-cfg.volume_decimals
            size = np.maximum(lot, np.round(sizes[k] * cfg.avg_trade_size, cfg.volume_decimals))
            ticks[name] = [
                Quote(
                    symbol=name,
                    ts=times[j],
                    bid=float(bar.tick_bid[0, j]),
                    ask=float(bar.tick_ask[0, j]),
                    last=float(bar.tick_last[0, j]),
                    bid_size=float(size[j, 0]),
                    ask_size=float(size[j, 1]),
                )
                for j in range(m + 1)
            ]
            bar.tick_bid = bar.tick_ask = bar.tick_last = None  # bars stay light; the ticks carry the path
        return LiveStep(bars=bars, quotes={name: q[-1] for name, q in ticks.items()}, ticks=ticks)

    def to_dict(self) -> dict:
        return {"bar_seconds": self.bar_seconds, "state": self.state.to_dict()}

    @classmethod
    def from_dict(cls, universe: UniverseConfig, data: Mapping) -> MarketStepper:
        return cls(universe, MarketState.from_dict(data["state"]), bar_seconds=int(data.get("bar_seconds", 60)))
