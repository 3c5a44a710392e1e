"""The clinic's home page is live: a reader claims, reports and flags a critical finding, and
the clinic's open page follows each step without a reload.

Real processes: uvicorn serves the page and its socket, Redis carries the events (published
by the services after commit, from this test's process as from any web or worker process),
Chromium shows them.
"""

from __future__ import annotations

import pytest

from referrals.models import ReferralStatus
from referrals.workflow.services import referral_claim, referral_report_started, referral_reported
from reporting.critical import critical_flag
from tenants import access

from .referral_support import reading_setup
from .test_browser import _orm_beside_playwright, browser, new_page  # noqa: F401 - fixtures
from .test_clinic_home import _referral
from .test_worker_integration import hub  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_the_clinic_home_follows_a_claim_a_report_and_a_critical_finding(world, hub, new_page):  # noqa: F811 - the fixtures imported above
    from playwright.sync_api import expect

    from .test_browser import sign_in

    reading = reading_setup(world)
    referral = _referral(world, ReferralStatus.ROUTED)
    referral.pool = reading.general
    referral.save(update_fields=["pool"])
    hub.start_web()

    page = new_page(locale="en-US")
    sign_in(page, hub.base, world.alice)
    page.goto(f"{hub.base}/")
    expect(page.locator("[data-referrals-live]")).to_have_attribute("data-live", "open")
    waiting = page.locator(f'#home-waiting-list li[data-referral-id="{referral.pk}"]')
    expect(waiting.locator("[data-status]")).to_have_text("Routed")
    expect(page.locator("#home-results-empty")).to_be_visible()
    expect(page.locator("#home-critical-empty")).to_be_visible()
    # Marks the document: a reload would lose it, so each step below is seen live.
    page.evaluate("document.body.dataset.notReloaded = 'yes'")

    rita = access.scope_for_user(world.rita, institution_id=world.reader.pk)
    referral_claim(scope=rita, referral_id=referral.pk)
    expect(waiting.locator("[data-status]")).to_have_text("Claimed")

    referral_report_started(referral=referral, user=world.rita)
    referral_reported(referral=referral, user=world.rita)
    results = page.locator(f'#home-results-list li[data-referral-id="{referral.pk}"]')
    expect(results.locator("[data-status]")).to_have_text("Delivered")
    expect(page.locator("#home-waiting-empty")).to_be_visible()
    expect(waiting).to_have_count(0)

    finding = critical_flag(scope=rita, referral_id=referral.pk, text="Tension pneumothorax")
    critical = page.locator(f'#home-critical-list li[data-critical-id="{finding.pk}"]')
    expect(critical).to_contain_text("Tension pneumothorax")
    expect(page.locator("#home-critical")).to_have_class("card clinic-critical has-critical")
    expect(page.locator("body")).to_have_attribute("data-not-reloaded", "yes")
