"""Writing audit events. Call ``audit_record`` inside the transaction of the change it records."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import timezone

from apps.audit.chain import GENESIS_HASH, event_hash
from apps.audit.models import ActorType, AuditEvent

if TYPE_CHECKING:
    from apps.audit.export import ExportFile

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


def _jsonb_normal(value: Any) -> Any:
    """The value as it will read back from a jsonb column, so that the hash computed now still
    matches later: PostgreSQL stores numbers as numeric (``1e+16`` comes back as the integer
    ``10000000000000000``, ``-0.0`` as ``0.0``) and refuses the NUL character in text."""
    if isinstance(value, dict):
        return {_no_nul(k): _jsonb_normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonb_normal(v) for v in value]
    if isinstance(value, str):
        return _no_nul(value)
    if isinstance(value, float):
        if not math.isfinite(value):  # not JSON: jsonb refuses NaN and Infinity
            return str(value)
        if value == 0:
            return 0.0
        if "e+" in repr(value):  # |x| >= 1e16: integral, printed by numeric without an exponent
            return int(Decimal(repr(value)))
    return value


def _no_nul(text: str) -> str:
    return text.replace("\x00", "")


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    return _jsonb_normal(json.loads(json.dumps(value, cls=DjangoJSONEncoder)))


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
    head: tuple[int, str] | None = None,
    publish: bool = True,
) -> AuditEvent:
    """Append one event to the firm's chain (or the platform chain when ``firm_id`` is None).

    Must run inside the caller's transaction, so the event exists exactly when the change does.
    Serializes writers of one chain with a transaction-level advisory lock.

    ``head``: the chain's last (seq, hash), when the caller has already taken the lock and read it
    in this transaction with the statements of ``chain_head_sql`` (the booking service sends them
    with its own write to save two round trips per fill). ``(0, "")`` means an empty chain.

    ``publish=False``: no notification on the firm's live stream (the audit page shows the event on its
    next load). For high-volume events that have their own live event, e.g. booked fills.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("audit_record must be called inside transaction.atomic()")
    meta = meta or RequestMeta()
    if head is None:
        sql, params = chain_head_sql(firm_id)
        with connection.cursor() as cur:
            cur.execute(sql, params)
            cur.nextset()
            head = chain_head_from(cur.fetchone())
    seq, prev_hash = (head[0] + 1, head[1]) if head[0] else (1, GENESIS_HASH)
    event = AuditEvent(
        firm_id=firm_id,
        seq=seq,
        created_at=timezone.now(),
        actor_type=actor.type,
        actor_user_id=actor.user_id,
        actor_token_id=actor.token_id,
        actor_label=_no_nul(actor.label)[:200],
        action=action,
        target_type=target_type,
        target_id=_no_nul(str(target_id))[:64] if target_id not in (None, "") else "",
        target_label=_no_nul(str(target_label))[:200],
        before=_jsonable(before),
        after=_jsonable(after),
        ip=meta.ip,
        user_agent=_no_nul(meta.user_agent)[:400],
        request_id=_no_nul(meta.request_id)[:64],
        prev_hash=prev_hash,
    )
    event.hash = event_hash(prev_hash, audit_row(event))
    event.save(force_insert=True)
    if firm_id is not None and publish:  # tell the firm's live stream, after commit only (apps.core.events)
        from apps.accounts.models import AUDIT_ROLES
        from apps.core.events import publish_firm_event

        publish_firm_event(
            firm_id=firm_id, kind="audit", roles=AUDIT_ROLES,
            payload={"action": event.action, "target_type": event.target_type, "target_id": event.target_id,
                     "actor": event.actor_label, "audit_seq": event.seq},
        )
    return event


def chain_head_sql(firm_id: int | None) -> tuple[str, list]:
    """Two statements: take the chain's advisory lock, then read its last (seq, hash). Each statement
    reads its own snapshot, so the read sees every event committed before the lock was granted."""
    chain = "firm_id IS NULL" if firm_id is None else "firm_id = %s"
    params: list = [7011, firm_id or PLATFORM_CHAIN_LOCK] + ([] if firm_id is None else [firm_id])
    return ("SELECT pg_advisory_xact_lock(%s, %s); "
            f"SELECT seq, hash FROM audit_auditevent WHERE {chain} ORDER BY seq DESC LIMIT 1", params)


def chain_head_from(row: tuple | None) -> tuple[int, str]:
    return (row[0], row[1]) if row else (0, "")


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


def audit_export(
    *,
    firm_id: int,
    created_from: datetime,
    created_before: datetime,
    fmt: str,
    actor: Actor,
    meta: RequestMeta | None = None,
) -> ExportFile:
    """Render the firm's events in [created_from, created_before) as a compliance export file.

    The range must be closed (``created_before`` not in the future) so the same range always gives
    the same bytes; the caller validates that. The export itself is audited as ``audit.exported``
    (with the range, format, row count and SHA-256) — that event is created now, after the range,
    so it never changes the file it describes.
    """
    from django.db import transaction

    from apps.audit.export import render_export
    from apps.audit.selectors import audit_export_events

    with transaction.atomic():
        exported = render_export(
            audit_export_events(firm_id=firm_id, created_from=created_from, created_before=created_before), fmt
        )
        audit_record(
            firm_id=firm_id,
            action="audit.exported",
            actor=actor,
            target_type="audit_export",
            target_label=f"{created_from.isoformat()}..{created_before.isoformat()}",
            after={
                "from": created_from,
                "to": created_before,
                "format": fmt,
                "rows": exported.rows,
                "sha256": exported.sha256,
            },
            meta=meta,
        )
    return exported
