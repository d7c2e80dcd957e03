"""The audit log page: owners, admins and compliance read their firm's trail."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.accounts.models import AUDIT_ROLES
from apps.audit.forms import AuditLogFilterForm
from apps.audit.selectors import audit_event_list

PAGE_SIZE = 50
MSG_AUDIT_ROLES = "Only owners, admins and compliance staff of {firm} can read the audit log."
MSG_NO_FIRM = "You are not a member of any firm."


def _midnight(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def change_rows(before, after) -> list[tuple[str, object, object]]:
    """(field, before, after) for each field that differs; a non-dict value is one row named ''."""
    if isinstance(before, dict) or isinstance(after, dict):
        b, a = before if isinstance(before, dict) else {}, after if isinstance(after, dict) else {}
        return [(key, b.get(key), a.get(key)) for key in sorted(set(b) | set(a)) if b.get(key) != a.get(key)]
    if before is None and after is None:
        return []
    return [("", before, after)]


@login_required
@require_GET
def log(request: HttpRequest) -> HttpResponse:
    membership = getattr(request, "membership", None)
    if membership is None:
        return render(request, "audit/forbidden.html", {"message": MSG_NO_FIRM}, status=403)
    if membership.role not in AUDIT_ROLES:
        message = MSG_AUDIT_ROLES.format(firm=request.firm.name)
        return render(request, "audit/forbidden.html", {"message": message}, status=403)

    form = AuditLogFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    start = _midnight(filters["date_from"]) if filters.get("date_from") else None
    end = _midnight(filters["date_to"] + timedelta(days=1)) if filters.get("date_to") else None
    events = audit_event_list(
        firm_id=request.firm.pk,
        actor=filters.get("actor") or None,
        actor_type=filters.get("actor_type") or None,
        action=filters.get("action") or None,
        created_from=start,
        created_before=end,
    )
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [{"event": e, "changes": change_rows(e.before, e.after)} for e in page.object_list]

    # The export covers the same dates; its end is never in the future, so the file is reproducible.
    now = timezone.now()
    export_end = min(end, now) if end is not None else now
    export_start = start or _midnight(request.firm.created_at.astimezone(UTC).date())
    export_url = None
    if export_start < export_end:
        query = urlencode({"from": export_start.isoformat(), "to": export_end.isoformat(), "format": "csv"})
        export_url = f"{reverse('audit-export')}?{query}"
    kept = request.GET.copy()
    kept.pop("page", None)
    return render(
        request,
        "audit/log.html",
        {
            "form": form,
            "page": page,
            "rows": rows,
            "export_url": export_url,
            "export_start": export_start,
            "export_end": export_end,
            "filter_query": kept.urlencode(),
        },
    )
