"""The administration console in a real browser: a hospital administrator invites a person
and grants them a role; the person opens the mailed link, chooses a password and is signed
in, then signs in again with it. In Chinese and in English, on a desktop and on a phone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core import mail
from playwright.sync_api import Page, expect

from tenants.models import Membership, Role, User

from .test_browser import (  # noqa: F401 - fixtures
    PHONE,
    _orm_beside_playwright,
    browser,
    new_page,
    no_horizontal_overflow,
    sign_in,
)

pytestmark = pytest.mark.browser
LINK = re.compile(r"https?://[^/\s]+(/accounts/welcome/[^\s]+/)")
NEW_PASSWORD = "harbour-lantern-spring-58"
DESKTOP = {"viewport": {"width": 1280, "height": 900}}

JOURNEYS = {
    # language: (browser locale, the administrator's device, the invitee's device, words)
    "zh-hans": (
        "zh-CN",
        DESKTOP,
        PHONE,
        {"administration": "系统管理", "home": "首页", "sign_out": "退出"},
    ),
    "en": (
        "en-US",
        PHONE,
        DESKTOP,
        {"administration": "Administration", "home": "Home", "sign_out": "Sign out"},
    ),
}


def _open_menu_item(page: Page, label: str, phone: bool) -> None:
    nav = page.locator("nav.mainnav")
    if phone:
        page.locator("label.nav-toggle-label").tap()
        expect(nav).to_be_visible()
    nav.get_by_role("link", name=label, exact=True).click()


def _fits(page: Page, phone: bool) -> None:
    if phone:
        assert no_horizontal_overflow(page), page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )


@pytest.mark.parametrize("language", sorted(JOURNEYS))
def test_an_administrator_invites_a_person_who_sets_a_password_and_signs_in(
    world,
    live_server,
    new_page,  # noqa: F811
    settings,
    tmp_path: Path,
    language,
):
    locale, admin_device, invitee_device, words = JOURNEYS[language]
    settings.HUB_PUBLIC_URL = live_server.url
    admin_phone = admin_device is PHONE
    invitee_phone = invitee_device is PHONE

    # The administrator finds the console in the navigation and the staff section there.
    page = new_page(locale=locale, **admin_device)
    sign_in(page, live_server.url, world.adam, tap=admin_phone)
    _open_menu_item(page, words["administration"], admin_phone)
    page.wait_for_url(f"{live_server.url}/console/")
    expect(page.locator("main h1")).to_have_text(words["administration"])
    _fits(page, admin_phone)
    page.locator('#console-sections a[href="/console/staff/"]').click()
    page.wait_for_url(f"{live_server.url}/console/staff/")
    expect(page.locator("#staff-table")).to_contain_text("alice")
    _fits(page, admin_phone)
    page.screenshot(path=str(tmp_path / f"console-staff-{language}.png"), full_page=True)

    # Invites the person with a first role.
    page.locator("#invite-link").click()
    page.wait_for_url(f"{live_server.url}/console/staff/invite/")
    page.fill("#id_email", "mei@example.org")
    page.fill("#id_username", "mei")
    page.fill("#id_name", "梅")
    page.fill("#id_name_en", "Mei")
    page.select_option("#id_language", language)
    page.select_option("#id_role", Role.REFERRING_PHYSICIAN)
    _fits(page, admin_phone)
    page.locator("#invite-form button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/console/staff/\d+/$"))
    mei = User.objects.get(username="mei")
    assert page.url == f"{live_server.url}/console/staff/{mei.pk}/"
    expect(page.locator("#person-status")).to_have_class(re.compile(r"status-invited"))
    expect(page.locator("main .message.success")).to_contain_text("mei@example.org")

    # Grants a second role on the person's page.
    page.select_option("#grant_role", Role.CLINIC_TECHNICIAN)
    page.locator("#grant-form button[type=submit]").click()
    expect(page.locator("#roles .tag")).to_have_count(2)
    _fits(page, admin_phone)
    page.screenshot(path=str(tmp_path / f"console-person-{language}.png"), full_page=True)
    assert set(Membership.objects.active().filter(user=mei).values_list("role", flat=True)) == {
        Role.REFERRING_PHYSICIAN,
        Role.CLINIC_TECHNICIAN,
    }

    # The invitation arrived, in the language the administrator chose for it.
    [invitation] = [m for m in mail.outbox if m.to == ["mei@example.org"]]
    found = LINK.search(invitation.body)
    assert found, invitation.body

    # The person opens the link, chooses a password, and is signed in.
    invitee = new_page(locale=locale, **invitee_device)
    invitee.goto(f"{live_server.url}{found.group(1)}")
    expect(invitee.locator("#password-set")).to_be_visible()
    _fits(invitee, invitee_phone)
    invitee.fill("#id_new_password1", "mei")
    invitee.fill("#id_new_password2", "mei")
    invitee.locator("#password-set button[type=submit]").click()
    expect(invitee.locator("#password-set .message.error").first).to_be_visible()
    invitee.fill("#id_new_password1", NEW_PASSWORD)
    invitee.fill("#id_new_password2", NEW_PASSWORD)
    invitee.locator("#password-set button[type=submit]").click()
    invitee.wait_for_url(f"{live_server.url}/")
    expect(invitee.locator("main h1")).to_have_text(words["home"])
    expect(invitee.locator(".topbar .who")).to_have_text("梅" if language == "zh-hans" else "Mei")
    _fits(invitee, invitee_phone)
    invitee.screenshot(path=str(tmp_path / f"invitee-home-{language}.png"), full_page=True)

    # Next time: the sign-in page, with the password they chose.
    invitee.locator(".topbar form[action='/accounts/logout/'] button").click()
    invitee.wait_for_url(re.compile(r".*/accounts/login/.*"))
    invitee.fill("#id_username", "mei")
    invitee.fill("#id_password", NEW_PASSWORD)
    invitee.locator("main form button[type=submit]").click()
    invitee.wait_for_url(f"{live_server.url}/")
    expect(invitee.locator(".topbar .who")).to_be_visible()
    # The console is the administrator's: the new member has none.
    refused = invitee.goto(f"{live_server.url}/console/")
    assert refused is not None
    assert refused.status == 403


def test_forgot_password_from_the_sign_in_page(world, live_server, new_page, settings):  # noqa: F811
    from django.core.cache import cache

    cache.clear()  # the reset form's rate-limit counters of earlier tests
    settings.HUB_PUBLIC_URL = live_server.url
    User.objects.filter(pk=world.alice.pk).update(email="alice@example.org")
    page = new_page(locale="en-US", **PHONE)
    page.goto(f"{live_server.url}/accounts/login/")
    page.locator("#forgot-password").tap()
    page.wait_for_url(f"{live_server.url}/accounts/password/reset/")
    _fits(page, True)
    page.fill("#id_email", "alice@example.org")
    page.locator("#password-reset button[type=submit]").tap()
    page.wait_for_url(f"{live_server.url}/accounts/password/reset/sent/")
    expect(page.locator("#password-reset-sent")).to_be_visible()
    [reset] = [m for m in mail.outbox if m.to == ["alice@example.org"]]
    path = re.search(r"https?://[^/\s]+(/accounts/password/reset/[^\s]+/)", reset.body)
    assert path, reset.body
    page.goto(f"{live_server.url}{path.group(1)}")
    page.fill("#id_new_password1", NEW_PASSWORD)
    page.fill("#id_new_password2", NEW_PASSWORD)
    page.locator("#password-set button[type=submit]").tap()
    page.wait_for_url(f"{live_server.url}/")
    expect(page.locator(".topbar .who")).to_have_text("Alice")


def test_gateway_credentials_on_a_phone_under_the_content_security_policy(
    world,
    live_server,
    new_page,  # noqa: F811
):
    from tenants.models import GatewayCredential

    from .test_csp_browser import WATCH, violations

    page = new_page(locale="en-US", **PHONE)
    page.add_init_script(WATCH)
    sign_in(page, live_server.url, world.adam, tap=True)
    page.goto(f"{live_server.url}/console/gateways/")
    page.fill("#id_label", "CT room PC")
    page.fill("#id_calling_ae_titles", "CT_ROOM1\nDR_2")
    page.locator("#gateway-form button[type=submit]").tap()
    secret = page.locator("#new-secret-value")
    expect(secret).to_be_visible()
    credential = GatewayCredential.objects.get(institution=world.clinic)
    assert credential.calling_ae_titles == ["CT_ROOM1", "DR_2"]
    expect(page.locator("#credential-table")).to_contain_text("CT_ROOM1, DR_2")
    _fits(page, True)

    # Revoking asks first (a static script: the policy runs no inline handler).
    revoke = page.locator("#credential-table form[data-confirm] button")
    page.once("dialog", lambda dialog: dialog.dismiss())
    revoke.tap()
    expect(revoke).to_be_visible()
    credential.refresh_from_db()
    assert credential.revoked_at is None
    page.once("dialog", lambda dialog: dialog.accept())
    revoke.tap()
    expect(page.locator("main .message.success")).to_contain_text(credential.key_id)
    credential.refresh_from_db()
    assert credential.revoked_at is not None
    assert violations(page) == []
    for path in ("/console/", "/console/staff/", f"/console/staff/{world.alice.pk}/"):
        page.goto(f"{live_server.url}{path}")
        _fits(page, True)
        assert violations(page) == [], path
