"""Members: invitations by signed, expiring link; role changes; removal. Owners are protected.

Rules, enforced here for every door (pages, API, commands):
- only owners and admins manage members; only an owner may invite or make an owner;
- an admin cannot change or remove an owner;
- the last owner of a firm can be neither demoted nor removed: the firm's owner memberships
  are locked (SELECT … FOR UPDATE, in pk order) so two concurrent demotions cannot both pass;
- a membership or invitation of another firm is "not found" (404), never "forbidden".
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import MANAGE_ROLES, Firm, Invitation, Membership, Role, User
from apps.accounts.services.firms import check_password, normalize_email
from apps.audit.services import Actor, RequestMeta, audit_record
from apps.core.errors import DomainError

INVITATION_SALT = "octopus.invitation"

MSG_NOT_FOUND = "Not found."
MSG_NOT_MANAGER = "Only owners and admins may manage members."
MSG_OWNER_ONLY = "Only an owner may make someone an owner."
MSG_ADMIN_VS_OWNER = "An admin cannot change or remove an owner."
MSG_LAST_OWNER = "A firm needs at least one owner: make someone else an owner first."
MSG_ALREADY_MEMBER = "This person is already a member of the firm."
MSG_OPEN_INVITATION = "An open invitation for this email already exists; revoke it to send a new one."
MSG_INVITATION_INVALID = "This invitation link is invalid, expired, revoked or already used."
MSG_WRONG_USER = "This invitation was sent to another email address. Log out and open the link again."
MSG_LOGIN_FIRST = "An account with this email exists: log in first, then open the link again."
MSG_BAD_ROLE = "Choose one of: {choices}."


def _not_found() -> DomainError:
    return DomainError("NOT_FOUND", MSG_NOT_FOUND, status_code=404)


def _check_role(role: str) -> str:
    if role not in Role.values:
        msg = MSG_BAD_ROLE.format(choices=", ".join(Role.values))
        raise DomainError("INVALID_ROLE", msg, fields={"role": [msg]})
    return role


def _require_manager(*, by: Membership, firm_id: int) -> None:
    if by.firm_id != firm_id:
        raise _not_found()
    if by.role not in MANAGE_ROLES:
        raise DomainError("PERMISSION_DENIED", MSG_NOT_MANAGER, status_code=403)


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps({"invitation": invitation.pk, "email": invitation.email}, salt=INVITATION_SALT)


def invitation_accept_path(invitation: Invitation) -> str:
    return reverse("accounts:invitation_accept", args=[invitation_token(invitation)])


def _send_invitation_email(*, invitation: Invitation, path: str, firm_name: str, inviter: str) -> None:
    url = f"{settings.SITE_URL.rstrip('/')}{path}"
    send_mail(
        subject=f"You are invited to {firm_name} on Octopus",
        message=(
            f"{inviter} invited you to join {firm_name} on Octopus as {invitation.role}.\n\n"
            f"Accept the invitation here (the link expires in {settings.INVITATION_MAX_AGE_DAYS} days):\n{url}\n"
        ),
        from_email=None,
        recipient_list=[invitation.email],
    )


def invitation_create(
    *, firm: Firm, email: str, role: str, invited_by: Membership, meta: RequestMeta | None = None
) -> tuple[Invitation, str]:
    """Invite ``email`` to ``firm`` with ``role``; returns the invitation and its signed accept path.

    The email is sent after commit. Refuses: a non-manager (403), an admin inviting an owner (403),
    an email that is already a member or has an open invitation (field ``email``), a bad role
    (field ``role``). Audited as ``invitation.created``.
    """
    _require_manager(by=invited_by, firm_id=firm.pk)
    email = normalize_email(email)
    role = _check_role(role)
    if role == Role.OWNER and invited_by.role != Role.OWNER:
        raise DomainError("PERMISSION_DENIED", MSG_OWNER_ONLY, fields={"role": [MSG_OWNER_ONLY]}, status_code=403)
    if Membership.objects.filter(firm=firm, user__email__iexact=email).exists():
        raise DomainError("ALREADY_MEMBER", MSG_ALREADY_MEMBER, fields={"email": [MSG_ALREADY_MEMBER]})
    now = timezone.now()
    with transaction.atomic():
        Firm.objects.select_for_update().filter(pk=firm.pk).first()  # serialize invitations of one firm
        if Invitation.objects.filter(
            firm=firm, email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
        ).exists():
            raise DomainError("INVITATION_EXISTS", MSG_OPEN_INVITATION, fields={"email": [MSG_OPEN_INVITATION]})
        invitation = Invitation.objects.create(
            firm=firm,
            email=email,
            role=role,
            invited_by=invited_by.user,
            created_at=now,
            expires_at=now + timedelta(days=settings.INVITATION_MAX_AGE_DAYS),
        )
        path = invitation_accept_path(invitation)
        audit_record(
            firm_id=firm.pk,
            action="invitation.created",
            actor=Actor.for_user(invited_by.user),
            target_type="invitation",
            target_id=invitation.pk,
            target_label=email,
            after={"email": email, "role": role, "expires_at": invitation.expires_at},
            meta=meta,
        )
        firm_name, inviter = firm.name, invited_by.user.full_name or invited_by.user.email
        transaction.on_commit(
            lambda: _send_invitation_email(invitation=invitation, path=path, firm_name=firm_name, inviter=inviter)
        )
    return invitation, path


def invitation_from_token(token: str) -> Invitation:
    """The open invitation a signed token names, or DomainError INVITATION_INVALID."""
    max_age = timedelta(days=settings.INVITATION_MAX_AGE_DAYS)
    try:
        data = signing.loads(token, salt=INVITATION_SALT, max_age=max_age)
        invitation = Invitation.objects.select_related("firm").get(pk=int(data["invitation"]))
    except (signing.BadSignature, KeyError, TypeError, ValueError, Invitation.DoesNotExist) as exc:
        raise DomainError("INVITATION_INVALID", MSG_INVITATION_INVALID, status_code=400) from exc
    if invitation.email != data.get("email") or not invitation.is_open:
        raise DomainError("INVITATION_INVALID", MSG_INVITATION_INVALID, status_code=400)
    return invitation


def invitation_accept(
    *,
    token: str,
    user: User | None = None,
    password: str | None = None,
    full_name: str = "",
    meta: RequestMeta | None = None,
) -> Membership:
    """Accept an invitation: the logged-in ``user`` (whose email must match) or a new user.

    A new user is created with ``password`` (validated) and ``full_name``. The invitation row is
    locked, so a link is used once. Audited as ``invitation.accepted``.
    """
    invitation = invitation_from_token(token)
    if user is not None and user.is_authenticated:
        if user.email.lower() != invitation.email.lower():
            raise DomainError("INVITATION_WRONG_USER", MSG_WRONG_USER, status_code=403)
    else:
        user = None
        if User.objects.filter(email__iexact=invitation.email).exists():
            raise DomainError("LOGIN_REQUIRED", MSG_LOGIN_FIRST, status_code=400)
        check_password(password or "", user=User(email=invitation.email, full_name=full_name))
    try:
        with transaction.atomic():
            locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
            if not locked.is_open:
                raise DomainError("INVITATION_INVALID", MSG_INVITATION_INVALID, status_code=400)
            if user is None:
                user = User.objects.create_user(
                    email=locked.email, password=password, full_name=(full_name or "").strip()[:150]
                )
            if Membership.objects.filter(firm_id=locked.firm_id, user=user).exists():
                raise DomainError("ALREADY_MEMBER", MSG_ALREADY_MEMBER, status_code=400)
            membership = Membership.objects.create(user=user, firm_id=locked.firm_id, role=locked.role)
            locked.accepted_at = timezone.now()
            locked.save(update_fields=["accepted_at"])
            audit_record(
                firm_id=locked.firm_id,
                action="invitation.accepted",
                actor=Actor.for_user(user),
                target_type="invitation",
                target_id=locked.pk,
                target_label=locked.email,
                after={"email": locked.email, "role": locked.role, "membership_id": membership.pk},
                meta=meta,
            )
    except IntegrityError as exc:  # a concurrent sign-up or accept took the email / membership
        raise DomainError("INVITATION_INVALID", MSG_INVITATION_INVALID, status_code=400) from exc
    return membership


def invitation_revoke(*, invitation: Invitation, by: Membership, meta: RequestMeta | None = None) -> Invitation:
    """Revoke an open invitation (idempotent). Another firm's invitation is 404. Audited ``invitation.revoked``."""
    _require_manager(by=by, firm_id=invitation.firm_id)
    with transaction.atomic():
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if locked.accepted_at is not None:
            raise DomainError("INVITATION_USED", "This invitation was already accepted.", status_code=400)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
            audit_record(
                firm_id=locked.firm_id,
                action="invitation.revoked",
                actor=Actor.for_user(by.user),
                target_type="invitation",
                target_id=locked.pk,
                target_label=locked.email,
                before={"email": locked.email, "role": locked.role},
                meta=meta,
            )
    return locked


def _lock_owners(firm_id: int) -> list[int]:
    """Lock the firm's owner memberships (pk order) and return their ids."""
    return list(
        Membership.objects.select_for_update()
        .filter(firm_id=firm_id, role=Role.OWNER)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _check_can_touch(*, target: Membership, by: Membership) -> None:
    if target.role == Role.OWNER and by.role != Role.OWNER:
        raise DomainError("PERMISSION_DENIED", MSG_ADMIN_VS_OWNER, status_code=403)


def member_change_role(
    *, membership: Membership, role: str, by: Membership, meta: RequestMeta | None = None
) -> Membership:
    """Give ``membership`` a new role. Locks the firm's owners; refuses demoting the last owner
    (LAST_OWNER). Audited as ``member.role_changed`` (before/after role); no-op when unchanged."""
    _require_manager(by=by, firm_id=membership.firm_id)
    role = _check_role(role)
    if role == Role.OWNER and by.role != Role.OWNER:
        raise DomainError("PERMISSION_DENIED", MSG_OWNER_ONLY, fields={"role": [MSG_OWNER_ONLY]}, status_code=403)
    with transaction.atomic():
        owners = _lock_owners(membership.firm_id)
        locked = Membership.objects.select_for_update().select_related("user").filter(pk=membership.pk).first()
        if locked is None:
            raise _not_found()
        _check_can_touch(target=locked, by=by)
        if locked.role == role:
            return locked
        if locked.role == Role.OWNER and owners == [locked.pk]:
            raise DomainError("LAST_OWNER", MSG_LAST_OWNER, fields={"role": [MSG_LAST_OWNER]}, status_code=409)
        before = locked.role
        locked.role = role
        locked.save(update_fields=["role"])
        audit_record(
            firm_id=locked.firm_id,
            action="member.role_changed",
            actor=Actor.for_user(by.user),
            target_type="membership",
            target_id=locked.pk,
            target_label=locked.user.email,
            before={"role": before},
            after={"role": role},
            meta=meta,
        )
    return locked


def member_remove(*, membership: Membership, by: Membership, meta: RequestMeta | None = None) -> None:
    """Remove a member from the firm (their API tokens of this firm go with the membership).

    Locks the firm's owners; refuses removing the last owner (LAST_OWNER). Audited as ``member.removed``.
    """
    _require_manager(by=by, firm_id=membership.firm_id)
    with transaction.atomic():
        owners = _lock_owners(membership.firm_id)
        locked = Membership.objects.select_for_update().select_related("user").filter(pk=membership.pk).first()
        if locked is None:
            raise _not_found()
        _check_can_touch(target=locked, by=by)
        if locked.role == Role.OWNER and owners == [locked.pk]:
            raise DomainError("LAST_OWNER", MSG_LAST_OWNER, status_code=409)
        audit_record(
            firm_id=locked.firm_id,
            action="member.removed",
            actor=Actor.for_user(by.user),
            target_type="membership",
            target_id=locked.pk,
            target_label=locked.user.email,
            before={"email": locked.user.email, "role": locked.role},
            meta=meta,
        )
        locked.delete()
