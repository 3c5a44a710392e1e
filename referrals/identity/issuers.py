"""The issuer of patient IDs of each site and gateway, and the ingest's coercion to it.

Grassroots modalities rarely send IssuerOfPatientID. An ID without issuer is indexed under
the issuer configured for the gateway that sent it, else for its institution, else (nothing
configured) under the site alone (patient_key.py). The stored DICOM object keeps its bytes:
only the index and the instance's DICOM JSON metadata carry the coerced issuer, so what the
scanner sent can always be read back, and QIDO/WADO metadata agree with the index.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from referrals.models import PatientIdDomain
from tenants.access import Scope
from tenants.audit import AuditCode, AuditObject, audit_record
from tenants.errors import ApplicationError
from tenants.models import GatewayCredential

ISSUER_TAG = "00100021"


class IssuerError(ApplicationError):
    """A value the issuer setting cannot take (its message is for the person)."""


def patient_id_issuer(*, institution_id: int, gateway_id: int | None = None) -> str:
    """The issuer an ID without one is indexed under ("" when nothing is configured)."""
    rows: dict[int | None, str] = dict(
        PatientIdDomain.objects.filter(institution_id=institution_id)
        .filter(Q(gateway__isnull=True) | Q(gateway_id=gateway_id))
        .values_list("gateway_id", "issuer")
    )
    if gateway_id is not None and rows.get(gateway_id):
        return str(rows[gateway_id])
    return str(rows.get(None, ""))


def issuer_metadata_coerce(metadata: dict[str, Any], issuer: str) -> None:
    """Write the coerced issuer into an instance's DICOM JSON when it names none."""
    if not issuer:
        return
    current = metadata.get(ISSUER_TAG)
    if isinstance(current, dict) and any(current.get("Value") or []):
        return
    metadata[ISSUER_TAG] = {"vr": "LO", "Value": [issuer]}


def issuer_metadata_coerced(metadata: dict[str, Any], ds: Any, study: Any) -> dict[str, Any]:
    """The instance's DICOM JSON, carrying its patient's issuer when the data set sent none
    (the study's patient row holds the issuer the index filed it under)."""
    if str(ds.get("IssuerOfPatientID", "") or "").strip():
        return metadata
    issuer_metadata_coerce(metadata, study.patient.issuer)
    return metadata


def _issuer_clean(issuer: str) -> str:
    from django.utils.translation import gettext as _

    value = issuer.strip()
    if len(value) > 64:
        raise IssuerError(_("An issuer has at most 64 characters."), code="too_long")
    if "\\" in value or any(ord(c) < 32 for c in value):
        raise IssuerError(
            _("An issuer may not hold a backslash or control characters."), code="bad_issuer"
        )
    return value


def patient_id_issuer_set(
    *,
    scope: Scope,
    issuer: str,
    gateway: GatewayCredential | None = None,
    request: Any = None,
) -> PatientIdDomain | None:
    """Set (or, with an empty value, clear) the issuer of the scope's institution or of one
    of its gateways. Takes effect for instances received from now on."""
    assert scope.institution is not None
    value = _issuer_clean(issuer)
    gateway_id = gateway.pk if gateway is not None else None
    if gateway is not None and gateway.institution_id != scope.institution.pk:
        raise IssuerError("gateway of another institution", code="not_found")
    with transaction.atomic():
        rows = PatientIdDomain.objects.filter(institution=scope.institution, gateway_id=gateway_id)
        if not value:
            rows.delete()
            row = None
        else:
            row, _created = PatientIdDomain.objects.update_or_create(
                institution=scope.institution,
                gateway_id=gateway_id,
                defaults={"issuer": value, "updated_by": scope.user, "updated_at": timezone.now()},
            )
        audit_record(
            event=AuditCode.PATIENT_ID_ISSUER_SET,
            action="U",
            scope=scope,
            request=request,
            object_type=AuditObject.PATIENT_ID_ISSUER,
            object_id=gateway_id or scope.institution.pk,
            detail={"issuer": value, "gateway": gateway_id},
        )
    return row
