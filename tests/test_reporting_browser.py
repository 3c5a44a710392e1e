"""The drafting page in a real browser: autosave through network loss and a closed tab, and
the issue's journey (write from a template, sign final, the clinic's page shows it live).

Real processes: uvicorn serves pages and sockets, Redis carries the live events, Chromium
shows them. The clinic's page is never reloaded by hand.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from alliance.models import PoolMember
from referrals.workflow import services as referral_services
from reporting.models import Report, ReportStatus, ReportTemplate
from reporting.seed import templates_seed
from tenants import access

from .ingest_support import media  # noqa: F401 - fixture
from .referral_support import reading_setup, study_at
from .test_browser import _orm_beside_playwright, browser, new_page  # noqa: F401 - fixtures
from .test_worker_integration import hub  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _claimed_mr(world):
    """An MR knee case of the north clinic, routed and claimed by sam (senior)."""
    reading = reading_setup(world)
    PoolMember.objects.create(pool=reading.general, user=reading.sam, capacity=10)
    templates_seed(alliance=world.north)
    alice = access.scope_for_user(world.alice, institution_id=world.clinic.pk)
    sam = access.scope_for_user(reading.sam, institution_id=world.reader.pk)
    referral, _ = referral_services.referral_request(
        scope=alice, study=study_at(world.clinic, modality="MR", body_part="KNEE")
    )
    referral_services.referral_route(referral.pk)
    referral_services.referral_claim(scope=sam, referral_id=referral.pk)
    return referral, reading.sam


def _start_draft(page, base, referral):
    page.goto(f"{base}/reports/{referral.pk}/edit/")
    template = ReportTemplate.objects.get(alliance__code="north", code="mr-knee")
    page.select_option("#template-select", str(template.pk))
    page.click("#report-start button[type=submit]")
    page.wait_for_selector("#report-form")


def test_autosave_survives_the_network_and_a_closed_tab(world, hub, new_page):  # noqa: F811
    from playwright.sync_api import expect

    from .test_browser import sign_in

    referral, sam = _claimed_mr(world)
    hub.start_web()
    base = hub.base
    page = new_page(locale="en-US")
    sign_in(page, base, sam)
    _start_draft(page, base, referral)
    report = Report.objects.get(referral=referral)

    # Typing is saved: the PATCH lands.
    with page.expect_response(lambda r: r.request.method == "PATCH" and r.ok):
        page.fill("#field-menisci", "内侧半月板后角撕裂")
    expect(page.locator("#save-state")).to_contain_text("Saved")
    report.refresh_from_db()
    assert report.content["menisci"] == "内侧半月板后角撕裂"

    # Offline: the text stays in the browser and reaches the hub when the network is back.
    page.context.set_offline(True)
    page.fill("#field-ligaments", "前交叉韧带完整")
    expect(page.locator("#save-state")).to_contain_text("Not saved yet")
    report.refresh_from_db()
    assert report.content["ligaments"] == ""
    with page.expect_response(lambda r: r.request.method == "PATCH" and r.ok):
        page.context.set_offline(False)
    expect(page.locator("#save-state")).to_contain_text("Saved")
    report.refresh_from_db()
    assert report.content["ligaments"] == "前交叉韧带完整"
    assert report.content["menisci"] == "内侧半月板后角撕裂"

    # Typed, then the tab closes before any save goes out (offline): reopening restores it.
    page.context.set_offline(True)
    page.fill("#field-cartilage", "软骨未见异常")
    key = f"hub-report-{report.pk}-user-{sam.pk}"
    assert "软骨未见异常" in page.evaluate("(key) => localStorage.getItem(key)", key)
    context = page.context
    page.close()
    context.set_offline(False)
    again = context.new_page()
    with again.expect_response(lambda r: r.request.method == "PATCH" and r.ok):
        again.goto(f"{base}/reports/{referral.pk}/edit/")
    expect(again.locator("#field-cartilage")).to_have_value("软骨未见异常")
    report.refresh_from_db()
    assert report.content["cartilage"] == "软骨未见异常"
    assert report.content["ligaments"] == "前交叉韧带完整"
    expect(again.locator("#save-state")).to_contain_text("Saved")
    assert again.evaluate("(key) => localStorage.getItem(key)", key) is None  # saved: gone


def test_write_sign_and_the_clinic_sees_it_live(world, hub, new_page):  # noqa: F811
    from playwright.sync_api import expect

    from .test_browser import sign_in

    referral, sam = _claimed_mr(world)
    hub.start_web()
    hub.start_worker()
    base = hub.base

    # The clinic's referral page is open and listening.
    clinic = new_page(locale="en-US")
    sign_in(clinic, base, world.alice)
    clinic.goto(f"{base}/referrals/{referral.pk}/")
    expect(clinic.locator("[data-referrals-live]")).to_have_attribute("data-live", "open")
    expect(clinic.locator("#referral-report")).to_have_count(0)

    # The radiologist opens the claimed case, then its report (the case page links to the
    # drafting page when it has the link; otherwise the drafting page directly).
    reader = new_page(locale="en-US")
    sign_in(reader, base, sam)
    reader.goto(f"{base}/worklist/{referral.pk}/")
    link = reader.locator(f'a[href="/reports/{referral.pk}/edit/"]')
    if link.count():
        link.first.click()
        reader.wait_for_url(f"{base}/reports/{referral.pk}/edit/")
    _start_draft(reader, base, referral)
    reader.fill("#field-menisci", "内侧半月板后角撕裂")
    reader.fill("#field-findings", "内侧半月板后角见线状高信号达关节面。")
    with reader.expect_response(lambda r: r.request.method == "PATCH" and r.ok):
        reader.fill("#field-impression", "内侧半月板后角撕裂。")
    # A critical result: the clinic's page shows the alert live, with its button.
    reader.fill("#critical-text", "Unexpected finding needing urgent attention")
    reader.click("#critical-flag")
    expect(reader.locator("#critical-findings li")).to_have_count(1)
    alert = clinic.locator(".critical-finding.critical-open")
    expect(alert).to_contain_text("Unexpected finding needing urgent attention")

    reader.once("dialog", lambda dialog: dialog.accept())
    reader.click("[data-sign=final]")
    expect(reader.locator("#report-status")).to_have_attribute("data-status", "final")

    # The clinic sees the signed report without reloading.
    shown = clinic.locator("#referral-report")
    expect(shown).to_have_attribute("data-report-status", "final")
    expect(shown.locator("[data-field=impression]")).to_have_text("内侧半月板后角撕裂。")
    expect(clinic.locator("#referral-status")).to_have_attribute("data-status", "delivered")
    report = Report.objects.get(referral=referral)
    assert report.status == ReportStatus.FINAL
    expect(shown).to_contain_text(report.content_sha256)

    # The clinic acknowledges the critical finding from its page.
    alert.locator("[data-critical-ack]").click()
    expect(clinic.locator(".critical-finding.critical-open")).to_have_count(0)
    expect(clinic.locator(".critical-finding")).to_contain_text("Acknowledged by Alice")


# --- The patient's link on a phone ("the patient link opens it on a phone") ---------

PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
    "locale": "en-US",
    "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
    "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148",
}


def _draft_with_key_images(world):
    """sam's complete CT chest draft on a stored 4-slice study, with 2 key images attached."""
    from reporting import key_images, services

    from .reporting_support import CHEST
    from .share_support import stored_study

    reading = reading_setup(world)
    PoolMember.objects.create(pool=reading.thoracic, user=reading.sam, capacity=10)
    templates_seed(alliance=world.north)
    alice = access.scope_for_user(world.alice, institution_id=world.clinic.pk)
    sam = access.scope_for_user(reading.sam, institution_id=world.reader.pk)
    study = stored_study(world)
    referral, _ = referral_services.referral_request(scope=alice, study=study)
    referral_services.referral_route(referral.pk)
    referral_services.referral_claim(scope=sam, referral_id=referral.pk)
    template = ReportTemplate.objects.get(alliance=world.north, code="ct-chest")
    report = services.report_create(scope=sam, referral_id=referral.pk, template_id=template.pk)
    services.report_autosave(scope=sam, report_id=report.pk, version=report.version, content=CHEST)
    from referrals.models import Instance

    for instance, note in zip(
        Instance.objects.filter(study=study).order_by("pk")[:2],
        ("右上肺结节", "层面 2"),
        strict=True,
    ):
        key_images.key_image_add(
            scope=sam, report_id=report.pk, sop_uid=instance.sop_uid, note=note
        )
    return referral, reading.sam


def _phone_shows_no_overflow(phone) -> None:
    from .test_browser import no_horizontal_overflow

    assert no_horizontal_overflow(phone), phone.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )


def test_sign_share_and_the_patient_opens_it_on_a_phone(world, hub, new_page, media):  # noqa: F811
    from playwright.sync_api import expect

    from reporting.models import ShareLink

    from .test_browser import sign_in

    referral, sam = _draft_with_key_images(world)
    hub.start_web()
    base = hub.base

    # The radiologist signs final, adds an addendum, and shares it with the patient.
    reader = new_page(locale="en-US")
    sign_in(reader, base, sam)
    reader.goto(f"{base}/reports/{referral.pk}/edit/")
    expect(reader.locator("#report-share")).to_have_count(0)  # a draft is not shared
    reader.once("dialog", lambda dialog: dialog.accept())
    reader.click("[data-sign=final]")
    expect(reader.locator("#report-status")).to_have_attribute("data-status", "final")
    reader.fill("#addendum-text", "补充, 左肺下叶另见 3 mm 结节。")
    reader.click("#addendum-form button[type=submit]")
    expect(reader.locator("#addenda")).to_contain_text("左肺下叶另见 3 mm 结节")
    reader.click("#report-share")
    reader.click("#share-create")
    expect(reader.locator("#share-qr")).to_be_visible()
    assert reader.locator("#share-qr").evaluate("img => img.naturalWidth") > 0
    url = reader.locator("#share-url").input_value()
    assert url.startswith(f"{base}/s/")
    link = ShareLink.objects.get()
    assert link.report.referral_id == referral.pk

    # The clinic's page offers the same button on the signed report.
    clinic = new_page(locale="en-US")
    sign_in(clinic, base, world.alice)
    clinic.goto(f"{base}/referrals/{referral.pk}/")
    expect(clinic.locator("#referral-report #report-share")).to_be_visible()

    # The patient's phone, never signed in: report, addendum, key images, viewer link.
    phone = new_page(**PHONE)
    answer = phone.goto(url)
    assert answer is not None
    assert answer.status == 200
    shown = phone.locator(".shared-report")
    expect(shown).to_contain_text("右上肺 6 mm 实性结节")
    expect(shown.locator(".addendum")).to_contain_text("左肺下叶另见 3 mm 结节")
    images = shown.locator(".images img")
    expect(images).to_have_count(2)
    for n in range(2):
        images.nth(n).scroll_into_view_if_needed()
        expect(images.nth(n)).to_have_js_property("complete", True)
        assert images.nth(n).evaluate("img => img.naturalWidth") > 0
    viewer_link = shown.get_by_role("link", name="View all images")
    expect(viewer_link).to_be_visible()
    _phone_shows_no_overflow(phone)
    assert phone.locator("#login-form, #id_username").count() == 0
    viewer_link.tap()
    expect(phone.locator("#viewer")).to_have_attribute("data-slice-index", "1")
    expect(phone.locator("#slice-index")).to_contain_text("of 4")
    _phone_shows_no_overflow(phone)
    assert ShareLink.objects.get().open_count == 1

    # Withdrawn on the reading side: the same URL is now a clear 410 page.
    reader.click(f"[data-revoke='{link.pk}']")
    expect(reader.locator(f"tr[data-link='{link.pk}']")).to_contain_text("Withdrawn")
    answer = phone.goto(url)
    assert answer is not None
    assert answer.status == 410
    expect(phone.locator("#share-error")).to_contain_text("withdrawn")
    _phone_shows_no_overflow(phone)

    # A new link that has run out: 410 too, saying so.
    reader.click("#share-create")
    expired_url = reader.locator("#share-url").input_value()
    ShareLink.objects.filter(revoked_at__isnull=True).update(expires_at=timezone.now())
    answer = phone.goto(expired_url)
    assert answer is not None
    assert answer.status == 410
    expect(phone.locator("#share-error")).to_contain_text("expired")
    _phone_shows_no_overflow(phone)


def test_a_junior_signs_and_goes_next_and_the_senior_corrects_and_co_signs(
    world,
    hub,  # noqa: F811
    new_page,  # noqa: F811
):
    from playwright.sync_api import expect

    from .test_browser import sign_in

    reading = reading_setup(world)
    sam = reading.sam
    templates_seed(alliance=world.north)
    rita = access.scope_for_user(world.rita, institution_id=world.reader.pk)
    alice = access.scope_for_user(world.alice, institution_id=world.clinic.pk)
    referral, _ = referral_services.referral_request(
        scope=alice, study=study_at(world.clinic, modality="MR", body_part="KNEE")
    )
    referral_services.referral_route(referral.pk)
    referral_services.referral_claim(scope=rita, referral_id=referral.pk)
    # The next case: a CT chest, which routes to the thoracic pool (rita's alone).
    waiting, _ = referral_services.referral_request(
        scope=alice, study=study_at(world.clinic, patient_id="P-2", patient_key="key-p2")
    )
    referral_services.referral_route(waiting.pk)
    hub.start_web()
    base = hub.base

    junior = new_page(locale="en-US")
    sign_in(junior, base, world.rita)
    _start_draft(junior, base, referral)
    junior.fill("#field-findings", "内侧半月板后角见线状高信号。")
    with junior.expect_response(lambda r: r.request.method == "PATCH" and r.ok):
        junior.fill("#field-impression", "半月板变性。")
    junior.click("#sign-next")
    junior.wait_for_url(f"{base}/reports/{waiting.pk}/edit/")  # the next case, claimed

    senior = new_page(locale="en-US")
    sign_in(senior, base, sam)
    senior.goto(f"{base}/reports/second-reads/")
    senior.click(f'[data-referral-id="{referral.pk}"] a')
    senior.wait_for_url(f"{base}/reports/{referral.pk}/edit/")
    with senior.expect_response(lambda r: r.request.method == "PATCH" and r.ok):
        senior.fill("#field-impression", "内侧半月板后角撕裂。")
    senior.once("dialog", lambda dialog: dialog.accept())
    senior.click("#second-read button.primary")
    expect(senior.locator("#report-status")).to_have_attribute("data-status", "final")
    expect(senior.locator("#signature-preliminary")).to_contain_text("Rita")
    expect(senior.locator("#signature-final")).to_contain_text("Sam")
    report = Report.objects.get(referral=referral)
    assert (report.preliminary_by_id, report.signed_by_id) == (world.rita.pk, sam.pk)
    assert report.content["impression"] == "内侧半月板后角撕裂。"
