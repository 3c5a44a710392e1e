"""A referral's journey in two browsers: the clinic sends, the radiologist sees it live.

Real processes: uvicorn serves pages and sockets, a Celery worker routes the referral,
Redis carries the live events, Chromium shows them. Nothing is reloaded by hand.
"""

from __future__ import annotations

import pytest

from referrals.models import Referral, ReferralStatus

from .referral_support import reading_setup, study_at
from .test_browser import _orm_beside_playwright, browser, new_page  # noqa: F401 - fixtures
from .test_worker_integration import hub  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_sent_study_reaches_the_live_worklist_and_the_clinic_sees_the_claim(world, hub, new_page):  # noqa: F811 - the fixtures imported above
    from playwright.sync_api import expect

    from .test_browser import sign_in

    reading_setup(world)
    study = study_at(world.clinic, modality="MR", body_part="BRAIN", patient_name="Wang^Xiaoming")
    hub.start_web()
    hub.start_worker()
    base = hub.base

    # The radiologist's worklist is open and listening, empty.
    reader = new_page(locale="en-US")
    sign_in(reader, base, world.rita)
    reader.goto(f"{base}/worklist/")
    expect(reader.locator("body")).to_have_attribute("data-worklist-live", "open")
    expect(reader.locator("#worklist-rows [data-referral-id]")).to_have_count(0)

    # The clinic sends the study from its study page.
    clinic = new_page(locale="en-US")
    sign_in(clinic, base, world.alice)
    clinic.goto(f"{base}/studies/{study.pk}/")
    form = clinic.locator("#referral-send-form")
    form.locator("select[name=priority]").select_option("urgent")
    form.locator("textarea[name=clinical_question]").fill("Headache for 3 weeks.")
    form.locator("button[type=submit]").click()
    clinic.wait_for_url(f"{base}/referrals/*/")
    referral = Referral.objects.get(study=study)
    assert referral.clinical_question == "Headache for 3 weeks."
    expect(clinic.locator("#clinical-question")).to_have_text("Headache for 3 weeks.")
    live = clinic.locator("[data-referrals-live]")
    expect(live).to_have_attribute("data-live", "open")

    # The worker routes it: the case appears on the worklist, the clinic sees "Routed".
    row = reader.locator(f'#worklist-pool [data-referral-id="{referral.pk}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("Wang Xiaoming")
    status = clinic.locator("#referral-status")
    expect(status).to_have_attribute("data-status", ReferralStatus.ROUTED)
    expect(clinic.locator("#referral-target")).to_have_text("North Central Hospital")

    # The radiologist claims it; the clinic's page follows without a reload.
    row.locator(".wl-claim button").click()
    expect(reader.locator(f'#worklist-mine [data-referral-id="{referral.pk}"]')).to_be_visible()
    expect(status).to_have_attribute("data-status", ReferralStatus.CLAIMED)
    expect(status).to_have_text("Claimed")
    expect(clinic.locator("#referral-timeline")).to_contain_text("claimed")
    expect(clinic.locator("#referral-reader")).to_have_text("Rita")
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.CLAIMED
    assert referral.claimed_by == world.rita

    # The clinic's list shows the same status.
    clinic.goto(f"{base}/referrals/")
    expect(clinic.locator(f'[data-referral-id="{referral.pk}"] [data-status]')).to_have_text(
        "Claimed"
    )
