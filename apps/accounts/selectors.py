"""Reads for accounts: memberships, firms, tokens."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.accounts.models import ApiToken, Firm, Invitation, Membership, User
from apps.core.middleware import SESSION_FIRM_KEY


def membership_list_for_user(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("firm").order_by("firm__name")


def active_membership_for_session(*, user: User, session) -> Membership | None:
    """The membership the session acts for: the chosen firm if still valid, else the first one."""
    memberships = list(membership_list_for_user(user=user))
    if not memberships:
        return None
    chosen = session.get(SESSION_FIRM_KEY)
    for membership in memberships:
        if membership.firm_id == chosen:
            return membership
    session[SESSION_FIRM_KEY] = memberships[0].firm_id
    return memberships[0]


def member_list(*, firm: Firm) -> QuerySet[Membership]:
    return Membership.objects.filter(firm=firm).select_related("user").order_by("user__email")


def member_get(*, firm: Firm, pk: int) -> Membership:
    """A member of this firm; another firm's membership is the same 404 as a missing one."""
    from django.shortcuts import get_object_or_404

    return get_object_or_404(Membership.objects.select_related("user"), firm=firm, pk=pk)


def invitation_list(*, firm: Firm) -> QuerySet[Invitation]:
    return Invitation.objects.filter(firm=firm).order_by("-created_at")


def token_list(*, firm: Firm, membership: Membership | None = None) -> QuerySet[ApiToken]:
    qs = ApiToken.objects.filter(firm=firm).select_related("membership__user").order_by("-created_at")
    if membership is not None:
        qs = qs.filter(membership=membership)
    return qs
