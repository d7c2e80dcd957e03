"""``manage.py corporate_actions_import FILE.csv --firm SLUG [--apply]``: import a firm's corporate
actions from a CSV (``apps.portfolios.corporate.corporate_actions_import``: columns kind, symbol,
ex_date, record_date, pay_date, ratio_from, ratio_to, cash_per_share, new_symbol, reference,
cash_in_lieu_price). All or nothing; rows whose reference the firm already has are reported as
``exists``, so rerunning is harmless. ``--apply`` then applies every due action of the firm."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import Firm
from apps.audit.services import Actor
from apps.core.errors import DomainError
from apps.portfolios import corporate


class Command(BaseCommand):
    help = "Import a firm's corporate actions from a CSV file (all or nothing; a re-import is a no-op)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="CSV path, UTF-8, with a header row ('-' for stdin).")
        parser.add_argument("--firm", metavar="SLUG", required=True, help="The firm the actions belong to.")
        parser.add_argument("--apply", action="store_true", help="Then apply the firm's due actions.")

    def handle(self, *args, file: str, firm: str, apply: bool = False, **options) -> None:
        found = Firm.objects.filter(slug=firm).first()
        if found is None:
            raise CommandError(f"--firm: no firm with slug '{firm}'.")
        try:
            if file == "-":
                import sys

                text = sys.stdin.read()
            else:
                with open(file, encoding="utf-8-sig") as fh:
                    text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{file}: {exc}") from None
        actor = Actor.system("corporate_actions_import")
        try:
            report = corporate.corporate_actions_import(firm_id=found.pk, text=text, actor=actor)
        except DomainError as exc:
            for key, messages in exc.fields.items():
                self.stderr.write(f"{key}: {'; '.join(str(m) for m in messages)}")
            raise CommandError(f"{exc.message} (nothing imported)") from None
        for row in report["rows"]:
            self.stdout.write(f"row {row['row']}: {row['status']} {row['reference']} (id {row['id']})")
        self.stdout.write(f"{report['created']} created, {report['existing']} already present.")
        if apply:
            result = corporate.apply_due(firms=[found.pk])
            self.stdout.write(f"applied {result['applied']} action(s), {result['applications']} portfolio "
                              f"application(s); {len(result['errors'])} refused.")
            for error in result["errors"]:
                self.stderr.write(f"action {error['action']}: {error['code']} {error['message']}")
