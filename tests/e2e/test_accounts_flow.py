"""The people side in a real browser: sign-up → 2FA enrolment → logout → login with TOTP; roles."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from django_otp.oath import TOTP

from tests.factories import DEFAULT_PASSWORD, FirmFactory, MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "a long enough passphrase 42"


def code_for(secret_b32: str, steps: int = 0) -> str:
    totp = TOTP(base64.b32decode(secret_b32))
    totp.time = time.time() + steps * 30
    return f"{totp.token():06d}"


def test_signup_enrol_logout_login_with_totp(page):
    page.goto("/accounts/signup/")
    page.fill("#id_firm_name", "Kraken Partners")
    page.fill("#id_full_name", "Kim Kraken")
    page.fill("#id_email", "kim@kraken.example")
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Create firm')")

    page.wait_for_url("**/accounts/2fa/enrol/")
    assert page.locator(".qr-box svg").count() == 1
    secret = page.inner_text("#totp-secret").strip()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "2fa_enrol.png"), full_page=True)
    enrol_code = code_for(secret)
    page.fill("#id_code", enrol_code)
    page.click("button:has-text('Confirm')")
    assert page.locator("#backup-codes li").count() == 10
    page.click("a:has-text('Continue')")
    page.wait_for_url(lambda url: url.endswith("/"))
    assert "Dashboard\nKraken Partners\n\nNo portfolios yet." in page.inner_text("main")

    page.click("header button:has-text('Log out')")
    page.wait_for_url("**/accounts/login/")
    page.fill("#id_username", "kim@kraken.example")
    page.fill("#id_password", PASSWORD)
    page.click("main button:has-text('Log in')")
    page.wait_for_url("**/accounts/2fa/verify/**")

    page.fill("#id_code", enrol_code)  # replay of the code used at enrolment
    page.click("button:has-text('Verify')")
    assert "That code is not valid. Codes can be used only once." in page.inner_text("main")
    assert "/accounts/2fa/verify/" in page.url

    time.sleep(1.1)  # django-otp's back-off after one wrong code is 1 s
    page.fill("#id_code", code_for(secret, steps=1))  # the next time step (within the tolerance)
    page.click("button:has-text('Verify')")
    page.wait_for_url(lambda url: url.endswith("/"))
    assert page.locator("h1").inner_text() == "Dashboard"
    assert "Dashboard\nKraken Partners\n\nNo portfolios yet." in page.inner_text("main")
    page.goto("/accounts/members/")
    page.fill("#id_email", "tom@kraken.example")
    page.select_option("#id_role", "trader")
    page.click("button:has-text('Send invitation')")
    assert "Invitation sent to tom@kraken.example." in page.inner_text(".messages")
    assert page.locator("tr[id^=invitation-]").inner_text().startswith("tom@kraken.example\tTrader\topen")
    row = page.locator("tr[id^=member-]")
    row.locator("select").select_option("admin")
    row.locator("button:has-text('Change')").click()  # HTMX swaps only this row
    page.wait_for_selector("tr[id^=member-] .row-msg")
    assert page.inner_text("tr[id^=member-] .row-msg") == (
        "A firm needs at least one owner: make someone else an owner first.")
    assert page.url.endswith("/accounts/members/")
    page.screenshot(path=str(SHOTS / "members.png"), full_page=True)
    # /ws/ needs the ASGI server (the live server is WSGI); every other error (CSP, 404) counts.
    assert [e for e in page.console_errors if "/ws/" not in e] == []


def test_analyst_cannot_reach_member_management(page):
    firm = FirmFactory(name="Squid Fund", slug="squid")
    MembershipFactory(firm=firm, role="analyst", user__email="ann@squid.example")
    page.goto("/accounts/login/")
    page.fill("#id_username", "ann@squid.example")
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("main button:has-text('Log in')")
    page.wait_for_url(lambda url: url.endswith("/"))

    response = page.goto("/accounts/members/")
    assert response.status == 403
    assert "Only owners and admins of Squid Fund can manage members." in page.inner_text("main")
    page.goto("/accounts/settings/")
    assert page.locator("a:has-text('Members and invitations')").count() == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "settings_analyst.png"), full_page=True)
