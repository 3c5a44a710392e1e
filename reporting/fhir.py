"""A signed report as a FHIR R4 DiagnosticReport (with its ImagingStudy contained).

For hospital systems: status is preliminary, final, or amended once an addendum exists
(the addenda's text is in `conclusion` and in the plain-text presentedForm); `issued` is
the signature time; the PDF is linked from presentedForm. `resultsInterpreter` names the
final signer first and, after a second read, the junior who signed it preliminary. The
ImagingStudy carries the Study Instance UID as urn:oid (FHIR R4 ImagingStudy.identifier,
DICOM's own system).
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from referrals.archive.person_names import dicom_person_name

from .models import Report, ReportStatus
from .pdf import report_fields

FHIR_JSON = "application/fhir+json"
LOINC = "http://loinc.org"
# LOINC 18748-4 "Diagnostic imaging study" is the document type of every imaging report;
# the template's own code narrows it in a local coding beside it.
LOINC_IMAGING_REPORT = ("18748-4", "Diagnostic imaging study")
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
IDENTIFIER_SYSTEM = "urn:ietf:rfc:3986"


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if moment else None


def fhir_status(report: Report) -> str:
    if report.status == ReportStatus.FINAL:
        return "amended" if report.addenda.exists() else "final"
    return "preliminary"


def _person(user: Any, system: str) -> dict[str, Any]:
    return {
        "type": "Practitioner",
        "display": user.name or user.get_full_name() or user.username,
        "identifier": {"system": system, "value": user.username},
    }


def report_text(report: Report) -> str:
    """The report as plain text: the fields, then the free text, then each addendum."""
    lines = []
    for row in report_fields(report):
        label = row["label"] + (f" / {row['label_en']}" if row["label_en"] else "")
        lines.append(f"{label}: {row['value']}")
    if report.free_text:
        lines.append(report.free_text)
    for number, addendum in enumerate(report.addenda.all(), start=1):
        lines.append(f"Addendum {number} ({_iso(addendum.signed_at)}): {addendum.text}")
    return "\n".join(lines)


def _conclusion(report: Report) -> str:
    content = report.content
    text = str(
        content.get("impression") or content.get("conclusion") or content.get("findings") or ""
    )
    for number, addendum in enumerate(report.addenda.all(), start=1):
        text += f"\n\nAddendum {number} ({_iso(addendum.signed_at)}): {addendum.text}"
    return text.strip()


def diagnostic_report(report: Report, *, base_url: str, pdf_url: str) -> dict[str, Any]:
    """The FHIR R4 DiagnosticReport JSON of a signed (preliminary or final) report."""
    study = report.study
    site = report.referral.source
    reader = report.institution
    patient = {
        "type": "Patient",
        "identifier": {
            "system": f"{base_url}/institutions/{site.code}/patient-id",
            "value": study.pid or study.patient_key,
        },
        # The name as people read it (both forms, the reader's first), not the raw PN.
        "display": dicom_person_name(study.patient_name) or None,
    }
    patient = {k: v for k, v in patient.items() if v}
    imaging_study = {
        "resourceType": "ImagingStudy",
        "id": "study",
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": f"urn:oid:{study.study_uid}"}]
        + (
            [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                "code": "ACSN",
                            }
                        ]
                    },
                    "value": study.accession_number,
                }
            ]
            if study.accession_number
            else []
        ),
        "status": "available",
        "subject": patient,
        "modality": [{"system": DICOM_DCM, "code": m} for m in study.modalities.split("\\") if m],
        "numberOfSeries": study.num_series,
        "numberOfInstances": study.num_instances,
    }
    if study.description:
        imaging_study["description"] = study.description
    organisation = {
        "type": "Organization",
        "display": reader.name,
        "identifier": {"system": f"{base_url}/institutions", "value": reader.code},
    }
    signer = report.signed_by or report.preliminary_by or report.author
    issued = report.signed_at or report.preliminary_at
    # A second-read report has two interpreters: the junior who wrote and signed it
    # preliminary, and the senior who co-signed it final (the one responsible for it).
    interpreters = [signer]
    if report.preliminary_by is not None and report.preliminary_by_id != signer.pk:
        interpreters.append(report.preliminary_by)
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": str(report.pk),
        "contained": [imaging_study],
        "identifier": [{"system": f"{base_url}/api/v1/reports", "value": str(report.pk)}],
        "status": fhir_status(report),
        "category": [{"coding": [{"system": V2_0074, "code": "RAD", "display": "Radiology"}]}],
        "code": {
            "coding": [
                {
                    "system": LOINC,
                    "code": LOINC_IMAGING_REPORT[0],
                    "display": LOINC_IMAGING_REPORT[1],
                },
                {
                    "system": f"{base_url}/report-templates",
                    "code": report.template.code,
                    "display": report.template.name_en or report.template.name,
                },
            ],
            "text": report.template.name,
        },
        "subject": patient,
        "issued": _iso(issued),
        "performer": [_person(signer, f"{base_url}/users"), organisation],
        "resultsInterpreter": [_person(u, f"{base_url}/users") for u in interpreters],
        "imagingStudy": [{"reference": "#study"}],
        "conclusion": _conclusion(report),
        "presentedForm": [
            {
                "contentType": "text/plain; charset=utf-8",
                "language": "zh-CN",
                "data": base64.b64encode(report_text(report).encode()).decode(),
                "title": "Report text with addenda",
                "creation": _iso(issued),
            },
        ],
    }
    if report.status == ReportStatus.FINAL:
        resource["presentedForm"].insert(
            0,
            {
                "contentType": "application/pdf",
                "url": pdf_url,
                "title": f"{reader.name} report {report.pk}",
                "creation": _iso(report.signed_at),
            },
        )
    if study.study_date:
        resource["effectiveDateTime"] = study.study_date.isoformat()
    return resource
