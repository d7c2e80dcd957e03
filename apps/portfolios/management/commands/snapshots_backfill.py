"""``manage.py snapshots_backfill PORTFOLIO --start YYYY-MM-DD [--end YYYY-MM-DD] [--firm SLUG]``: write
(upsert) the end-of-day snapshot of every NYSE session in the range, rebuilt from the journal, the
fills and the stored bars (``apps.portfolios.valuation.snapshots_backfill``). Rerunning is harmless."""

from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.core.tenancy import firm_scope
from apps.portfolios.management.commands._portfolio_arg import portfolio_arg
from apps.portfolios.valuation import last_completed_session, snapshots_backfill


def _date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--{name}: expected a date as YYYY-MM-DD, got '{value}'.") from None


class Command(BaseCommand):
    help = "Write the end-of-day snapshots of a portfolio for every NYSE session from --start to --end."

    def add_arguments(self, parser) -> None:
        parser.add_argument("portfolio", help="Portfolio id, or its name together with --firm.")
        parser.add_argument("--start", required=True, help="First date (YYYY-MM-DD).")
        parser.add_argument("--end", help="Last date (YYYY-MM-DD); default the last completed session.")
        parser.add_argument("--firm", metavar="SLUG", help="The firm (required to name a portfolio by name).")

    def handle(self, *args, portfolio: str, start: str, end: str | None = None, firm: str | None = None,
               **options) -> None:
        first = _date(start, "start")
        last = _date(end, "end") if end else last_completed_session()
        if last is None:
            raise CommandError("--end: no completed session yet; give an end date.")
        if first > last:
            raise CommandError(f"--start {first} is after --end {last}.")
        if last > timezone.localdate():
            raise CommandError(f"--end {last} is in the future.")
        found = portfolio_arg(portfolio, firm)

        def progress(done: int, total: int, day: date) -> None:
            if done == total or done % 20 == 0:
                self.stdout.write(f"snapshots: {done}/{total} ({day.isoformat()})")

        try:
            with firm_scope(found.firm_id):
                written = snapshots_backfill(found, first, last, progress=progress)
        except ValueError as exc:  # a range outside the exchange calendar
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(
            f"{written} snapshot(s) of portfolio {found.pk} ({found.name}) from {first} to {last}."))

