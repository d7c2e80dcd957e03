"""The simulated market's pure core: exact where the model is exact, fixed-seed statistics elsewhere."""

import json
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from apps.marketdata.simulator import (
    NS_PER_MINUTE,
    MarketState,
    MarketStepper,
    SymbolConfig,
    UniverseConfig,
    continuous_minute_grid,
    demo_universe,
    factor_correlation,
    session_minute_grid,
    simulate,
)

FIRST_DAY = np.datetime64("2024-01-02")
OPEN_MIN, CLOSE_MIN = 14 * 60 + 30, 21 * 60  # 09:30-16:00 New York in winter, as UTC minutes


def weekday_sessions(n_days: int, start=FIRST_DAY) -> list[tuple[np.datetime64, np.datetime64]]:
    days = np.arange(start, start + np.timedelta64(n_days * 2 + 7, "D"))
    days = days[np.is_busday(days)][:n_days]
    minute = np.timedelta64(1, "m")
    return [(d + OPEN_MIN * minute, d + CLOSE_MIN * minute) for d in days]


def stock(symbol: str, **overrides) -> SymbolConfig:
    params = dict(
        symbol=symbol,
        asset_class="equity",
        start_price=100.0,
        volatility=0.25,
        vol_of_vol=0.3,
        jump_intensity=0.0,
        spread_bps=2.0,
        avg_daily_volume=1_000_000.0,
    )
    params.update(overrides)
    return SymbolConfig(**params)


CORR = np.array(
    [
        [1.0, 0.6, 0.3, -0.2],
        [0.6, 1.0, 0.4, 0.0],
        [0.3, 0.4, 1.0, 0.1],
        [-0.2, 0.0, 0.1, 1.0],
    ]
)
FOUR = UniverseConfig(
    symbols=(stock("AAA"), stock("BBB", volatility=0.35), stock("CCC", volatility=0.2), stock("DDD", volatility=0.3)),
    correlation=CORR,
    seed=7,
)


@pytest.fixture(scope="module")
def long_history():
    """~600 sessions (2.4 years) of 1m bars for four correlated stocks (shared by the statistical tests)."""
    grid = session_minute_grid(weekday_sessions(600))
    bars, _ = simulate(FOUR, {s: grid for s in FOUR.names})
    return grid, bars


def session_closes(bars, grid) -> tuple[np.ndarray, np.ndarray]:
    """Closes of the last bar of each session and opens of the first bar."""
    starts = grid.astype(np.int64)
    last = np.append(np.diff(starts) != NS_PER_MINUTE, True)
    first = np.insert(np.diff(starts) != NS_PER_MINUTE, 0, True)
    return bars.close[last], bars.open[first]


# ------------------------------------------------------------------------------------------ time grids


def test_session_minute_grid_is_exact_and_accepts_tz_aware_input():
    grid = session_minute_grid(
        [
            (np.datetime64("2024-01-02T14:30"), np.datetime64("2024-01-02T14:33")),
            (np.datetime64("2024-01-03T14:30"), np.datetime64("2024-01-03T14:32")),
        ]
    )
    assert grid.dtype == np.dtype("datetime64[ns]")
    assert [str(t) for t in grid.astype("datetime64[m]")] == [
        "2024-01-02T14:30",
        "2024-01-02T14:31",
        "2024-01-02T14:32",
        "2024-01-03T14:30",
        "2024-01-03T14:31",
    ]
    assert len(continuous_minute_grid(np.datetime64("2024-01-06T00:00"), np.datetime64("2024-01-07T00:00"))) == 1440

    new_york = datetime(2024, 1, 2, 9, 30, tzinfo=ZoneInfo("America/New_York"))
    aware = session_minute_grid([(new_york, new_york + timedelta(minutes=3))])
    assert np.array_equal(aware, grid[:3])

    as_index = pd.DatetimeIndex(grid).tz_localize("UTC").tz_convert("America/New_York")
    a, _ = simulate(FOUR, {"AAA": grid})
    b, _ = simulate(FOUR, {"AAA": as_index})
    assert np.array_equal(a["AAA"].close, b["AAA"].close)
    assert np.array_equal(a["AAA"].ts, b["AAA"].ts)


def test_sessions_out_of_order_are_refused():
    with pytest.raises(ValueError, match="close .* must be after open"):
        session_minute_grid([(np.datetime64("2024-01-02T15:00"), np.datetime64("2024-01-02T14:00"))])
    with pytest.raises(ValueError, match="must not overlap"):
        session_minute_grid(
            [
                (np.datetime64("2024-01-02T14:30"), np.datetime64("2024-01-02T15:00")),
                (np.datetime64("2024-01-02T14:45"), np.datetime64("2024-01-02T16:00")),
            ]
        )


# ------------------------------------------------------------------------------------------ determinism


def demo_grids(n_days: int = 3):
    universe = demo_universe(seed=11)
    equity = session_minute_grid(weekday_sessions(n_days))
    crypto = continuous_minute_grid(np.datetime64("2024-01-02T00:00"), np.datetime64("2024-01-03T12:00"))
    return universe, {s.symbol: crypto if s.asset_class == "crypto" else equity for s in universe.symbols}


def test_same_seed_and_timestamps_give_bit_identical_bars_and_another_seed_differs():
    universe, grids = demo_grids()
    first, state_1 = simulate(universe, grids)
    second, state_2 = simulate(universe, grids)
    other, _ = simulate(replace(universe, seed=12), grids)
    assert state_1.to_dict() == state_2.to_dict()
    for symbol in universe.names:
        for column in ("ts", *first[symbol].COLUMNS):
            assert np.array_equal(getattr(first[symbol], column), getattr(second[symbol], column)), (symbol, column)
        assert not np.array_equal(first[symbol].close, other[symbol].close)


def test_every_bar_is_consistent_on_the_tick_grid_and_finite():
    universe, grids = demo_grids()
    bars, _ = simulate(universe, grids)
    assert set(bars) == set(universe.names)
    for cfg in universe.symbols:
        b = bars[cfg.symbol]
        assert len(b) == len(grids[cfg.symbol])
        assert np.array_equal(b.ts, grids[cfg.symbol])
        for column in b.COLUMNS:
            assert np.all(np.isfinite(getattr(b, column).astype(np.float64))), (cfg.symbol, column)
        assert np.all(b.low <= np.minimum(b.open, b.close)), cfg.symbol
        assert np.all(np.maximum(b.open, b.close) <= b.high), cfg.symbol
        assert np.all((b.low <= b.vwap) & (b.vwap <= b.high)), cfg.symbol
        assert np.all(b.low > 0)
        assert np.all(b.bid < b.ask)
        for column in ("open", "high", "low", "close", "bid", "ask"):
            ticks = getattr(b, column) / cfg.tick_size
            assert np.max(np.abs(ticks - np.rint(ticks))) < 1e-6, (cfg.symbol, column)
        assert np.all(b.volume >= 0)
        assert np.array_equal(b.volume, np.round(b.volume, cfg.volume_decimals))
        assert np.all(b.trade_count >= 0)
        assert np.array_equal(b.trade_count == 0, b.volume == 0)


def test_to_frame_is_indexed_by_utc_bar_start():
    bars, _ = simulate(FOUR, {"AAA": session_minute_grid(weekday_sessions(1))})
    frame = bars["AAA"].to_frame()
    assert str(frame.index.tz) == "UTC"
    assert frame.index[0] == pd.Timestamp("2024-01-02T14:30", tz="UTC")
    assert list(frame.columns) == list(bars["AAA"].COLUMNS)
    assert len(frame) == 390


# ------------------------------------------------------------------------------------------ statistics


def test_volume_is_u_shaped_within_the_session(long_history):
    grid, bars = long_history
    for symbol in FOUR.names:
        per_minute = bars[symbol].volume.reshape(-1, 390).mean(axis=0)
        open_, close, midday = per_minute[:30].mean(), per_minute[-30:].mean(), per_minute[165:225].mean()
        assert open_ > 1.5 * midday, symbol
        assert close > 1.3 * midday, symbol


def test_daily_returns_have_the_configured_correlation_and_volatility(long_history):
    grid, bars = long_history
    returns = np.array([np.diff(np.log(session_closes(bars[s], grid)[0])) for s in FOUR.names])
    realized = np.corrcoef(returns)
    assert np.max(np.abs(realized - CORR)) < 0.1, realized
    annual = returns.std(axis=1) * np.sqrt(252)
    configured = np.array([cfg.volatility for cfg in FOUR.symbols])
    assert np.all(np.abs(annual / configured - 1) < 0.2), annual


def test_overnight_gap_variance_scales_with_elapsed_time(long_history):
    grid, bars = long_history
    closes, opens = session_closes(bars["AAA"], grid)
    gaps = np.log(opens[1:] / closes[:-1])
    starts = grid.astype(np.int64)
    first = np.insert(np.diff(starts) != NS_PER_MINUTE, 0, True)
    elapsed_min = np.diff(starts[first]) / NS_PER_MINUTE - 390  # Monday gaps span the weekend
    cfg = FOUR.symbols[0]
    unit = 1 / (252 * 390 + FOUR.non_trading_weight * (365.25 * 1440 - 252 * 390))
    predicted = cfg.volatility**2 * unit * FOUR.non_trading_weight * elapsed_min
    z = gaps / np.sqrt(predicted)
    assert 0.8 < z.std() < 1.2
    weekend = elapsed_min > 2000
    assert np.abs(gaps[weekend]).mean() > 1.3 * np.abs(gaps[~weekend]).mean()


def one_stock(jump_intensity: float) -> UniverseConfig:
    cfg = stock("JMP", vol_of_vol=0.0, jump_intensity=jump_intensity, jump_mean=0.0, jump_std=0.03)
    return UniverseConfig(symbols=(cfg,), seed=3)


def intraday_returns(universe: UniverseConfig, n_days: int) -> np.ndarray:
    grid = session_minute_grid(weekday_sessions(n_days))
    bars, _ = simulate(universe, {"JMP": grid})
    returns = np.diff(np.log(bars["JMP"].close)).reshape(-1)
    same_session = np.diff(grid.astype(np.int64)) == NS_PER_MINUTE
    return returns[same_session]


def excess_kurtosis(x: np.ndarray) -> float:
    x = x - x.mean()
    return float((x**4).mean() / (x**2).mean() ** 2 - 3)


def test_jumps_fatten_the_tails_only_when_their_intensity_is_positive():
    calm = intraday_returns(one_stock(0.0), 40)
    jumpy = intraday_returns(one_stock(250.0), 40)
    assert abs(excess_kurtosis(calm)) < 1.0
    assert excess_kurtosis(jumpy) > 20.0
    assert np.max(np.abs(jumpy)) > 10 * calm.std()
    assert np.max(np.abs(calm)) < 7 * calm.std()


def test_stochastic_variance_moves_and_stays_non_negative():
    universe = UniverseConfig(symbols=(stock("VOL", volatility=0.3, vol_of_vol=0.95, mean_reversion=2.0),), seed=5)
    stepper = MarketStepper(universe)
    seen = []
    for day in weekday_sessions(60):
        stepper.backfill({"VOL": session_minute_grid([day])})
        seen.append(stepper.state.variance[0])
    seen = np.array(seen)
    assert seen.std() > 0.01
    assert np.all(np.maximum(seen, 0) < 1.0)
    assert stepper.state.to_dict()["variance"][0] == seen[-1]


# ------------------------------------------------------------------------------------------ live mode


def test_live_steps_continue_the_backfill_seamlessly():
    universe = demo_universe(seed=21)
    stepper = MarketStepper(universe)
    assert not stepper.step(pd.Timestamp("2024-01-01T23:00", tz="UTC"), []).bars  # nothing trading: no-op
    equity = session_minute_grid([(np.datetime64("2024-01-02T14:30"), np.datetime64("2024-01-02T16:00"))])
    crypto = continuous_minute_grid(np.datetime64("2024-01-02T00:00"), np.datetime64("2024-01-02T16:00"))
    backfill = stepper.backfill({s.symbol: crypto if s.asset_class == "crypto" else equity for s in universe.symbols})
    step = stepper.step(np.datetime64("2024-01-02T16:00"))
    for cfg in universe.symbols:
        last_close, bar = backfill[cfg.symbol].close[-1], step.bars[cfg.symbol]
        assert bar.ts[0] == np.datetime64("2024-01-02T16:00")
        assert abs(bar.open[0] / last_close - 1) < 0.003, cfg.symbol
        quote = step.quotes[cfg.symbol]
        assert quote.ts == np.datetime64("2024-01-02T16:01")
        assert (quote.bid, quote.ask, quote.last) == (bar.bid[0], bar.ask[0], bar.close[0])
        assert quote.bid < quote.ask and quote.bid_size > 0 and quote.ask_size > 0
        ticks = step.ticks[cfg.symbol]
        assert len(ticks) == universe.substeps + 1
        assert ticks[-1] == quote
        assert ticks[0].ts == bar.ts[0] and ticks[0].last == bar.open[0]
        lasts = [t.last for t in ticks]
        assert (min(lasts), max(lasts)) == (bar.low[0], bar.high[0])
        assert all(t.bid < t.ask and t.last in (t.bid, t.ask) for t in ticks)
        assert [t.ts for t in ticks] == sorted(t.ts for t in ticks)


def test_live_minute_returns_match_the_backfill_statistically():
    universe = UniverseConfig(symbols=(stock("AAA", vol_of_vol=0.0),), seed=9)
    grid = continuous_minute_grid(np.datetime64("2024-01-02T14:30"), np.datetime64("2024-01-02T21:00"))
    history, _ = simulate(universe, {"AAA": grid})
    stepper = MarketStepper(universe)
    stepper.backfill({"AAA": grid[:30]})
    live = [stepper.step(t).bars["AAA"].close[0] for t in grid[30:]]
    backfill_sd = np.diff(np.log(history["AAA"].close)).std()
    live_sd = np.diff(np.log(live)).std()
    assert 0.8 < live_sd / backfill_sd < 1.25


def test_same_seed_gives_the_same_live_sequence_and_the_state_survives_json():
    universe = demo_universe(seed=33)
    times = continuous_minute_grid(np.datetime64("2024-01-06T00:00"), np.datetime64("2024-01-06T00:05"))
    crypto = [s.symbol for s in universe.symbols if s.asset_class == "crypto"]
    one, two = MarketStepper(universe), MarketStepper(universe)
    one.step(times[0], crypto)
    two.step(times[0], crypto)
    restored = MarketStepper.from_dict(universe, json.loads(json.dumps(one.to_dict())))
    for t in times[1:]:
        a, b, c = one.step(t, crypto), two.step(t, crypto), restored.step(t, crypto)
        assert a.quotes == b.quotes == c.quotes
        assert a.ticks == b.ticks == c.ticks
        for symbol in crypto:
            for column in a.bars[symbol].COLUMNS:
                col = getattr(a.bars[symbol], column)
                assert np.array_equal(col, getattr(b.bars[symbol], column))
                assert np.array_equal(col, getattr(c.bars[symbol], column))
    assert one.to_dict() == restored.to_dict()
    assert set(a.bars) == set(crypto)  # equities were not asked for: their state did not move
    assert one.state.last_end_ns[universe.index("SPY")] is None


def test_history_can_be_generated_in_chunks_through_the_state():
    grid = session_minute_grid(weekday_sessions(2))
    head, state = simulate(FOUR, {"AAA": grid[:500]})
    tail, state = simulate(FOUR, {"AAA": grid[500:]}, state=state)
    assert abs(tail["AAA"].open[0] / head["AAA"].close[-1] - 1) < 0.003
    assert state.last_end_ns[0] == int(grid[-1].astype(np.int64)) + NS_PER_MINUTE
    assert state.session_pos[0] == 390
    with pytest.raises(ValueError, match="before the end of the last simulated bar"):
        simulate(FOUR, {"AAA": grid[-5:]}, state=state)
    with pytest.raises(ValueError, match="before the hour the market state has reached"):
        simulate(FOUR, {"BBB": grid[:5]}, state=state)  # no going back in time, even for a new symbol


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"volatility": -0.2}, "volatility must be > 0"),
        ({"start_price": 0.0}, "start_price must be > 0"),
        ({"tick_size": 0.0}, "tick_size must be > 0"),
        ({"jump_intensity": -1.0}, "jump_intensity must be >= 0"),
        ({"avg_daily_volume": -5.0}, "avg_daily_volume must be >= 0"),
        ({"volatility": float("nan")}, "volatility must be > 0"),
        ({"asset_class": "bond"}, "asset_class must be one of"),
        ({"market_loading": 0.9, "sector_loading": 0.6}, "must be < 1"),
    ],
)
def test_bad_symbol_configs_are_refused_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError, match=message) as caught:
        stock("BAD", **overrides)
    assert "'BAD'" in str(caught.value) or "asset_class" in message


def test_bad_universes_are_refused_with_a_clear_message():
    two = (stock("A"), stock("B"))
    with pytest.raises(ValueError, match="not positive definite"):
        UniverseConfig(
            symbols=(*two, stock("C")),
            correlation=[[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]],
        )
    with pytest.raises(ValueError, match="must be symmetric"):
        UniverseConfig(symbols=two, correlation=[[1, 0.5], [0.4, 1]])
    with pytest.raises(ValueError, match="must be 2x2"):
        UniverseConfig(symbols=two, correlation=np.eye(3))
    with pytest.raises(ValueError, match="ones on the diagonal"):
        UniverseConfig(symbols=two, correlation=[[2, 0], [0, 2]])
    with pytest.raises(ValueError, match="duplicate symbols"):
        UniverseConfig(symbols=(stock("A"), stock("A")))
    with pytest.raises(ValueError, match="at least one symbol"):
        UniverseConfig(symbols=())


def test_bad_simulation_input_is_refused():
    grid = session_minute_grid(weekday_sessions(1))
    with pytest.raises(ValueError, match="unknown symbol 'ZZZ'"):
        simulate(FOUR, {"ZZZ": grid})
    with pytest.raises(ValueError, match="no overlapping bars"):
        simulate(FOUR, {"AAA": grid[::-1]})
    with pytest.raises(ValueError, match="state is for symbols"):
        simulate(FOUR, {"AAA": grid}, state=MarketState.initial(demo_universe()))
    with pytest.raises(ValueError, match="malformed simulator state"):
        MarketState.from_dict({"version": 1})
    assert simulate(FOUR, {"AAA": grid[:0]})[0] == {}


def test_demo_universe_has_twenty_stocks_and_three_crypto_pairs_with_a_factor_correlation():
    universe = demo_universe()
    classes = [s.asset_class for s in universe.symbols]
    assert classes.count("crypto") == 3
    assert len(classes) == 23
    assert {"SPY", "QQQ", "AAPL", "TLT", "BTC/USD", "ETH/USD", "SOL/USD"} <= set(universe.names)
    corr = universe.correlation
    assert np.array_equal(corr, factor_correlation(universe.symbols))
    idx = universe.index
    assert corr[idx("AAPL"), idx("MSFT")] == pytest.approx(0.70 * 0.72 + 0.35 * 0.35)
    assert corr[idx("SPY"), idx("TLT")] < 0
    assert corr[idx("BTC/USD"), idx("ETH/USD")] > 0.7
    assert np.all(np.linalg.eigvalsh(corr) > 0)
