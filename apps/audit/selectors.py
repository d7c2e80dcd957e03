"""Reads of the audit trail: firm-scoped lists, one event, chain verification, export rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from apps.audit.chain import ChainBreak, verify_chain
from apps.audit.models import AuditEvent
from apps.audit.services import audit_row


def _events_of(firm_id: int | None) -> QuerySet[AuditEvent]:
    # Explicit firm filter on the unscoped manager: the caller's scope may be another firm
    # (a superuser, a command) and the platform chain (firm NULL) belongs to no scope.
    qs = AuditEvent.objects.unscoped()
    return qs.filter(firm__isnull=True) if firm_id is None else qs.filter(firm_id=firm_id)


def audit_event_list(
    *,
    firm_id: int,
    actor: str | None = None,
    actor_type: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    created_from: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """The firm's events, newest first. ``actor`` matches the actor label (email) case-insensitively;
    ``action`` is exact, or a prefix when it ends with a dot (``member.``); the range is [from, before)."""
    qs = _events_of(firm_id)
    if actor:
        qs = qs.filter(actor_label__icontains=actor)
    if actor_type:
        qs = qs.filter(actor_type=actor_type)
    if action:
        qs = qs.filter(action__startswith=action) if action.endswith(".") else qs.filter(action=action)
    if target_type:
        qs = qs.filter(target_type=target_type)
    if target_id:
        qs = qs.filter(target_id=target_id)
    if created_from is not None:
        qs = qs.filter(created_at__gte=created_from)
    if created_before is not None:
        qs = qs.filter(created_at__lt=created_before)
    return qs.order_by("-seq")


def audit_event_get(*, firm_id: int, pk: int) -> AuditEvent:
    """One event of this firm; another firm's event is the same 404 as a missing one."""
    return get_object_or_404(_events_of(firm_id), pk=pk)


def audit_export_events(*, firm_id: int, created_from: datetime, created_before: datetime) -> Iterator[AuditEvent]:
    """Every event of the firm in [from, before), in chain order, streamed."""
    return (
        _events_of(firm_id)
        .filter(created_at__gte=created_from, created_at__lt=created_before)
        .order_by("seq")
        .iterator(chunk_size=2000)
    )


@dataclass(frozen=True)
class ChainReport:
    firm_id: int | None
    checked: int
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def audit_chain_verify(*, firm_id: int | None) -> ChainReport:
    """Recompute one chain (a firm's, or the platform's with ``firm_id=None``) from seq 1, streamed."""
    checked = 0

    def rows():
        nonlocal checked
        for event in _events_of(firm_id).order_by("seq").iterator(chunk_size=2000):
            checked += 1
            yield audit_row(event)

    broken = verify_chain(rows())
    return ChainReport(firm_id=firm_id, checked=checked if broken is None else checked - 1, broken=broken)
