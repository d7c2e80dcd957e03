import pytest

from apps.accounts.models import Firm, Membership, Role, TwoFactorPolicy, User
from apps.accounts.services import firm_signup, firm_update
from apps.audit.services import Actor
from apps.core.errors import DomainError
from tests.accounts.conftest import events
from tests.factories import FirmFactory, UserFactory

PASSWORD = "a long enough passphrase 42"

pytestmark = pytest.mark.django_db


def test_signup_creates_firm_owner_and_audit_event():
    membership = firm_signup(firm_name="  Acme Capital ", email="Ann@Acme.example", password=PASSWORD,
                             full_name="Ann Smith")

    assert membership.role == Role.OWNER
    assert (membership.firm.name, membership.firm.slug) == ("Acme Capital", "acme-capital")
    assert (membership.user.email, membership.user.full_name) == ("ann@acme.example", "Ann Smith")
    assert membership.user.password.startswith("argon2$argon2id$")
    [event] = events("firm.signed_up")
    assert event.firm_id == membership.firm_id
    assert event.actor_user_id == membership.user_id
    assert event.after == {"name": "Acme Capital", "slug": "acme-capital", "owner": "ann@acme.example"}


def test_signup_slug_is_unique():
    FirmFactory(name="Acme Capital", slug="acme-capital")
    membership = firm_signup(firm_name="Acme Capital", email="b@acme.example", password=PASSWORD)
    assert membership.firm.slug == "acme-capital-2"


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short pass", "This password is too short. It must contain at least 12 characters."),
        ("password1234", "This password is too common."),
        ("123456789012345", "This password is entirely numeric."),
    ],
)
def test_signup_refuses_weak_password_and_writes_nothing(password, message):
    with pytest.raises(DomainError) as exc:
        firm_signup(firm_name="Acme", email="c@acme.example", password=password)
    assert exc.value.code == "INVALID_PASSWORD"
    assert message in exc.value.fields["password"]
    assert Firm.objects.count() == 0
    assert User.objects.count() == 0
    assert events() == []


def test_signup_refuses_password_similar_to_email():
    with pytest.raises(DomainError) as exc:
        firm_signup(firm_name="Acme", email="margaretthatcher@acme.example", password="margaretthatcher")
    assert exc.value.fields["password"] == ["The password is too similar to the email."]


def test_signup_accepts_64_char_passphrase_untruncated():
    phrase = "correct horse battery staple " * 2 + "abcdefg"
    assert len(phrase) == 65
    membership = firm_signup(firm_name="Acme", email="long@acme.example", password=phrase)
    assert membership.user.check_password(phrase)
    assert not membership.user.check_password(phrase[:64])


def test_signup_refuses_duplicate_email_case_insensitively():
    UserFactory(email="dup@acme.example")
    with pytest.raises(DomainError) as exc:
        firm_signup(firm_name="Acme", email="DUP@acme.example", password=PASSWORD)
    assert exc.value.code == "EMAIL_TAKEN"
    assert list(exc.value.fields) == ["email"]
    assert Firm.objects.count() == 0


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"firm_name": "", "email": "x@y.example"}, "name"),
    ({"firm_name": "Acme", "email": "not-an-email"}, "email"),
    ({"firm_name": "Acme", "email": ""}, "email"),
])
def test_signup_names_the_bad_field(kwargs, field):
    with pytest.raises(DomainError) as exc:
        firm_signup(password=PASSWORD, **kwargs)
    assert list(exc.value.fields) == [field]


def test_firm_update_changes_and_audits_only_what_changed(firm_a):
    owner = firm_a.member("owner")
    firm = firm_update(firm=firm_a.firm, actor=Actor.for_user(owner.user), name="Alpha Capital",
                       base_currency="EUR", timezone="Europe/Paris", two_factor_policy=TwoFactorPolicy.ALL)
    firm.refresh_from_db()
    assert (firm.base_currency, firm.timezone, firm.two_factor_policy) == ("EUR", "Europe/Paris", "all")
    [event] = events("firm.settings_changed")
    assert event.firm_id == firm.pk
    assert event.before == {"base_currency": "USD", "timezone": "America/New_York", "two_factor_policy": "default"}
    assert event.after == {"base_currency": "EUR", "timezone": "Europe/Paris", "two_factor_policy": "all"}


def test_firm_update_without_change_writes_nothing(firm_a):
    firm_update(firm=firm_a.firm, actor=Actor.system(), name="Alpha Capital")
    assert events("firm.settings_changed") == []


@pytest.mark.parametrize(("changes", "field"), [
    ({"base_currency": "usd"}, "base_currency"),
    ({"base_currency": "EURO"}, "base_currency"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"two_factor_policy": "never"}, "two_factor_policy"),
    ({"name": "  "}, "name"),
    ({"slug": "hijack"}, "slug"),
])
def test_firm_update_refuses_bad_values(firm_a, changes, field):
    with pytest.raises(DomainError) as exc:
        firm_update(firm=firm_a.firm, actor=Actor.system(), **changes)
    assert list(exc.value.fields) == [field]
    firm_a.firm.refresh_from_db()
    assert (firm_a.firm.slug, firm_a.firm.base_currency) == ("alpha-capital", "USD")
    assert events() == []


def test_memberships_of_signup_are_isolated(firm_b):
    membership = firm_signup(firm_name="Gamma", email="g@gamma.example", password=PASSWORD)
    assert list(Membership.objects.filter(user=membership.user).values_list("firm__slug", flat=True)) == ["gamma"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("emails", "expected"), [
    (["same@race.example", "same@race.example"], ["EMAIL_TAKEN", "ok"]),
    (["one@race.example", "two@race.example"], ["ok", "ok"]),
])
def test_concurrent_signups(emails, expected):
    import threading

    from django.db import connection

    barrier = threading.Barrier(2)
    results: list[str] = []

    def sign_up(email: str) -> None:
        try:
            barrier.wait()
            firm_signup(firm_name="Race Fund", email=email, password=PASSWORD)
            results.append("ok")
        except DomainError as exc:
            results.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_up, args=(e,)) for e in emails]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(results) == expected
    assert sorted(Firm.objects.values_list("slug", flat=True)) == (
        ["race-fund"] if expected[0] == "EMAIL_TAKEN" else ["race-fund", "race-fund-2"])
