"""API tokens: created once (the secret is shown once and never stored), revoked, audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from apps.accounts import tokens
from apps.accounts.models import ApiToken, Membership, TokenScope
from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.errors import DomainError

MAX_EXPIRY_DAYS = 3650


@dataclass(frozen=True)
class TokenCreated:
    token: ApiToken
    secret: str  # the full bearer token; shown to the user once


def token_create(
    *,
    membership: Membership,
    name: str,
    scopes: list[str],
    expires_days: int | None = None,
    actor: Actor,
    meta: RequestMeta | None = None,
) -> TokenCreated:
    """Create a token bound to ``membership``. Audited as ``token.created`` (no secret in the event)."""
    name = (name or "").strip()
    if not name:
        raise DomainError("INVALID_TOKEN", "A token needs a name.", fields={"name": ["This field is required."]})
    unknown = sorted(set(scopes) - set(TokenScope.values))
    if not scopes or unknown:
        raise DomainError(
            "INVALID_TOKEN",
            f"Scopes must be a non-empty subset of {', '.join(TokenScope.values)}.",
            fields={"scopes": [f"Unknown scope: {s}" for s in unknown] or ["At least one scope is required."]},
        )
    if expires_days is not None and not (1 <= expires_days <= MAX_EXPIRY_DAYS):
        raise DomainError(
            "INVALID_TOKEN",
            f"expires_days must be between 1 and {MAX_EXPIRY_DAYS}.",
            fields={"expires_days": [f"Must be between 1 and {MAX_EXPIRY_DAYS}."]},
        )
    full, prefix, secret_hash = tokens.generate()
    ordered_scopes = [s for s in TokenScope.values if s in scopes]
    with transaction.atomic():
        token = ApiToken.objects.create(
            firm_id=membership.firm_id,
            membership=membership,
            name=name[:80],
            prefix=prefix,
            secret_hash=secret_hash,
            scopes=ordered_scopes,
            expires_at=timezone.now() + timedelta(days=expires_days) if expires_days else None,
        )
        audit_record(
            firm_id=membership.firm_id,
            action="token.created",
            actor=actor,
            target_type="api_token",
            target_id=token.pk,
            target_label=f"{token.name} ({prefix})",
            after={"name": token.name, "scopes": ordered_scopes, "member": membership.user.email,
                   "expires_at": token.expires_at},
            meta=meta,
        )
    return TokenCreated(token=token, secret=full)


def token_revoke(*, token: ApiToken, actor: Actor, meta: RequestMeta | None = None) -> ApiToken:
    """Revoke a token (idempotent: revoking twice keeps the first time). Audited as ``token.revoked``."""
    with transaction.atomic():
        locked = ApiToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
            audit_record(
                firm_id=locked.firm_id,
                action="token.revoked",
                actor=actor,
                target_type="api_token",
                target_id=locked.pk,
                target_label=f"{locked.name} ({locked.prefix})",
                meta=meta,
            )
    return locked
