"""``manage.py field_keys_rotate``: re-encrypt every stored secret under the first OCTOPUS_FIELD_KEYS key.

Run after putting a new key first in OCTOPUS_FIELD_KEYS (old keys still listed); then the old keys
can be removed. Models declare their encrypted columns with ``encrypted_fields = ("name", ...)``.
A value no configured key decrypts is reported (by model and id, never its content) and left as
it is; the command then exits non-zero. Safe to run twice.
"""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.core import crypto
from apps.core.tenancy import unscoped


class Command(BaseCommand):
    help = "Re-encrypt stored secrets under the first key of OCTOPUS_FIELD_KEYS (key rotation)."

    def handle(self, *args, **opts) -> None:
        rotated, failed = 0, []
        for model in apps.get_models():
            fields = getattr(model, "encrypted_fields", ())
            if not fields:
                continue
            manager = model._default_manager
            # Platform maintenance across every firm: the one reviewed cross-firm use here.
            with unscoped(), transaction.atomic():
                for row in manager.select_for_update().order_by("pk"):
                    changed = []
                    for name in fields:
                        value = getattr(row, name)
                        if not value:
                            continue
                        try:
                            setattr(row, name, crypto.rotate(value))
                        except crypto.FieldDecryptError:
                            failed.append(f"{model._meta.label} {row.pk} {name}")
                            continue
                        changed.append(name)
                    if changed:
                        row.save(update_fields=changed)
                        rotated += len(changed)
        self.stdout.write(f"re-encrypted {rotated} value(s)")
        if failed:
            raise CommandError("cannot decrypt with the configured keys: " + "; ".join(failed))
