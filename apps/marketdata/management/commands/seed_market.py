"""Demo market data: the simulated universe's instruments and N trading days of 1-minute bars.

Idempotent: the backfill window ends at today's midnight UTC and the simulator is seeded, so a
second run the same day regenerates identical bars, which the ingest upsert leaves unchanged.
The stepper state after the backfill is saved for the live feed unless the feed's saved state is
already newer (a re-run never rewinds the live feed).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.marketdata import calendars, feed
from apps.marketdata.ingest import bars_upsert
from apps.marketdata.models import Instrument
from apps.marketdata.services import instrument_create
from apps.marketdata.simulator import MarketStepper, continuous_minute_grid, session_minute_grid

DEFAULT_DAYS = 5


def ensure_instruments() -> int:
    """Create the universe's missing instruments; returns how many were created."""
    created = 0
    for cfg in feed.universe().symbols:
        if Instrument.objects.filter(symbol=cfg.symbol, asset_class=cfg.asset_class).exists():
            continue
        crypto = cfg.asset_class == "crypto"
        instrument_create(
            symbol=cfg.symbol, asset_class=cfg.asset_class, exchange=feed.EXCHANGE_FOR_CLASS[cfg.asset_class],
            name=cfg.symbol, tick_size=str(cfg.tick_size), lot_size="0.0001" if crypto else "1",
            fractionable=crypto, shortable=not crypto,
        )
        created += 1
    return created


class Command(BaseCommand):
    help = "Create the demo universe's instruments and backfill N trading days of simulated 1-minute bars."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"trading days (default {DEFAULT_DAYS})")

    def handle(self, *args, days: int, **opts):
        if not 1 <= days <= 260:
            raise CommandError("--days must be between 1 and 260")
        started = time.monotonic()
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        window = calendars.sessions("NYSE", (today - timedelta(days=days * 2 + 10)).date(),
                                    (today - timedelta(days=1)).date())[-days:]
        crypto_start = datetime.combine(window[0].day, datetime.min.time(), UTC)
        equity_grid = session_minute_grid([(s.open, s.close) for s in window])
        crypto_grid = continuous_minute_grid(crypto_start, today)
        universe = feed.universe()
        stepper = MarketStepper(universe)
        bars = stepper.backfill({cfg.symbol: crypto_grid if cfg.asset_class == "crypto" else equity_grid
                                 for cfg in universe.symbols})
        inserted = updated = rows = 0
        with transaction.atomic():
            created = ensure_instruments()
            ids = feed.instrument_ids(universe.names)
            for n, symbol in enumerate(universe.names, 1):
                outcome = bars_upsert(instrument_id=ids[symbol], timeframe="1m", bars=feed.sim_frame(bars[symbol]))
                rows += outcome.rows
                inserted += outcome.inserted
                updated += outcome.updated
                if n % 8 == 0 or n == len(universe.names):
                    self.stdout.write(f"  bars: {n}/{len(universe.names)} symbols, {rows} rows")
        _, as_of = feed.state_load()
        if as_of is None or as_of < today.timestamp():
            feed.state_save(stepper, today.timestamp())
        self.stdout.write(
            f"Market data: {len(universe.names)} instruments ({created} created), {days} trading days "
            f"{window[0].day}..{window[-1].day}: {rows} bars ({inserted} inserted, {updated} updated) "
            f"in {time.monotonic() - started:.1f}s."
        )
