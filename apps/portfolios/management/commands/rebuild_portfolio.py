"""``manage.py rebuild_portfolio PORTFOLIO [--firm SLUG] [--json]``: replay a portfolio's tax entity
from scratch and compare with the stored lots, positions, realized gains and journal balances.
Exits 1 when anything differs (see ``apps.portfolios.rebuild``). Reads only."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from apps.core.tenancy import firm_scope
from apps.portfolios.management.commands._portfolio_arg import portfolio_arg
from apps.portfolios.rebuild import rebuild_check


class Command(BaseCommand):
    help = ("Replay every fill and corporate action of a portfolio's tax entity and report any difference "
            "with its stored lots, positions, realized gains and journal balances. Exits 1 on a difference.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("portfolio", help="Portfolio id, or its name together with --firm.")
        parser.add_argument("--firm", metavar="SLUG", help="The firm (required to name a portfolio by name).")
        parser.add_argument("--json", dest="as_json", action="store_true", help="Print the report as JSON.")
        parser.add_argument("--progress-every", type=int, default=10_000, metavar="N",
                            help="Print a progress line every N fills replayed (default 10000).")

    def handle(self, *args, portfolio: str, firm: str | None = None, as_json: bool = False,
               progress_every: int = 10_000, **options) -> None:
        found = portfolio_arg(portfolio, firm)
        progress_out = self.stderr if as_json else self.stdout

        def progress(done: int, total: int) -> None:
            if total >= progress_every:
                progress_out.write(f"replaying fills: {done}/{total}")

        with firm_scope(found.firm_id):
            report = rebuild_check(found, progress=progress, progress_every=max(progress_every, 1))
        if as_json:
            self.stdout.write(json.dumps(report.as_json(), indent=2, sort_keys=True))
        elif report.ok:
            self.stdout.write(self.style.SUCCESS(report.summary()))
        else:
            for difference in report.differences:
                self.stdout.write(str(difference))
        if not report.ok:
            raise CommandError(f"{len(report.differences)} difference(s) in portfolio {found.pk} ({found.name}).",
                               returncode=1)

