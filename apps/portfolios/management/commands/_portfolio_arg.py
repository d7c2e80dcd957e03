"""The PORTFOLIO argument of the portfolio commands: an id, or a name with ``--firm SLUG``."""

from __future__ import annotations

from django.core.management.base import CommandError

from apps.accounts.models import Firm
from apps.core.tenancy import firm_scope
from apps.portfolios.models import Portfolio


def portfolio_arg(ref: str, slug: str | None) -> Portfolio:
    if slug is not None:
        firm = Firm.objects.filter(slug=slug).first()
        if firm is None:
            raise CommandError(f"No firm with slug '{slug}'.")
        with firm_scope(firm.pk):
            found = Portfolio.objects.filter(name=ref).first()
            if found is None and ref.isdigit():
                found = Portfolio.objects.filter(pk=int(ref)).first()
        if found is None:
            raise CommandError(f"No portfolio '{ref}' in firm '{slug}'.")
        return found
    if not ref.isdigit():
        raise CommandError("Name a portfolio by id, or by name with --firm SLUG.")
    # an id alone: look for it firm by firm, each query in that firm's scope (no cross-firm query)
    for firm_id in Firm.objects.order_by("pk").values_list("pk", flat=True):
        with firm_scope(firm_id):
            found = Portfolio.objects.filter(pk=int(ref)).first()
        if found is not None:
            return found
    raise CommandError(f"No portfolio with id {ref}.")
