"""The dashboard, health check and the placeholders of areas later issues build."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

# Navigation areas, in menu order: (slug, title, what it will hold).
AREAS = [
    ("risk", "Risk", "Limits, the kill switch, VaR and stress tests."),
    ("bots", "Bots", "Strategies that trade on a schedule, their signals and approvals."),
    ("backtests", "Backtests", "Strategy backtests on stored history with the live fill model."),
    ("reports", "Reports", "Tax and compliance reports, statements and scheduled exports."),
]
AREA_TITLES = {slug: (title, blurb) for slug, title, blurb in AREAS}


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Equity and day P&L across the portfolios the member may view, top movers, recent activity."""
    from apps.orders.views import dashboard_orders
    from apps.portfolios.views.pages import dashboard_context

    membership = getattr(request, "membership", None)
    return render(request, "core/dashboard.html", {**dashboard_context(membership), **dashboard_orders(membership)})


@login_required
def area_placeholder(request: HttpRequest, area: str) -> HttpResponse:
    if area not in AREA_TITLES:
        raise Http404
    title, blurb = AREA_TITLES[area]
    return render(request, "core/area_placeholder.html", {"area": area, "title": title, "blurb": blurb})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness plus the data stores: 200 when PostgreSQL and Redis answer, else 503."""
    from django.core.cache import cache

    checks = {}
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        cache.set("healthz", "1", 5)
        checks["cache"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["cache"] = f"error: {exc.__class__.__name__}"
    healthy = all(v == "ok" for v in checks.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    if checks["cache"] == "ok":
        # Informational: web health does not depend on the worker, but operators want to see it.
        from apps.core.tasks import last_heartbeat

        beat = last_heartbeat()
        body["worker_heartbeat_age_seconds"] = round(beat["age_seconds"], 1) if beat else None
    return JsonResponse(body, status=200 if healthy else 503)
