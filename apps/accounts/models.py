"""Users, firms (the tenants), memberships with roles, invitations and API tokens."""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone as dj_tz


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        if not email:
            raise ValueError("email is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Logs in by email; belongs to firms through memberships."""

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May log in to the admin site.")
    date_joined = models.DateTimeField(default=dj_tz.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    def __str__(self) -> str:
        return self.email


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    TRADER = "trader", "Trader"
    ANALYST = "analyst", "Analyst"
    COMPLIANCE = "compliance", "Compliance"


MANAGE_ROLES = frozenset({Role.OWNER, Role.ADMIN})
AUDIT_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.COMPLIANCE})
TRADE_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.TRADER})


class TwoFactorPolicy(models.TextChoices):
    DEFAULT = "default", "Required for owner, admin, trader and compliance"
    ALL = "all", "Required for every role"


TWO_FACTOR_DEFAULT_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.TRADER, Role.COMPLIANCE})



def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"'{value}' is not a known IANA time zone (e.g. America/New_York).")


class Firm(models.Model):
    """A tenant: a fund, adviser, prop desk or trading club."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    base_currency = models.CharField(max_length=3, default="USD")
    timezone = models.CharField(max_length=64, default="America/New_York", validators=[validate_timezone])
    two_factor_policy = models.CharField(
        max_length=16, choices=TwoFactorPolicy.choices, default=TwoFactorPolicy.DEFAULT
    )
    created_at = models.DateTimeField(default=dj_tz.now)

    def __str__(self) -> str:
        return self.name

    def requires_2fa(self, role: str) -> bool:
        return self.two_factor_policy == TwoFactorPolicy.ALL or role in TWO_FACTOR_DEFAULT_ROLES


class Membership(models.Model):
    """A user's place in a firm, with one role."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=dj_tz.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["firm", "user"], name="membership_unique_firm_user")]
        indexes = [models.Index(fields=["user", "firm"])]

    def __str__(self) -> str:
        return f"{self.user} @ {self.firm} ({self.role})"


class Invitation(models.Model):
    """An invitation to join a firm with a role; accepted through a signed, expiring link."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=dj_tz.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["firm", "created_at"])]

    def __str__(self) -> str:
        return f"{self.email} as {self.role} ({self.firm})"

    @property
    def is_open(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > dj_tz.now()


class TokenScope(models.TextChoices):
    READ = "read", "Read"
    TRADE = "trade", "Trade"
    ADMIN = "admin", "Admin"


class ApiToken(models.Model):
    """A bearer token bound to one membership. Only a SHA-256 of the secret is stored."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="api_tokens")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=16, unique=True, help_text="Shown in lists; not a secret.")
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=dj_tz.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["firm", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > dj_tz.now())
