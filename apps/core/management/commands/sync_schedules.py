"""``manage.py sync_schedules``: write the schedules defined in code into django-celery-beat."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.core import schedules


class Command(BaseCommand):
    help = "Create/update django-celery-beat periodic tasks from the SCHEDULES in apps/*/schedules.py (idempotent)."

    def handle(self, *args, **options):
        result = schedules.sync()
        for label in ("created", "updated", "unchanged", "disabled"):
            for name in getattr(result, label):
                self.stdout.write(f"  {label:<9} {name}")
        self.stdout.write(
            f"schedules: {len(result.created)} created, {len(result.updated)} updated, "
            f"{len(result.unchanged)} unchanged, {len(result.disabled)} disabled"
        )
