"""Per-object grants (django-guardian) that can never cross firms.

Roles give firm-wide defaults; a grant narrows or widens them for one object (e.g. a trader
who may trade only some portfolios, from the portfolios issue on). Guardian itself knows
nothing of firms, so every grant goes through here and is refused when the user is not a
member of the object's firm.
"""

from __future__ import annotations

from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from apps.accounts.models import Membership, User
from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.errors import DomainError


def _firm_id_of(obj) -> int:
    firm_id = getattr(obj, "firm_id", None)
    if firm_id is None and obj.__class__.__name__ == "Firm":
        firm_id = obj.pk
    if firm_id is None:
        raise TypeError(f"{obj.__class__.__name__} is not firm-owned; object grants need a firm")
    return firm_id


def object_grant(*, perm: str, user: User, obj, actor: Actor, meta: RequestMeta | None = None) -> None:
    """Grant ``perm`` on ``obj`` to ``user``; refused (CROSS_FIRM_GRANT) unless the user is in obj's firm."""
    firm_id = _firm_id_of(obj)
    if not Membership.objects.filter(firm_id=firm_id, user=user).exists():
        raise DomainError("CROSS_FIRM_GRANT", "Permissions can only be granted to members of the object's firm.")
    with transaction.atomic():
        assign_perm(perm, user, obj)
        audit_record(
            firm_id=firm_id, action="grant.added", actor=actor,
            target_type=obj._meta.label_lower, target_id=obj.pk, target_label=str(obj),
            after={"perm": perm, "user": user.email}, meta=meta,
        )


def object_revoke(*, perm: str, user: User, obj, actor: Actor, meta: RequestMeta | None = None) -> None:
    firm_id = _firm_id_of(obj)
    with transaction.atomic():
        remove_perm(perm, user, obj)
        audit_record(
            firm_id=firm_id, action="grant.removed", actor=actor,
            target_type=obj._meta.label_lower, target_id=obj.pk, target_label=str(obj),
            before={"perm": perm, "user": user.email}, meta=meta,
        )
