"""Who hears about a report: the clinic when it is signed final or gets an addendum, the
reading institution's seniors when a junior's preliminary report waits for its second read.

Live events go out after the signing transaction commits (tenants.live.publish), to the
source site's group (its referral pages) and the reading site's. The referral's own
"referral" event (referrals.workflow.notify.broadcast, sent by referral_reported) makes the clinic's
referral page redraw; this "report" event is for API clients and the report panel. In-app
notifications (tenants.services.notification_send) are stored with the step and pushed to
each person's open pages after commit, in that person's language.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from referrals.workflow import notify
from tenants import messages
from tenants.live import institution_group, publish
from tenants.models import Membership, User
from tenants.roles import CLINIC_ROLES, FINAL_SIGN_ROLES
from tenants.services import notification_send

from .models import Addendum, Report

MAX_BODY = 500


def report_payload(report: Report) -> dict[str, Any]:
    """No patient identity and no content: listeners fetch the report through the API."""
    return {
        "id": report.pk,
        "referral": report.referral_id,
        "status": report.status,
        "signed_at": report.signed_at.isoformat() if report.signed_at else None,
        "sha256": report.content_sha256,
    }


def report_announce(report: Report) -> None:
    payload = report_payload(report)
    publish(institution_group(report.referral.source_id), "report", payload)
    if report.institution_id != report.referral.source_id:
        publish(institution_group(report.institution_id), "report", payload)


def _members(institution_id: int, roles: frozenset[str]) -> list[User]:
    ids = (
        Membership.objects.active()
        .filter(institution_id=institution_id, role__in=roles)
        .values("user_id")
    )
    return list(User.objects.filter(pk__in=ids, is_active=True).order_by("pk"))


def second_readers(report: Report) -> list[User]:
    """Everyone who may give this report its second read: the reading institution's seniors
    other than its author."""
    return [
        u for u in _members(report.institution_id, FINAL_SIGN_ROLES) if u.pk != report.author_id
    ]


def second_read_request(report: Report) -> None:
    """A junior signed preliminary: each senior of the reading institution is told, with a
    link to the report (a report sent back and signed again is a new request)."""
    referral = report.referral
    link = reverse("report-edit", args=[referral.pk])
    study = report.study
    params = {
        "author": messages.person(report.author),
        "study": f"{study.modalities} {study.body_parts}".strip(),  # DICOM codes
        "site": messages.institution_name(referral.source),
    }
    for user in second_readers(report):
        notification_send(
            user=user,
            kind="report.second_read",
            code="report.second_read",
            params=params,
            link=link,
            institution=report.institution,
            dedup_key=f"second-read-{report.pk}-v{report.version}",
        )


def clinic_staff(report: Report) -> list[User]:
    """The requesting site's clinic users: they follow the site's requests and results."""
    return _members(report.referral.source_id, CLINIC_ROLES)


def addendum_announce(addendum: Addendum) -> None:
    """The clinic is told of an addendum to its report, and its open pages redraw."""
    report = addendum.report
    text = addendum.text
    notify.notify(
        clinic_staff(report),
        report.referral,
        kind="report.addendum",
        code="report.addendum",
        params={"text": text if len(text) <= MAX_BODY else text[: MAX_BODY - 1] + "…"},
        dedup=f"addendum-{addendum.pk}",
    )
    report_announce(report)
    notify.broadcast(report.referral)
