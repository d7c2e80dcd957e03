"""``manage.py verify_audit [--firm SLUG]``: check every audit hash chain, name the first broken link."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import Firm
from apps.audit.selectors import ChainReport, audit_chain_verify


class Command(BaseCommand):
    help = "Verify the hash chains of the audit trail (every firm's and the platform's). Exits 1 on a break."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--firm", metavar="SLUG", help="Check only this firm's chain.")

    def handle(self, *args, firm: str | None = None, **options) -> None:
        if firm is not None:
            found = Firm.objects.filter(slug=firm).first()
            if found is None:
                raise CommandError(f"No firm with slug '{firm}'.")
            chains: list[tuple[str, int | None]] = [(f"firm {found.slug}", found.pk)]
        else:
            chains = [(f"firm {f.slug}", f.pk) for f in Firm.objects.order_by("slug")]
            chains.append(("platform chain", None))
        broken = 0
        for label, firm_id in chains:
            report: ChainReport = audit_chain_verify(firm_id=firm_id)
            if report.ok:
                self.stdout.write(f"{label}: {report.checked} events checked, OK")
            else:
                broken += 1
                self.stdout.write(
                    self.style.ERROR(f"{label}: BROKEN at seq {report.broken.seq}: {report.broken.reason}")
                )
        if broken:
            raise CommandError(f"{broken} broken audit chain(s).", returncode=1)
