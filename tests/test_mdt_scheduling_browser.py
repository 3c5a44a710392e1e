"""Scheduling an MDT session in Chromium at phone width, as the people do it.

dora (referring physician, north clinic) schedules a session for tomorrow, puts one of her
clinic's referrals on the agenda with a clinical summary, finds rita (radiologist of the
north reader hospital, thoracic subspecialty) in the alliance's directory and invites her
as presenter. rita, on her phone in Chinese, finds the notification (in Chinese, and in English
on an English page) and the session under "My MDT sessions", and accepts; dora's session page
shows the answer.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from consultations.models import Invitation, MdtSession
from referrals.workflow import services as referral_services
from tenants import access
from tenants.models import Notification, Role

from .conftest import _person
from .referral_support import reading_setup, study_at
from .test_browser import (  # noqa: F401 - fixtures
    _orm_beside_playwright,
    browser,
    new_page,
    no_horizontal_overflow,
    sign_in,
)

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 740}


def _overflow(page) -> object:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


def test_an_organiser_schedules_picks_a_case_and_invites_a_radiologist_of_another_hospital(
    world,
    live_server,
    new_page,  # noqa: F811 - the fixture
    tmp_path,
):
    from playwright.sync_api import expect

    reading_setup(world)  # rita reads in the thoracic pool of the north reader hospital
    dora = _person("dora", "朵拉", "Dora", world.clinic, Role.REFERRING_PHYSICIAN)
    alice = access.scope_for_user(world.alice, institution_id=world.clinic.pk)
    study = study_at(world.clinic, patient_id="MDT-9", patient_name="Chen^Jing=陈^静")
    referral_services.referral_request(
        scope=alice, study=study, clinical_question="Nodule in the right upper lobe"
    )
    _person("oscar2", "奥斯卡二", "Oscar Rita", world.outsider, Role.RADIOLOGIST)
    base = live_server.url
    tomorrow = (timezone.localtime() + timedelta(days=1)).date().isoformat()

    page = new_page(locale="en-US", viewport=PHONE)
    sign_in(page, base, dora)
    page.goto(f"{base}/mdt/")
    page.click("#mdt-schedule-link")
    page.wait_for_url(f"{base}/mdt/new/")
    assert no_horizontal_overflow(page), _overflow(page)
    page.fill("#id_title", "Thoracic MDT")
    page.select_option("#id_kind", "mdt")
    page.fill("#id_date", tomorrow)
    page.fill("#id_start", "15:00")
    page.fill("#id_end", "14:00")
    page.click("#mdt-schedule-form button[type=submit]")
    expect(page.locator("#mdt-schedule-form")).to_contain_text(
        "The session must end after it starts."
    )
    page.fill("#id_end", "16:30")
    page.click("#mdt-schedule-form button[type=submit]")
    page.wait_for_url(f"{base}/mdt/*/cases/")
    session = MdtSession.objects.get(title="Thoracic MDT")
    assert timezone.localtime(session.starts_at).strftime("%Y-%m-%d %H:%M") == f"{tomorrow} 15:00"

    # The agenda: the clinic's referral is offered; add it with a summary.
    candidate = page.locator(f'#mdt-candidates li[data-study="{study.pk}"]')
    expect(candidate).to_contain_text("Nodule in the right upper lobe")
    assert no_horizontal_overflow(page), _overflow(page)
    candidate.locator("textarea").fill("65-year-old smoker; 12 mm nodule, growing")
    candidate.locator("button[type=submit]").click()
    expect(page.locator("#mdt-agenda")).to_contain_text("Chen Jing")
    expect(page.locator("#mdt-agenda textarea")).to_have_value(
        "65-year-old smoker; 12 mm nodule, growing"
    )
    expect(page.locator("#mdt-no-candidates")).to_be_visible()
    page.screenshot(path=str(tmp_path / "agenda.png"), full_page=True)

    # The directory: by subspecialty; the south's namesake never shows.
    page.click("#mdt-invite-people")
    page.fill("#id_q", "Rita")
    page.click("#mdt-directory-search button[type=submit]")
    rows = page.locator("#mdt-directory > li")
    expect(rows).to_have_count(1)
    page.fill("#id_q", "thoracic")
    page.click("#mdt-directory-search button[type=submit]")
    row = page.locator(f'#mdt-directory li[data-user="{world.rita.pk}"]')
    expect(row).to_contain_text("North Central Hospital")
    expect(row).to_contain_text("thoracic")
    assert no_horizontal_overflow(page), _overflow(page)
    row.locator("select[name=role]").select_option("presenter")
    row.locator("button[type=submit]").click()
    invitee = page.locator(f'#mdt-invitees li[data-user="{world.rita.pk}"]')
    expect(invitee).to_contain_text("Presenter")
    expect(invitee.locator(".answer-pending")).to_be_visible()
    page.screenshot(path=str(tmp_path / "directory.png"), full_page=True)
    invitation = Invitation.objects.get(session=session, user=world.rita)
    assert (invitation.institution, invitation.role) == (world.reader, "presenter")

    # rita, on her phone, in Chinese.
    phone = new_page(viewport=PHONE)
    sign_in(phone, base, world.rita)
    phone.goto(f"{base}/notifications/")
    expect(phone.locator("main")).to_contain_text("MDT 会诊邀请：“Thoracic MDT”")  # noqa: RUF001
    expect(phone.locator("main")).to_contain_text("主讲人")
    expect(phone.locator("main")).to_contain_text("朵拉")
    assert no_horizontal_overflow(phone), _overflow(phone)
    assert Notification.objects.filter(user=world.rita, kind="mdt.invited").count() == 1
    # The same notice, on a page in English: the words follow the page, not the sender.
    english = new_page(locale="en-US", viewport=PHONE)
    sign_in(english, base, world.rita)
    english.goto(f"{base}/notifications/")
    expect(english.locator("main")).to_contain_text("Invitation to the MDT session “Thoracic MDT”")
    expect(english.locator("main")).to_contain_text("Dora invites you as Presenter")
    expect(english.locator("main")).not_to_contain_text("主讲人")
    english.close()
    phone.goto(f"{base}/mdt/")
    card = phone.locator(f'#mdt-sessions li[data-session="{session.pk}"]')
    expect(card).to_contain_text("Thoracic MDT")
    expect(card.locator(".answer-pending")).to_be_visible()
    assert no_horizontal_overflow(phone), _overflow(phone)
    phone.screenshot(path=str(tmp_path / "my-sessions.png"), full_page=True)
    card.locator('button[name=answer][value="accepted"]').click()
    card = phone.locator(f'#mdt-sessions li[data-session="{session.pk}"]')
    expect(card.locator(".answer-accepted")).to_be_visible()
    expect(card.locator('button[name=answer][value="declined"]')).to_be_visible()
    card.locator("a.mdt-title").click()
    expect(phone.locator("#mdt-agenda")).to_contain_text("65-year-old smoker")
    phone.screenshot(path=str(tmp_path / "invitee-session.png"), full_page=True)
    assert no_horizontal_overflow(phone), _overflow(phone)

    # dora's session page shows the answer.
    page.goto(f"{base}/mdt/{session.pk}/session/")
    expect(
        page.locator(f'#mdt-invitees li[data-user="{world.rita.pk}"] .answer-accepted')
    ).to_have_text("Accepted")
    assert no_horizontal_overflow(page), _overflow(page)
