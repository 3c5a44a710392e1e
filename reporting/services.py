"""Writes of the reporting side: templates, drafts, autosave, sign-off, second reads, addenda.

The life of a report (the state machine is reporting/workflow.py; every status change goes
through its `transition()`):

    draft ─sign preliminary (radiologist, the author)→ preliminary (waiting for a second read
        when the author is a junior)
    preliminary ─second read agree/minor (a senior, not the author)→ final
    preliminary ─second read major (a senior)→ draft (back to the author)
    waiting for a second read ─the senior corrects the text (audited)→ the same, a new version
    draft or own preliminary ─sign final (senior radiologist, the author)→ final
    final: never changes; an addendum is the only later word.

Each write locks the report row and checks its status under the lock, so signing twice
(two tabs, a double click) signs once and the second gets a 409.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from referrals.models import Referral, ReferralStatus
from referrals.workflow.services import (
    referral_claim_next,
    referral_open,
    referral_report_started,
    referral_reported,
)
from tenants.access import Scope, visible
from tenants.audit import AuditCode, AuditObject, audit_record
from tenants.errors import ApplicationError
from tenants.models import AuditEvent, User
from tenants.roles import FINAL_SIGN_ROLES, READER_ROLES, TEMPLATE_ROLES

from .models import (
    Addendum,
    Report,
    ReportStatus,
    ReportTemplate,
    SecondRead,
    SecondReadOutcome,
)
from .schema import SchemaError, content_check, content_defaults, fields_check
from .workflow import ReportState, ReportTransitionError, require, state_of, transition

MAX_ADDENDUM = 20_000


class ReportError(ApplicationError):
    """A request the reporting side refuses, with a message for the person who made it."""


class ReportConflictError(ReportError):
    status_code = 409


class ReportForbiddenError(ReportError):
    status_code = 403


class ReportNotFoundError(ReportError):
    status_code = 404


# --- Templates -------------------------------------------------------------------------------


def _require_template_admin(scope: Scope, alliance_id: int) -> User:
    if scope.user is None or not scope.has_any_role(*TEMPLATE_ROLES):
        raise ReportForbiddenError(_("Only alliance administrators can edit report templates."))
    if alliance_id not in scope.alliance_ids:
        raise ReportNotFoundError(_("No such alliance."), code="not_found")
    return scope.user


def _fields(fields: Any) -> dict[str, Any]:
    try:
        return fields_check(fields)
    except SchemaError as exc:
        raise ReportError(str(exc), code="bad_fields") from None


def template_create(
    *,
    scope: Scope,
    alliance_id: int,
    code: str,
    modality: str,
    body_part: str = "",
    name: str,
    name_en: str = "",
    fields: Any,
) -> ReportTemplate:
    """Version 1 of a new template for one alliance."""
    user = _require_template_admin(scope, alliance_id)
    clean = _fields(fields)
    if ReportTemplate.objects.filter(alliance_id=alliance_id, code=code).exists():
        raise ReportConflictError(
            _("A template with this code exists; add a version to it."), code="template_exists"
        )
    try:
        with transaction.atomic():
            template = ReportTemplate.objects.create(
                alliance_id=alliance_id,
                code=code,
                version=1,
                modality=modality.upper(),
                body_part=body_part.upper(),
                name=name.strip(),
                name_en=name_en.strip(),
                fields=clean,
                created_by=user,
            )
            _audit_template(scope, template, "template_created")
            return template
    except IntegrityError:
        raise ReportConflictError(
            _("A template with this code exists; add a version to it."), code="template_exists"
        ) from None


def template_version_add(
    *,
    scope: Scope,
    template_id: Any,
    fields: Any,
    name: str | None = None,
    name_en: str | None = None,
    modality: str | None = None,
    body_part: str | None = None,
    base_version: int | None = None,
) -> ReportTemplate:
    """A new version of a template; the old one stays (reports keep pointing at it).

    `base_version`: the version the editor started from; when someone saved another one
    meanwhile the edit is refused rather than silently undoing theirs. The new version is in
    use when the template was; a retired template stays retired.
    """
    base = visible(scope, ReportTemplate).filter(pk=_int(template_id)).first()
    if base is None:
        raise ReportNotFoundError(_("No such template."), code="not_found")
    user = _require_template_admin(scope, base.alliance_id)
    clean = _fields(fields)
    try:
        with transaction.atomic():
            family = list(
                ReportTemplate.objects.select_for_update().filter(
                    alliance_id=base.alliance_id, code=base.code
                )
            )
            latest = max(t.version for t in family)
            if base_version is not None and base_version != latest:
                raise ReportConflictError(
                    _(
                        "Someone saved version %(latest)d of this template while you were "
                        "editing version %(base)d; open it again and redo your change."
                    )
                    % {"latest": latest, "base": base_version},
                    code="stale_template",
                )
            current = next(t for t in family if t.version == latest)
            in_use = any(t.active for t in family)
            ReportTemplate.objects.filter(pk__in=[t.pk for t in family if t.active]).update(
                active=False
            )
            template = ReportTemplate.objects.create(
                alliance_id=base.alliance_id,
                code=base.code,
                version=latest + 1,
                modality=current.modality if modality is None else modality.strip().upper(),
                body_part=current.body_part if body_part is None else body_part.strip().upper(),
                name=current.name if name is None else name.strip(),
                name_en=current.name_en if name_en is None else name_en.strip(),
                fields=clean,
                active=in_use,
                created_by=user,
            )
            _audit_template(scope, template, "template_version_added")
            return template
    except IntegrityError:
        raise ReportConflictError(
            _("Someone saved this template at the same moment; open it again."),
            code="stale_template",
        ) from None


def template_active_set(*, scope: Scope, template_id: Any, active: bool) -> ReportTemplate:
    """Retire a template (no new report can use it) or put its newest version back in use.

    Reports already written keep their version either way; only the choice offered when a
    report starts changes. Returns the newest version.
    """
    base = visible(scope, ReportTemplate).filter(pk=_int(template_id)).first()
    if base is None:
        raise ReportNotFoundError(_("No such template."), code="not_found")
    _require_template_admin(scope, base.alliance_id)
    with transaction.atomic():
        family = list(
            ReportTemplate.objects.select_for_update()
            .filter(alliance_id=base.alliance_id, code=base.code)
            .order_by("-version")
        )
        newest = family[0]
        if any(t.active for t in family) == active:
            return newest  # already so: a double click changes nothing and records nothing
        ReportTemplate.objects.filter(pk__in=[t.pk for t in family]).update(active=False)
        if active:
            ReportTemplate.objects.filter(pk=newest.pk).update(active=True)
        newest.active = active
        _audit_template(scope, newest, "template_reactivated" if active else "template_retired")
    return newest


def _audit_template(scope: Scope, template: ReportTemplate, change: str) -> None:
    """Every change of a template is on the audit trail (who, which version, what)."""
    audit_record(
        event=AuditCode.CONFIGURATION_CHANGE,
        action=AuditEvent.Action.CREATE
        if change in ("template_created", "template_version_added")
        else AuditEvent.Action.UPDATE,
        scope=scope,
        object_type=AuditObject.REPORT_TEMPLATE,
        object_id=template.pk,
        detail={
            "change": change,
            "alliance": template.alliance_id,
            "code": template.code,
            "version": template.version,
            "active": template.active,
        },
    )


# --- Drafting --------------------------------------------------------------------------------


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ReportNotFoundError(_("Not found."), code="not_found") from None


def _require_reader(scope: Scope) -> User:
    if scope.user is None or not scope.has_any_role(*READER_ROLES):
        raise ReportForbiddenError(_("Only radiologists write reports."))
    return scope.user


def report_create(*, scope: Scope, referral_id: Any, template_id: Any) -> Report:
    """The claimer's draft for a referral (the same one when asked twice)."""
    user = _require_reader(scope)
    referral = visible(scope, Referral).filter(pk=_int(referral_id)).first()
    if referral is None:
        raise ReportNotFoundError(_("No such referral."), code="not_found")
    existing = Report.objects.filter(referral=referral).first()
    if existing is not None:
        if existing.author_id != user.pk:
            raise ReportConflictError(
                _("Another reader already writes this report."), code="report_exists"
            )
        return existing
    institution = scope.institution
    if institution is None or referral.target_id != institution.pk:
        raise ReportForbiddenError(_("Only the reading institution writes the report."))
    if referral.claimed_by_id != user.pk or referral.status not in (
        ReferralStatus.CLAIMED,
        ReferralStatus.REPORTING,
    ):
        raise ReportConflictError(
            _("Claim this case before writing its report."), code="not_claimed"
        )
    template = visible(scope, ReportTemplate).filter(pk=_int(template_id), active=True).first()
    if template is None:
        raise ReportError(_("Choose one of the alliance's active templates."), code="bad_template")
    try:
        with transaction.atomic():
            report = Report.objects.create(
                referral=referral,
                study_id=referral.study_id,
                institution=institution,
                template=template,
                template_version=template.version,
                author=user,
                content=content_defaults(template.fields),
            )
            referral_report_started(referral=referral, user=user)
    except IntegrityError:
        # Two tabs created it at once: the other won; it is the one report.
        winner = Report.objects.filter(referral=referral, author=user).first()
        if winner is None:
            raise ReportConflictError(
                _("Another reader already writes this report."), code="report_exists"
            ) from None
        return winner
    return report


def _locked(scope: Scope, report_id: Any) -> Report:
    """The report under a row lock, if `scope` may see it (404 alike otherwise)."""
    pk = _int(report_id)
    if not visible(scope, Report).filter(pk=pk).exists():
        raise ReportNotFoundError(_("No such report."), code="not_found")
    return (
        Report.objects.select_for_update(of=("self",))
        .select_related("template", "referral")
        .get(pk=pk)
    )


def _check_version(report: Report, version: Any) -> None:
    if version is None or str(version) != str(report.version):
        raise ReportConflictError(
            _(
                "This report was saved elsewhere since you loaded it (version %(v)s). "
                "Reload it; your text is kept in this browser."
            )
            % {"v": report.version},
            code="stale_version",
            current_version=report.version,
        )


def _allow(report: Report, action: str) -> None:
    """The state machine allows `action` now, or a 409 with its code (changes nothing)."""
    try:
        require(report, action)
    except ReportTransitionError as exc:
        raise ReportConflictError(str(exc), code=exc.code) from None


def _step(report: Report, action: str) -> None:
    """Apply `action` to the locked report in memory (the caller saves it)."""
    _allow(report, action)
    transition(report, action)


def _refuse_final(report: Report) -> None:
    if report.status == ReportStatus.FINAL:
        raise ReportConflictError(
            _("This report is final; add an addendum instead."), code="report_final"
        )


def _content(report: Report, content: Any, *, complete: bool) -> dict[str, str]:
    try:
        return content_check(report.template.fields, content, complete=complete)
    except SchemaError as exc:
        raise ReportError(str(exc), code="bad_content") from None


def _free_text(free_text: Any) -> str:
    if not isinstance(free_text, str) or len(free_text) > 50_000:
        raise ReportError(
            _("Free text must be text of at most 50,000 characters."), code="bad_content"
        )
    return free_text


def _save_text(report: Report, content: Any, free_text: Any) -> None:
    """Merge the new text into the locked report and save it as the next version."""
    if content is not None:
        report.content = {**report.content, **_content(report, content, complete=False)}
    if free_text is not None:
        report.free_text = _free_text(free_text)
    report.version = F("version") + 1
    report.updated_at = timezone.now()
    report.save(update_fields=["content", "free_text", "version", "updated_at"])
    report.refresh_from_db(fields=["version"])


def report_autosave(
    *, scope: Scope, report_id: Any, version: Any, content: Any = None, free_text: str | None = None
) -> Report:
    """Save a draft's content if `version` is the current one; a stale save is refused (409).

    A senior saving a junior's report that waits for them is correcting it at its second
    read (report_second_read_edit), so the drafting page's autosave serves both.
    """
    user = _require_reader(scope)
    with transaction.atomic():
        report = _locked(scope, report_id)
        _refuse_final(report)
        if report.author_id != user.pk and state_of(report) == ReportState.SECOND_READ:
            _second_read_edit(scope, report, user, version, content, free_text)
            return report
        if report.author_id != user.pk:
            raise ReportForbiddenError(_("Only the author can edit a draft."))
        _allow(report, "edit")
        _check_version(report, version)
        _save_text(report, content, free_text)
    return report


def report_second_read_edit(
    *, scope: Scope, report_id: Any, version: Any, content: Any = None, free_text: Any = None
) -> Report:
    """A senior corrects a junior's preliminary report before co-signing it.

    The text becomes a new version (the optimistic `version` guards it as for a draft), and
    each correction is audited with the fields it changed and what they said before, so the
    junior's signed words can always be told from the senior's.
    """
    user = _require_reader(scope)
    with transaction.atomic():
        report = _locked(scope, report_id)
        _refuse_final(report)
        _second_read_edit(scope, report, user, version, content, free_text)
    return report


def _require_second_reader(scope: Scope, report: Report) -> None:
    if not scope.has_any_role(*FINAL_SIGN_ROLES):
        raise ReportForbiddenError(
            _("Only a senior radiologist gives a second read."), code="role_cannot_second_read"
        )
    if report.institution_id != getattr(scope.institution, "pk", None):
        raise ReportForbiddenError(_("Only the reading institution gives second reads."))


def _second_read_edit(
    scope: Scope, report: Report, user: User, version: Any, content: Any, free_text: Any
) -> None:
    _require_second_reader(scope, report)
    _allow(report, "second_read_edit")
    if report.author_id == user.pk:
        raise ReportForbiddenError(
            _("A second read is by someone other than the author."), code="own_report"
        )
    _check_version(report, version)
    before_content, before_text = dict(report.content), report.free_text
    before_version = report.version
    _save_text(report, content, free_text)
    changed = sorted(k for k in report.content if report.content[k] != before_content.get(k))
    if report.free_text != before_text:
        changed.append("free_text")
    if not changed:
        return
    previous = {k: before_content.get(k, "") for k in changed if k != "free_text"}
    if "free_text" in changed:
        previous["free_text"] = before_text
    audit_record(
        event=AuditCode.REPORT_EDITED,
        action=AuditEvent.Action.UPDATE,
        scope=scope,
        patient_id=report.study.pid,
        study_uid=report.study.study_uid,
        object_type="report",
        object_id=report.pk,
        detail={
            "kind": "second_read_edit",
            "referral": report.referral_id,
            "author": report.author_id,
            "version": [before_version, report.version],
            "fields": changed,
            "before": previous,
        },
    )


# --- Sign-off --------------------------------------------------------------------------------


def report_digest(report: Report) -> str:
    """SHA-256 over what a signature vouches for: content, text, template, signer, time."""
    assert report.signed_at is not None
    payload = {
        "report": report.pk,
        "referral": report.referral_id,
        "study": report.study_id,
        "template": [report.template_id, report.template_version],
        "content": report.content,
        "free_text": report.free_text,
        "signed_by": report.signed_by_id,
        "signed_at": report.signed_at.astimezone(dt.UTC).isoformat(),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _audit_signed(scope: Scope, report: Report, kind: str) -> None:
    audit_record(
        event=AuditCode.REPORT_SIGNED,
        scope=scope,
        patient_id=report.study.pid,
        study_uid=report.study.study_uid,
        object_type="report",
        object_id=report.pk,
        detail={
            "kind": kind,
            "status": report.status,
            "sha256": report.content_sha256,
            "referral": report.referral_id,
        },
    )


def _finalise(scope: Scope, report: Report, user: User, now: dt.datetime, *, action: str) -> None:
    _step(report, action)  # sign_final, agree or minor_discrepancy
    report.signed_by = user
    report.signed_at = now
    report.updated_at = now
    report.content_sha256 = report_digest(report)
    report.save()
    _audit_signed(scope, report, "final")
    referral_reported(referral=report.referral, user=user, now=now)
    from .delivery import report_announce  # the clinic hears at once

    report_announce(report)


def report_sign(*, scope: Scope, report_id: Any, kind: str, version: Any) -> Report:
    """Sign the author's own report, preliminary or final, as the signer's role allows."""
    user = _require_reader(scope)
    if kind not in ("preliminary", "final"):
        raise ReportError(_("Sign as preliminary or final."), code="bad_kind")
    now = timezone.now()
    with transaction.atomic():
        report = _locked(scope, report_id)
        if report.status == ReportStatus.FINAL:
            raise ReportConflictError(
                _("This report is already signed final."), code="already_signed"
            )
        if report.author_id != user.pk:
            raise ReportForbiddenError(_("You can only sign your own report."), code="not_author")
        _check_version(report, version)
        report.content = _content(report, report.content, complete=True)
        if kind == "preliminary":
            # A junior's report waits for a senior; a senior's wet read they finish themselves.
            _step(
                report,
                "sign_preliminary"
                if scope.has_any_role(*FINAL_SIGN_ROLES)
                else "request_second_read",
            )
            report.preliminary_by, report.preliminary_at = user, now
            report.version += 1
            report.updated_at = now
            report.save()
            _audit_signed(scope, report, "preliminary")
            if report.second_read_required:
                from .delivery import second_read_request  # the seniors hear at once

                second_read_request(report)
            return report
        if not scope.has_any_role(*FINAL_SIGN_ROLES):
            raise ReportForbiddenError(
                _("Your role signs preliminary reports; a senior radiologist signs final."),
                code="role_cannot_sign_final",
            )
        if report.second_read_required:  # also a draft back from a major discrepancy
            raise ReportConflictError(
                _("This report waits for its second read."), code="second_read_pending"
            )
        _finalise(scope, report, user, now, action="sign_final")
    return report


def report_second_read(
    *, scope: Scope, report_id: Any, outcome: str, comment: str = "", version: Any
) -> Report:
    """A senior's review of a junior's preliminary report.

    Agree or a minor discrepancy: the senior signs it final (with the comment recorded).
    A major discrepancy: the report goes back to its author as a draft, with the comment.
    """
    user = _require_reader(scope)
    if not scope.has_any_role(*FINAL_SIGN_ROLES):
        raise ReportForbiddenError(
            _("Only a senior radiologist gives a second read."), code="role_cannot_second_read"
        )
    if outcome not in SecondReadOutcome.values:
        raise ReportError(
            _("Choose agree, minor discrepancy or major discrepancy."), code="bad_outcome"
        )
    comment = (comment or "").strip()
    if outcome != SecondReadOutcome.AGREE and not comment:
        raise ReportError(
            _("Say what differs when there is a discrepancy."), code="comment_required"
        )
    now = timezone.now()
    with transaction.atomic():
        report = _locked(scope, report_id)
        _refuse_final(report)
        if report.institution_id != getattr(scope.institution, "pk", None):
            raise ReportForbiddenError(_("Only the reading institution gives second reads."))
        _allow(report, outcome)  # the outcomes are the step names
        if report.author_id == user.pk:
            raise ReportForbiddenError(
                _("A second read is by someone other than the author."), code="own_report"
            )
        _check_version(report, version)
        SecondRead.objects.create(
            report=report, reviewer=user, outcome=outcome, comment=comment, at=now
        )
        report.second_read_outcome = outcome
        if outcome == SecondReadOutcome.MAJOR:
            _step(report, outcome)  # back to its author as a draft
            report.version += 1
            report.updated_at = now
            report.save()
            return report
        _finalise(scope, report, user, now, action=outcome)
    return report


# --- After final -----------------------------------------------------------------------------


def addendum_digest(addendum: Addendum, report_sha256: str) -> str:
    payload = {
        "report": addendum.report_id,
        "report_sha256": report_sha256,
        "author": addendum.author_id,
        "text": addendum.text,
        "signed_at": addendum.signed_at.astimezone(dt.UTC).isoformat(),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def addendum_add(*, scope: Scope, report_id: Any, text: str) -> Addendum:
    """A signed addition to a final report: the only way to say more once it is final."""
    user = _require_reader(scope)
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_ADDENDUM:
        raise ReportError(_("Write the addendum (at most 20,000 characters)."), code="bad_text")
    with transaction.atomic():
        report = _locked(scope, report_id)
        if report.institution_id != getattr(scope.institution, "pk", None):
            raise ReportForbiddenError(_("Only the reading institution adds addenda."))
        _allow(report, "addendum")
        addendum = Addendum(report=report, author=user, text=text.strip(), signed_at=timezone.now())
        addendum.sha256 = addendum_digest(addendum, report.content_sha256)
        addendum.save()
        audit_record(
            event=AuditCode.REPORT_SIGNED,
            scope=scope,
            patient_id=report.study.pid,
            study_uid=report.study.study_uid,
            object_type="addendum",
            object_id=addendum.pk,
            detail={"kind": "addendum", "report": report.pk, "sha256": addendum.sha256},
        )
        from .delivery import addendum_announce  # the clinic hears at once

        addendum_announce(addendum)
    return addendum


# --- The next case ---------------------------------------------------------------------------


def reading_next_case(*, scope: Scope) -> Referral | None:
    """Where "sign and next" takes a reader: a case they hold and have not signed yet, else
    the most urgent case of their pools, claimed now (None when nothing waits)."""
    from .selectors import cases_held

    _require_reader(scope)
    held = cases_held(scope).first()
    if held is not None:
        return held
    referral = referral_claim_next(scope=scope)
    if referral is not None:
        # The reader goes straight into the case's report, so it is opened now: the sweep
        # must not hand back an unopened claim the reader is already reading.
        referral_open(scope=scope, referral_id=referral.pk)
    return referral
