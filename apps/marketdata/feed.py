"""The simulated live feed: one 1-minute bar per tick for the markets that are open.

State: the :class:`~apps.marketdata.simulator.MarketStepper` of the demo universe, persisted in
Redis as JSON (``md:feed:state``: ``{"as_of": <epoch s of the last bar end>, "stepper": ...}``).
``feed_tick(now)`` steps the bar that *completed* before ``now`` (start = minute floor - 60 s) for
every instrument of the universe whose market was open at the bar start and that has not been
stepped to that minute yet, writes the bars through :mod:`apps.marketdata.ingest` (idempotent
upsert), updates the quote cache, saves the state and publishes a light message to the global
``market.quotes`` group after commit (prices only; no firm data). A second tick in the same
minute finds every symbol already stepped and writes nothing; a redelivered tick whose state
save was lost re-simulates the same bar from the same state and seed, which the upsert leaves
unchanged. Minutes missed while the feed was down are not back-filled (the next bar simply
continues from the saved state).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from django.core.cache import cache
from django.db import transaction

from apps.marketdata import calendars, quotes
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.models import Instrument
from apps.marketdata.simulator import MarketStepper, SimBars, demo_universe

log = logging.getLogger(__name__)

STATE_KEY = "md:feed:state"
LOCK_KEY = "md:feed:lock"
LOCK_SECONDS = 30
MARKET_GROUP = "market.quotes"
MARKET_MESSAGE_TYPE = "market.quotes"
EXCHANGE_FOR_CLASS = {"equity": "NYSE", "etf": "ARCA", "crypto": "CRYPTO"}
_BAR_COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "trade_count")


def universe():
    return demo_universe()


def state_load() -> tuple[MarketStepper | None, float | None]:
    raw = cache.get(STATE_KEY)
    if not raw:
        return None, None
    data = json.loads(raw)
    return MarketStepper.from_dict(universe(), data["stepper"]), float(data["as_of"])


def state_save(stepper: MarketStepper, as_of: float) -> None:
    cache.set(STATE_KEY, json.dumps({"as_of": as_of, "stepper": stepper.to_dict()}), timeout=None)


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
    bar_start: datetime
    stepped: list[str] = field(default_factory=list)
    inserted: int = 0


def _publish(message: dict) -> None:
    from channels.layers import get_channel_layer

    try:
        layer = get_channel_layer()
        text = json.dumps(message, separators=(",", ":"))
        payload = {"type": MARKET_MESSAGE_TYPE, "text": text}
        if hasattr(layer, "group_send_blocking"):
            layer.group_send_blocking(MARKET_GROUP, payload)
        else:  # pragma: no cover - other layers
            from asgiref.sync import async_to_sync

            async_to_sync(layer.group_send)(MARKET_GROUP, payload)
    except Exception as exc:  # noqa: BLE001 - a lost market broadcast must not fail the tick
        log.warning("market quotes not published: %s: %s", type(exc).__name__, exc)


def feed_tick(now: datetime | None = None) -> TickResult:
    now = now or datetime.now(UTC)
    bar_start = pd.Timestamp(now).tz_convert(UTC).floor("min") - pd.Timedelta(minutes=1)
    result = TickResult(bar_start=bar_start.to_pydatetime())
    if not cache.add(LOCK_KEY, "1", timeout=LOCK_SECONDS):
        log.info("feed tick skipped: another tick is running")
        return result
    try:
        stepper, _ = state_load()
        if stepper is None:
            stepper = MarketStepper(universe())
        start_ns = int(bar_start.value)
        state = stepper.state
        if state.knot_ns is not None and start_ns < state.knot_ns:
            return result
        ids = instrument_ids(stepper.universe.names)
        due = []
        for i, cfg in enumerate(stepper.universe.symbols):
            if cfg.symbol not in ids:
                continue
            last_end = state.last_end_ns[i]
            if last_end is not None and start_ns < last_end:
                continue  # this minute is already written
            if cfg.asset_class != "crypto" and not calendars.is_open(EXCHANGE_FOR_CLASS[cfg.asset_class],
                                                                    bar_start.to_pydatetime()):
                continue
            due.append(cfg.symbol)
        if not due:
            return result
        step = stepper.step(bar_start.to_datetime64(), due)
        end = bar_start + pd.Timedelta(minutes=1)
        classes = {s.symbol: s.asset_class for s in stepper.universe.symbols}
        with transaction.atomic():
            for symbol in due:
                outcome = bars_upsert(instrument_id=ids[symbol], timeframe="1m", bars=sim_frame(step.bars[symbol]))
                result.inserted += outcome.inserted
            batch = [
                quotes.QuoteIn(symbol=s, exchange=EXCHANGE_FOR_CLASS[classes[s]], bid=q.bid, ask=q.ask,
                               last=q.last, bid_size=q.bid_size, ask_size=q.ask_size, ts=end.timestamp())
                for s, q in step.quotes.items()
            ]
            message = {
                "type": "quotes", "bar": bar_start.isoformat(),
                "quotes": [{"s": q.symbol, "b": q.bid, "a": q.ask, "l": q.last, "t": q.ts} for q in batch],
            }

            def after_commit():
                quotes.quotes_set(batch)
                state_save(stepper, end.timestamp())
                _publish(message)

            transaction.on_commit(after_commit)
        result.stepped = due
        return result
    finally:
        cache.delete(LOCK_KEY)
