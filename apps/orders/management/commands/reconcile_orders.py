"""``manage.py reconcile_orders [--portfolio ID] [--json]``: reconcile live portfolios with their broker on
demand (every portfolio with an Alpaca account, or one portfolio, paper or live). Prints each report; exit
status 1 when any portfolio has a break (it is then halted until resumed)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import Actor
from apps.core.tenancy import unscoped
from apps.orders.reconcile import reconcile_portfolio
from apps.portfolios.models import Portfolio


class Command(BaseCommand):
    help = "Reconcile portfolios' orders and positions with their broker; breaks halt the portfolio."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--portfolio", type=int, help="one portfolio id (default: every live portfolio)")
        parser.add_argument("--json", action="store_true", help="print the reports as JSON")

    def handle(self, *args, portfolio: int | None, json: bool, **opts) -> None:
        with unscoped():  # reviewed: an operator's command across firms; each report runs in its firm's scope
            if portfolio is not None:
                targets = list(Portfolio.objects.filter(pk=portfolio))
                if not targets:
                    raise CommandError(f"no portfolio {portfolio}")
            else:
                targets = list(Portfolio.objects.filter(alpaca_account__isnull=False))
        reports = [reconcile_portfolio(portfolio=p, actor=Actor.system("reconcile_orders")) for p in targets]
        for report in reports:
            if json:
                self.stdout.write(_dumps(report.as_dict()))
                continue
            state = "clean" if report.clean else ("HALTED: " + (report.error or f"{len(report.breaks)} break(s)"))
            self.stdout.write(f"portfolio {report.portfolio} ({report.broker}): {report.checked} open order(s), "
                              f"{report.updated} updated, {state}")
            for b in report.breaks:
                self.stdout.write(f"  {b.kind} {b.symbol}: ours {b.ours}, broker {b.theirs} {b.order}".rstrip())
        if any(not r.clean for r in reports):
            raise SystemExit(1)


def _dumps(data) -> str:
    return json.dumps(data, default=str)
