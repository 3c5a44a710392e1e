"""The hub's pages work under their Content-Security-Policy: no inline code, nothing the
policy blocks (a violation would be a page that silently lost a script or a style)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from alliance.analytics.refresh import analytics_refresh
from referrals.workflow import services
from tenants import access

from .mdt_support import mdt_setup
from .referral_support import reading_setup, study_at
from .test_browser import (  # noqa: F401 - fixtures
    _orm_beside_playwright,
    browser,
    new_page,
    sign_in,
)

pytestmark = pytest.mark.browser

# Collects every violation the browser reports, from the first script of each page on.
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " " + e.sourceFile);
});
"""


def violations(page: Page) -> list[str]:
    return page.evaluate("window.__csp || []")


def test_the_pages_of_the_day_run_under_the_policy_without_a_violation(
    world,
    live_server,
    new_page,  # noqa: F811 - the fixture
):
    reading_setup(world)
    day = (timezone.localdate() - dt.timedelta(days=1)).isoformat()
    study = study_at(world.clinic, modality="CT", body_part="CHEST", study_date=day)
    referral, _ = services.referral_request(
        scope=access.scope_for_user(world.alice, institution_id=world.clinic.pk), study=study
    )
    services.referral_route(referral.pk)
    analytics_refresh(full=True)
    mdt = mdt_setup(world)
    walks = {
        world.alice: [
            "/",
            "/studies/",
            f"/studies/{study.pk}/",
            "/studies/upload/",
            "/referrals/",
            f"/referrals/{referral.pk}/",
            "/api/docs/",
        ],
        world.rita: ["/worklist/", f"/worklist/{referral.pk}/", f"/mdt/{mdt.session.pk}/"],
        world.carl: ["/analytics/"],
    }
    seen = 0
    for user, paths in walks.items():
        page = new_page(locale="en-US")
        page.add_init_script(WATCH)
        sign_in(page, live_server.url, user)
        for path in paths:
            answer = page.goto(f"{live_server.url}{path}")
            assert answer is not None
            assert answer.status == 200, path
            policy = answer.headers.get("content-security-policy", "")
            assert "script-src 'self'" in policy, path
            assert "unsafe-inline" not in policy, path
            assert "frame-ancestors 'none'" in policy, path
            assert answer.headers.get("cache-control") == "no-store", path
            page.wait_for_load_state("networkidle")
            assert violations(page) == [], path
            seen += 1
    assert seen == 11


def test_the_institution_switch_still_submits_without_an_inline_handler(
    world,
    live_server,
    new_page,  # noqa: F811 - the fixture
):
    from .factories import MembershipFactory

    MembershipFactory(user=world.alice, institution=world.reader, role="referring_physician")
    page = new_page(locale="en-US")
    page.add_init_script(WATCH)
    sign_in(page, live_server.url, world.alice)
    page.select_option("#institution-select", str(world.reader.pk))
    expect(page.locator("#institution-select")).to_have_value(str(world.reader.pk))
    page.wait_for_load_state("networkidle")
    assert "North Central Hospital" in page.content()
    assert violations(page) == []
