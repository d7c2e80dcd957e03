"""Shared lookups for the accounts commands: clear CommandErrors instead of tracebacks."""

from __future__ import annotations

from django.core.management.base import CommandError

from apps.accounts.models import Firm, Membership
from apps.core.errors import DomainError


def firm_by_slug(slug: str) -> Firm:
    firm = Firm.objects.filter(slug=slug).first()
    if firm is None:
        raise CommandError(f"Unknown firm '{slug}'. Existing slugs: {', '.join(Firm.objects.values_list('slug', flat=True).order_by('slug')) or 'none'}.")
    return firm


def membership_of(firm: Firm, email: str) -> Membership:
    membership = Membership.objects.select_related("user", "firm").filter(
        firm=firm, user__email__iexact=email.strip()).first()
    if membership is None:
        raise CommandError(f"{email} is not a member of firm '{firm.slug}'.")
    return membership


def domain_to_command_error(exc: DomainError) -> CommandError:
    details = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.fields.items())
    return CommandError(f"{exc.message}{' (' + details + ')' if details else ''}")
