"""``manage.py alpaca_trade_stream --portfolio ID [--seconds N]``: a live portfolio's Alpaca trade_updates.

Reconciles the portfolio first (the gap since the last run), then applies every trade update through the
one handler (``broker_update_apply``: fills booked once per execution id) and reconciles again after each
reconnect (the stream's own gap, reliability target 22). Runs until Ctrl-C / SIGTERM or ``--seconds``;
refused keys end it with exit status 1.
"""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import Actor
from apps.core.crypto import decrypt
from apps.core.tenancy import unscoped
from apps.orders.brokers.alpaca_stream import TradeUpdatesStream
from apps.orders.models import AlpacaAccount
from apps.orders.reconcile import reconcile_portfolio
from apps.orders.updates import broker_update_apply


class Command(BaseCommand):
    help = "Stream a live portfolio's Alpaca trade updates into its orders and books."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--portfolio", type=int, required=True, help="the live portfolio's id")
        parser.add_argument("--seconds", type=float, help="stop after this many seconds")
        parser.add_argument("--url", help="stream URL override (tests)")

    def handle(self, *args, portfolio: int, seconds: float | None, url: str | None, **opts) -> None:
        with unscoped():  # reviewed: an operator's command names the portfolio; it then acts in its firm
            account = AlpacaAccount.objects.select_related("portfolio").filter(portfolio_id=portfolio).first()
        if account is None:
            raise CommandError(f"portfolio {portfolio} has no Alpaca account (PUT /api/v1/trading/alpaca-account/)")
        target = account.portfolio
        actor = Actor.system("alpaca_trade_stream")

        def reconcile() -> None:
            report = reconcile_portfolio(portfolio=target, actor=actor)
            self.stdout.write(f"reconciled portfolio {target.pk}: {'clean' if report.clean else 'HALTED'}")

        def on_update(update) -> None:
            broker_update_apply(firm_id=target.firm_id, broker="alpaca", update=update)

        reconcile()
        stream = TradeUpdatesStream(account.key_id, decrypt(account.secret_encrypted), paper=account.paper,
                                    url_override=url, on_update=on_update, on_reconnect=reconcile)
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        stream.start()
        try:
            done.wait(seconds)
        except KeyboardInterrupt:
            pass
        finally:
            stream.stop()
        if stream.auth_error:
            raise CommandError(f"Alpaca refused the keys: {stream.auth_error}")
