"""Critical findings: the reader flags one, the clinic must acknowledge it in time.

The ladder (each step a CriticalEvent, recorded once, with who was alerted and when):

    flagged ─ the referring clinic is alerted (in-app, live, and e-mail)
            ─ the alliance's critical_ack_minutes without acknowledgement → the clinic's
              lead (hospital administrators of the source site)
            ─ critical_lead_minutes more → the alliance's duty officer
              (AlliancePolicy.duty_officer; the alliance administrators if none is named)
    acknowledged (by the clinic, its lead or the duty officer) ─ the ladder stops.

Beat drives the timers (reporting.tasks.critical_findings_sweep): each due finding is
re-checked under its row lock, so overlapping ticks or a redelivered task escalate once.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from alliance.models import AllianceMember, AlliancePolicy
from referrals.models import Referral
from referrals.workflow import notify
from tenants.access import Scope, visible
from tenants.live import institution_group, publish
from tenants.models import Membership, Role, User
from tenants.roles import CRITICAL_ACK_ROLES, READER_ROLES

from .models import CriticalEvent, CriticalFinding, CriticalLevel, Report
from .services import ReportConflictError, ReportError, ReportForbiddenError
from .services import ReportNotFoundError as NotFound

logger = logging.getLogger(__name__)

MAX_TEXT = 2000


def _policy(alliance_id: int) -> AlliancePolicy:
    policy, _created = AlliancePolicy.objects.get_or_create(alliance_id=alliance_id)
    return policy


def ack_minutes(alliance_id: int) -> int:
    """The alliance's limit for the clinic to acknowledge (AlliancePolicy)."""
    return max(1, _policy(alliance_id).critical_ack_minutes)


def lead_minutes(alliance_id: int) -> int:
    return max(1, _policy(alliance_id).critical_lead_minutes)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise NotFound(_("Not found."), code="not_found") from None


# --- Who hears ------------------------------------------------------------------------------


def clinic_leads(referral: Referral) -> list[User]:
    """The source site's lead: its hospital administrators."""
    ids = (
        Membership.objects.active()
        .filter(institution_id=referral.source_id, role=Role.HOSPITAL_ADMIN)
        .values("user_id")
    )
    return list(User.objects.filter(pk__in=ids, is_active=True).order_by("pk"))


def duty_officers(referral: Referral) -> list[User]:
    """The alliance's duty officer; its administrators when the policy names none."""
    policy = AlliancePolicy.objects.filter(alliance_id=referral.alliance_id).first()
    officer = policy.duty_officer if policy is not None else None
    if officer is not None and officer.is_active:
        return [officer]
    members = AllianceMember.objects.filter(alliance_id=referral.alliance_id).values(
        "institution_id"
    )
    ids = (
        Membership.objects.active()
        .filter(institution_id__in=members, role=Role.ALLIANCE_ADMIN)
        .values("user_id")
    )
    return list(User.objects.filter(pk__in=ids, is_active=True).order_by("pk"))


def may_acknowledge(scope: Scope, finding: CriticalFinding) -> bool:
    """The clinic (its staff or lead, acting for the source site) or the duty officer."""
    user = scope.user
    if user is None or scope.institution is None:
        return False
    if scope.institution.pk == finding.referral.source_id and scope.has_any_role(
        *CRITICAL_ACK_ROLES
    ):
        return True
    return finding.level == CriticalLevel.DUTY_OFFICER and user.pk in {
        u.pk for u in duty_officers(finding.referral)
    }


def _alert(users: list[User], finding: CriticalFinding, *, step: str) -> list[int]:
    """Tell `users` of the finding, at rung `step` (clinic, lead, duty: reporting/messages.py)."""
    referral = finding.referral
    notify.notify(
        users,
        referral,
        kind="report.critical",
        code=f"report.critical.{step}",
        params={"text": finding.text},
        dedup=f"critical-{finding.pk}-{step}",
        email=True,
    )
    return sorted({u.pk for u in users})


def _announce(finding: CriticalFinding) -> None:
    """Open pages of the referral redraw (the clinic's page shows the alert panel)."""
    payload = finding_payload(finding)
    publish(institution_group(finding.referral.source_id), "critical", payload)
    if finding.referral.target_id:
        publish(institution_group(finding.referral.target_id), "critical", payload)
    notify.broadcast(finding.referral)


def finding_payload(finding: CriticalFinding) -> dict[str, Any]:
    return {
        "id": finding.pk,
        "referral": finding.referral_id,
        "level": finding.level,
        "acknowledged": finding.acknowledged_at is not None,
        "due_at": finding.due_at.isoformat() if finding.due_at else None,
    }


# --- Flag ------------------------------------------------------------------------------------


def critical_flag(
    *, scope: Scope, referral_id: Any, text: Any, now: dt.datetime | None = None
) -> CriticalFinding:
    """The reader of a case flags a critical result; the clinic is alerted at once."""
    user = scope.user
    if user is None or not scope.has_any_role(*READER_ROLES):
        raise ReportForbiddenError(_("Only the case's radiologist flags a critical finding."))
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise ReportError(_("Say what is critical (at most 2,000 characters)."), code="bad_text")
    referral = visible(scope, Referral).filter(pk=_int(referral_id)).first()
    if referral is None:
        raise NotFound(_("No such referral."), code="not_found")
    report = Report.objects.filter(referral=referral).first()
    is_reader = referral.claimed_by_id == user.pk or (
        report is not None and user.pk in {report.author_id, report.signed_by_id}
    )
    if referral.target_id != getattr(scope.institution, "pk", None) or not is_reader:
        raise ReportForbiddenError(
            _("Only the case's radiologist flags a critical finding."), code="not_reader"
        )
    now = now or timezone.now()
    minutes = ack_minutes(referral.alliance_id)
    with transaction.atomic():
        finding = CriticalFinding.objects.create(
            referral=referral,
            report=report,
            text=text.strip(),
            flagged_by=user,
            flagged_at=now,
            ack_minutes=minutes,
            level=CriticalLevel.CLINIC,
            due_at=now + dt.timedelta(minutes=minutes),
        )
        alerted = _alert(
            notify.clinic_recipients(referral),
            finding,
            step="clinic",
        )
        CriticalEvent.objects.create(
            finding=finding,
            action=CriticalEvent.Action.FLAGGED,
            at=now,
            actor=user,
            notified=alerted,
        )
        _announce(finding)
    return finding


# --- Acknowledge ----------------------------------------------------------------------------


def critical_acknowledge(
    *, scope: Scope, finding_id: Any, note: Any = "", now: dt.datetime | None = None
) -> CriticalFinding:
    """Someone at the clinic (or the duty officer) confirms they have it; the ladder stops."""
    if note is None:
        note = ""
    if not isinstance(note, str) or len(note) > 500:
        raise ReportError(_("The note is at most 500 characters."), code="bad_note")
    pk = _int(finding_id)
    seen = visible(scope, CriticalFinding).filter(pk=pk).exists()
    now = now or timezone.now()
    with transaction.atomic():
        finding = (
            CriticalFinding.objects.select_for_update(of=("self",))
            .select_related("referral")
            .filter(pk=pk)
            .first()
        )
        if finding is None or not (seen or _is_duty_officer(scope, finding)):
            raise NotFound(_("No such critical finding."), code="not_found")
        if not may_acknowledge(scope, finding):
            raise ReportForbiddenError(
                _(
                    "Only the referring clinic (or the duty officer) acknowledges a critical "
                    "finding."
                ),
                code="cannot_acknowledge",
            )
        if finding.acknowledged_at is not None:
            raise ReportConflictError(
                _("This critical finding was already acknowledged."), code="already_acknowledged"
            )
        finding.acknowledged_at, finding.acknowledged_by = now, scope.user
        finding.ack_note, finding.due_at = note.strip(), None
        finding.save(update_fields=["acknowledged_at", "acknowledged_by", "ack_note", "due_at"])
        CriticalEvent.objects.create(
            finding=finding, action=CriticalEvent.Action.ACKNOWLEDGED, at=now, actor=scope.user
        )
        _announce(finding)
    return finding


def _is_duty_officer(scope: Scope, finding: CriticalFinding) -> bool:
    return (
        scope.user is not None
        and finding.level == CriticalLevel.DUTY_OFFICER
        and scope.user.pk in {u.pk for u in duty_officers(finding.referral)}
    )


# --- The ladder (beat) -----------------------------------------------------------------------


def critical_escalate(finding_id: int, *, now: dt.datetime) -> bool:
    """One step up the ladder if it is due; re-checked under the row lock (idempotent)."""
    with transaction.atomic():
        finding = (
            CriticalFinding.objects.select_for_update(of=("self",))
            .select_related("referral")
            .filter(pk=finding_id)
            .first()
        )
        if (
            finding is None
            or finding.acknowledged_at is not None
            or finding.due_at is None
            or finding.due_at > now
            or finding.level >= CriticalLevel.DUTY_OFFICER
        ):
            return False
        leads = clinic_leads(finding.referral) if finding.level == CriticalLevel.CLINIC else []
        if leads:
            finding.level = CriticalLevel.CLINIC_LEAD
            finding.due_at = now + dt.timedelta(minutes=lead_minutes(finding.referral.alliance_id))
            action = CriticalEvent.Action.ESCALATED_LEAD
            alerted = _alert(
                leads,
                finding,
                step="lead",
            )
        else:  # no lead at the clinic: straight to the duty officer
            finding.level = CriticalLevel.DUTY_OFFICER
            finding.due_at = None
            action = CriticalEvent.Action.ESCALATED_DUTY
            officers = duty_officers(finding.referral)
            if not officers:
                logger.warning("critical finding %s: no duty officer to escalate to", finding.pk)
            alerted = _alert(
                officers,
                finding,
                step="duty",
            )
        finding.save(update_fields=["level", "due_at"])
        CriticalEvent.objects.create(finding=finding, action=action, at=now, notified=alerted)
        _announce(finding)
    return True


def critical_findings_sweep(*, now: dt.datetime | None = None, limit: int = 500) -> dict[str, int]:
    """One beat tick: every unacknowledged finding whose step is due climbs one rung."""
    now = now or timezone.now()
    due = (
        CriticalFinding.objects.filter(acknowledged_at__isnull=True, due_at__lte=now)
        .order_by("due_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    escalated = sum(critical_escalate(pk, now=now) for pk in list(due))
    return {"escalated": escalated}


# --- Reads -----------------------------------------------------------------------------------


def findings_for(scope: Scope, referral: Referral) -> list[CriticalFinding]:
    return list(
        visible(scope, CriticalFinding)
        .filter(referral=referral)
        .select_related("flagged_by", "acknowledged_by", "referral")
        .prefetch_related("events__actor")
    )
