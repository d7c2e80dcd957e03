"""The append-only, hash-chained audit trail.

PostgreSQL itself refuses UPDATE, DELETE and TRUNCATE on this table (a trigger created by
migration 0002), so not even a bug or a shell session in Python can rewrite history; and each
row carries the hash of its predecessor, so an edit made around the trigger is detected by
``manage.py verify_audit``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.core.models import FirmScopedManager


class ActorType(models.TextChoices):
    USER = "user", "User"
    TOKEN = "token", "API token"
    BOT = "bot", "Bot"
    SYSTEM = "system", "System"


class AuditEvent(models.Model):
    # actor_user / actor_token: no database constraint and DO_NOTHING, so deleting a user or a token
    # never touches (UPDATEs) history; the ids stay as recorded and actor_label keeps who it was.
    # Null firm = the platform chain (e.g. a failed login for an unknown email).
    firm = models.ForeignKey("accounts.Firm", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    seq = models.PositiveBigIntegerField(help_text="Position in the firm's chain, from 1.")
    created_at = models.DateTimeField()
    actor_type = models.CharField(max_length=8, choices=ActorType.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, null=True, blank=True, related_name="+", db_constraint=False
    )
    actor_token = models.ForeignKey(
        "accounts.ApiToken", on_delete=models.DO_NOTHING, null=True, blank=True, related_name="+", db_constraint=False
    )
    actor_label = models.CharField(max_length=200, help_text="Who, as text that outlives the actor's row.")
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = FirmScopedManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["firm", "seq"], name="audit_unique_firm_seq"),
            models.UniqueConstraint(
                fields=["seq"], condition=models.Q(firm__isnull=True), name="audit_unique_platform_seq"
            ),
        ]
        indexes = [models.Index(fields=["firm", "created_at"]), models.Index(fields=["firm", "action"])]
        ordering = ["-created_at", "-seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor_label}"
