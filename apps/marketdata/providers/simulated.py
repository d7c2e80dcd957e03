"""The simulated market (apps.marketdata.simulator) behind the provider interface.

Historical: the symbol's 1m bars on its calendar's minute grid from a fresh seeded market that
starts at ``start``, resampled (session-aligned) for coarser timeframes. Same universe, symbol and
range -> the same bars. Live: a :class:`~apps.marketdata.simulator.MarketStepper` stepped one
minute bar per ``interval`` seconds of wall time from ``start`` (default: the current minute),
emitting each bar's closing quote and the bar itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from apps.marketdata import calendars, resample
from apps.marketdata.providers.base import (
    LiveBar,
    OnBar,
    OnQuote,
    ProviderError,
    check_request,
    empty_frame,
    validated_frame,
)
from apps.marketdata.quotes import QuoteIn
from apps.marketdata.simulator import (
    MarketStepper,
    UniverseConfig,
    continuous_minute_grid,
    demo_universe,
    session_minute_grid,
)

EXCHANGE_FOR_CLASS = {"equity": "NYSE", "etf": "ARCA", "crypto": "CRYPTO"}
CALENDAR_TZ = {"CRYPTO": "UTC"}


class SimulatedProvider:
    name = "simulated"

    def __init__(self, universe: UniverseConfig | None = None, *, interval: float = 60.0,
                 start: datetime | None = None):
        self.universe = universe or demo_universe()
        self.interval = interval
        self.start = start
        self._stop = threading.Event()

    def _config(self, symbol: str):
        try:
            return self.universe.symbols[self.universe.index(symbol)]
        except (KeyError, ValueError):
            raise ProviderError(f"{symbol} is not in the simulated universe") from None

    def exchange(self, symbol: str) -> str:
        return EXCHANGE_FOR_CLASS[self._config(symbol).asset_class]

    def _grid(self, exchange: str, start: datetime, end: datetime) -> np.ndarray:
        if exchange == "CRYPTO":
            return continuous_minute_grid(start, end)
        first, last = (start - timedelta(days=1)).date(), (end + timedelta(days=1)).date()
        grid = session_minute_grid([(s.open, s.close) for s in calendars.sessions(exchange, first, last)])
        lo, hi = np.datetime64(pd.Timestamp(start).tz_convert(None)), np.datetime64(pd.Timestamp(end).tz_convert(None))
        return grid[(grid >= lo) & (grid < hi)]

    def bars(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        check_request(timeframe, start, end)
        exchange = self.exchange(symbol)
        # Daily bars are sessions: simulate whole sessions, then keep the ones labelled in range.
        sim_start = start - timedelta(days=1) if timeframe == "1d" else start
        grid = self._grid(exchange, sim_start, end + (timedelta(days=1) if timeframe == "1d" else timedelta(0)))
        if grid.size == 0:
            return empty_frame()
        bars = MarketStepper(self.universe).backfill({symbol: grid})[symbol].to_frame()
        frame = bars.reset_index()[["ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"]]
        if timeframe != "1m":
            frame = resample.resample(frame, timeframe, exchange=exchange)
        tz = CALENDAR_TZ.get(exchange) or str(calendars.get_calendar(exchange).tz)
        return validated_frame(frame, symbol=symbol, timeframe=timeframe, tz=tz, exchange=exchange,
                               start=start, end=end, source="The simulator")

    def stream(self, symbols: Iterable[str], on_quote: OnQuote, on_bar: OnBar) -> None:
        symbols = list(dict.fromkeys(symbols))
        for s in symbols:
            self._config(s)
        stepper = MarketStepper(self.universe)
        minute = pd.Timestamp(self.start or datetime.now(UTC)).tz_convert("UTC").floor("min")
        while not self._stop.is_set():
            due = [s for s in symbols if self.exchange(s) == "CRYPTO"
                   or calendars.is_open(self.exchange(s), minute.to_pydatetime())]
            if due:
                step = stepper.step(minute.to_datetime64(), due)
                for s in due:
                    b, q = step.bars[s], step.quotes[s]
                    on_bar(LiveBar(symbol=s, timeframe="1m", ts=minute.to_pydatetime(), open=float(b.open[0]),
                                   high=float(b.high[0]), low=float(b.low[0]), close=float(b.close[0]),
                                   volume=float(b.volume[0]), vwap=float(b.vwap[0]),
                                   trade_count=int(b.trade_count[0]), final=True))
                    on_quote(QuoteIn(symbol=s, exchange=self.exchange(s), bid=q.bid, ask=q.ask, last=q.last,
                                     bid_size=q.bid_size, ask_size=q.ask_size,
                                     ts=(minute + pd.Timedelta(minutes=1)).timestamp()))
            minute += pd.Timedelta(minutes=1)
            if self.interval:
                self._stop.wait(self.interval)
            else:
                time.sleep(0)

    def stop(self) -> None:
        self._stop.set()
