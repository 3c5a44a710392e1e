"""The alliance administrator's report template editor: each save a new version, reports keep
the version they were written with, new reports get the newest one in use, retire and
reactivate, validation in sentences, the diff, the pages and their audit trail."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from reporting import selectors, services
from reporting.models import Report, ReportTemplate
from reporting.schema import SchemaError, content_check
from reporting.template_forms import FieldRowFormSet, fields_from_rows, rows_from_fields
from reporting.templates_admin import template_diff, template_summaries
from tenants.models import AuditEvent, Role

from .conftest import _person
from .reporting_support import CHEST, desk_make, scope

pytestmark = pytest.mark.django_db

NODULE = {
    "key": "nodule_size",
    "kind": "measurement",
    "label": "最大结节直径",
    "label_en": "Largest nodule",
    "unit": "mm",
}


@pytest.fixture
def desk(world, django_capture_on_commit_callbacks):
    return desk_make(world, django_capture_on_commit_callbacks)


def _ada(desk):
    return scope(desk.ada, desk.world.reader)


def _with_nodule(template: ReportTemplate) -> dict[str, Any]:
    return {"fields": [*template.fields["fields"], NODULE]}


def _template_audits(code: str) -> list[dict[str, Any]]:
    return [
        e.detail
        for e in AuditEvent.objects.filter(
            event="configuration_change", object_type="report_template"
        ).order_by("id")
        if e.detail.get("code") == code
    ]


# --- Services ----------------------------------------------------------------------------------


def test_an_edit_is_a_new_version_and_the_written_report_keeps_the_old_one(desk):
    v1 = desk.ct_chest
    v1_fields = v1.fields
    report = services.report_create(scope=desk.rita(), referral_id=desk.chest.pk, template_id=v1.pk)
    v2 = services.template_version_add(
        scope=_ada(desk), template_id=v1.pk, fields=_with_nodule(v1), base_version=1
    )
    assert (v2.code, v2.version, v2.active, v2.created_by) == ("ct-chest", 2, True, desk.ada)
    v1.refresh_from_db()
    assert (v1.version, v1.active, v1.fields) == (1, False, v1_fields)
    report.refresh_from_db()
    assert (report.template_id, report.template_version) == (v1.pk, 1)
    # The written report goes on with its own version's fields: the new field is not its.
    with pytest.raises(services.ReportError):
        services.report_autosave(
            scope=desk.rita(),
            report_id=report.pk,
            version=report.version,
            content={"nodule_size": "6"},
        )
    saved = services.report_autosave(
        scope=desk.rita(), report_id=report.pk, version=report.version, content=CHEST
    )
    assert saved.template_id == v1.pk
    # A new report is offered the newest version only.
    offered = list(selectors.templates_for(desk.sam(), desk.mr).filter(code="ct-chest"))
    assert offered == [v2]
    assert _template_audits("ct-chest") == [
        {
            "change": "template_version_added",
            "alliance": desk.world.north.pk,
            "code": "ct-chest",
            "version": 2,
            "active": True,
        }
    ]


def test_an_edit_from_an_older_version_is_refused_and_changes_nothing(desk):
    ada = _ada(desk)
    services.template_version_add(
        scope=ada, template_id=desk.ct_chest.pk, fields=_with_nodule(desk.ct_chest), base_version=1
    )
    with pytest.raises(services.ReportConflictError) as stale, translation.override("en"):
        services.template_version_add(
            scope=ada, template_id=desk.ct_chest.pk, fields=desk.ct_chest.fields, base_version=1
        )
    assert stale.value.code == "stale_template"
    assert "version 2" in str(stale.value)
    versions = ReportTemplate.objects.filter(alliance=desk.world.north, code="ct-chest")
    assert sorted(versions.values_list("version", flat=True)) == [1, 2]


def test_retire_and_reactivate(desk):
    ada = _ada(desk)
    v2 = services.template_version_add(
        scope=ada, template_id=desk.ct_chest.pk, fields=_with_nodule(desk.ct_chest)
    )
    retired = services.template_active_set(scope=ada, template_id=desk.ct_chest.pk, active=False)
    assert retired.pk == v2.pk
    assert not ReportTemplate.objects.filter(code="ct-chest", active=True).exists()
    assert not selectors.templates_for(desk.rita(), desk.chest).filter(code="ct-chest").exists()
    with pytest.raises(services.ReportError):
        services.report_create(scope=desk.rita(), referral_id=desk.chest.pk, template_id=v2.pk)
    # A second click records nothing more; an edit of a retired template stays retired.
    services.template_active_set(scope=ada, template_id=v2.pk, active=False)
    v3 = services.template_version_add(scope=ada, template_id=v2.pk, fields=desk.ct_chest.fields)
    assert (v3.version, v3.active) == (3, False)
    services.template_active_set(scope=ada, template_id=desk.ct_chest.pk, active=True)
    assert list(
        ReportTemplate.objects.filter(code="ct-chest", active=True).values_list(
            "version", flat=True
        )
    ) == [3]
    report = services.report_create(scope=desk.rita(), referral_id=desk.chest.pk, template_id=v3.pk)
    assert report.template_version == 3
    assert [a["change"] for a in _template_audits("ct-chest")] == [
        "template_version_added",
        "template_retired",
        "template_version_added",
        "template_reactivated",
    ]
    # Only the alliance administrator retires.
    with pytest.raises(services.ReportForbiddenError):
        services.template_active_set(scope=desk.rita(), template_id=v3.pk, active=False)


def test_another_alliances_admin_cannot_version_or_retire(desk):
    sol = _person("sol", "索尔", "Sol", desk.world.outsider, Role.ALLIANCE_ADMIN)
    theirs = scope(sol, desk.world.outsider)
    with pytest.raises(services.ReportNotFoundError):
        services.template_version_add(
            scope=theirs, template_id=desk.ct_chest.pk, fields=desk.ct_chest.fields
        )
    with pytest.raises(services.ReportNotFoundError):
        services.template_active_set(scope=theirs, template_id=desk.ct_chest.pk, active=False)
    assert ReportTemplate.objects.get(code="ct-chest", alliance=desk.world.north).active


def test_create_is_audited_and_defaults_start_the_report(desk):
    ada = _ada(desk)
    fields = {
        "fields": [
            {"key": "findings", "label": "所见", "required": True, "default": "双肺纹理清晰。"},
            {**NODULE, "default": "0"},
            {
                "key": "lung_rads",
                "kind": "choice",
                "label": "Lung-RADS",
                "default": "1",
                "choices": [{"value": "1", "label": "1 阴性"}, {"value": "2", "label": "2 良性"}],
            },
        ]
    }
    made = services.template_create(
        scope=ada,
        alliance_id=desk.world.north.pk,
        code="ct-lung-screen",
        modality="CT",
        body_part="CHEST",
        name="肺癌筛查 CT",
        fields=fields,
    )
    assert _template_audits("ct-lung-screen")[0]["change"] == "template_created"
    report = services.report_create(
        scope=desk.rita(), referral_id=desk.chest.pk, template_id=made.pk
    )
    assert report.content == {"findings": "双肺纹理清晰。", "nodule_size": "0", "lung_rads": "1"}
    # A draft keeps a number on the way ("6."); signing needs a number.
    services.report_autosave(
        scope=desk.rita(),
        report_id=report.pk,
        version=report.version,
        content={"nodule_size": "6."},
    )
    with (
        pytest.raises(SchemaError, match="Largest nodule must be a number"),
        translation.override("en"),
    ):
        content_check(made.fields, {"findings": "x", "nodule_size": "six"}, complete=True)
    assert (
        content_check(made.fields, {"findings": "x", "nodule_size": " 6.5 "}, complete=True)[
            "nodule_size"
        ]
        == "6.5"
    )


@pytest.mark.parametrize(
    ("field", "sentence"),
    [
        (
            {
                "key": "x",
                "label": "X",
                "kind": "choice",
                "choices": [{"value": "a"}],
                "default": "b",
            },
            "The default of x must be one of its choices.",
        ),
        (
            {"key": "x", "label": "X", "kind": "measurement", "default": "ten"},
            "The default of x must be a number, such as 12.5.",
        ),
        (
            {"key": "x", "label": "X", "kind": "measurement", "unit": "u" * 17},
            "The unit of x is at most 16 characters.",
        ),
        ({"key": "x", "label": "X", "kind": "table"}, "Unknown field kind 'table'."),
    ],
)
def test_the_service_refuses_bad_fields_in_a_sentence(desk, field, sentence):
    with translation.override("en"), pytest.raises(services.ReportError) as bad:
        services.template_version_add(
            scope=_ada(desk), template_id=desk.ct_chest.pk, fields={"fields": [field]}
        )
    assert str(bad.value) == sentence
    assert ReportTemplate.objects.filter(code="ct-chest").count() == 1


# --- The editor's rows ------------------------------------------------------------------------


def _post(rows: list[dict[str, Any]], prefix: str = "f") -> dict[str, str]:
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(rows)),
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "40",
    }
    for n, row in enumerate(rows):
        for name, value in row.items():
            if value is True:
                value = "on"
            if value is False:
                continue
            data[f"{prefix}-{n}-{name}"] = str(value)
    return data


def _row(**extra: Any) -> dict[str, Any]:
    return {"label": "所见", "label_en": "Findings", "kind": "text", **extra}


def test_rows_round_trip_a_starter_template_exactly(desk):
    rows = rows_from_fields(desk.ct_chest.fields)
    for row in rows:
        row["required"] = row["required"] or False
    formset = FieldRowFormSet(_post(rows), prefix="f")
    assert formset.is_valid(), formset.errors
    assert fields_from_rows(formset.rows()) == desk.ct_chest.fields


def test_rows_are_ordered_removed_and_keyed_as_the_editor_says():
    formset = FieldRowFormSet(
        _post(
            [
                _row(ORDER=2),
                _row(label="印象", label_en="Impression", ORDER=1, required=True),
                _row(label="删去", label_en="Gone", ORDER=3, DELETE=True),
                _row(label="结节", label_en="Nodule size", kind="measurement", unit="mm", ORDER=4),
                _row(
                    label="分级",
                    label_en="",
                    kind="choice",
                    choices="1 | 一级 | Grade 1\n2",
                    ORDER=5,
                ),
            ]
        ),
        prefix="f",
    )
    assert formset.is_valid(), formset.errors
    fields = fields_from_rows(formset.rows())["fields"]
    assert [f["key"] for f in fields] == ["impression", "findings", "nodule_size", "field_4"]
    assert fields[0]["required"]
    assert not fields[1]["required"]
    assert fields[2]["unit"] == "mm"
    assert fields[3]["choices"] == [
        {"value": "1", "label": "一级", "label_en": "Grade 1"},
        {"value": "2", "label": "2", "label_en": ""},
    ]


@pytest.mark.parametrize(
    ("rows", "where", "sentence"),
    [
        ([_row(kind="choice")], "choices", "A choice field needs at least one option."),
        ([_row(kind="choice", choices="a\na")], "choices", "Two options have the same value."),
        (
            [_row(kind="choice", choices="a\nb", default="c")],
            "default",
            "The default must be the value of one option.",
        ),
        (
            [_row(kind="measurement", default="ten")],
            "default",
            "The default must be a number, such as 12.5.",
        ),
        (
            [_row(key="Bad Key")],
            "key",
            "A key is lower-case letters, digits and _, starting with a letter.",
        ),
        ([_row(label="")], "label", "This field is required."),
        (
            [_row(key="findings"), _row(key="findings")],
            None,
            "Fields 1 and 2 have the same key findings; change one of them.",
        ),
        ([_row(DELETE=True)], None, "A template needs at least one field."),
    ],
)
def test_the_editor_says_what_is_wrong(rows, where, sentence):
    with translation.override("en"):
        formset = FieldRowFormSet(_post(rows), prefix="f")
        assert not formset.is_valid()
        if where is None:
            assert formset.non_form_errors() == [sentence]
        else:
            assert formset.forms[0].errors[where] == [sentence]


# --- The diff ---------------------------------------------------------------------------------


def test_the_diff_names_each_change(desk):
    v1 = desk.ct_chest
    fields = [dict(f) for f in v1.fields["fields"]]
    findings, lung, impression, _recommendation = fields
    findings["label_en"] = "Findings (CT)"
    impression["required"] = False
    lung["choices"] = lung["choices"][:2]
    new_fields = [impression, findings, lung, NODULE]  # recommendation removed; moved; added
    v2 = services.template_version_add(
        scope=_ada(desk),
        template_id=v1.pk,
        fields={"fields": new_fields},
        name_en="CT of the chest",
    )
    with translation.override("en"):
        changes = {(c.field, c.what): (c.before, c.after) for c in template_diff(v1, v2)}
    assert changes[("Template", "English name")] == ("CT chest", "CT of the chest")
    assert changes[("Findings (CT)", "English label")] == ("Findings", "Findings (CT)")
    assert changes[("Impression", "Required")] == ("yes", "no")
    assert changes[("Recommendation", "Removed")][1] == ""
    assert changes[("Largest nodule", "Added")] == ("", "Measurement · mm")
    assert "4A" in changes[("Lung-RADS category", "Options")][0]
    assert "4A" not in changes[("Lung-RADS category", "Options")][1]
    assert changes[("Impression", "Position")] == ("3", "1")
    assert template_diff(v2, v2) == []


# --- Pages ------------------------------------------------------------------------------------


def web(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def _edit_post(template: ReportTemplate, base_version: int, **changes: Any) -> dict[str, str]:
    rows = rows_from_fields(template.fields)
    data = _post(rows)
    data["f-INITIAL_FORMS"] = str(len(rows))
    data.update(
        {
            "base_version": str(base_version),
            "name": template.name,
            "name_en": template.name_en,
            "modality": template.modality,
            "body_part": template.body_part,
        }
    )
    data.update({k: str(v) for k, v in changes.items()})
    return data


def test_the_pages_walk_an_edit_from_the_list_to_the_diff(desk):
    client = web(desk.ada)
    listing = client.get(reverse("console-templates"))
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "CT chest" in page
    assert "US abdomen" in page
    edit_url = reverse("console-template-edit", args=[desk.ct_chest.pk])
    assert client.get(edit_url).status_code == 200

    answer = client.post(
        edit_url, _edit_post(desk.ct_chest, 1, **{"f-3-label_en": "Advice", "name_en": "Chest CT"})
    )
    assert answer.status_code == 302
    v2 = ReportTemplate.objects.get(code="ct-chest", version=2)
    assert answer["Location"] == reverse("console-template-history", args=[v2.pk])
    assert v2.name_en == "Chest CT"
    assert v2.fields["fields"][3]["label_en"] == "Advice"
    history = client.get(answer["Location"]).content.decode()
    assert 'data-version="2"' in history
    assert 'data-version="1"' in history
    assert "Ada" in history

    diff = client.get(reverse("console-template-diff", args=[v2.pk])).content.decode()
    assert "What changed from version 1 to version 2" in diff
    assert "Recommendation" in diff
    assert "Advice" in diff

    old = client.get(reverse("console-template", args=[desk.ct_chest.pk])).content.decode()
    assert 'id="read-only-note"' in old

    # The same form again (still saying "version 1") is refused: someone saved version 2.
    stale = client.post(edit_url, _edit_post(desk.ct_chest, 1))
    assert stale.status_code == 409
    assert "Someone saved version 2" in stale.content.decode()

    # Retire from the history page, then reactivate.
    status_url = reverse("console-template-status", args=[v2.pk])
    assert client.post(status_url, {"active": "0"}).status_code == 302
    assert not ReportTemplate.objects.filter(code="ct-chest", active=True).exists()
    listed = client.get(reverse("console-templates")).content.decode()
    assert re.search(r'data-code="ct-chest".*?Retired', listed, re.S)
    client.post(status_url, {"active": "1"})
    assert ReportTemplate.objects.get(code="ct-chest", active=True).version == 2


def test_a_bad_edit_comes_back_with_sentences_and_saves_nothing(desk):
    client = web(desk.ada)
    data = _edit_post(desk.ct_chest, 1, **{"f-1-choices": "", "modality": "C T"})
    answer = client.post(reverse("console-template-edit", args=[desk.ct_chest.pk]), data)
    assert answer.status_code == 400
    page = answer.content.decode()
    assert "A choice field needs at least one option." in page
    assert "A modality is a DICOM code such as CT, MR or US." in page
    assert ReportTemplate.objects.filter(code="ct-chest").count() == 1


def test_create_from_the_page(desk):
    client = web(desk.ada)
    data = _post([_row(required=True, ORDER=1), _row(label="印象", label_en="Impression", ORDER=2)])
    data.update(
        {
            "code": "ct-neck",
            "alliance": str(desk.world.north.pk),
            "name": "颈部 CT",
            "name_en": "CT neck",
            "modality": "ct",
            "body_part": "neck",
        }
    )
    answer = client.post(reverse("console-template-create"), data)
    assert answer.status_code == 302, answer.content.decode()[:3000]
    made = ReportTemplate.objects.get(code="ct-neck")
    assert (made.modality, made.body_part, made.version) == ("CT", "NECK", 1)
    assert [f["key"] for f in made.fields["fields"]] == ["findings", "impression"]
    again = client.post(reverse("console-template-create"), data)
    assert again.status_code == 409
    assert "A template with this code exists" in again.content.decode()
    # Another alliance is not a choice.
    data.update({"code": "ct-other", "alliance": str(desk.world.south.pk)})
    assert client.post(reverse("console-template-create"), data).status_code == 400
    assert not ReportTemplate.objects.filter(code="ct-other").exists()


def test_only_alliance_administrators_open_the_editor(desk):
    for user in (desk.world.rita, desk.world.adam, desk.world.carl):
        assert web(user).get(reverse("console-templates")).status_code == 403
        assert (
            web(user)
            .post(reverse("console-template-status", args=[desk.ct_chest.pk]), {"active": "0"})
            .status_code
            == 403
        )
    assert ReportTemplate.objects.get(code="ct-chest").active


def test_the_list_counts_reports_over_all_versions(desk):
    services.report_create(
        scope=desk.rita(), referral_id=desk.chest.pk, template_id=desk.ct_chest.pk
    )
    services.template_version_add(
        scope=_ada(desk), template_id=desk.ct_chest.pk, fields=desk.ct_chest.fields
    )
    chest = next(s for s in template_summaries(_ada(desk)) if s.newest.code == "ct-chest")
    assert (chest.newest.version, chest.in_use, chest.reports) == (2, True, 1)
    assert Report.objects.get().template_version == 1


def test_a_version_never_changes_in_place(desk):
    from django.db import IntegrityError, transaction

    from .factories import UserFactory

    # The database keeps (alliance, code, version) unique and one version in use per code.
    with pytest.raises(IntegrityError), transaction.atomic():
        ReportTemplate.objects.create(
            alliance=desk.world.north, code="ct-chest", version=1, modality="CT", name="dup"
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        ReportTemplate.objects.create(
            alliance=desk.world.north, code="ct-chest", version=2, modality="CT", name="also on"
        )
    # The Django admin shows templates but does not change them (the console makes versions).
    root = Client()
    root.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    page = f"/admin/reporting/reporttemplate/{desk.ct_chest.pk}/change/"
    assert root.get(page).status_code == 200
    assert root.post(page, {"name": "changed", "fields": "{}"}).status_code == 403
    desk.ct_chest.refresh_from_db()
    assert desk.ct_chest.name == "胸部 CT"
