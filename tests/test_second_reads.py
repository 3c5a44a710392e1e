"""A junior's preliminary report reaches the seniors: notification, queue, correction and
co-signature (both names on the page, the PDF and the FHIR resource), "sign and next", and
the clinic's PDF and addendum notices."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.timezone import localtime
from pypdf import PdfReader

from referrals.models import Referral, ReferralStatus
from referrals.workflow import services as referral_services
from reporting import critical, fhir, key_images, selectors, services
from reporting.models import Report, ReportStatus, ReportTemplate
from reporting.pdf import report_pdf_bytes
from tenants import live
from tenants.models import AuditEvent, Notification, Role

from .conftest import _person
from .ingest_support import media  # noqa: F401  (a fixture)
from .referral_support import study_at
from .reporting_support import CHEST, Desk, desk_make, scope
from .share_support import stored_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(world, django_capture_on_commit_callbacks):
    return desk_make(world, django_capture_on_commit_callbacks)


@pytest.fixture
def sue(world):
    """A second senior of the reading hospital."""
    return _person("sue", "苏", "Sue", world.reader, Role.SENIOR_RADIOLOGIST)


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, dict[str, Any]]]:
    """Every live event actually sent (tenants.live sends only once a transaction commits)."""
    events: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        live, "_send", lambda group, message, alias="default": events.append((group, message))
    )
    return events


def web(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def _draft(desk: Desk, referral: Referral | None = None, reader=None) -> Report:
    reader_scope = reader or desk.rita()
    report = services.report_create(
        scope=reader_scope,
        referral_id=(referral or desk.chest).pk,
        template_id=desk.ct_chest.pk,
    )
    return services.report_autosave(
        scope=reader_scope, report_id=report.pk, version=report.version, content=CHEST
    )


def _preliminary(desk: Desk, capture, referral: Referral | None = None, reader=None) -> Report:
    report = _draft(desk, referral, reader)
    with capture(execute=True):
        return services.report_sign(
            scope=reader or desk.rita(),
            report_id=report.pk,
            kind="preliminary",
            version=report.version,
        )


def _robs_case(desk: Desk, capture) -> Referral:
    """An MR case of another patient, claimed by rob (a junior of the general pool)."""
    alice = desk.alice()
    with capture(execute=True):
        referral, _ = referral_services.referral_request(
            scope=alice,
            study=study_at(
                desk.world.clinic,
                modality="MR",
                body_part="KNEE",
                patient_id="P-3",
                patient_key="k3",
            ),
        )
    with capture(execute=True):
        referral_services.referral_claim(scope=desk.rob(), referral_id=referral.pk)
    referral.refresh_from_db()
    return referral


# --- The seniors hear of a preliminary report ----------------------------------------------


def test_a_juniors_preliminary_report_notifies_every_senior_of_the_reading_site_only(
    desk, sue, sent, django_capture_on_commit_callbacks
):
    south_senior = _person("sol", "索尔", "Sol", desk.world.outsider, Role.SENIOR_RADIOLOGIST)
    report = _draft(desk)
    with django_capture_on_commit_callbacks(execute=True):
        report = services.report_sign(
            scope=desk.rita(), report_id=report.pk, kind="preliminary", version=report.version
        )
        assert sent == []  # nothing goes out before the signature commits
    told = Notification.objects.filter(kind="report.second_read")
    assert sorted(n.user.username for n in told) == ["sam", "sue"]
    link = reverse("report-edit", args=[desk.chest.pk])
    assert {n.link for n in told} == {link}
    assert {n.institution_id for n in told} == {desk.world.reader.pk}
    for person in (desk.world.rita, desk.reading.rob, desk.world.alice, south_senior):
        assert not person.notifications.filter(kind="report.second_read").exists()
    pushed = [g for g, m in sent if m["event"] == "notification"]
    assert sorted(pushed) == sorted([live.user_group(desk.reading.sam.pk), live.user_group(sue.pk)])


def test_a_seniors_own_wet_read_and_a_rolled_back_signature_notify_no_one(
    desk, sue, django_capture_on_commit_callbacks
):
    report = services.report_create(
        scope=desk.sam(), referral_id=desk.mr.pk, template_id=desk.mr_knee.pk
    )
    report = services.report_autosave(
        scope=desk.sam(),
        report_id=report.pk,
        version=report.version,
        content={"findings": "ACL intact.", "impression": "Normal."},
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.report_sign(
            scope=desk.sam(), report_id=report.pk, kind="preliminary", version=report.version
        )
    assert not Notification.objects.filter(kind="report.second_read").exists()


def test_a_report_sent_back_and_signed_again_is_a_new_request(
    desk, sue, django_capture_on_commit_callbacks
):
    report = _preliminary(desk, django_capture_on_commit_callbacks)
    report = services.report_second_read(
        scope=desk.sam(),
        report_id=report.pk,
        outcome="major_discrepancy",
        comment="4A, not 2",
        version=report.version,
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.report_sign(
            scope=desk.rita(), report_id=report.pk, kind="preliminary", version=report.version
        )
    assert desk.reading.sam.notifications.filter(kind="report.second_read").count() == 2
    assert sue.notifications.filter(kind="report.second_read").count() == 2


# --- The queue ------------------------------------------------------------------------------


def test_the_queue_lists_reports_waiting_at_the_seniors_site_oldest_first(
    desk, django_capture_on_commit_callbacks
):
    ritas = _preliminary(desk, django_capture_on_commit_callbacks)
    robs_case = _robs_case(desk, django_capture_on_commit_callbacks)
    report = services.report_create(
        scope=desk.rob(), referral_id=robs_case.pk, template_id=desk.mr_knee.pk
    )
    report = services.report_autosave(
        scope=desk.rob(),
        report_id=report.pk,
        version=report.version,
        content={"findings": "ACL intact.", "impression": "Normal."},
    )
    with django_capture_on_commit_callbacks(execute=True):
        robs = services.report_sign(
            scope=desk.rob(), report_id=report.pk, kind="preliminary", version=report.version
        )
    # rob's report has waited longer than rita's.
    base = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)
    Report.objects.filter(pk=robs.pk).update(preliminary_at=base)
    Report.objects.filter(pk=ritas.pk).update(preliminary_at=base + dt.timedelta(hours=1))

    assert [r.pk for r in selectors.second_read_queue(desk.sam())] == [robs.pk, ritas.pk]
    page = web(desk.reading.sam).get("/reports/second-reads/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.index(f'data-report-id="{robs.pk}"') < html.index(f'data-report-id="{ritas.pk}"')
    assert reverse("report-edit", args=[desk.chest.pk]) in html
    assert reverse("report-edit", args=[robs_case.pk]) in html
    assert 'href="/reports/second-reads/"' in html  # the seniors' navigation item

    # Juniors, the clinic and an administrator have no queue, nor the navigation item.
    for person in (desk.world.rita, desk.world.alice, desk.world.adam):
        assert web(person).get("/reports/second-reads/").status_code == 403
    assert 'href="/reports/second-reads/"' not in web(desk.world.rita).get("/").content.decode()

    # Once co-signed, a report leaves the queue.
    with django_capture_on_commit_callbacks(execute=True):
        services.report_second_read(
            scope=desk.sam(), report_id=robs.pk, outcome="agree", version=robs.version
        )
    assert [r.pk for r in selectors.second_read_queue(desk.sam())] == [ritas.pk]


def test_a_senior_of_another_alliance_sees_an_empty_queue(desk, django_capture_on_commit_callbacks):
    _preliminary(desk, django_capture_on_commit_callbacks)
    sol = _person("sol", "索尔", "Sol", desk.world.outsider, Role.SENIOR_RADIOLOGIST)
    page = web(sol).get("/reports/second-reads/")
    assert page.status_code == 200
    assert "data-report-id" not in page.content.decode()
    assert "丽塔" not in page.content.decode()


# --- The senior corrects and co-signs -------------------------------------------------------


def test_the_senior_corrects_the_text_audited_and_co_signs_with_both_names(
    desk, api_for, django_capture_on_commit_callbacks
):
    report = _preliminary(desk, django_capture_on_commit_callbacks)
    before = report.version
    # Through the drafting page's autosave (the API's PATCH), as the page does.
    answer = api_for(desk.reading.sam, desk.world.reader).patch(
        f"/api/v1/reports/{report.pk}/",
        {"version": before, "content": {"impression": "良性可能性大, 建议随访。"}},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["version"] == before + 1
    assert answer.json()["status"] == "preliminary"
    edited = AuditEvent.objects.get(event="report_edited", object_id=str(report.pk))
    assert edited.username == "sam"
    assert edited.detail["fields"] == ["impression"]
    assert edited.detail["before"] == {"impression": CHEST["impression"]}
    assert edited.detail["version"] == [before, before + 1]

    # A stale version, a junior, the author and another alliance's senior cannot correct it.
    with pytest.raises(services.ReportConflictError):
        services.report_second_read_edit(
            scope=desk.sam(), report_id=report.pk, version=before, content={"findings": "x"}
        )
    with pytest.raises(services.ReportForbiddenError):
        services.report_autosave(
            scope=desk.rob(), report_id=report.pk, version=before + 1, content={"findings": "x"}
        )
    with pytest.raises(services.ReportConflictError):  # the author waits for the senior
        services.report_autosave(
            scope=desk.rita(), report_id=report.pk, version=before + 1, content={"findings": "x"}
        )
    sol = _person("sol", "索尔", "Sol", desk.world.outsider, Role.SENIOR_RADIOLOGIST)
    with pytest.raises(services.ReportNotFoundError):
        services.report_second_read_edit(
            scope=scope(sol, desk.world.outsider),
            report_id=report.pk,
            version=before + 1,
            content={"findings": "x"},
        )
    assert AuditEvent.objects.filter(event="report_edited").count() == 1

    # The page offers the senior the text to correct and the co-signature.
    page = web(desk.reading.sam).get(f"/reports/{desk.chest.pk}/edit/").content.decode()
    assert 'id="second-read"' in page
    assert "良性可能性大" in page
    assert 'id="field-impression" data-key="impression" rows="4">' in page  # not readonly

    with django_capture_on_commit_callbacks(execute=True):
        final = services.report_second_read(
            scope=desk.sam(),
            report_id=report.pk,
            outcome="minor_discrepancy",
            comment="impression reworded",
            version=before + 1,
        )
    final = Report.objects.get(pk=final.pk)
    assert final.status == ReportStatus.FINAL
    assert (final.author, final.preliminary_by, final.signed_by) == (
        desk.world.rita,
        desk.world.rita,
        desk.reading.sam,
    )
    assert final.content["impression"] == "良性可能性大, 建议随访。"
    assert final.content["findings"] == CHEST["findings"]
    assert final.content_sha256 == services.report_digest(final)

    page = web(desk.reading.sam).get(f"/reports/{desk.chest.pk}/edit/").content.decode()
    assert 'id="signature-preliminary">Rita' in page  # English pages: English names
    assert 'id="signature-final">Sam' in page
    clinic_page = web(desk.world.alice).get(f"/referrals/{desk.chest.pk}/").content.decode()
    assert 'id="report-preliminary-signature"' in clinic_page
    assert "Preliminary report signed by Rita" in clinic_page
    assert "Signed by Sam" in clinic_page

    resource = fhir.diagnostic_report(final, base_url="https://hub.example", pdf_url="x")
    assert [p["display"] for p in resource["resultsInterpreter"]] == ["山姆", "丽塔"]
    assert resource["status"] == "final"


# --- Sign and next --------------------------------------------------------------------------


def _chest_case(desk: Desk, capture, patient: str) -> Referral:
    """Another CT chest case: it routes to the thoracic pool (rita's)."""
    with capture(execute=True):
        referral, _ = referral_services.referral_request(
            scope=desk.alice(),
            study=study_at(desk.world.clinic, patient_id=patient, patient_key=f"key-{patient}"),
        )
    referral.refresh_from_db()
    return referral


def test_sign_and_next_claims_and_opens_the_readers_next_case(
    desk, django_capture_on_commit_callbacks
):
    waiting = _chest_case(desk, django_capture_on_commit_callbacks, "P-5")
    assert waiting.status == ReferralStatus.ROUTED
    _preliminary(desk, django_capture_on_commit_callbacks)
    rita = web(desk.world.rita)
    answer = rita.post("/reports/next/", {"queue": "reading"})
    assert answer.status_code == 302
    assert answer["Location"] == reverse("report-edit", args=[waiting.pk])
    waiting.refresh_from_db()
    assert waiting.claimed_by == desk.world.rita
    assert waiting.opened_at is not None  # the reader is already in it: the claim is kept
    # Asked again before writing it, the reader is sent back to the case they now hold.
    answer = rita.post("/reports/next/", {"queue": "reading"})
    assert answer["Location"] == reverse("report-edit", args=[waiting.pk])
    assert Referral.objects.filter(claimed_by=desk.world.rita).count() == 2


def test_sign_and_next_takes_a_case_the_reader_already_holds_first(
    desk, django_capture_on_commit_callbacks
):
    held = _chest_case(desk, django_capture_on_commit_callbacks, "P-6")
    with django_capture_on_commit_callbacks(execute=True):
        referral_services.referral_claim(scope=desk.rita(), referral_id=held.pk)
    routed = _chest_case(desk, django_capture_on_commit_callbacks, "P-7")
    _preliminary(desk, django_capture_on_commit_callbacks)
    assert services.reading_next_case(scope=desk.rita()).pk == held.pk
    routed.refresh_from_db()
    assert routed.status == ReferralStatus.ROUTED  # nothing new claimed while one is held
    assert routed.claimed_by is None


def test_sign_and_next_with_nothing_waiting_goes_back_to_the_worklist(
    desk, django_capture_on_commit_callbacks
):
    _preliminary(desk, django_capture_on_commit_callbacks)
    answer = web(desk.world.rita).post("/reports/next/", {"queue": "reading"})
    assert answer["Location"] == reverse("worklist")
    assert Referral.objects.filter(claimed_by=desk.world.rita).count() == 1


def test_a_seniors_record_and_next_opens_the_oldest_waiting_second_read(
    desk, django_capture_on_commit_callbacks
):
    ritas = _preliminary(desk, django_capture_on_commit_callbacks)
    sam = web(desk.reading.sam)
    answer = sam.post("/reports/next/", {"queue": "second_read"})
    assert answer["Location"] == reverse("report-edit", args=[ritas.referral_id])
    with django_capture_on_commit_callbacks(execute=True):
        services.report_second_read(
            scope=desk.sam(), report_id=ritas.pk, outcome="agree", version=ritas.version
        )
    answer = sam.post("/reports/next/", {"queue": "second_read"})
    assert answer["Location"] == reverse("second-read-queue")
    # The clinic has no reading queue at all.
    assert web(desk.world.alice).post("/reports/next/").status_code == 403


def test_the_drafting_page_offers_sign_and_next(desk):
    _draft(desk)
    page = web(desk.world.rita).get(f"/reports/{desk.chest.pk}/edit/").content.decode()
    assert 'data-sign="preliminary" data-next="reading"' in page
    assert f'action="{reverse("reading-next")}"' in page


# --- The clinic's PDF and addenda -----------------------------------------------------------


def _pdf_text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages).replace("\n", "")


def test_the_pdf_holds_the_question_the_critical_result_key_image_notes_and_both_names(
    desk,
    media,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    world = desk.world
    study = stored_study(world)
    with django_capture_on_commit_callbacks(execute=True):
        referral, _ = referral_services.referral_request(
            scope=desk.alice(), study=study, clinical_question="咳嗽两周, 排除肺结节。"
        )
    with django_capture_on_commit_callbacks(execute=True):
        referral_services.referral_claim(scope=desk.rita(), referral_id=referral.pk)
    template = ReportTemplate.objects.get(alliance=world.north, code="ct-chest")
    report = services.report_create(
        scope=desk.rita(), referral_id=referral.pk, template_id=template.pk
    )
    report = services.report_autosave(
        scope=desk.rita(), report_id=report.pk, version=report.version, content=CHEST
    )
    instance = study.instances.order_by("pk").first()
    key_images.key_image_add(
        scope=desk.rita(), report_id=report.pk, sop_uid=instance.sop_uid, note="结节所在层面"
    )
    with django_capture_on_commit_callbacks(execute=True):
        finding = critical.critical_flag(
            scope=desk.rita(), referral_id=referral.pk, text="疑似张力性气胸"
        )
        critical.critical_acknowledge(scope=desk.alice(), finding_id=finding.pk, note="")
    report.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        report = services.report_sign(
            scope=desk.rita(), report_id=report.pk, kind="preliminary", version=report.version
        )
        services.report_second_read(
            scope=desk.sam(), report_id=report.pk, outcome="agree", version=report.version
        )
    report = Report.objects.get(pk=report.pk)
    text = _pdf_text(report_pdf_bytes(report))
    assert "咳嗽两周, 排除肺结节。" in text
    assert "疑似张力性气胸" in text
    finding.refresh_from_db()
    assert localtime(finding.flagged_at).strftime("%Y-%m-%d %H:%M:%S") in text
    assert localtime(finding.acknowledged_at).strftime("%Y-%m-%d %H:%M:%S") in text
    assert "艾丽斯" in text  # alice acknowledged it
    assert "结节所在层面" in text
    assert "丽塔" in text  # preliminary by rita
    assert "山姆" in text  # co-signed by sam
    assert text.index("丽塔") < text.index("山姆")

    # The clinic's referral page offers the PDF; the signed-in clinic downloads it, audited.
    alice = web(world.alice)
    page = alice.get(f"/referrals/{referral.pk}/").content.decode()
    url = reverse("api:report-pdf", args=[report.pk])
    assert f'id="report-pdf" href="{url}"' in page
    assert "Print / download PDF" in page
    answer = alice.get(url)
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/pdf"
    assert "疑似张力性气胸" in _pdf_text(answer.content)
    export = AuditEvent.objects.get(event="export", object_id=str(report.pk))
    assert (export.username, export.detail) == ("alice", {"format": "pdf"})
    # Another alliance's clinic gets nothing.
    assert web(world.oscar).get(url).status_code == 404


def test_an_addendum_notifies_the_requesting_sites_clinic_users_live(
    desk, sent, django_capture_on_commit_callbacks
):
    tina = _person("tina", "蒂娜", "Tina", desk.world.clinic, Role.CLINIC_TECHNICIAN)
    doris = _person("doris", "多丽丝", "Doris", desk.world.clinic, Role.REFERRING_PHYSICIAN)
    report = _preliminary(desk, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        report = services.report_second_read(
            scope=desk.sam(), report_id=report.pk, outcome="agree", version=report.version
        )
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        addendum = services.addendum_add(
            scope=desk.sam(), report_id=report.pk, text="补充: 左肺下叶另见 3 mm 结节。"
        )
        assert sent == []
    told = Notification.objects.filter(kind="report.addendum")
    assert sorted(n.user.username for n in told) == sorted(["alice", "tina", "doris"])
    assert {n.link for n in told} == {reverse("referral-detail", args=[desk.chest.pk])}
    assert {n.body for n in told} == {addendum.text}
    for person in (desk.world.adam, desk.world.rita, desk.reading.sam, desk.world.oscar):
        assert not person.notifications.filter(kind="report.addendum").exists()
    groups = {g for g, m in sent if m["event"] == "notification"}
    assert groups == {live.user_group(u.pk) for u in (desk.world.alice, tina, doris)}
    clinic = live.institution_group(desk.world.clinic.pk)
    assert (clinic, "referral") in {(g, m["event"]) for g, m in sent}
