"""Authentication events and two-factor devices (django-otp): enrol, verify, disable. All audited.

Login and 2FA failures concern a person rather than one firm, so their events go to the chain of
every firm the person belongs to (the platform chain when the email is unknown or has no firm).
"""

from __future__ import annotations

import base64
from binascii import unhexlify
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.models import Membership, User
from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.errors import DomainError

BACKUP_CODE_COUNT = 10
TOTP_DEVICE_NAME = "default"
BACKUP_DEVICE_NAME = "backup"

MSG_CODE_REQUIRED = "Enter the 6-digit code from your authenticator app or a backup code."
MSG_CODE_INVALID = "That code is not valid. Codes can be used only once."
MSG_THROTTLED = "Too many wrong codes. Wait {seconds} seconds before trying again."
MSG_NOT_ENROLLED = "Two-factor authentication is not set up."
MSG_POLICY_REQUIRES = "{firm} requires two-factor authentication for your role ({role}); it cannot be turned off."


def _firm_ids_for(user: User | None) -> list[int | None]:
    if user is None:
        return [None]
    ids = list(Membership.objects.filter(user=user).order_by("firm_id").values_list("firm_id", flat=True))
    return ids or [None]


def _record_for_person(*, user: User | None, action: str, actor: Actor, label: str, after: dict | None,
                       meta: RequestMeta | None) -> None:
    with transaction.atomic():
        for firm_id in _firm_ids_for(user):
            audit_record(
                firm_id=firm_id,
                action=action,
                actor=actor,
                target_type="user",
                target_id=user.pk if user else "",
                target_label=label,
                after=after,
                meta=meta,
            )


# --- password logins -----------------------------------------------------------------------------


def auth_login_record(*, user: User, firm_id: int | None, meta: RequestMeta | None = None) -> None:
    """A successful password login, recorded on the chain of the firm the session starts in."""
    with transaction.atomic():
        audit_record(
            firm_id=firm_id, action="auth.login", actor=Actor.for_user(user),
            target_type="user", target_id=user.pk, target_label=user.email, meta=meta,
        )


def _user_by_email(email: str) -> User | None:
    return User.objects.filter(email__iexact=(email or "").strip()).first()


def auth_login_failed_record(*, email: str, meta: RequestMeta | None = None) -> None:
    """A failed password login: to each firm of the user, or the platform chain for an unknown email."""
    user = _user_by_email(email)
    label = (email or "").strip().lower()[:200]
    _record_for_person(user=user, action="auth.login_failed", actor=Actor.system("anonymous"), label=label,
                       after={"email": label}, meta=meta)


def auth_locked_out_record(*, email: str, meta: RequestMeta | None = None) -> None:
    """A login refused (or just locked) by the brute-force lockout."""
    user = _user_by_email(email)
    label = (email or "").strip().lower()[:200]
    _record_for_person(user=user, action="auth.locked_out", actor=Actor.system("anonymous"), label=label,
                       after={"email": label}, meta=meta)


# --- TOTP enrolment --------------------------------------------------------------------------------


def totp_device_for(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def has_two_factor(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def totp_secret_b32(device: TOTPDevice) -> str:
    return base64.b32encode(unhexlify(device.key)).decode("ascii")


def two_factor_enrol_begin(*, user: User) -> TOTPDevice:
    """The user's pending (unconfirmed) TOTP device, created once so a reload shows the same secret."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    return device


def _clean_code(code: str) -> str:
    return "".join((code or "").split()).lower()


@dataclass(frozen=True)
class Throttled:
    until: datetime

    @property
    def seconds(self) -> int:
        return max(1, int((self.until - timezone.now()).total_seconds() + 0.999))


def throttled_until(devices) -> Throttled | None:
    """The latest back-off among the devices (django-otp's ThrottlingMixin), if any applies now."""
    latest = None
    for device in devices:
        allowed, data = device.verify_is_allowed()
        if not allowed and data and data.get("locked_until"):
            latest = max(latest, data["locked_until"]) if latest else data["locked_until"]
    return Throttled(latest) if latest else None


def _throttled_error(throttle: Throttled) -> DomainError:
    msg = MSG_THROTTLED.format(seconds=throttle.seconds)
    err = DomainError("OTP_THROTTLED", msg, fields={"code": [msg]}, status_code=429)
    err.retry_after = throttle.seconds
    return err


def _invalid_code() -> DomainError:
    return DomainError("OTP_INVALID", MSG_CODE_INVALID, fields={"code": [MSG_CODE_INVALID]})


def _record_2fa_failed(*, user: User, reason: str, meta: RequestMeta | None) -> None:
    for firm_id in _firm_ids_for(user):
        audit_record(
            firm_id=firm_id, action="2fa.failed", actor=Actor.for_user(user),
            target_type="user", target_id=user.pk, target_label=user.email,
            after={"reason": reason}, meta=meta,
        )


def two_factor_enrol_confirm(
    *, user: User, device: TOTPDevice, code: str, meta: RequestMeta | None = None
) -> list[str]:
    """Confirm the pending TOTP device with a valid code; returns 10 fresh backup codes (shown once).

    Replaces any earlier backup codes. Wrong codes are throttled by the device and audited as
    ``2fa.failed``; success is audited as ``2fa.enrolled``.
    """
    code = _clean_code(code)
    if not code:
        raise DomainError("OTP_REQUIRED", MSG_CODE_REQUIRED, fields={"code": [MSG_CODE_REQUIRED]})
    if device.user_id != user.pk or device.confirmed:
        raise DomainError("NOT_FOUND", "Not found.", status_code=404)
    error: DomainError | None = None
    codes: list[str] = []
    with transaction.atomic():
        locked = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        throttle = throttled_until([locked])
        if throttle:
            error = _throttled_error(throttle)
        elif not locked.verify_token(code):
            _record_2fa_failed(user=user, reason="enrolment code", meta=meta)
            error = _invalid_code()
        else:
            locked.confirmed = True
            locked.save(update_fields=["confirmed"])
            TOTPDevice.objects.filter(user=user).exclude(pk=locked.pk).delete()
            StaticDevice.objects.filter(user=user).delete()
            backup = StaticDevice.objects.create(user=user, name=BACKUP_DEVICE_NAME, confirmed=True)
            while len(set(codes)) < BACKUP_CODE_COUNT:
                codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
            StaticToken.objects.bulk_create([StaticToken(device=backup, token=c) for c in codes])
            for firm_id in _firm_ids_for(user):
                audit_record(
                    firm_id=firm_id, action="2fa.enrolled", actor=Actor.for_user(user),
                    target_type="user", target_id=user.pk, target_label=user.email,
                    after={"method": "totp", "backup_codes": BACKUP_CODE_COUNT}, meta=meta,
                )
    if error:
        raise error
    device.refresh_from_db()
    return codes


# --- verification and disabling ----------------------------------------------------------------------


def _devices_locked(user: User) -> list:
    totp = list(TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).order_by("pk"))
    static = list(StaticDevice.objects.select_for_update().filter(user=user, confirmed=True).order_by("pk"))
    return totp + static


def _verify_locked(*, user: User, code: str, meta: RequestMeta | None, reason: str):
    """Inside a transaction: the device that accepts ``code`` or a DomainError to raise after commit."""
    devices = _devices_locked(user)
    if not devices:
        return None, DomainError("OTP_NOT_ENROLLED", MSG_NOT_ENROLLED, status_code=400)
    throttle = throttled_until(devices)
    if throttle:
        return None, _throttled_error(throttle)
    # A 6-digit code is a TOTP code; anything else is a backup code.
    kind = TOTPDevice if code.isdigit() and len(code) == 6 else StaticDevice
    for device in devices:
        if isinstance(device, kind) and device.verify_token(code):
            for other in devices:  # a success ends the back-off on every device
                if other is not device and other.throttling_failure_count:
                    other.throttle_reset()
            return device, None
    # Count the failure on every device so a backup code cannot sidestep a TOTP back-off.
    for device in devices:
        if not isinstance(device, kind):
            device.throttle_increment()
    _record_2fa_failed(user=user, reason=reason, meta=meta)
    return None, _invalid_code()


def two_factor_verify(*, user: User, code: str, meta: RequestMeta | None = None):
    """Check a TOTP or backup code; returns the device that accepted it.

    Refuses while django-otp's back-off applies (OTP_THROTTLED, 429, even for a correct code);
    a TOTP code is accepted once (``last_t``); a backup code is consumed. A wrong code is
    audited as ``2fa.failed`` in the same transaction as the throttle counter it raises.
    """
    code = _clean_code(code)
    if not code:
        raise DomainError("OTP_REQUIRED", MSG_CODE_REQUIRED, fields={"code": [MSG_CODE_REQUIRED]})
    with transaction.atomic():
        device, error = _verify_locked(user=user, code=code, meta=meta, reason="verification code")
    if error:
        raise error
    return device


def two_factor_policy_blocker(*, user: User) -> Membership | None:
    """A membership whose firm requires 2FA for the member's role (then 2FA cannot be disabled)."""
    for membership in Membership.objects.filter(user=user).select_related("firm").order_by("firm__name"):
        if membership.firm.requires_2fa(membership.role):
            return membership
    return None


def two_factor_disable(*, user: User, code: str, meta: RequestMeta | None = None) -> None:
    """Remove the user's TOTP and backup devices; needs a valid current code and no firm policy
    requiring 2FA for the user's role. Audited as ``2fa.disabled``."""
    blocker = two_factor_policy_blocker(user=user)
    if blocker is not None:
        msg = MSG_POLICY_REQUIRES.format(firm=blocker.firm.name, role=blocker.role)
        raise DomainError("2FA_REQUIRED_BY_POLICY", msg, status_code=403)
    code = _clean_code(code)
    if not code:
        raise DomainError("OTP_REQUIRED", MSG_CODE_REQUIRED, fields={"code": [MSG_CODE_REQUIRED]})
    with transaction.atomic():
        device, error = _verify_locked(user=user, code=code, meta=meta, reason="disable code")
        if device is not None:
            TOTPDevice.objects.filter(user=user).delete()
            StaticDevice.objects.filter(user=user).delete()
            for firm_id in _firm_ids_for(user):
                audit_record(
                    firm_id=firm_id, action="2fa.disabled", actor=Actor.for_user(user),
                    target_type="user", target_id=user.pk, target_label=user.email, meta=meta,
                )
    if error:
        raise error
