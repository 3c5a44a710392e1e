"""Single sign-on in a real browser against a real OpenID provider (panva's oidc-provider on
a loopback port): the hub's sign-in page, the hospital's sign-in and consent pages, and
back to the hub as the right user at the right institution; a person of another hospital,
or one the hub does not know, is told why on the sign-in page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tenants.audit import AuditCode
from tenants.models import AuditEvent, OidcIdentity, Role

from .factories import MembershipFactory
from .oidc_support import Provider, hub_settings_for, provider_running
from .test_browser import (  # noqa: F401 - fixtures
    PHONE,
    _orm_beside_playwright,
    browser,
    new_page,
    no_horizontal_overflow,
)

pytestmark = pytest.mark.browser

ACCOUNTS = {
    "adam-at-beishan": {"email": "Adam@Beishan.example", "email_verified": True},
    "oscar-at-nanling": {"email": "oscar@nanling.example", "email_verified": True},
}


@pytest.fixture(scope="module")
def provider(live_server) -> Iterator[Provider]:
    with provider_running(hub_url=live_server.url, accounts=ACCOUNTS) as running:
        yield running


@pytest.fixture
def sso(world, provider, settings):
    """The clinic's identity provider, turned on; Adam (an admin of the clinic, and a
    radiologist at the reading hospital, whose code sorts first) has his e-mail in the hub."""
    hub_settings_for(settings, issuer=provider.issuer, institution_code=world.clinic.code)
    MembershipFactory(user=world.adam, institution=world.reader, role=Role.RADIOLOGIST)
    world.adam.email = "adam@beishan.example"
    world.adam.save()
    world.oscar.email = "oscar@nanling.example"
    world.oscar.save()
    return world


def sign_in_at_provider(page: Page, hub_url: str, subject: str) -> None:
    """The hub's sign-in page, its single sign-on button, the provider's own pages."""
    page.goto(f"{hub_url}/accounts/login/")
    page.click("#oidc-sign-in")
    page.fill("input[name=login]", subject)
    page.fill("input[name=password]", "whatever the hospital checks")
    page.click("button[type=submit]")
    page.click("button:has-text('Continue')")  # the provider's consent page


def test_a_clinic_user_signs_in_through_the_clinic_provider_and_out(
    sso,
    live_server,
    new_page,  # noqa: F811
    provider,
):
    page = new_page(locale="en")
    page.goto(f"{live_server.url}/accounts/login/")
    expect(page.locator("#oidc-sign-in")).to_have_text("Sign in with Beishan ID")
    sign_in_at_provider(page, live_server.url, "adam-at-beishan")

    page.wait_for_url(f"{live_server.url}/")
    expect(page.locator(".who")).to_have_text("Adam")
    # Acting for the provider's hospital, not for his first institution.
    expect(page.locator("#institution-select option:checked")).to_have_text(
        "Beishan Township Health Centre"
    )
    identity = OidcIdentity.objects.get(issuer=provider.issuer)
    assert (identity.subject, identity.user) == ("adam-at-beishan", sso.adam)
    login = AuditEvent.objects.filter(event=AuditCode.LOGIN).get()
    assert (login.username, login.institution, login.role) == (
        "adam",
        sso.clinic,
        Role.HOSPITAL_ADMIN,
    )
    assert login.detail == {"via": "oidc", "issuer": provider.issuer, "bound": True}

    # Out of the hub; the login page offers the provider's logout too, which comes back.
    page.click("button:has-text('Sign out')")
    page.wait_for_url(f"{live_server.url}/accounts/login/")
    page.click("#oidc-provider-logout")
    page.click("button:has-text('Yes, sign me out')")
    page.wait_for_url(f"{live_server.url}/accounts/login/")
    page.goto(f"{live_server.url}/")
    page.wait_for_url(f"{live_server.url}/accounts/login/?next=/")

    # The next time, the bound subject finds him (the hub's address changed meanwhile).
    sso.adam.email = "adam.new@beishan.example"
    sso.adam.save()
    sign_in_at_provider(page, live_server.url, "adam-at-beishan")
    page.wait_for_url(f"{live_server.url}/")
    expect(page.locator(".who")).to_have_text("Adam")


@pytest.mark.parametrize("subject", ["oscar-at-nanling", "someone-the-hub-never-met"])
def test_a_person_of_another_hospital_or_unknown_is_told_why(
    sso,
    live_server,
    new_page,  # noqa: F811
    subject,
):
    page = new_page(locale="en")
    sign_in_at_provider(page, live_server.url, subject)

    page.wait_for_url(f"{live_server.url}/accounts/login/")
    expect(page.locator(".message.error")).to_have_text(
        "You signed in at Beishan ID, but no hub account of that hospital matches you. "
        "Ask your hospital's hub administrator to add you."
    )
    page.goto(f"{live_server.url}/")
    page.wait_for_url(f"{live_server.url}/accounts/login/?next=/")
    assert not OidcIdentity.objects.exists()
    failed = AuditEvent.objects.get(event=AuditCode.LOGIN_FAILED)
    assert failed.institution == sso.clinic
    assert failed.detail == {"via": "oidc", "reason": "no_account"}
    assert not AuditEvent.objects.filter(event=AuditCode.LOGIN).exists()


def test_the_button_fits_a_phone_in_chinese(
    sso,
    live_server,
    new_page,  # noqa: F811
):
    page = new_page(**PHONE)
    page.set_viewport_size({"width": 375, "height": 812})
    page.goto(f"{live_server.url}/accounts/login/")
    expect(page.locator("#oidc-sign-in")).to_be_visible()
    assert no_horizontal_overflow(page)
