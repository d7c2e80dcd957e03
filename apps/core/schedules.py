"""Periodic schedules, defined in code and synced into django-celery-beat.

Each app may define ``SCHEDULES`` (a list of :class:`Schedule`) in its own ``schedules.py``;
``python manage.py sync_schedules`` (run by ``manage.py platform`` and on deploy) creates or
updates the matching ``PeriodicTask`` rows of django-celery-beat's DatabaseScheduler, and disables
rows it created earlier that are no longer in code. The code is the source of truth: an edit in
the admin lasts until the next sync. Rows created in the admin by hand are left alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import import_module

from django.apps import apps as django_apps
from django.db import transaction

MANAGED_MARK = "managed by code (apps/*/schedules.py); edits are overwritten by sync_schedules"


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    every_seconds: int
    kwargs: dict = field(default_factory=dict)
    queue: str | None = None


SCHEDULES = [
    Schedule(
        name="platform: heartbeat",
        task="core.heartbeat",
        every_seconds=30,
        kwargs={"source": "beat"},
    ),
]


def all_schedules() -> list[Schedule]:
    """SCHEDULES of every installed app that has a ``schedules`` module."""
    found: list[Schedule] = []
    for config in django_apps.get_app_configs():
        try:
            module = import_module(f"{config.name}.schedules")
        except ModuleNotFoundError as exc:
            if exc.name != f"{config.name}.schedules":
                raise
            continue
        found.extend(getattr(module, "SCHEDULES", []))
    names = [s.name for s in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate schedule names: {duplicates}")
    return found


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)


def sync(schedules: list[Schedule] | None = None) -> SyncResult:
    """Make django-celery-beat's rows match the schedules in code. Idempotent."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    schedules = all_schedules() if schedules is None else schedules
    result = SyncResult()
    with transaction.atomic():
        for sched in schedules:
            interval, _ = IntervalSchedule.objects.get_or_create(
                every=sched.every_seconds, period=IntervalSchedule.SECONDS
            )
            wanted = {
                "task": sched.task,
                "interval": interval,
                "kwargs": json.dumps(sched.kwargs, sort_keys=True),
                "queue": sched.queue,
                "enabled": True,
                "description": MANAGED_MARK,
            }
            row = PeriodicTask.objects.select_for_update().filter(name=sched.name).first()
            if row is None:
                PeriodicTask.objects.create(name=sched.name, **wanted)
                result.created.append(sched.name)
                continue
            changed = [k for k, v in wanted.items() if getattr(row, k) != v]
            if row.crontab_id or row.solar_id or row.clocked_id:
                row.crontab = row.solar = row.clocked = None
                changed.append("schedule")
            if changed:
                for key, value in wanted.items():
                    setattr(row, key, value)
                row.save()
                result.updated.append(sched.name)
            else:
                result.unchanged.append(sched.name)
        names = {s.name for s in schedules}
        stale = PeriodicTask.objects.filter(description=MANAGED_MARK, enabled=True).exclude(name__in=names)
        for row in stale:
            row.enabled = False
            row.save()
            result.disabled.append(row.name)
    return result
