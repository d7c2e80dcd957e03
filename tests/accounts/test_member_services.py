import threading
from datetime import timedelta

import pytest
from django.core import signing
from django.db import connection
from django.utils import timezone
from freezegun import freeze_time

from apps.accounts.models import Invitation, Membership, Role, User
from apps.accounts.services import (
    invitation_accept,
    invitation_create,
    invitation_revoke,
    member_change_role,
    member_remove,
)
from apps.accounts.services.members import INVITATION_SALT, MSG_LAST_OWNER
from apps.core.errors import DomainError
from tests.accounts.conftest import events
from tests.factories import MembershipFactory, UserFactory

PASSWORD = "a long enough passphrase 42"

pytestmark = pytest.mark.django_db


def token_of(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[1]


def test_invitation_create_signs_link_sends_email_after_commit_and_audits(
        firm_a, django_capture_on_commit_callbacks, mailoutbox):
    admin = firm_a.member("admin")
    with django_capture_on_commit_callbacks(execute=True):
        invitation, path = invitation_create(firm=firm_a.firm, email="New@Person.example", role=Role.TRADER,
                                             invited_by=admin)

    assert invitation.email == "new@person.example"
    assert path.startswith("/accounts/invite/")
    assert signing.loads(token_of(path), salt=INVITATION_SALT) == {"invitation": invitation.pk,
                                                                 "email": "new@person.example"}
    assert (invitation.expires_at - invitation.created_at) == timedelta(days=7)
    [mail] = mailoutbox
    assert mail.to == ["new@person.example"]
    assert f"http://127.0.0.1:8000{path}" in mail.body
    [event] = events("invitation.created")
    assert (event.firm_id, event.actor_user_id) == (firm_a.firm.pk, admin.user_id)
    assert event.after["email"] == "new@person.example"
    assert event.after["role"] == "trader"


@pytest.mark.parametrize("role", ["trader", "analyst", "compliance"])
def test_only_owners_and_admins_invite(firm_a, role):
    with pytest.raises(DomainError) as exc:
        invitation_create(firm=firm_a.firm, email="x@y.example", role=Role.ANALYST, invited_by=firm_a.member(role))
    assert (exc.value.code, exc.value.status_code) == ("PERMISSION_DENIED", 403)
    assert Invitation.objects.count() == 0


def test_admin_cannot_invite_an_owner_but_an_owner_can(firm_a):
    with pytest.raises(DomainError) as exc:
        invitation_create(firm=firm_a.firm, email="x@y.example", role=Role.OWNER, invited_by=firm_a.member("admin"))
    assert exc.value.status_code == 403
    invitation, _ = invitation_create(firm=firm_a.firm, email="x@y.example", role=Role.OWNER,
                                      invited_by=firm_a.member("owner"))
    assert invitation.role == "owner"


def test_invite_refuses_member_email_duplicate_open_invitation_and_bad_role(firm_a):
    owner = firm_a.member("owner")
    with pytest.raises(DomainError) as exc:
        invitation_create(firm=firm_a.firm, email="TRADER@alpha.example.com", role="analyst", invited_by=owner)
    assert (exc.value.code, list(exc.value.fields)) == ("ALREADY_MEMBER", ["email"])
    invitation_create(firm=firm_a.firm, email="n@p.example", role="analyst", invited_by=owner)
    with pytest.raises(DomainError) as exc:
        invitation_create(firm=firm_a.firm, email="n@p.example", role="analyst", invited_by=owner)
    assert exc.value.code == "INVITATION_EXISTS"
    with pytest.raises(DomainError) as exc:
        invitation_create(firm=firm_a.firm, email="m@p.example", role="boss", invited_by=owner)
    assert list(exc.value.fields) == ["role"]


def test_invite_by_member_of_another_firm_is_not_found(firm_a, firm_b):
    with pytest.raises(DomainError) as exc:
        invitation_create(firm=firm_a.firm, email="x@y.example", role="analyst", invited_by=firm_b.member("owner"))
    assert exc.value.status_code == 404


def test_new_user_accepts_once(firm_a):
    _, path = invitation_create(firm=firm_a.firm, email="new@p.example", role="analyst",
                                invited_by=firm_a.member("owner"))
    membership = invitation_accept(token=token_of(path), password=PASSWORD, full_name="New Person")

    assert (membership.firm_id, membership.role, membership.user.email) == (firm_a.firm.pk, "analyst", "new@p.example")
    assert membership.user.full_name == "New Person"
    assert membership.user.check_password(PASSWORD)
    assert Invitation.objects.get().accepted_at is not None
    [event] = events("invitation.accepted")
    assert event.after == {"email": "new@p.example", "role": "analyst", "membership_id": membership.pk}
    with pytest.raises(DomainError) as exc:
        invitation_accept(token=token_of(path), password=PASSWORD)
    assert exc.value.code == "INVITATION_INVALID"


def test_accept_with_weak_password_creates_nothing(firm_a):
    _, path = invitation_create(firm=firm_a.firm, email="new@p.example", role="analyst",
                                invited_by=firm_a.member("owner"))
    with pytest.raises(DomainError) as exc:
        invitation_accept(token=token_of(path), password="short")
    assert list(exc.value.fields) == ["password"]
    assert not User.objects.filter(email="new@p.example").exists()
    assert Invitation.objects.get().accepted_at is None


def test_existing_user_accepts_logged_in_and_email_must_match(firm_a, firm_b):
    someone = firm_b.member("trader").user  # trader@beta.example.com
    _, path = invitation_create(firm=firm_a.firm, email=someone.email, role="trader",
                                invited_by=firm_a.member("owner"))
    with pytest.raises(DomainError) as exc:
        invitation_accept(token=token_of(path), user=firm_b.member("analyst").user)
    assert exc.value.code == "INVITATION_WRONG_USER"
    with pytest.raises(DomainError) as exc:
        invitation_accept(token=token_of(path), password=PASSWORD)  # anonymous: must log in first
    assert exc.value.code == "LOGIN_REQUIRED"
    membership = invitation_accept(token=token_of(path), user=someone)
    assert sorted(Membership.objects.filter(user=someone).values_list("firm__slug", flat=True)) == [
        "alpha-capital", "beta-capital"]
    assert membership.role == "trader"


def test_tampered_expired_and_revoked_links_are_invalid(firm_a):
    owner = firm_a.member("owner")
    _, path = invitation_create(firm=firm_a.firm, email="a@p.example", role="analyst", invited_by=owner)
    token = token_of(path)
    for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "garbage", ""):
        with pytest.raises(DomainError) as exc:
            invitation_accept(token=bad, password=PASSWORD)
        assert exc.value.code == "INVITATION_INVALID"
    with freeze_time(timezone.now() + timedelta(days=7, seconds=1)), pytest.raises(DomainError) as exc:
        invitation_accept(token=token, password=PASSWORD)
    assert exc.value.code == "INVITATION_INVALID"

    invitation, path = invitation_create(firm=firm_a.firm, email="b@p.example", role="analyst", invited_by=owner)
    invitation_revoke(invitation=invitation, by=owner)
    with pytest.raises(DomainError) as exc:
        invitation_accept(token=token_of(path), password=PASSWORD)
    assert exc.value.code == "INVITATION_INVALID"
    [event] = events("invitation.revoked")
    assert event.before == {"email": "b@p.example", "role": "analyst"}
    assert not User.objects.filter(email__in=["a@p.example", "b@p.example"]).exists()


def test_revoke_of_another_firms_invitation_is_not_found(firm_a, firm_b):
    invitation, _ = invitation_create(firm=firm_a.firm, email="a@p.example", role="analyst",
                                      invited_by=firm_a.member("owner"))
    with pytest.raises(DomainError) as exc:
        invitation_revoke(invitation=invitation, by=firm_b.member("owner"))
    assert exc.value.status_code == 404
    invitation.refresh_from_db()
    assert invitation.revoked_at is None


def test_change_role_audits_before_and_after(firm_a):
    trader = firm_a.member("trader")
    member_change_role(membership=trader, role="analyst", by=firm_a.member("admin"))
    trader.refresh_from_db()
    assert trader.role == "analyst"
    [event] = events("member.role_changed")
    assert (event.before, event.after, event.target_label) == ({"role": "trader"}, {"role": "analyst"},
                                                               "trader@alpha.example.com")


def test_admin_cannot_make_or_touch_owners(firm_a):
    admin = firm_a.member("admin")
    with pytest.raises(DomainError) as exc:
        member_change_role(membership=firm_a.member("trader"), role="owner", by=admin)
    assert exc.value.status_code == 403
    with pytest.raises(DomainError) as exc:
        member_change_role(membership=firm_a.member("owner"), role="analyst", by=admin)
    assert exc.value.status_code == 403
    with pytest.raises(DomainError) as exc:
        member_remove(membership=firm_a.member("owner"), by=admin)
    assert exc.value.status_code == 403
    assert Membership.objects.get(pk=firm_a.member("owner").pk).role == "owner"
    assert events() == []


@pytest.mark.parametrize("role", ["trader", "analyst", "compliance"])
def test_other_roles_cannot_manage(firm_a, role):
    with pytest.raises(DomainError) as exc:
        member_remove(membership=firm_a.member("analyst"), by=firm_a.member(role))
    assert exc.value.status_code == 403


def test_last_owner_can_be_neither_demoted_nor_removed(firm_a):
    owner = firm_a.member("owner")
    with pytest.raises(DomainError) as exc:
        member_change_role(membership=owner, role="admin", by=owner)
    assert (exc.value.code, exc.value.message) == ("LAST_OWNER", MSG_LAST_OWNER)
    with pytest.raises(DomainError) as exc:
        member_remove(membership=owner, by=owner)
    assert exc.value.code == "LAST_OWNER"
    member_change_role(membership=firm_a.member("admin"), role="owner", by=owner)
    member_change_role(membership=owner, role="admin", by=owner)  # now there is another owner
    assert Membership.objects.get(pk=owner.pk).role == "admin"


def test_cross_firm_membership_is_not_found(firm_a, firm_b):
    with pytest.raises(DomainError) as exc:
        member_change_role(membership=firm_b.member("trader"), role="analyst", by=firm_a.member("owner"))
    assert (exc.value.code, exc.value.status_code) == ("NOT_FOUND", 404)
    with pytest.raises(DomainError) as exc:
        member_remove(membership=firm_b.member("trader"), by=firm_a.member("owner"))
    assert exc.value.status_code == 404
    assert Membership.objects.get(pk=firm_b.member("trader").pk).role == "trader"


def test_member_remove_deletes_membership_and_audits(firm_a, make_token):
    trader = firm_a.member("trader")
    make_token(trader, ["read"])
    member_remove(membership=trader, by=firm_a.member("admin"))
    assert not Membership.objects.filter(pk=trader.pk).exists()
    assert User.objects.filter(pk=trader.user_id).exists()
    [event] = events("member.removed")
    assert event.before == {"email": "trader@alpha.example.com", "role": "trader"}


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_demotions_of_the_last_two_owners_cannot_both_pass():
    from tests.factories import FirmFactory

    firm = FirmFactory(slug="race")
    first = MembershipFactory(firm=firm, role=Role.OWNER, user=UserFactory(email="o1@race.example"))
    second = MembershipFactory(firm=firm, role=Role.OWNER, user=UserFactory(email="o2@race.example"))
    barrier = threading.Barrier(2)
    results: list[str] = []

    def demote(target: Membership, by: Membership) -> None:
        try:
            barrier.wait()
            member_change_role(membership=target, role=Role.ADMIN, by=by)
            results.append("ok")
        except DomainError as exc:
            results.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=demote, args=(first, second)),
               threading.Thread(target=demote, args=(second, first))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == ["LAST_OWNER", "ok"]
    assert Membership.objects.filter(firm=firm, role=Role.OWNER).count() == 1


def test_member_whose_token_acted_can_be_removed_and_history_stays(firm_a, make_token):
    from django.db import transaction

    from apps.accounts.models import ApiToken
    from apps.audit.models import ActorType
    from apps.audit.services import Actor, audit_record

    trader = firm_a.member("trader")
    make_token(trader, ["read"])
    token = ApiToken.objects.get(membership=trader)
    with transaction.atomic():
        audit_record(firm_id=firm_a.firm.pk, action="test.acted", actor=Actor(
            ActorType.TOKEN, "via token", user_id=trader.user_id, token_id=token.pk))
    member_remove(membership=trader, by=firm_a.member("owner"))
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    [event] = events("test.acted")
    assert event.actor_label == "via token"
