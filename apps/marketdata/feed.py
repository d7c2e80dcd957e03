"""The simulated live feed: a forming 1-minute bar that moves every few seconds, then the final bar.

State in Redis (``md:feed:state``, one JSON value so it changes atomically): the
:class:`~apps.marketdata.simulator.MarketStepper` of the demo universe, ``as_of`` (epoch s) and the
*forming* minute: for each symbol trading then, the minute's final bar and its deterministic trade
path (``substeps + 1`` points from open to close, as the stepper makes them).

``feed_tick(now)`` (beat runs it every 2 s; cheap and idempotent):

1. if the forming minute has ended, write its final bars (:func:`~apps.marketdata.ingest.bars_upsert`,
   idempotent) and, after commit, set each symbol's closing quote and publish the bars with
   ``final=True``;
2. if no minute is forming for ``now``'s minute, step the stepper once for the symbols whose market
   is open then (seeded: the same state gives the same bar) and save state + forming minute. No
   database write: the bar is stored only when final;
3. publish the forming bar and quote at ``now``: the path interpolated between its points (rounded
   to the tick, bid floored and ask ceiled), with high/low so far and a pro-rata volume. Every
   partial price lies between two trades of the final bar, so no partial contradicts the stored bar.

Quotes go to the quote cache (:func:`~apps.marketdata.quotes.quotes_set`) on every tick, so REST
quotes move too; ticks go to the live hubs through :func:`~apps.marketdata.ticks.ticks_publish`.
A tick redelivered after its state save was lost re-simulates the same minute from the same state
and seed (the upsert leaves the stored bar unchanged). Minutes missed while the feed was down are
not back-filled: the next minute continues from the saved state.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from django.core.cache import cache
from django.db import transaction

from apps.marketdata import calendars, quotes
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.models import Instrument
from apps.marketdata.simulator import MarketStepper, SimBars, demo_universe
from apps.marketdata.ticks import BarTick, ticks_publish

log = logging.getLogger(__name__)

STATE_KEY = "md:feed:state"
LOCK_KEY = "md:feed:lock"
LOCK_SECONDS = 30
EXCHANGE_FOR_CLASS = {"equity": "NYSE", "etf": "ARCA", "crypto": "CRYPTO"}
_BAR_COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "trade_count")


def universe():
    return demo_universe()


def _state_raw() -> dict | None:
    raw = cache.get(STATE_KEY)
    return json.loads(raw) if raw else None


def state_load() -> tuple[MarketStepper | None, float | None]:
    data = _state_raw()
    if data is None:
        return None, None
    return MarketStepper.from_dict(universe(), data["stepper"]), float(data["as_of"])


def forming_load() -> dict | None:
    """The forming minute ({"start": epoch s, "symbols": {symbol: {...}}}) or None."""
    data = _state_raw()
    return None if data is None else data.get("forming")


def state_save(stepper: MarketStepper, as_of: float, forming: dict | None = None) -> None:
    """Save the stepper (and the minute it has simulated ahead, if any) in one atomic write."""
    cache.set(STATE_KEY, json.dumps({"as_of": as_of, "stepper": stepper.to_dict(), "forming": forming}),
              timeout=None)


def sim_frame(bars: SimBars) -> pd.DataFrame:
    """SimBars -> the DataFrame bars_upsert takes (ts column, UTC)."""
    frame = pd.DataFrame({c: getattr(bars, c) for c in _BAR_COLUMNS})
    frame.insert(0, "ts", pd.DatetimeIndex(bars.ts).tz_localize("UTC"))
    return frame


def instrument_ids(symbols) -> dict[str, int]:
    """Instrument id per universe symbol (only the instruments that exist)."""
    classes = {s.symbol: s.asset_class for s in universe().symbols}
    rows = Instrument.objects.filter(symbol__in=list(symbols), active=True).values_list("id", "symbol", "asset_class")
    return {sym: pk for pk, sym, cls in rows if classes.get(sym) == cls}


@dataclass
class TickResult:
    bar_start: datetime  # the minute forming at ``now``
    stepped: list[str] = field(default_factory=list)  # symbols whose minute was simulated by this tick
    finalized: list[str] = field(default_factory=list)  # symbols whose final bar this tick wrote
    inserted: int = 0
    published: int = 0  # forming updates published


def _forming_minute(stepper: MarketStepper, start: pd.Timestamp, due: list[str], ids: dict[str, int]) -> dict:
    """Simulate the minute at ``start`` for ``due`` and keep everything needed to replay it."""
    step = stepper.step(start.to_datetime64(), due)
    cfgs = {c.symbol: c for c in stepper.universe.symbols}
    symbols = {}
    for s in due:
        bar, path = step.bars[s], step.ticks[s]
        symbols[s] = {
            "id": ids[s], "exchange": EXCHANGE_FOR_CLASS[cfgs[s].asset_class], "tick": cfgs[s].tick_size,
            "decimals": cfgs[s].volume_decimals,
            "bar": [float(getattr(bar, c)[0]) for c in _BAR_COLUMNS],
            "bid": [q.bid for q in path], "ask": [q.ask for q in path], "last": [q.last for q in path],
            "bs": [q.bid_size for q in path], "as": [q.ask_size for q in path],
        }
    return {"start": start.timestamp(), "symbols": symbols}


def _to_tick(x: float, tick: float, mode: str = "nearest") -> float:
    n = x / tick
    n = math.floor(n + 1e-9) if mode == "down" else math.ceil(n - 1e-9) if mode == "up" else round(n)
    return round(n * tick, 10)


def partial_at(entry: dict, elapsed: float) -> tuple[list[float], dict]:
    """The forming bar [open, high, low, last, volume] and quote ``elapsed`` seconds into the minute.

    Pure: the point is interpolated on the minute's trade path, so it lies between two of the final
    bar's trades (within its low..high); high/low cover the path so far.
    """
    last_path = entry["last"]
    m = len(last_path) - 1
    pos = min(max(elapsed / 60.0, 0.0), 1.0) * m
    j = min(int(pos), m - 1)
    f = pos - j
    tick = entry["tick"]

    def lerp(values: list[float]) -> float:
        return values[j] + (values[j + 1] - values[j]) * f

    last = _to_tick(lerp(last_path), tick)
    bid = _to_tick(lerp(entry["bid"]), tick, "down")
    ask = _to_tick(lerp(entry["ask"]), tick, "up")
    seen = [*last_path[: j + 1], last]
    volume = round(entry["bar"][4] * pos / m, entry["decimals"])
    bar = [last_path[0], max(seen), min(seen), last, volume]
    quote = {"bid": min(bid, last), "ask": max(ask, last), "last": last, "bid_size": entry["bs"][j],
             "ask_size": entry["as"][j]}
    return bar, quote


def _finalize(forming: dict, result: TickResult) -> None:
    start = datetime.fromtimestamp(forming["start"], UTC)
    end = forming["start"] + 60
    batch, finals = [], []
    with transaction.atomic():
        for s, entry in forming["symbols"].items():
            o, h, lo, c, v, vwap, count = entry["bar"]
            frame = pd.DataFrame({"ts": [pd.Timestamp(start)], "open": [o], "high": [h], "low": [lo], "close": [c],
                                  "volume": [v], "vwap": [vwap], "trade_count": [count]})
            result.inserted += bars_upsert(instrument_id=entry["id"], timeframe="1m", bars=frame).inserted
            batch.append(quotes.QuoteIn(symbol=s, exchange=entry["exchange"], bid=entry["bid"][-1],
                                        ask=entry["ask"][-1], last=entry["last"][-1], bid_size=entry["bs"][-1],
                                        ask_size=entry["as"][-1], ts=end))
            finals.append(BarTick(symbol=s, timeframe="1m", ts=start, open=o, high=h, low=lo, close=c, volume=v,
                                  final=True))
    result.finalized = list(forming["symbols"])

    def after_commit():
        quotes.quotes_set(batch)
        ticks_publish(quotes=batch, bars=finals)

    transaction.on_commit(after_commit)


def _publish_partial(forming: dict, now: datetime, result: TickResult) -> None:
    start = datetime.fromtimestamp(forming["start"], UTC)
    elapsed = now.timestamp() - forming["start"]
    batch, bars = [], []
    for s, entry in forming["symbols"].items():
        (o, h, lo, c, v), q = partial_at(entry, elapsed)
        batch.append(quotes.QuoteIn(symbol=s, exchange=entry["exchange"], ts=now.timestamp(), **q))
        bars.append(BarTick(symbol=s, timeframe="1m", ts=start, open=o, high=h, low=lo, close=c, volume=v,
                            final=False))
    result.published = len(batch)

    def publish():  # on commit like the final bars, so a test's captured callbacks keep their order
        quotes.quotes_set(batch)
        ticks_publish(quotes=batch, bars=bars)

    transaction.on_commit(publish)


def feed_tick(now: datetime | None = None) -> TickResult:
    now = now or datetime.now(UTC)
    minute = pd.Timestamp(now).tz_convert(UTC).floor("min")
    result = TickResult(bar_start=minute.to_pydatetime())
    if not cache.add(LOCK_KEY, "1", timeout=LOCK_SECONDS):
        log.info("feed tick skipped: another tick is running")
        return result
    try:
        stepper, _ = state_load()
        forming = forming_load()
        if stepper is None:
            stepper = MarketStepper(universe())
        if forming is not None and forming["start"] < minute.timestamp():
            _finalize(forming, result)
            state_save(stepper, forming["start"] + 60)  # the stepper already includes that minute
            forming = None
        if forming is None:
            forming = _step_minute(stepper, minute, result)
            if forming is not None:
                state_save(stepper, minute.timestamp() + 60, forming)
        if forming is not None and forming["start"] == minute.timestamp():
            _publish_partial(forming, now, result)
        return result
    finally:
        cache.delete(LOCK_KEY)


def _step_minute(stepper: MarketStepper, minute: pd.Timestamp, result: TickResult) -> dict | None:
    start_ns = int(minute.value)
    state = stepper.state
    if state.knot_ns is not None and start_ns < state.knot_ns:
        return None  # the market state is already past this minute (a backfill ran ahead)
    ids = instrument_ids(stepper.universe.names)
    due = []
    for i, cfg in enumerate(stepper.universe.symbols):
        if cfg.symbol not in ids:
            continue
        last_end = state.last_end_ns[i]
        if last_end is not None and start_ns < last_end:
            continue  # this minute is already simulated
        if cfg.asset_class != "crypto" and not calendars.is_open(EXCHANGE_FOR_CLASS[cfg.asset_class],
                                                                minute.to_pydatetime()):
            continue
        due.append(cfg.symbol)
    if not due:
        return None
    result.stepped = due
    return _forming_minute(stepper, minute, due, ids)
