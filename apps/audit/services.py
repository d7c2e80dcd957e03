"""Writing audit events. Call ``audit_record`` inside the transaction of the change it records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import timezone

from apps.audit.chain import GENESIS_HASH, event_hash
from apps.audit.models import ActorType, AuditEvent
from apps.core.tenancy import unscoped

PLATFORM_CHAIN_LOCK = 0  # advisory-lock key for the platform chain (firm ids start at 1)


@dataclass(frozen=True)
class Actor:
    """Who did it: a user, an API token (and its user), a bot, or the system."""

    type: str
    label: str
    user_id: int | None = None
    token_id: int | None = None

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(ActorType.SYSTEM, label)

    @classmethod
    def for_user(cls, user) -> Actor:
        return cls(ActorType.USER, user.email, user_id=user.pk)


@dataclass(frozen=True)
class RequestMeta:
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""

    @classmethod
    def from_request(cls, request) -> RequestMeta:
        if request is None:
            return cls()
        return cls(
            ip=request.META.get("REMOTE_ADDR") or None,
            user_agent=(request.META.get("HTTP_USER_AGENT") or "")[:400],
            request_id=getattr(request, "request_id", "") or "",
        )


def actor_from_request(request) -> Actor:
    """The actor behind a request: its API token if it came with one, else its user."""
    token = getattr(request, "auth", None)
    user = getattr(request, "user", None)
    if token is not None and getattr(token, "prefix", None):
        return Actor(ActorType.TOKEN, f"{user.email} via token {token.prefix}", user_id=user.pk, token_id=token.pk)
    if user is not None and user.is_authenticated:
        return Actor.for_user(user)
    return Actor.system("anonymous")


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def audit_record(
    *,
    firm_id: int | None,
    action: str,
    actor: Actor,
    target_type: str = "",
    target_id: Any = "",
    target_label: str = "",
    before: Any = None,
    after: Any = None,
    meta: RequestMeta | None = None,
) -> AuditEvent:
    """Append one event to the firm's chain (or the platform chain when ``firm_id`` is None).

    Must run inside the caller's transaction, so the event exists exactly when the change does.
    Serializes writers of one chain with a transaction-level advisory lock.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("audit_record must be called inside transaction.atomic()")
    meta = meta or RequestMeta()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [7011, firm_id or PLATFORM_CHAIN_LOCK])
    with unscoped():
        last = (
            AuditEvent.objects.unscoped()
            .filter(firm_id=firm_id)
            .order_by("-seq")
            .values_list("seq", "hash")
            .first()
        )
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    event = AuditEvent(
        firm_id=firm_id,
        seq=seq,
        created_at=timezone.now(),
        actor_type=actor.type,
        actor_user_id=actor.user_id,
        actor_token_id=actor.token_id,
        actor_label=actor.label[:200],
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id not in (None, "") else "",
        target_label=str(target_label)[:200],
        before=_jsonable(before),
        after=_jsonable(after),
        ip=meta.ip,
        user_agent=meta.user_agent,
        request_id=meta.request_id,
        prev_hash=prev_hash,
    )
    event.hash = event_hash(prev_hash, audit_row(event))
    event.save(force_insert=True)
    return event


def audit_row(event: AuditEvent) -> dict[str, Any]:
    """The hashed fields of an event, as plain data."""
    return {
        "firm_id": event.firm_id,
        "seq": event.seq,
        "created_at": event.created_at.astimezone(UTC).isoformat(),
        "actor_type": event.actor_type,
        "actor_user_id": event.actor_user_id,
        "actor_token_id": event.actor_token_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target_label": event.target_label,
        "before": event.before,
        "after": event.after,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


