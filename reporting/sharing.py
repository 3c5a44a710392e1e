"""Patient share links ("filmless"): create, revoke, open, and the scope a link gives.

A link is a capability: whoever holds the token sees one final report (its addenda, key
images and study) and nothing else. Only the token's SHA-256 is stored. The viewer's image
URLs carry a signed, short-lived grant naming the link and the study; each image request
checks the signature, the link (still live) and that the image belongs to that study.
One live link also opens the list of the same patient's other live links in its alliance.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from referrals.models import Instance, LinkMethod, LinkStatus, Patient, PatientLink, Series
from tenants.access import Scope, visible
from tenants.audit import AuditCode, audit_record, client_address
from tenants.models import AuditEvent, User
from tenants.roles import SHARE_ROLES

from .models import Report, ReportStatus, ShareLink, ShareLinkOpening
from .services import ReportConflictError, ReportError, ReportForbiddenError, ReportNotFoundError

MAX_DAYS = 3650
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
_VIEWER_SALT = "reporting.share-viewer"


class ShareLinkGoneError(Exception):
    """A real link that no longer opens (expired or revoked): 410 with the reason."""

    def __init__(self, reason: str, message: Any) -> None:
        super().__init__(str(message))
        self.reason = reason


class ShareLinkNotFoundError(Exception):
    """No link has this token (a typo, a tampered token): 404."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- Writes (the reading side or the source clinic) ----------------------------------------


def share_links_visible(scope: Scope) -> QuerySet[ShareLink]:
    """Links of reports the caller sees, made by either side of the referral."""
    if scope.institution is None:
        return ShareLink.objects.none()
    mine = visible(scope, Report).filter(
        Q(institution=scope.institution) | Q(referral__source=scope.institution)
    )
    return ShareLink.objects.filter(report__in=mine.values("pk"))


def _require_sharer(scope: Scope) -> User:
    if scope.user is None or not scope.has_any_role(*SHARE_ROLES):
        raise ReportForbiddenError(
            _("Your role cannot share reports with patients."), code="role_cannot_share"
        )
    return scope.user


def share_link_create(
    *, scope: Scope, report_id: Any, days: int | None = None
) -> tuple[ShareLink, str]:
    """A new link to a final report; returns it and the token (shown this once only)."""
    user = _require_sharer(scope)
    try:
        pk = int(report_id)
    except (TypeError, ValueError):
        raise ReportNotFoundError(_("No such report."), code="not_found") from None
    report = visible(scope, Report).filter(pk=pk).select_related("referral", "study").first()
    if report is None:
        raise ReportNotFoundError(_("No such report."), code="not_found")
    assert scope.institution is not None
    if scope.institution.pk not in (report.institution_id, report.referral.source_id):
        raise ReportForbiddenError(
            _("Only the reading institution or the sending clinic shares a report."),
            code="not_a_party",
        )
    if report.status != ReportStatus.FINAL:
        raise ReportConflictError(
            _("Only a final report can be shared with the patient."), code="not_final"
        )
    if not report.study.patient_key:
        raise ReportConflictError(
            _("This study has no patient identity to share it under."), code="no_patient"
        )
    days = settings.HUB_SHARE_LINK_DAYS if days is None else days
    if not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ReportError(
            _("A link lasts from 1 to %(max)s days.") % {"max": MAX_DAYS}, code="bad_days"
        )
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    link = ShareLink.objects.create(
        token_sha256=token_digest(token),
        report=report,
        alliance_id=report.referral.alliance_id,
        patient_key=report.study.patient_key,
        created_by=user,
        created_for=scope.institution,
        created_at=now,
        expires_at=now + dt.timedelta(days=days),
    )
    audit_record(
        event=AuditCode.EXPORT,
        scope=scope,
        patient_id=report.study.pid,
        study_uid=report.study.study_uid,
        object_type="share_link",
        object_id=link.pk,
        detail={"report": report.pk, "expires_at": link.expires_at.isoformat()},
    )
    return link, token


def share_link_revoke(*, scope: Scope, link_id: Any) -> ShareLink:
    """Stop a link at once (a second revoke changes nothing)."""
    user = _require_sharer(scope)
    try:
        pk = int(link_id)
    except (TypeError, ValueError):
        raise ReportNotFoundError(_("No such share link."), code="not_found") from None
    link = share_links_visible(scope).filter(pk=pk).first()
    if link is None:
        raise ReportNotFoundError(_("No such share link."), code="not_found")
    if ShareLink.objects.filter(pk=pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=user
    ):
        audit_record(
            event=AuditCode.PERMISSION_CHANGE,
            scope=scope,
            object_type="share_link",
            object_id=pk,
            detail={"revoked": True, "report": link.report_id},
        )
    link.refresh_from_db()
    return link


# --- The patient's side (no login: the token is the key) -----------------------------------


def share_link_resolve(token: str, *, now: dt.datetime | None = None) -> ShareLink:
    """The live link of a token, or ShareLinkNotFoundError / ShareLinkGoneError. Changes nothing."""
    if not isinstance(token, str) or not TOKEN_RE.match(token):
        raise ShareLinkNotFoundError
    link = (
        ShareLink.objects.filter(token_sha256=token_digest(token))
        .select_related("report__study", "report__institution")
        .first()
    )
    if link is None:
        raise ShareLinkNotFoundError
    if link.revoked_at is not None:
        raise ShareLinkGoneError("revoked", _("This link was withdrawn by the hospital."))
    if link.expires_at <= (now or timezone.now()):
        raise ShareLinkGoneError("expired", _("This link has expired."))
    return link


def share_link_opened(link: ShareLink, request: HttpRequest, *, page: str) -> None:
    """Record one opening: a row, the counter, and the audit trail."""
    now = timezone.now()
    with transaction.atomic():
        ShareLinkOpening.objects.create(
            link=link,
            at=now,
            source_address=client_address(request),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
        )
        ShareLink.objects.filter(pk=link.pk).update(
            open_count=F("open_count") + 1, last_opened_at=now
        )
        study = link.report.study
        audit_record(
            event=AuditCode.SHARE_LINK_OPENED,
            action=AuditEvent.Action.READ,
            institution=link.created_for,
            request=request,
            username="patient-link",
            patient_id=study.pid,
            study_uid=study.study_uid,
            object_type="share_link",
            object_id=link.pk,
            detail={"page": page, "report": link.report_id},
        )


def patient_links(link: ShareLink, *, now: dt.datetime | None = None) -> QuerySet[ShareLink]:
    """The same patient's live links in the link's alliance (this one included), newest first.

    "The same patient" for the patient's own file is stricter than for a reader's priors: the
    records of the link's patient (same issuer and ID: one own key) and those joined to them
    by a certain link (the same resident identity number, or a person's decision). A link made
    by similar demographics alone (measured at about 1 false link in 800) helps a reader, who
    judges the prior in front of them, but must never show a patient another person's report.
    """
    now = now or timezone.now()
    keys = _certainly_same_person_keys(link.report.study.patient)
    # Records written before own keys existed (or by SQL) carry their own key as patient_key.
    by_key = Q(report__study__patient__own_key__in=keys) | Q(
        report__study__patient__own_key="", report__study__patient__patient_key__in=keys
    )
    return (
        ShareLink.objects.filter(
            by_key,
            alliance_id=link.alliance_id,
            revoked_at__isnull=True,
            expires_at__gt=now,
        )
        .select_related("report__study", "report__institution", "report__signed_by")
        .order_by("-report__signed_at", "-pk")
    )


def _certainly_same_person_keys(patient: Patient) -> set[str]:
    """Own keys of the records joined to `patient` through certain links, `patient`'s own first."""
    certain = Q(status=LinkStatus.LINKED) & (
        Q(method__in=(LinkMethod.RESIDENT_ID, LinkMethod.MANUAL)) | Q(decided_by__isnull=False)
    )
    own = patient.own_key or patient.patient_key
    seen = set(Patient.objects.filter(own_key=own).values_list("pk", flat=True)) | {patient.pk}
    todo = list(seen)
    while todo and len(seen) < 200:  # one person's records: a handful, never the alliance
        pairs = PatientLink.objects.filter(
            certain, Q(patient_a_id__in=todo) | Q(patient_b_id__in=todo)
        ).values_list("patient_a_id", "patient_b_id")
        found = {pk for pair in pairs for pk in pair} - seen
        seen |= found
        todo = list(found)
    rows = Patient.objects.filter(pk__in=seen).values_list("own_key", "patient_key")
    return {own_key or patient_key for own_key, patient_key in rows} - {""}


# --- Signed image URLs of a shared study ---------------------------------------------------


def viewer_grant(link: ShareLink) -> str:
    """A signed, short-lived value naming the link and its study (part of image URLs)."""
    return signing.TimestampSigner(salt=_VIEWER_SALT).sign_object(
        {"l": link.pk, "s": link.report.study_id}
    )


def viewer_grant_check(grant: str) -> ShareLink:
    """The live link a grant was made for, or ShareLinkNotFoundError (bad, old, or dead link)."""
    try:
        value = signing.TimestampSigner(salt=_VIEWER_SALT).unsign_object(
            grant, max_age=settings.HUB_SHARE_VIEWER_MINUTES * 60
        )
    except (signing.BadSignature, ValueError, TypeError):
        raise ShareLinkNotFoundError from None
    if not isinstance(value, dict) or not isinstance(value.get("l"), int):
        raise ShareLinkNotFoundError
    link = (
        ShareLink.objects.filter(
            pk=value["l"], revoked_at__isnull=True, expires_at__gt=timezone.now()
        )
        .select_related("report__study")
        .first()
    )
    if link is None or link.report.study_id != value.get("s"):
        raise ShareLinkNotFoundError
    return link


def shared_series(link: ShareLink) -> QuerySet[Series]:
    """The series of the link's study (the link is the whole scope)."""
    return Series.objects.filter(study_id=link.report.study_id, rejected_at__isnull=True)


def shared_instances(link: ShareLink) -> QuerySet[Instance]:
    """The instances of the link's study, and only of it."""
    return Instance.objects.filter(study_id=link.report.study_id, rejected_at__isnull=True)


def shared_instance(link: ShareLink, *, series_uid: str, sop_uid: str) -> Instance:
    """An instance of the link's study, and only of it (the link is the whole scope)."""
    instance = (
        Instance.objects.filter(
            study_id=link.report.study_id,
            series__series_uid=series_uid,
            sop_uid=sop_uid,
            rejected_at__isnull=True,
        )
        .select_related("study", "series")
        .defer("metadata")
        .order_by("pk")
        .first()
    )
    if instance is None:
        raise ShareLinkNotFoundError
    return instance
