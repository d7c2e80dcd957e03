from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.accounts.models import ApiToken, Firm, Membership, User
from apps.accounts.tokens import parse
from tests.accounts.conftest import events

pytestmark = pytest.mark.django_db
PASSWORD = "a long enough passphrase 42"


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_firm_creates_owner_and_audits():
    output = run("create_firm", "--name", "Acme Capital", "--owner-email", "ann@acme.example", "--password", PASSWORD)
    assert output == "Created firm 'Acme Capital' (slug acme-capital) with owner ann@acme.example.\n"
    membership = Membership.objects.get()
    assert (membership.firm.slug, membership.role) == ("acme-capital", "owner")
    assert [e.action for e in events()] == ["firm.signed_up"]


def test_create_firm_bad_password_is_a_command_error():
    with pytest.raises(CommandError) as exc:
        run("create_firm", "--name", "Acme", "--owner-email", "a@b.example", "--password", "short")
    assert str(exc.value) == ("The password is too weak. (password: This password is too short. "
                              "It must contain at least 12 characters.)")
    assert Firm.objects.count() == 0


def test_create_user_adds_member(firm_a):
    output = run("create_user", "--firm", "alpha-capital", "--email", "New@P.example", "--role", "trader",
                 "--password", PASSWORD)
    assert output == "Added new@p.example to 'alpha-capital' as trader.\n"
    assert User.objects.get(email="new@p.example").check_password(PASSWORD)
    [event] = events("member.added")
    assert event.after == {"email": "new@p.example", "role": "trader"}


def test_create_user_generates_a_password_when_omitted(firm_a):
    output = run("create_user", "--firm", "alpha-capital", "--email", "gen@p.example", "--role", "analyst")
    password = output.strip().splitlines()[-1].removeprefix("Password: ")
    assert User.objects.get(email="gen@p.example").check_password(password)


@pytest.mark.parametrize(("args", "message"), [
    (["--firm", "nope", "--email", "a@b.example", "--role", "trader"],
     "Unknown firm 'nope'. Existing slugs: alpha-capital."),
    (["--firm", "alpha-capital", "--email", "a@b.example", "--role", "boss"],
     "Unknown role 'boss'. Choose one of: owner, admin, trader, analyst, compliance."),
    (["--firm", "alpha-capital", "--email", "trader@alpha.example.com", "--role", "analyst"],
     "trader@alpha.example.com is already a member of 'alpha-capital'."),
    (["--firm", "alpha-capital", "--email", "not-an-email", "--role", "analyst"],
     "Enter a valid email address. (email: Enter a valid email address.)"),
])
def test_create_user_errors(firm_a, args, message):
    with pytest.raises(CommandError) as exc:
        run("create_user", *args)
    assert str(exc.value) == message


def test_create_token_prints_the_token_alone_on_its_last_line(firm_a):
    output = run("create_token", "--firm", "alpha-capital", "--email", "trader@alpha.example.com",
                 "--scopes", "read,trade", "--expires-days", "30", "--name", "script")
    last = output.rstrip("\n").splitlines()[-1]
    prefix, _secret = parse(last)
    token = ApiToken.objects.get(prefix=prefix)
    assert (token.name, token.scopes, token.membership_id) == ("script", ["read", "trade"],
                                                               firm_a.member("trader").pk)
    assert token.expires_at is not None


@pytest.mark.parametrize(("args", "message"), [
    (["--firm", "nope", "--email", "x@y.example", "--scopes", "read"], "Unknown firm 'nope'. Existing slugs: alpha-capital."),
    (["--firm", "alpha-capital", "--email", "x@y.example", "--scopes", "read"],
     "x@y.example is not a member of firm 'alpha-capital'."),
    (["--firm", "alpha-capital", "--email", "trader@alpha.example.com", "--scopes", "read,root"],
     "Bad --scopes 'read,root': use a comma-separated subset of read,trade,admin."),
    (["--firm", "alpha-capital", "--email", "trader@alpha.example.com", "--scopes", "read", "--expires-days", "0"],
     "expires_days must be between 1 and 3650. (expires_days: Must be between 1 and 3650.)"),
])
def test_create_token_errors(firm_a, args, message):
    with pytest.raises(CommandError) as exc:
        run("create_token", *args)
    assert str(exc.value) == message
    assert ApiToken.objects.count() == 0


def test_seed_demo_is_idempotent():
    first = run("seed_demo")
    firm = Firm.objects.get(slug="demo")
    audited = len(events(firm_id=firm.pk))
    second = run("seed_demo")
    assert first.splitlines()[1:] == second.splitlines()[1:]
    assert "already up to date" in second.splitlines()[0]
    assert firm.name == "Octopus Demo Fund"
    assert sorted(Membership.objects.filter(firm=firm).values_list("user__email", "role")) == [
        ("admin@demo.octopus.local", "admin"), ("analyst@demo.octopus.local", "analyst"),
        ("compliance@demo.octopus.local", "compliance"), ("owner@demo.octopus.local", "owner"),
        ("trader@demo.octopus.local", "trader")]
    for role in ("owner", "admin", "trader", "analyst", "compliance"):
        assert User.objects.get(email=f"{role}@demo.octopus.local").check_password(f"demo-{role}-pass-2026")
        assert f"{role}@demo.octopus.local" in first
    assert "analyst     analyst@demo.octopus.local     demo-analyst-pass-2026     optional" in first
    assert "owner       owner@demo.octopus.local       demo-owner-pass-2026       required" in first
    assert "asked to enrol an authenticator app (TOTP) at their first login" in first
    # signed up + 5 members + the "Demo" watchlist and its 10 symbols, then the demo portfolios' history and
    # the two resting demo orders; none from the second run
    actions = [e.action for e in events(firm_id=firm.pk)]
    assert len(actions) == audited
    assert len([a for a in actions if not a.startswith(("portfolio.", "corporate_action.", "tax_entity.",
                                                        "order."))]) == 17
    assert [a for a in actions if a.startswith("order.")] == ["order.submitted", "order.submitted"], actions[-6:]
    assert actions.count("portfolio.fill_booked") == 26 and actions.count("portfolio.gain_washed") >= 1


def test_command_errors_exit_non_zero(capsys):
    from django.core.management import ManagementUtility

    argv = ["manage.py", "create_token", "--firm", "no-such-firm", "--email", "x@y.example", "--scopes", "read"]
    with pytest.raises(SystemExit) as exc:
        ManagementUtility(argv).execute()
    assert exc.value.code == 1
    assert capsys.readouterr().err == "CommandError: Unknown firm 'no-such-firm'. Existing slugs: none.\n"
