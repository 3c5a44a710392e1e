"""A radiologist who reads Chinese by default opens the hub in English: the case routed to
her, its notification (live and on the page) and its routing explanation are in English;
switched to Chinese, the same notification and the next live one are in Chinese.

Real processes: uvicorn serves pages and sockets, Redis carries the live events, Chromium
shows them.
"""

from __future__ import annotations

import pytest

from referrals.workflow import services as referral_services
from tenants import messages
from tenants.models import Role
from tenants.services import notification_send

from .referral_flow_support import referral_row
from .referral_support import reading_setup, study_at
from .test_browser import _orm_beside_playwright, browser, new_page  # noqa: F401 - fixtures
from .test_worker_integration import hub  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_notification_and_its_explanation_follow_the_page_language(world, hub, new_page):  # noqa: F811 - the fixtures imported above
    from playwright.sync_api import expect

    from .test_browser import no_horizontal_overflow, sign_in

    reading_setup(world)
    world.rita.language = "zh-hans"
    world.rita.save()
    referral = referral_row(world, study=study_at(world.clinic))  # CT chest: rule 10
    hub.start_web()
    base = hub.base

    # Rita's browser asks for English; her notifications page is open and listening.
    page = new_page(locale="en-US", viewport={"width": 375, "height": 740})
    sign_in(page, base, world.rita)
    page.goto(f"{base}/notifications/")
    expect(page.locator("body")).to_have_attribute("data-live", "open")
    expect(page.locator("#notification-list")).to_contain_text("Nothing new.")

    # Routing proposes the case to her: the live push arrives in her page's language.
    referral_services.referral_route(referral.pk)
    first = page.locator("#notification-list li").first
    expect(first).to_have_text("A new case is on your worklist")
    expect(page.locator("#unread-badge")).to_have_text("1")

    # On the page itself: the title and the routing steps, with the tier by its label.
    page.reload()
    items = page.locator("#notification-list")
    expect(items).to_contain_text("A new case is on your worklist")
    expect(items).to_contain_text(
        "rule 10 (CT chest): CT CHEST from tier Grassroots → North thoracic"
    )
    expect(items).not_to_contain_text("grassroots")
    assert no_horizontal_overflow(page)

    # The case page explains the routing in English too.
    page.locator("#notification-list a").first.click()
    page.wait_for_url(f"{base}/referrals/{referral.pk}/")
    explanation = page.locator("#routing-explanation")
    expect(explanation).to_contain_text("from tier Grassroots → North thoracic")
    expect(explanation).to_contain_text("chose Rita with 0 open of 10")

    # Switched to Chinese: the same notification reads in Chinese, and so does the next push.
    page.goto(f"{base}/notifications/")
    page.locator("#language-switch button[value=zh-hans]").click()
    page.wait_for_url(f"{base}/notifications/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    items = page.locator("#notification-list")
    expect(items).to_contain_text("您的工作列表中有新病例")
    expect(items).to_contain_text("来源层级：基层")  # noqa: RUF001
    expect(page.locator("body")).to_have_attribute("data-live", "open")
    notification_send(
        user=world.rita,
        kind="membership_granted",
        code="membership.granted",
        params={
            "role": messages.choice("role", Role.RADIOLOGIST),
            "institution": messages.institution_name(world.reader),
        },
    )
    expect(page.locator("#notification-list li").first).to_have_text(
        "您已成为北城中心医院的放射科医师"
    )
    assert no_horizontal_overflow(page)
