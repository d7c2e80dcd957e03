"""Firms: sign-up (a firm, its first user and owner membership) and firm settings."""

from __future__ import annotations

import re
import zoneinfo

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from apps.accounts.models import MANAGE_ROLES, Firm, Membership, Role, TwoFactorPolicy, User
from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.errors import DomainError

FIRM_NAME_MAX = 120
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
EDITABLE_FIELDS = ("name", "base_currency", "timezone", "two_factor_policy")

MSG_REQUIRED = "This field is required."
MSG_EMAIL_TAKEN = "A user with this email already exists. Log in and create the firm from there, or use another email."
MSG_CURRENCY = "Use a three-letter ISO 4217 code in capitals, e.g. USD."
MSG_TIMEZONE = "Not a known IANA time zone (e.g. America/New_York)."
MSG_POLICY = "Choose one of: {choices}."


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50].strip("-") or "firm"
    slug, n = base, 2
    while Firm.objects.filter(slug=slug).exists():
        slug = f"{base}-{n}"
        n += 1
    return slug


def _validate_firm_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise DomainError("INVALID_FIRM", "A firm needs a name.", fields={"name": [MSG_REQUIRED]})
    if len(name) > FIRM_NAME_MAX:
        raise DomainError(
            "INVALID_FIRM", "The firm name is too long.",
            fields={"name": [f"At most {FIRM_NAME_MAX} characters."]},
        )
    return name


def normalize_email(email: str, *, field: str = "email") -> str:
    """Lower-cased, stripped and syntactically valid, or a DomainError naming ``field``."""
    email = (email or "").strip().lower()
    if not email:
        raise DomainError("INVALID_EMAIL", "An email address is required.", fields={field: [MSG_REQUIRED]})
    try:
        validate_email(email)
    except ValidationError as exc:
        raise DomainError("INVALID_EMAIL", "Enter a valid email address.", fields={field: exc.messages}) from exc
    return email


def check_password(password: str, *, user: User | None = None, field: str = "password") -> None:
    """Django's password validators (length 12, common list, similarity, numeric) → DomainError."""
    if not password:
        raise DomainError("INVALID_PASSWORD", "A password is required.", fields={field: [MSG_REQUIRED]})
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise DomainError("INVALID_PASSWORD", "The password is too weak.", fields={field: exc.messages}) from exc


def firm_signup(
    *, firm_name: str, email: str, password: str, full_name: str = "", meta: RequestMeta | None = None
) -> Membership:
    """Create a firm, its first user and that user's owner membership. Audited as ``firm.signed_up``.

    Refuses an email that already has an account (DomainError on ``email``) and a weak password
    (DomainError on ``password``, with the validators' messages). Nothing is written on refusal.
    """
    firm_name = _validate_firm_name(firm_name)
    email = normalize_email(email)
    full_name = (full_name or "").strip()[:150]
    if User.objects.filter(email__iexact=email).exists():
        raise DomainError("EMAIL_TAKEN", MSG_EMAIL_TAKEN, fields={"email": [MSG_EMAIL_TAKEN]})
    check_password(password, user=User(email=email, full_name=full_name))
    for _attempt in range(3):  # a concurrent sign-up may take the slug between the check and the insert
        try:
            with transaction.atomic():
                firm = Firm.objects.create(name=firm_name, slug=_unique_slug(firm_name))
                user = User.objects.create_user(email=email, password=password, full_name=full_name)
                membership = Membership.objects.create(user=user, firm=firm, role=Role.OWNER)
                audit_record(
                    firm_id=firm.pk,
                    action="firm.signed_up",
                    actor=Actor.for_user(user),
                    target_type="firm",
                    target_id=firm.pk,
                    target_label=firm.name,
                    after={"name": firm.name, "slug": firm.slug, "owner": user.email},
                    meta=meta,
                )
            return membership
        except IntegrityError as exc:
            if User.objects.filter(email__iexact=email).exists():  # a concurrent sign-up took the email
                raise DomainError("EMAIL_TAKEN", MSG_EMAIL_TAKEN, fields={"email": [MSG_EMAIL_TAKEN]}) from exc
    raise DomainError("SIGNUP_CONFLICT", "Sign-up collided with another; try again.", status_code=409)


def _clean_changes(changes: dict) -> dict:
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise DomainError(
            "INVALID_SETTINGS", f"Unknown setting: {', '.join(unknown)}.",
            fields={name: ["Unknown field."] for name in unknown},
        )
    clean: dict = {}
    if "name" in changes:
        clean["name"] = _validate_firm_name(changes["name"])
    if "base_currency" in changes:
        value = str(changes["base_currency"] or "").strip()
        if not CURRENCY_RE.match(value):
            raise DomainError("INVALID_SETTINGS", MSG_CURRENCY, fields={"base_currency": [MSG_CURRENCY]})
        clean["base_currency"] = value
    if "timezone" in changes:
        value = str(changes["timezone"] or "").strip()
        if value not in zoneinfo.available_timezones():
            raise DomainError("INVALID_SETTINGS", MSG_TIMEZONE, fields={"timezone": [MSG_TIMEZONE]})
        clean["timezone"] = value
    if "two_factor_policy" in changes:
        value = changes["two_factor_policy"]
        if value not in TwoFactorPolicy.values:
            msg = MSG_POLICY.format(choices=", ".join(TwoFactorPolicy.values))
            raise DomainError("INVALID_SETTINGS", msg, fields={"two_factor_policy": [msg]})
        clean["two_factor_policy"] = value
    return clean


def firm_update(*, firm: Firm, actor: Actor, meta: RequestMeta | None = None, **changes) -> Firm:
    """Change a firm's settings (name, base_currency, timezone, two_factor_policy).

    Locks the firm row; audits ``firm.settings_changed`` with only the fields that changed
    (before/after). A call that changes nothing writes nothing. The caller checks the role.
    """
    clean = _clean_changes(changes)
    with transaction.atomic():
        locked = Firm.objects.select_for_update().get(pk=firm.pk)
        before = {k: getattr(locked, k) for k, v in clean.items() if getattr(locked, k) != v}
        after = {k: clean[k] for k in before}
        if after:
            for key, value in after.items():
                setattr(locked, key, value)
            locked.save(update_fields=list(after))
            audit_record(
                firm_id=locked.pk,
                action="firm.settings_changed",
                actor=actor,
                target_type="firm",
                target_id=locked.pk,
                target_label=locked.name,
                before=before,
                after=after,
                meta=meta,
            )
    return locked


def firm_require_manager(*, membership: Membership | None, firm: Firm) -> None:
    """Only the firm's owners and admins manage it (403 for other roles of the same firm)."""
    if membership is None or membership.firm_id != firm.pk:
        raise DomainError("NOT_FOUND", "Not found.", status_code=404)
    if membership.role not in MANAGE_ROLES:
        raise DomainError("PERMISSION_DENIED", "Only owners and admins may do this.", status_code=403)


def firm_switch(*, request, firm_id) -> Membership:
    """Make one of the user's firms the session's active firm. A firm the user is not in is a 404.

    Only the session changes (no audit event: nothing in any firm changes).
    """
    from django.http import Http404

    from apps.core.middleware import SESSION_FIRM_KEY

    try:
        firm_id = int(firm_id)
    except (TypeError, ValueError) as exc:
        raise Http404("No such firm.") from exc
    membership = Membership.objects.select_related("firm").filter(user=request.user, firm_id=firm_id).first()
    if membership is None:
        raise Http404("No such firm.")
    request.session[SESSION_FIRM_KEY] = membership.firm_id
    request.firm, request.membership = membership.firm, membership
    return membership
