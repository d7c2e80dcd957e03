import json
from datetime import timedelta

import pytest
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from freezegun import freeze_time

from apps.accounts.models import TwoFactorPolicy
from apps.accounts.views import lockout_response
from tests.accounts.conftest import events, totp_code
from tests.factories import DEFAULT_PASSWORD, MembershipFactory

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
VERIFY = "/accounts/2fa/verify/"
ENROL = "/accounts/2fa/enrol/"


def post_login(client, email, password=DEFAULT_PASSWORD, **extra):
    return client.post(LOGIN, {"username": email, "password": password}, **extra)


def test_url_names_resolve():
    assert reverse("accounts:login") == LOGIN
    assert reverse("accounts:2fa_verify") == VERIFY
    assert reverse("accounts:2fa_enrol") == ENROL
    assert reverse("accounts:logout") == "/accounts/logout/"
    assert reverse("accounts:signup") == "/accounts/signup/"
    assert reverse("accounts:settings") == "/accounts/settings/"
    assert reverse("accounts:members") == "/accounts/members/"
    assert reverse("accounts:tokens") == "/accounts/tokens/"
    assert reverse("accounts:switch_firm") == "/accounts/switch-firm/"
    assert reverse("accounts:invitation_accept", args=["abc:def"]) == "/accounts/invite/abc:def/"


def test_login_page_renders(client):
    response = client.get(LOGIN)
    assert response.status_code == 200
    assert b'name="username"' in response.content


def test_analyst_logs_in_straight_to_dashboard_rotating_the_session_key(client, firm_a):
    client.get(LOGIN)
    client.session.save()
    before = client.session.session_key
    response = post_login(client, "analyst@alpha.example.com")
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.session.session_key != before
    assert client.get("/").status_code == 200
    [event] = events("auth.login")
    assert (event.firm_id, event.target_label) == (firm_a.firm.pk, "analyst@alpha.example.com")


def test_owner_without_device_is_sent_to_enrolment_and_kept_there(client, firm_a):
    response = post_login(client, "owner@alpha.example.com")
    assert response["Location"] == f"{ENROL}?next=%2F"
    response = client.get("/area/markets/")
    assert response.status_code == 302
    assert response["Location"] == f"{ENROL}?next=/area/markets/"
    assert client.get("/accounts/members/")["Location"] == f"{ENROL}?next=%2Faccounts%2Fmembers%2F"


def test_wrong_password_is_a_form_error_and_audited_to_each_firm(client, firm_a, firm_b):
    MembershipFactory(firm=firm_b.firm, user=firm_a.member("trader").user, role="analyst")
    response = post_login(client, "trader@alpha.example.com", "wrong password here")
    assert response.status_code == 200
    assert "Email or password is wrong." in response.content.decode()
    failed = events("auth.login_failed")
    assert sorted(e.firm_id for e in failed) == sorted([firm_a.firm.pk, firm_b.firm.pk])
    assert {e.target_label for e in failed} == {"trader@alpha.example.com"}


def test_unknown_email_failure_goes_to_platform_chain(client, db):
    response = post_login(client, "nobody@nowhere.example", "whatever password")
    assert response.status_code == 200
    [event] = events("auth.login_failed")
    assert event.firm_id is None
    assert event.after == {"email": "nobody@nowhere.example"}


def test_missing_fields_are_form_errors(client, db):
    response = client.post(LOGIN, {"username": "", "password": ""})
    assert response.status_code == 200
    assert response.content.decode().count("This field is required.") == 2


def test_lockout_after_five_failures_refuses_correct_password_until_cool_off(client, firm_a):
    email = "analyst@alpha.example.com"
    for _ in range(4):
        assert post_login(client, email, "wrong password here").status_code == 200
    fifth = post_login(client, email, "wrong password here")
    assert fifth.status_code == 429
    sixth = post_login(client, email)  # the correct password
    assert sixth.status_code == 429
    assert sixth["Retry-After"] == "900"
    assert "Too many failed logins. Try again in 15 minutes." in sixth.content.decode()
    assert "_auth_user_id" not in client.session
    assert len(events("auth.login_failed")) == 5
    assert len(events("auth.locked_out")) == 2  # the locking attempt and the refused one
    with freeze_time(timezone.now() + timedelta(minutes=15, seconds=1)):
        after = post_login(Client(), email)
    assert after.status_code == 302
    assert after["Location"] == "/"


def test_lockout_counts_the_username_from_any_ip(client, firm_a):
    email = "analyst@alpha.example.com"
    for i in range(5):
        post_login(client, email, "wrong password here", REMOTE_ADDR=f"10.0.0.{i + 1}")
    assert post_login(Client(), email, REMOTE_ADDR="10.9.9.9").status_code == 429


def test_lockout_response_is_json_under_api():
    request = RequestFactory().post("/api/v1/auth/login/")
    response = lockout_response(request, None, {"username": "x"})
    assert response.status_code == 429
    assert response["Retry-After"] == "900"
    assert json.loads(response.content) == {"error": {"code": "LOCKED_OUT", "message": "Too many failed logins. Try again in 15 minutes.", "fields": {}}}


# --- enrolment -------------------------------------------------------------------------------------------------


def login_owner(client, firm_a):
    post_login(client, "owner@alpha.example.com")
    return firm_a.member("owner").user


def test_enrolment_shows_qr_svg_and_secret_then_confirms_with_backup_codes(client, firm_a):
    user = login_owner(client, firm_a)
    page = client.get(ENROL)
    assert page.status_code == 200
    device = TOTPDevice.objects.get(user=user)
    assert device.confirmed is False
    html = page.content.decode()
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in html
    import base64
    secret = base64.b32encode(device.bin_key).decode()
    assert secret in html
    assert client.get(ENROL).content.decode().count(secret) == 1  # a reload keeps the same secret

    key_before = client.session.session_key
    response = client.post(ENROL, {"code": totp_code(device), "next": "/"})
    assert response.status_code == 200
    codes = response.context["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(code in response.content.decode() for code in codes)
    device.refresh_from_db()
    assert device.confirmed is True
    assert sorted(StaticToken.objects.filter(device__user=user).values_list("token", flat=True)) == sorted(codes)
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert client.session.session_key != key_before
    assert client.get("/").status_code == 200
    [event] = events("2fa.enrolled")
    assert event.after == {"method": "totp", "backup_codes": 10}
    assert client.get(ENROL)["Location"] == "/accounts/settings/"  # already enrolled


def test_enrolment_with_wrong_code_is_refused_and_audited(client, firm_a):
    login_owner(client, firm_a)
    client.get(ENROL)
    response = client.post(ENROL, {"code": "000000"})
    assert response.status_code == 200
    assert "That code is not valid. Codes can be used only once." in response.content.decode()
    assert TOTPDevice.objects.get().confirmed is False
    assert [e.after for e in events("2fa.failed")] == [{"reason": "enrolment code"}]


# --- verification -------------------------------------------------------------------------------------------------


@pytest.fixture
def owner_pending(client, firm_a, enrolled):
    """The owner logged in with a password, with a confirmed device, not yet verified."""
    device = enrolled(firm_a.member("owner").user)
    response = post_login(client, "owner@alpha.example.com")
    assert response["Location"] == f"{VERIFY}?next=%2F"
    return device


def test_unverified_session_is_kept_on_verify(client, owner_pending):
    assert client.get("/")["Location"] == f"{VERIFY}?next=/"


def test_verify_with_totp_rotates_session_and_refuses_replay(client, owner_pending):
    code = totp_code(owner_pending)
    key_before = client.session.session_key
    response = client.post(VERIFY, {"code": code, "next": "/area/risk/"})
    assert response.status_code == 302
    assert response["Location"] == "/area/risk/"
    assert client.session.session_key != key_before
    assert client.get("/").status_code == 200

    other = Client()
    post_login(other, "owner@alpha.example.com")
    replay = other.post(VERIFY, {"code": code})
    assert replay.status_code == 200
    assert "That code is not valid. Codes can be used only once." in replay.content.decode()
    assert other.get("/").status_code == 302


def test_backup_code_works_once(client, owner_pending, firm_a):
    user = firm_a.member("owner").user
    static = StaticDevice.objects.create(user=user, name="backup", confirmed=True)
    static.token_set.create(token="abcd2345")
    assert client.post(VERIFY, {"code": "ABCD 2345"}).status_code == 302
    assert not StaticToken.objects.filter(token="abcd2345").exists()
    other = Client()
    post_login(other, "owner@alpha.example.com")
    assert other.post(VERIFY, {"code": "abcd2345"}).status_code == 200
    assert other.get("/").status_code == 302


def test_wrong_code_then_correct_code_inside_backoff_is_refused(client, owner_pending):
    assert client.post(VERIFY, {"code": "000000"}).status_code == 200
    response = client.post(VERIFY, {"code": totp_code(owner_pending)})
    assert response.status_code == 429
    assert "Too many wrong codes. Wait 1 seconds before trying again." in response.content.decode()
    assert response["Retry-After"] == "1"
    assert client.get("/").status_code == 302
    owner_pending.refresh_from_db()
    assert owner_pending.throttling_failure_count == 1
    with freeze_time(timezone.now() + timedelta(seconds=2)):
        assert client.post(VERIFY, {"code": totp_code(owner_pending)}).status_code == 302
    owner_pending.refresh_from_db()
    assert owner_pending.throttling_failure_count == 0


def test_backoff_doubles(client, owner_pending):
    start = timezone.now()
    for n in range(3):
        with freeze_time(start + timedelta(seconds=10 * n)):
            client.post(VERIFY, {"code": "000000"})
    with freeze_time(start + timedelta(seconds=20)):
        page = client.get(VERIFY)
    assert "Wait 4 seconds" in page.content.decode()


@override_settings(OTP_TOTP_THROTTLE_FACTOR=0, OTP_STATIC_THROTTLE_FACTOR=0)
def test_ten_wrong_codes_force_a_new_password_login(client, owner_pending):
    for _ in range(9):
        assert client.post(VERIFY, {"code": "000000"}).status_code == 200
    response = client.post(VERIFY, {"code": "000000"})
    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN}?next=%2F"
    assert "_auth_user_id" not in client.session
    assert len(events("2fa.failed")) == 10
    assert client.get(VERIFY)["Location"].startswith(LOGIN)


def test_new_password_login_resets_the_session_failure_count(client, owner_pending):
    with override_settings(OTP_TOTP_THROTTLE_FACTOR=0, OTP_STATIC_THROTTLE_FACTOR=0):
        for _ in range(5):
            client.post(VERIFY, {"code": "000000"})
        assert client.session["otp_failures"] == 5
        post_login(client, "owner@alpha.example.com")
        assert "otp_failures" not in client.session


def test_logout_is_post_and_ends_the_session(client, firm_a):
    post_login(client, "analyst@alpha.example.com")
    key = client.session.session_key
    assert client.get("/accounts/logout/").status_code == 405
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    from django.contrib.sessions.models import Session
    assert not Session.objects.filter(session_key=key).exists()
    assert client.get("/").status_code == 302


# --- disabling -------------------------------------------------------------------------------------------------


def test_disable_is_refused_while_policy_requires_2fa(verified_client_for, firm_a):
    client = verified_client_for(firm_a.member("trader"))
    page = client.get("/accounts/settings/").content.decode()
    assert "Alpha Capital requires two-factor authentication for your role (trader); it cannot be turned off." in page
    device = TOTPDevice.objects.get(user=firm_a.member("trader").user)
    response = client.post("/accounts/2fa/disable/", {"code": totp_code(device)}, follow=True)
    assert "Alpha Capital requires two-factor authentication for your role (trader)" in response.content.decode()
    assert TOTPDevice.objects.filter(pk=device.pk).exists()
    assert events("2fa.disabled") == []


def test_analyst_disables_with_a_valid_code_only(verified_client_for, firm_a):
    analyst = firm_a.member("analyst")
    client = verified_client_for(analyst)
    device = TOTPDevice.objects.get(user=analyst.user)
    response = client.post("/accounts/2fa/disable/", {"code": "000000"}, follow=True)
    assert "That code is not valid." in response.content.decode()
    assert TOTPDevice.objects.filter(user=analyst.user).exists()
    device.throttle_reset()
    response = client.post("/accounts/2fa/disable/", {"code": totp_code(device)}, follow=True)
    assert "Two-factor authentication is turned off." in response.content.decode()
    assert not TOTPDevice.objects.filter(user=analyst.user).exists()
    [event] = events("2fa.disabled")
    assert event.firm_id == firm_a.firm.pk


def test_policy_all_requires_2fa_for_analysts(client, firm_a):
    firm_a.firm.two_factor_policy = TwoFactorPolicy.ALL
    firm_a.firm.save()
    response = post_login(client, "analyst@alpha.example.com")
    assert response["Location"] == f"{ENROL}?next=%2F"
