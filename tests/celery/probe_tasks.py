"""Tasks loaded only into test workers (``--include tests.celery.probe_tasks``): they report
the firm scope they saw to the cache so the test process can read it."""

from __future__ import annotations

import json
import os

from celery import shared_task
from django.core.cache import cache

from apps.core import tenancy
from apps.core.tasks import firm_task


def _report(key: str, **data) -> None:
    cache.set(f"probe:{key}", json.dumps({"pid": os.getpid(), **data}), timeout=300)


def read_report(key: str) -> dict | None:
    raw = cache.get(f"probe:{key}")
    return json.loads(raw) if raw else None


def _visible_actions() -> list[str] | str:
    from apps.audit.models import AuditEvent

    try:
        return sorted(AuditEvent.objects.values_list("action", flat=True))
    except tenancy.FirmScopeError:
        return "refused"


@firm_task(name="tests.probe_firm")
def probe_firm(firm_id: int, key: str) -> None:
    _report(key, scope=tenancy.current_firm_id(), actions=_visible_actions())


@firm_task(name="tests.probe_firm_fails")
def probe_firm_fails(firm_id: int, key: str) -> None:
    _report(key, scope=tenancy.current_firm_id())
    raise RuntimeError("probe failure inside a firm scope")


@shared_task(name="tests.probe_leaky")
def probe_leaky(firm_id: int, key: str) -> None:
    """A buggy task: sets a firm scope and never resets it."""
    tenancy.set_scope(firm_id)
    _report(key, scope=tenancy.current_firm_id())


@shared_task(name="tests.probe_no_firm")
def probe_no_firm(key: str) -> None:
    _report(key, scope=tenancy.current_firm_id(), active=tenancy.scope_is_active(), actions=_visible_actions())


@shared_task(name="tests.probe_killed_once", acks_late=True)
def probe_killed_once(key: str) -> None:
    """First delivery: report and hang (the test SIGKILLs this process). Redelivery: report done."""
    import time

    cache.add(f"probe:attempts:{key}", 0, timeout=300)
    attempt = cache.incr(f"probe:attempts:{key}")
    if attempt == 1:
        _report(f"{key}:started")
        time.sleep(60)
    _report(f"{key}:done", attempt=attempt)
