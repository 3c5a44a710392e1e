"""The FHIR R4 DiagnosticReport: valid by the FHIR structure, final → amended with addenda."""

from __future__ import annotations

import base64

import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy

from reporting import services

from .conftest import api_client_for
from .ingest_support import media  # noqa: F401
from .share_support import signed_report

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed(world, media, django_capture_on_commit_callbacks):  # noqa: F811
    return signed_report(world, django_capture_on_commit_callbacks)


def _fhir(client, pk):
    answer = client.get(f"/api/v1/reports/{pk}/fhir/")
    assert answer.status_code == 200, answer.content[:300]
    assert answer["Content-Type"].startswith("application/fhir+json")
    return answer.json()


def test_final_report_is_a_valid_diagnostic_report(signed):
    data = _fhir(api_client_for(signed.desk.world.alice), signed.report.pk)
    resource = DiagnosticReport.model_validate(data)  # FHIR structure (R4B = R4 here)
    assert resource.status == "final"
    assert resource.issued is not None
    assert resource.conclusion == "良性表现。"
    assert {c.code for c in resource.code.coding} >= {"18748-4", "ct-chest"}
    study = ImagingStudy.model_validate(data["contained"][0])
    assert study.identifier[0].value == f"urn:oid:{signed.study.study_uid}"
    assert data["imagingStudy"] == [{"reference": "#study"}]
    assert [p["display"] for p in data["performer"]] == ["山姆", "北城中心医院"]
    pdf = data["presentedForm"][0]
    assert pdf["contentType"] == "application/pdf"
    assert pdf["url"].endswith(f"/api/v1/reports/{signed.report.pk}/pdf/")


def test_addendum_makes_it_amended_and_shows(signed):
    services.addendum_add(
        scope=signed.desk.sam(), report_id=signed.report.pk, text="补充 另见左下肺 3 mm 结节。"
    )
    data = _fhir(api_client_for(signed.desk.reading.sam), signed.report.pk)
    resource = DiagnosticReport.model_validate(data)
    assert resource.status == "amended"
    assert resource.conclusion.startswith("良性表现。")
    assert "补充 另见左下肺 3 mm 结节。" in resource.conclusion
    text = base64.b64decode(data["presentedForm"][1]["data"]).decode()
    assert text.index("良性表现") < text.index("补充 另见左下肺")


def test_preliminary_is_preliminary_and_a_draft_is_refused(signed):
    desk = signed.desk
    draft = services.report_create(
        scope=desk.sam(), referral_id=desk.mr.pk, template_id=desk.mr_knee.pk
    )
    sam = api_client_for(desk.reading.sam)
    refused = sam.get(f"/api/v1/reports/{draft.pk}/fhir/")
    assert refused.status_code == 409
    draft = services.report_autosave(
        scope=desk.sam(),
        report_id=draft.pk,
        version=draft.version,
        content={"findings": "f", "impression": "i"},
    )
    services.report_sign(
        scope=desk.sam(), report_id=draft.pk, kind="preliminary", version=draft.version
    )
    data = _fhir(sam, draft.pk)
    assert DiagnosticReport.model_validate(data).status == "preliminary"
    assert all(form["contentType"] != "application/pdf" for form in data["presentedForm"])
