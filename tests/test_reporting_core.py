"""Reporting services: templates and their versions, drafts, autosave, sign-off, second reads,
addenda, and the guarantee that a final report never changes (model, queryset, raw SQL)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from referrals.models import ReferralStatus
from reporting import services
from reporting.models import (
    Addendum,
    Report,
    ReportImmutableError,
    ReportStatus,
    ReportTemplate,
    SecondRead,
)
from reporting.seed import templates_seed
from tenants.models import AuditEvent

from .reporting_support import CHEST, desk_make, scope

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(world, django_capture_on_commit_callbacks):
    return desk_make(world, django_capture_on_commit_callbacks)


def _draft(desk, content=CHEST):
    report = services.report_create(
        scope=desk.rita(), referral_id=desk.chest.pk, template_id=desk.ct_chest.pk
    )
    return services.report_autosave(
        scope=desk.rita(), report_id=report.pk, version=report.version, content=content
    )


def _final_by_sam(desk, django_capture_on_commit_callbacks):
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
        return services.report_sign(
            scope=desk.sam(), report_id=report.pk, kind="final", version=report.version
        )


# --- Templates -------------------------------------------------------------------------------


def test_seed_is_idempotent_and_bilingual(desk):
    assert templates_seed(alliance=desk.world.north) == 0
    codes = set(
        ReportTemplate.objects.filter(alliance=desk.world.north).values_list("code", flat=True)
    )
    assert codes == {"ct-chest", "ct-head", "dr-chest", "us-abdomen", "mr-knee"}
    lung = next(f for f in desk.ct_chest.fields["fields"] if f["key"] == "lung_rads")
    assert lung["kind"] == "choice"
    assert "4A" in [c["value"] for c in lung["choices"]]
    assert desk.ct_chest.name == "胸部 CT"
    assert desk.ct_chest.name_en == "CT chest"


def test_an_alliance_admin_versions_a_template_and_reports_keep_theirs(desk):
    report = _draft(desk)
    ada = scope(desk.ada, desk.world.reader)
    fields = {
        "fields": [
            *desk.ct_chest.fields["fields"],
            {"key": "nodule_size", "kind": "text", "label": "结节大小", "label_en": "Nodule size"},
        ]
    }
    v2 = services.template_version_add(scope=ada, template_id=desk.ct_chest.pk, fields=fields)
    assert (v2.code, v2.version, v2.active) == ("ct-chest", 2, True)
    desk.ct_chest.refresh_from_db()
    assert not desk.ct_chest.active
    report.refresh_from_db()
    assert (report.template_id, report.template_version) == (desk.ct_chest.pk, 1)
    # A reader cannot version templates; a bad schema changes nothing.
    with pytest.raises(services.ReportForbiddenError):
        services.template_version_add(scope=desk.rita(), template_id=v2.pk, fields=fields)
    with pytest.raises(services.ReportError) as bad:
        services.template_version_add(
            scope=ada,
            template_id=v2.pk,
            fields={"fields": [{"key": "x", "kind": "choice", "label": "X", "choices": []}]},
        )
    assert bad.value.code == "bad_fields"
    assert ReportTemplate.objects.filter(code="ct-chest").count() == 2


def test_template_create_refuses_a_duplicate_code_and_an_outsider_alliance(desk):
    ada = scope(desk.ada, desk.world.reader)
    fields = {"fields": [{"key": "findings", "label": "所见", "required": True}]}
    made = services.template_create(
        scope=ada,
        alliance_id=desk.world.north.pk,
        code="ct-neck",
        modality="ct",
        name="颈部 CT",
        fields=fields,
    )
    assert made.modality == "CT"
    assert made.version == 1
    with pytest.raises(services.ReportConflictError):
        services.template_create(
            scope=ada,
            alliance_id=desk.world.north.pk,
            code="ct-neck",
            modality="CT",
            name="again",
            fields=fields,
        )
    with pytest.raises(services.ReportNotFoundError):
        services.template_create(
            scope=ada,
            alliance_id=desk.world.south.pk,
            code="x",
            modality="CT",
            name="x",
            fields=fields,
        )


# --- Drafting --------------------------------------------------------------------------------


def test_draft_starts_the_referral_report_and_is_the_same_when_asked_twice(desk):
    report = services.report_create(
        scope=desk.rita(), referral_id=desk.chest.pk, template_id=desk.ct_chest.pk
    )
    desk.chest.refresh_from_db()
    assert desk.chest.status == ReferralStatus.REPORTING
    assert report.content == {
        "findings": "",
        "lung_rads": "",
        "impression": "",
        "recommendation": "",
    }
    again = services.report_create(
        scope=desk.rita(), referral_id=desk.chest.pk, template_id=desk.ct_chest.pk
    )
    assert again.pk == report.pk
    assert Report.objects.count() == 1


def test_only_the_claimer_at_the_reading_institution_starts_a_draft(desk):
    with pytest.raises(services.ReportConflictError) as exc:
        services.report_create(
            scope=desk.rob(), referral_id=desk.chest.pk, template_id=desk.ct_chest.pk
        )
    assert exc.value.code == "not_claimed"
    with pytest.raises(services.ReportForbiddenError):
        services.report_create(
            scope=desk.alice(), referral_id=desk.chest.pk, template_id=desk.ct_chest.pk
        )
    oscar = scope(desk.world.oscar, desk.world.outsider)
    with pytest.raises(services.ReportError):
        services.report_create(scope=oscar, referral_id=desk.chest.pk, template_id=desk.ct_chest.pk)
    with pytest.raises(services.ReportNotFoundError):
        services.report_create(scope=desk.rita(), referral_id="abc", template_id=1)
    assert not Report.objects.exists()


def test_a_stale_autosave_is_refused_and_loses_nothing(desk):
    report = services.report_create(
        scope=desk.rita(), referral_id=desk.chest.pk, template_id=desk.ct_chest.pk
    )
    first = services.report_autosave(
        scope=desk.rita(), report_id=report.pk, version=1, content={"findings": "tab one"}
    )
    assert first.version == 2
    with pytest.raises(services.ReportConflictError) as stale:
        services.report_autosave(
            scope=desk.rita(),
            report_id=report.pk,
            version=1,
            content={"findings": "tab two, older"},
        )
    assert stale.value.code == "stale_version"
    assert stale.value.extra["current_version"] == 2
    report.refresh_from_db()
    assert report.content["findings"] == "tab one"
    assert report.version == 2


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ({"lung_rads": "7"}, "bad_content"),
        ({"no_such_field": "x"}, "bad_content"),
        ({"findings": 12}, "bad_content"),
        ("not an object", "bad_content"),
    ],
)
def test_bad_content_is_refused(desk, content, code):
    report = services.report_create(
        scope=desk.rita(), referral_id=desk.chest.pk, template_id=desk.ct_chest.pk
    )
    with pytest.raises(services.ReportError) as exc:
        services.report_autosave(scope=desk.rita(), report_id=report.pk, version=1, content=content)
    assert exc.value.status_code == 400
    assert exc.value.code == code
    report.refresh_from_db()
    assert report.version == 1


def test_someone_elses_draft_cannot_be_edited_or_signed(desk):
    report = _draft(desk)
    with pytest.raises(services.ReportForbiddenError):
        services.report_autosave(
            scope=desk.sam(),
            report_id=report.pk,
            version=report.version,
            content={"findings": "mine now"},
        )
    with pytest.raises(services.ReportForbiddenError) as exc:
        services.report_sign(
            scope=desk.sam(), report_id=report.pk, kind="final", version=report.version
        )
    assert exc.value.code == "not_author"
    report.refresh_from_db()
    assert report.status == ReportStatus.DRAFT
    assert report.content["findings"] == CHEST["findings"]


# --- Sign-off and second read ----------------------------------------------------------------


def test_required_fields_must_be_filled_before_signing(desk):
    report = _draft(desk, content={"findings": "x", "lung_rads": ""})
    with pytest.raises(services.ReportError) as exc:
        services.report_sign(
            scope=desk.rita(), report_id=report.pk, kind="preliminary", version=report.version
        )
    assert exc.value.code == "bad_content"
    report.refresh_from_db()
    assert report.status == ReportStatus.DRAFT


def test_a_junior_signs_preliminary_only_and_a_senior_agrees_to_final(
    desk, django_capture_on_commit_callbacks
):
    report = _draft(desk)
    with pytest.raises(services.ReportForbiddenError) as exc:
        services.report_sign(
            scope=desk.rita(), report_id=report.pk, kind="final", version=report.version
        )
    assert exc.value.code == "role_cannot_sign_final"
    report = services.report_sign(
        scope=desk.rita(), report_id=report.pk, kind="preliminary", version=report.version
    )
    assert report.status == ReportStatus.PRELIMINARY
    assert report.second_read_required
    with pytest.raises(services.ReportConflictError):  # signing twice
        services.report_sign(
            scope=desk.rita(), report_id=report.pk, kind="preliminary", version=report.version
        )
    with pytest.raises(services.ReportConflictError):  # editing while it waits
        services.report_autosave(
            scope=desk.rita(),
            report_id=report.pk,
            version=report.version,
            content={"findings": "later"},
        )
    with pytest.raises(services.ReportForbiddenError):  # a junior gives no second read
        services.report_second_read(
            scope=desk.rob(), report_id=report.pk, outcome="agree", version=report.version
        )
    with django_capture_on_commit_callbacks(execute=True):
        report = services.report_second_read(
            scope=desk.sam(), report_id=report.pk, outcome="agree", version=report.version
        )
    assert report.status == ReportStatus.FINAL
    assert report.signed_by == desk.reading.sam
    assert report.preliminary_by == desk.world.rita
    assert report.content_sha256 == services.report_digest(report)
    assert SecondRead.objects.get(report=report).outcome == "agree"
    with pytest.raises(DatabaseError), transaction.atomic():
        SecondRead.objects.filter(report=report).update(outcome="major_discrepancy")
    desk.chest.refresh_from_db()
    assert desk.chest.status == ReferralStatus.DELIVERED
    signed = AuditEvent.objects.filter(event="report_signed", object_id=str(report.pk))
    assert sorted(e.detail["kind"] for e in signed) == ["final", "preliminary"]
    assert desk.world.alice.notifications.filter(kind="referral.reported").exists()


def test_a_major_discrepancy_sends_the_report_back_to_its_author(desk):
    report = _draft(desk)
    report = services.report_sign(
        scope=desk.rita(), report_id=report.pk, kind="preliminary", version=report.version
    )
    with pytest.raises(services.ReportError) as exc:
        services.report_second_read(
            scope=desk.sam(),
            report_id=report.pk,
            outcome="major_discrepancy",
            version=report.version,
        )
    assert exc.value.code == "comment_required"
    report = services.report_second_read(
        scope=desk.sam(),
        report_id=report.pk,
        outcome="major_discrepancy",
        comment="4A, not 2",
        version=report.version,
    )
    assert report.status == ReportStatus.DRAFT
    assert report.second_read_outcome == "major_discrepancy"
    report = services.report_autosave(
        scope=desk.rita(), report_id=report.pk, version=report.version, content={"lung_rads": "4A"}
    )
    report = services.report_sign(
        scope=desk.rita(), report_id=report.pk, kind="preliminary", version=report.version
    )
    report = services.report_second_read(
        scope=desk.sam(),
        report_id=report.pk,
        outcome="minor_discrepancy",
        comment="size 7 mm",
        version=report.version,
    )
    assert report.status == ReportStatus.FINAL
    assert list(SecondRead.objects.filter(report=report).values_list("outcome", flat=True)) == [
        "major_discrepancy",
        "minor_discrepancy",
    ]


def test_a_senior_signs_their_own_report_final_once(desk, django_capture_on_commit_callbacks):
    report = _final_by_sam(desk, django_capture_on_commit_callbacks)
    assert report.status == ReportStatus.FINAL
    assert not report.second_read_required
    with pytest.raises(services.ReportConflictError) as twice:
        services.report_sign(
            scope=desk.sam(), report_id=report.pk, kind="final", version=report.version
        )
    assert twice.value.code == "already_signed"
    desk.mr.refresh_from_db()
    assert desk.mr.status == ReferralStatus.DELIVERED


def test_a_stale_version_cannot_be_signed(desk):
    report = _draft(desk)
    with pytest.raises(services.ReportConflictError):
        services.report_sign(
            scope=desk.rita(), report_id=report.pk, kind="preliminary", version=report.version - 1
        )
    report.refresh_from_db()
    assert report.status == ReportStatus.DRAFT


# --- Immutability ----------------------------------------------------------------------------


def test_a_final_report_cannot_change_by_service_model_queryset_or_raw_sql(
    desk, django_capture_on_commit_callbacks
):
    report = _final_by_sam(desk, django_capture_on_commit_callbacks)
    digest, content = report.content_sha256, dict(report.content)
    with pytest.raises(services.ReportConflictError):
        services.report_autosave(
            scope=desk.sam(),
            report_id=report.pk,
            version=report.version,
            content={"impression": "changed"},
        )
    loaded = Report.objects.get(pk=report.pk)
    loaded.content = {"impression": "changed"}
    with pytest.raises(ReportImmutableError):
        loaded.save()
    with pytest.raises(ReportImmutableError):
        loaded.delete()
    with pytest.raises(DatabaseError), transaction.atomic():
        Report.objects.filter(pk=report.pk).update(free_text="changed")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE reporting_report SET content = '{}'::jsonb WHERE id = %s", [report.pk]
        )
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM reporting_report WHERE id = %s", [report.pk])
    report.refresh_from_db()
    assert report.content == content
    assert report.content_sha256 == digest
    assert report.content_sha256 == services.report_digest(report)


def test_an_addendum_is_the_only_change_and_keeps_the_original(
    desk, django_capture_on_commit_callbacks
):
    report = _final_by_sam(desk, django_capture_on_commit_callbacks)
    draft = _draft(desk)
    with pytest.raises(services.ReportConflictError):  # a draft takes no addendum
        services.addendum_add(scope=desk.rita(), report_id=draft.pk, text="x")
    with pytest.raises(services.ReportError):
        services.addendum_add(scope=desk.sam(), report_id=report.pk, text="   ")
    with pytest.raises(services.ReportForbiddenError):  # the clinic cannot add one
        services.addendum_add(scope=desk.alice(), report_id=report.pk, text="x")
    addendum = services.addendum_add(
        scope=desk.sam(), report_id=report.pk, text="Effusion missed: small left effusion."
    )
    assert addendum.sha256 == services.addendum_digest(addendum, report.content_sha256)
    report.refresh_from_db()
    assert report.content["impression"] == "Normal."
    with pytest.raises(ReportImmutableError):
        addendum.save()
    with pytest.raises(DatabaseError), transaction.atomic():
        Addendum.objects.filter(pk=addendum.pk).update(text="rewritten")
    assert Addendum.objects.get(pk=addendum.pk).text.startswith("Effusion missed")
