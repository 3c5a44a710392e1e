"""The second factor in a real browser: a hospital administrator whose role requires one
signs in, is sent to set it up, reads the key off the page into "their app", confirms,
sees the recovery codes, signs out, signs in again and must enter a code (a wrong one
first). In Chinese on a desktop and in English on a phone."""

from __future__ import annotations

import time
from base64 import b32decode

import pytest
from django.utils import translation
from django.utils.translation import gettext
from django_otp.oath import TOTP
from playwright.sync_api import Page, expect

from tenants.models import AuditEvent

from .factories import PASSWORD
from .test_browser import (  # noqa: F401 - fixtures
    PHONE,
    _orm_beside_playwright,
    browser,
    new_page,
    no_horizontal_overflow,
)

pytestmark = pytest.mark.browser
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
JOURNEYS = {"zh-hans": ("zh-CN", DESKTOP), "en": ("en-US", PHONE)}
WRONG_CODE = (
    "That code is not right. Enter the 6-digit code your authenticator app shows now, "
    "or one of your recovery codes."
)


def app_code(secret: str, *, steps_ahead: int = 0) -> str:
    """What an authenticator app holding `secret` (as the page shows it) displays."""
    key = b32decode(secret.replace(" ", "").upper() + "=" * (-len(secret.replace(" ", "")) % 8))
    generator = TOTP(key)
    generator.time = time.time() + 30 * steps_ahead
    return f"{generator.token():06d}"


def fits(page: Page, phone: bool) -> None:
    if phone:
        assert no_horizontal_overflow(page), page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )


def sign_in_with_password(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.locator("main form button[type=submit]").click()


@pytest.mark.parametrize("language", sorted(JOURNEYS))
def test_an_administrator_sets_up_the_second_factor_and_must_enter_codes(
    world,
    live_server,
    new_page,  # noqa: F811
    settings,
    language,
):
    settings.HUB_TWO_FACTOR_REQUIRED = True
    locale, device = JOURNEYS[language]
    phone = device is PHONE
    with translation.override(language):
        wrong_code = gettext(WRONG_CODE)
        sign_out = gettext("Sign out")
        home = gettext("Home")
    base = live_server.url
    page = new_page(locale=locale, **device)

    # The password is right, and the role requires a second factor: set it up first.
    sign_in_with_password(page, base, world.adam.username)
    page.wait_for_url(f"{base}/accounts/two-factor/setup/?next=%2F")
    expect(page.locator("html")).to_have_attribute("lang", language)
    qr = page.locator("img.two-factor-qr")
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")  # the CSP let it load
    fits(page, phone)
    # Any other page sends him back here.
    page.goto(f"{base}/institutions/")
    page.wait_for_url(f"{base}/accounts/two-factor/setup/?next=%2Finstitutions%2F")

    secret = page.locator("#two-factor-secret").inner_text().strip()
    page.fill("#otp_token", app_code(secret))
    page.locator("#two-factor-enrol button[type=submit]").click()
    page.wait_for_url(f"{base}/accounts/two-factor/recovery-codes/")
    codes = page.locator("#recovery-codes li")
    expect(codes).to_have_count(10)
    expect(page.locator("button[data-print]")).to_be_visible()
    fits(page, phone)
    page.reload()  # shown once: gone on a reload
    page.wait_for_url(f"{base}/accounts/two-factor/")
    expect(page.locator("#two-factor-status")).to_be_visible()

    # Signing out and in again asks for the code before anything else.
    page.locator(".topbar form[action='/accounts/logout/'] button").click()
    page.wait_for_url(f"{base}/accounts/login/")
    expect(page.locator(".topbar")).not_to_contain_text(sign_out)
    sign_in_with_password(page, base, world.adam.username)
    page.wait_for_url(f"{base}/accounts/two-factor/code/?next=%2F")
    fits(page, phone)

    page.fill("#otp_token", "000000")
    page.locator("#two-factor-verify button[type=submit]").click()
    expect(page.locator("#two-factor-verify [role=alert]")).to_have_text(wrong_code)
    fits(page, phone)
    time.sleep(1.1)  # django-otp makes the next try after one wrong code wait a second
    # The code of the next step: the one of enrolment's step does not sign in twice.
    page.fill("#otp_token", app_code(secret, steps_ahead=1))
    page.locator("#two-factor-verify button[type=submit]").click()
    page.wait_for_url(f"{base}/")
    expect(page.locator("main h1")).to_have_text(home)

    failed = AuditEvent.objects.filter(event="login_failed", username="adam")
    assert [e.detail.get("reason") for e in failed] == ["wrong_code"]
    assert AuditEvent.objects.filter(
        event="credential_change", username="adam", detail__change="second_factor_enrolled"
    ).exists()
