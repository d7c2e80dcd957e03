"""``manage.py alpaca_stream --firm ID [--symbols AAPL,BTC/USD] [--seconds N]``: live Alpaca data.

Streams quotes and minute bars with the firm's Alpaca connection (default symbols: those on the
firm's watchlists) into the quote cache, the bars table and the /ws/market/ hubs, until Ctrl-C /
SIGTERM (or ``--seconds``). Refused keys end it at once with exit status 1 and the reason, also
recorded on the connection (``last_error``): reconnecting with the same keys would only be refused again.
"""

from __future__ import annotations

import signal
import time

from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import DomainError
from apps.core.tenancy import firm_scope
from apps.marketdata.models import AlpacaConnection, AssetClass, Instrument, WatchlistItem
from apps.marketdata.provider_services import alpaca_connection_record, alpaca_provider_for
from apps.marketdata.providers.base import ProviderAuthError, ProviderError
from apps.marketdata.stream import StreamRunner


class Command(BaseCommand):
    help = "Stream live quotes and bars from a firm's Alpaca data connection."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--firm", type=int, required=True, help="firm id (its Alpaca connection is used)")
        parser.add_argument("--symbols", help="comma-separated symbols (default: the firm's watchlists)")
        parser.add_argument("--seconds", type=float, help="stop after this many seconds (default: run until stopped)")

    def handle(self, *args, firm: int, symbols: str | None, seconds: float | None, **opts) -> None:
        with firm_scope(firm):
            connection = AlpacaConnection.objects.filter(firm_id=firm).first()
            if connection is None:
                raise CommandError(f"firm {firm} has no Alpaca data connection (PUT /api/v1/data-connections/alpaca/)")
            if symbols:
                wanted = [s.strip().upper() for s in symbols.split(",") if s.strip()]
            else:
                wanted = list(WatchlistItem.objects.filter(firm_id=firm)
                              .values_list("instrument__symbol", flat=True).distinct())
            rows = (Instrument.objects.filter(symbol__in=wanted, active=True).exclude(asset_class=AssetClass.OPTION)
                    .values_list("symbol", "id", "exchange"))
            instruments = {sym: pk for sym, pk, _ in rows}
            exchanges = {sym: exchange for sym, _, exchange in rows}
            unknown = sorted(set(wanted) - set(instruments))
            if unknown:
                raise CommandError(f"unknown symbol(s): {', '.join(unknown)}")
            if not instruments:
                raise CommandError("no symbols to stream: pass --symbols or add symbols to a watchlist")
            try:
                provider = alpaca_provider_for(connection)
            except DomainError as exc:
                raise CommandError(exc.message) from None

            runner = StreamRunner(provider=_WithExchanges(provider, exchanges), instruments=instruments)
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: runner.stop())
            deadline = time.monotonic() + seconds if seconds else None
            self.stdout.write(f"streaming {len(instruments)} symbol(s) for firm {firm} ({connection.data_feed} feed)")
            try:
                stats = runner.run(until=(lambda: time.monotonic() >= deadline) if deadline else None)
            except ProviderAuthError as exc:
                alpaca_connection_record(connection_id=connection.pk, error=exc.message)
                raise CommandError(exc.message) from None
            except ProviderError as exc:
                raise CommandError(exc.message) from None
            alpaca_connection_record(connection_id=connection.pk)
            self.stdout.write(f"stopped: {stats.quotes} quote(s), {stats.bars} bar(s) written")


class _WithExchanges:
    """The provider, streaming with each symbol's exchange from the instruments table."""

    def __init__(self, provider, exchanges: dict[str, str]):
        self.provider = provider
        self.exchanges = exchanges
        self.name = provider.name

    def stream(self, symbols, on_quote, on_bar) -> None:
        self.provider.stream(symbols, on_quote, on_bar, exchanges=self.exchanges)

    def stop(self) -> None:
        self.provider.stop()

