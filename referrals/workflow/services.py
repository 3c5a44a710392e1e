"""Writes of the referral side: request, route, claim, release, return, cancel, deadlines.

Each service locks the referral row (`select_for_update`), checks the step with
referrals/workflow/states.py, applies it and records the event in one transaction; notifications,
live events and follow-up tasks go out after commit. Services called by tasks are
idempotent: run twice, they change nothing the second time.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from alliance.models import (
    Alliance,
    AllianceMember,
    AlliancePolicy,
    BreachAction,
    PoolMember,
    ReaderPool,
)
from referrals.messages import pool_name
from referrals.models import (
    OPEN_STATUSES,
    PRIORITY_RANK,
    Priority,
    Referral,
    ReferralKind,
    ReferralStatus,
    ReferralStudy,
    ReturnReason,
    Study,
    StudyGrant,
)
from referrals.routing.decision import reader_choose, routing_decide
from referrals.workflow import notify
from referrals.workflow.states import TransitionNotAllowedError, transition
from tenants import messages
from tenants.access import Scope
from tenants.errors import ApplicationError
from tenants.models import Institution, User
from tenants.roles import READER_ROLES, REQUEST_ROLES

logger = logging.getLogger(__name__)


class ReferralError(ApplicationError):
    """A request the referral side refuses, with a message for the person who made it."""

    def __init__(self, message: Any, *, code: str = "", **extra: Any) -> None:
        super().__init__(message, code=code, **extra)
        if self.code == "not_found":  # "no such referral": 404 alike for missing and not-yours
            self.status_code = 404


class ReferralConflictError(ReferralError):
    status_code = 409
    default_code = "conflict"


class ReferralForbiddenError(ReferralError):
    status_code = 403
    default_code = "forbidden"


def in_hub_language(fn: Any) -> Any:
    """Run `fn` in the hub's language, so that nothing it does depends on whose request or
    which worker thread happened to run it. What it writes into a referral's record
    (routing explanations, escalation notes) and notifications are codes with parameters,
    read in each reader's own language (tenants/messages.py)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with translation.override(settings.LANGUAGE_CODE):
            return fn(*args, **kwargs)

    return wrapper


def _others(user_id: int | None) -> frozenset[int]:
    return frozenset() if user_id is None else frozenset({user_id})


def _conflict(exc: TransitionNotAllowedError) -> ReferralConflictError:
    return ReferralConflictError(str(exc), code="not_allowed_now")


# --- Requesting ------------------------------------------------------------------------------


def policy_for(alliance: Alliance | int) -> AlliancePolicy:
    alliance_id = alliance if isinstance(alliance, int) else alliance.pk
    policy, _created = AlliancePolicy.objects.get_or_create(alliance_id=alliance_id)
    return policy


def deadline_for(
    policy: AlliancePolicy, priority: str, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """The deadline and the moment to warn, from the alliance's policy."""
    minutes = policy.deadline_minutes(priority)
    fraction = min(max(policy.warn_fraction, 0.0), 1.0)
    return (now + dt.timedelta(minutes=minutes), now + dt.timedelta(minutes=minutes * fraction))


def _alliance_of(institution: Institution) -> Alliance:
    member = (
        AllianceMember.objects.filter(institution=institution)
        .select_related("alliance")
        .order_by("alliance__code")
        .first()
    )
    if member is None:
        raise ReferralError(
            _("Your institution is in no alliance; it cannot refer."), code="no_alliance"
        )
    return member.alliance


def referral_request(
    *,
    scope: Scope | None,
    study: Study,
    kind: str = ReferralKind.REMOTE_READ,
    clinical_question: str = "",
    priority: str = Priority.ROUTINE,
    automatic: bool = False,
    now: dt.datetime | None = None,
    queue_routing: bool = True,
) -> tuple[Referral, bool]:
    """Ask for `study` to be read (or consulted on, or transferred); (referral, created).

    The same study with the same kind while one is live is that one referral, not two.
    `scope` is the person asking (None for the automatic request when a study is stable).
    """
    if kind not in ReferralKind.values:
        raise ReferralError(_("Unknown referral kind."), code="bad_kind")
    if priority not in Priority.values:
        raise ReferralError(_("Unknown priority."), code="bad_priority")
    if scope is not None:
        if not scope.has_any_role(*REQUEST_ROLES):
            raise ReferralForbiddenError(_("Your role at this institution cannot send referrals."))
        if study.institution_id != getattr(scope.institution, "pk", None):
            raise ReferralForbiddenError(_("Only the site that holds a study can refer it."))
    existing = (
        Referral.objects.filter(study=study, kind=kind)
        .exclude(status__in=[ReferralStatus.CANCELLED, ReferralStatus.RETURNED])
        .first()
    )
    if existing is not None:
        return existing, False
    now = now or timezone.now()
    alliance = _alliance_of(study.institution)
    deadline, warn = deadline_for(policy_for(alliance), priority, now)
    user = scope.user if scope is not None else None
    try:
        with transaction.atomic():
            referral = Referral.objects.create(
                alliance=alliance,
                kind=kind,
                study=study,
                source_id=study.institution_id,
                clinical_question=clinical_question.strip(),
                priority=priority,
                priority_rank=PRIORITY_RANK[Priority(priority)],
                requested_by=user,
                automatic=automatic,
                requested_at=now,
                deadline_at=deadline,
                warn_at=warn,
            )
            ReferralStudy.objects.create(referral=referral, study=study)
            referral.events.create(
                action="create",
                to_status=referral.status,
                actor=user,
                actor_institution_id=study.institution_id,
                at=now,
                data={"automatic": automatic, "priority": priority},
            )
    except IntegrityError:
        # Sent twice at once: the other request won; it is the one referral.
        existing = (
            Referral.objects.filter(study=study, kind=kind)
            .exclude(status__in=[ReferralStatus.CANCELLED, ReferralStatus.RETURNED])
            .first()
        )
        if existing is None:
            raise
        return existing, False
    notify.broadcast(referral)
    if queue_routing:
        _queue_routing(referral.pk)
    return referral, True


def _queue_routing(referral_id: int) -> None:
    from referrals.tasks import referral_route_task

    transaction.on_commit(lambda: referral_route_task.delay(referral_id))


def referral_request_automatic(study_id: int) -> Referral | None:
    """The remote read a site asks for by setting, once its study is complete.

    Routed in the same task, one queue hop fewer between "stable" and "on a worklist"; a
    worker killed in between leaves it `requested`, which a redelivery or the sweep's
    re-drive routes.
    """
    study = Study.objects.filter(pk=study_id).select_related("institution").first()
    if study is None:
        return None
    member = (
        AllianceMember.objects.filter(
            institution_id=study.institution_id, settings__auto_remote_read=True
        )
        .select_related("settings")
        .order_by("alliance__code")
        .first()
    )
    if member is None:
        return None
    referral, _created = referral_request(
        scope=None,
        study=study,
        kind=ReferralKind.REMOTE_READ,
        priority=member.settings.auto_priority,
        automatic=True,
        queue_routing=False,
    )
    if referral.status == ReferralStatus.REQUESTED:
        return referral_route(referral.pk) or referral
    return referral


# --- Routing ---------------------------------------------------------------------------------


def _locked(referral_id: int) -> Referral | None:
    return (
        Referral.objects.select_for_update(of=("self",))
        .select_related("study", "alliance")
        .filter(pk=referral_id)
        .first()
    )


def priors_of(study: Study, alliance_id: int) -> list[Study]:
    """The patient's other studies at any site of the alliance (through the patient key)."""
    if not study.patient_key:
        return []
    sites = AllianceMember.objects.filter(alliance_id=alliance_id).values("institution_id")
    return list(
        Study.objects.filter(patient_key=study.patient_key, institution_id__in=sites)
        .exclude(pk=study.pk)
        .order_by("-study_date", "-pk")[:50]
    )


def grants_give(referral: Referral, institution_id: int) -> None:
    """Let the reading institution see the referred studies and the priors they bring."""
    referred = list(referral.items.filter(is_prior=False).values_list("study_id", flat=True))
    priors = priors_of(referral.study, referral.alliance_id)
    ReferralStudy.objects.bulk_create(
        [ReferralStudy(referral=referral, study=p, is_prior=True) for p in priors],
        ignore_conflicts=True,
    )
    rows = [
        StudyGrant(
            study_id=s, institution_id=institution_id, source="referral", source_id=referral.pk
        )
        for s in referred
    ]
    rows += [
        StudyGrant(
            study=p,
            institution_id=institution_id,
            source="referral",
            source_id=referral.pk,
            is_prior=True,
        )
        for p in priors
    ]
    StudyGrant.objects.bulk_create(rows, ignore_conflicts=True)
    # A grant revoked earlier (the case moved away and back) is in force again.
    StudyGrant.objects.filter(
        source="referral", source_id=referral.pk, institution_id=institution_id
    ).update(revoked_at=None, valid_until=None)


def grants_revoke(
    referral: Referral, *, institution_id: int | None = None, at: dt.datetime | None = None
) -> int:
    grants = StudyGrant.objects.filter(
        source="referral", source_id=referral.pk, revoked_at__isnull=True
    )
    if institution_id is not None:
        grants = grants.filter(institution_id=institution_id)
    return grants.update(revoked_at=at or timezone.now())


def grants_expire_after(referral: Referral, *, days: int, at: dt.datetime) -> None:
    StudyGrant.objects.filter(
        source="referral", source_id=referral.pk, revoked_at__isnull=True
    ).update(valid_until=at + dt.timedelta(days=days))


@in_hub_language
def referral_route(referral_id: int, *, now: dt.datetime | None = None) -> Referral | None:
    """Route a requested referral to a pool and propose a reader. Idempotent."""
    now = now or timezone.now()
    with transaction.atomic():
        referral = _locked(referral_id)
        if referral is None or referral.status != ReferralStatus.REQUESTED:
            return referral
        decision = routing_decide(referral, now=now)
        if decision.pool is None:
            if referral.routing_steps != decision.steps or not referral.unroutable:
                referral.unroutable, referral.routing_steps = True, decision.steps
                referral.save(update_fields=["unroutable", "routing_steps", "updated_at"])
                referral.events.create(
                    action="unroutable",
                    from_status=referral.status,
                    to_status=referral.status,
                    at=now,
                    reason_steps=decision.steps,
                )
                _tell_duty_officer(referral)
            return referral
        transition(
            referral,
            "route",
            at=now,
            reason_steps=decision.steps,
            data={
                "rule": decision.rule.pk if decision.rule else None,
                "pool": decision.pool.pk,
                "reader": decision.reader.pk if decision.reader else None,
            },
            pool=decision.pool,
            target_id=decision.pool.institution_id,
            rule=decision.rule,
            assigned_to=decision.reader,
            unroutable=decision.unroutable,
            routing_steps=decision.steps,
        )
        grants_give(referral, decision.pool.institution_id)
        if decision.reader is not None:
            notify.notify(
                [decision.reader],
                referral,
                kind="referral.assigned",
                code="referral.assigned",
                params={"explanation": messages.steps(decision.steps)},
                dedup=f"assigned:{referral.routed_at}",
            )
        if decision.unroutable:
            _tell_duty_officer(referral)
        notify.broadcast(referral)
    return referral


def _tell_duty_officer(referral: Referral) -> None:
    policy = policy_for(referral.alliance_id)
    if policy.duty_officer is not None:
        notify.notify(
            [policy.duty_officer],
            referral,
            kind="referral.unroutable",
            code="referral.unroutable",
            params={"explanation": messages.steps(referral.routing_steps)},
            dedup="unroutable",
            email=True,
        )


# --- The reader's steps ----------------------------------------------------------------------


def _reader_pools(scope: Scope) -> Any:
    assert scope.user is not None
    return PoolMember.objects.filter(
        user=scope.user,
        is_active=True,
        pool__is_active=True,
        pool__institution=scope.institution,
    ).values("pool_id")


def _require_reader(scope: Scope) -> User:
    if scope.user is None or not scope.has_any_role(*READER_ROLES):
        raise ReferralForbiddenError(_("Only radiologists can take cases."))
    return scope.user


def _visible_locked(scope: Scope, referral_id: Any) -> Referral:
    from tenants.access import visible

    try:
        pk = int(referral_id)
    except (TypeError, ValueError):
        raise ReferralError(_("No such referral."), code="not_found") from None
    if not visible(scope, Referral).filter(pk=pk).exists():
        raise ReferralError(_("No such referral."), code="not_found")
    referral = _locked(pk)
    assert referral is not None
    return referral


def referral_claim(*, scope: Scope, referral_id: Any) -> Referral:
    """Take a case from the pool. Of two readers pressing at once, exactly one gets it."""
    user = _require_reader(scope)
    with transaction.atomic():
        referral = _visible_locked(scope, referral_id)
        if not PoolMember.objects.filter(
            pool_id=referral.pool_id, user=user, is_active=True
        ).exists():
            raise ReferralForbiddenError(_("You are not a reader of this case's pool."))
        if referral.status == ReferralStatus.CLAIMED and referral.claimed_by_id == user.pk:
            return referral
        if referral.status != ReferralStatus.ROUTED:
            who = referral.claimed_by.display_name if referral.claimed_by else ""
            raise ReferralConflictError(
                _("Already taken by %(name)s.") % {"name": who}
                if who
                else _("This case can no longer be claimed."),
                code="already_claimed",
            )
        transition(
            referral,
            "claim",
            actor=user,
            institution=scope.institution,
            claimed_by=user,
            opened_at=None,
        )
        notify.broadcast(referral)
    return referral


def referral_claim_next(*, scope: Scope) -> Referral | None:
    """Claim the most urgent case in the reader's pools that nobody else holds.

    SKIP LOCKED passes over rows another reader is claiming this instant, so fifty readers
    pressing "next case" together each get a different case without waiting in line.
    """
    user = _require_reader(scope)
    with transaction.atomic():
        referral = (
            Referral.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pool_id__in=_reader_pools(scope), status=ReferralStatus.ROUTED)
            .filter(
                Q(assigned_to__isnull=True)
                | Q(assigned_to=user)
                | ~Q(
                    assigned_to__in=PoolMember.objects.filter(
                        pool_id__in=_reader_pools(scope), is_active=True
                    ).values("user_id")
                )
            )
            .order_by("priority_rank", "deadline_at", "pk")
            .first()
        )
        if referral is None:
            return None
        transition(
            referral,
            "claim",
            actor=user,
            institution=scope.institution,
            claimed_by=user,
            opened_at=None,
            data={"next_case": True},
        )
        notify.broadcast(referral)
    return referral


def referral_open(*, scope: Scope, referral_id: Any) -> Referral:
    """The claimer opens the case (which keeps the claim from being released)."""
    user = _require_reader(scope)
    with transaction.atomic():
        referral = _visible_locked(scope, referral_id)
        if referral.claimed_by_id != user.pk:
            raise ReferralForbiddenError(_("Claim this case before opening it."))
        if referral.opened_at is None:
            transition(
                referral,
                "open",
                actor=user,
                institution=scope.institution,
                opened_at=timezone.now(),
            )
    return referral


def referral_release(
    *,
    scope: Scope | None,
    referral_id: Any,
    reason: str = "",
    reason_steps: list[messages.Step] | None = None,
    now: dt.datetime | None = None,
) -> Referral:
    """Put a claimed case back in its pool (the claimer, or the sweep when it sat unopened).

    `reason`: what the reader wrote; `reason_steps`: why, when the hub releases it."""
    now = now or timezone.now()
    with transaction.atomic():
        if scope is None:
            referral = _locked(int(referral_id))
            assert referral is not None
            user = None
        else:
            user = _require_reader(scope)
            referral = _visible_locked(scope, referral_id)
            if referral.claimed_by_id != user.pk:
                raise ReferralForbiddenError(
                    _("Only the reader who claimed a case can release it.")
                )
        previous = referral.claimed_by_id
        assert referral.pool is not None
        reader, why = reader_choose(referral.pool, now=now, exclude=_others(previous))
        try:
            transition(
                referral,
                "release",
                actor=user,
                institution=scope.institution if scope else None,
                at=now,
                reason=reason,
                reason_steps=[] if reason else (reason_steps or [why]),
                claimed_by=None,
                claimed_at=None,
                opened_at=None,
                assigned_to=reader,
            )
        except TransitionNotAllowedError as exc:
            raise _conflict(exc) from exc
        notify.broadcast(referral)
        if previous is not None:
            from tenants.live import publish, user_group

            publish(user_group(previous), "referral", notify.referral_payload(referral))
    return referral


def referral_return(*, scope: Scope, referral_id: Any, reason: str, comment: str = "") -> Referral:
    """The reader sends the study back to the site: "motion artefact", "incomplete coverage"."""
    user = _require_reader(scope)
    if reason not in ReturnReason.values:
        raise ReferralError(_("Choose a reason from the list."), code="bad_reason")
    if reason == ReturnReason.OTHER and not comment.strip():
        raise ReferralError(
            _("Say what is wrong when the reason is 'other'."), code="comment_required"
        )
    with transaction.atomic():
        referral = _visible_locked(scope, referral_id)
        if referral.target_id != getattr(scope.institution, "pk", None):
            raise ReferralForbiddenError(_("Only the reading institution can return a case."))
        if referral.claimed_by_id not in (None, user.pk):
            raise ReferralForbiddenError(_("Another reader holds this case."))
        try:
            transition(
                referral,
                "return",
                actor=user,
                institution=scope.institution,
                reason=comment.strip(),
                data={"reason": reason},
                return_reason=reason,
                return_comment=comment.strip(),
            )
        except TransitionNotAllowedError as exc:
            raise _conflict(exc) from exc
        grants_revoke(referral)
        notify.notify(
            notify.clinic_recipients(referral),
            referral,
            kind="referral.returned",
            code="referral.returned",
            params={
                "reason": messages.choice("return_reason", reason),
                "comment": comment.strip(),
            },
            dedup="returned",
            email=True,
        )
        notify.broadcast(referral)
    return referral


# --- The clinic's steps ----------------------------------------------------------------------


def _require_source(scope: Scope, referral: Referral) -> User:
    if scope.user is None or referral.source_id != getattr(scope.institution, "pk", None):
        raise ReferralForbiddenError(_("Only the site that sent this referral can do this."))
    if not scope.has_any_role(*REQUEST_ROLES):
        raise ReferralForbiddenError(_("Your role at this institution cannot change referrals."))
    return scope.user


def referral_cancel(*, scope: Scope, referral_id: Any, reason: str = "") -> Referral:
    with transaction.atomic():
        referral = _visible_locked(scope, referral_id)
        user = _require_source(scope, referral)
        claimer = referral.claimed_by
        try:
            transition(
                referral, "cancel", actor=user, institution=scope.institution, reason=reason.strip()
            )
        except TransitionNotAllowedError as exc:
            raise _conflict(exc) from exc
        grants_revoke(referral)
        if claimer is not None:
            notify.notify(
                [claimer],
                referral,
                kind="referral.cancelled",
                code="referral.cancelled",
                params={"text": reason.strip()},
                dedup="cancelled",
            )
        notify.broadcast(referral)
    return referral


def referral_acknowledge(*, scope: Scope, referral_id: Any) -> Referral:
    with transaction.atomic():
        referral = _visible_locked(scope, referral_id)
        user = _require_source(scope, referral)
        try:
            transition(referral, "acknowledge", actor=user, institution=scope.institution)
        except TransitionNotAllowedError as exc:
            raise _conflict(exc) from exc
        notify.broadcast(referral)
    return referral


# --- Report steps (called by reporting/) -----------------------------------------------------


def referral_report_started(*, referral: Referral, user: User) -> Referral:
    with transaction.atomic():
        locked = _locked(referral.pk)
        assert locked is not None
        if locked.status == ReferralStatus.CLAIMED:
            transition(locked, "start_report", actor=user, institution=locked.target)
            notify.broadcast(locked)
    return locked


def referral_reported(
    *, referral: Referral, user: User | None, now: dt.datetime | None = None
) -> Referral:
    """A final report is signed: reported, then delivered to the site at once."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked(referral.pk)
        assert locked is not None
        if locked.status == ReferralStatus.REPORTING:
            transition(locked, "report", actor=user, institution=locked.target, at=now)
        if locked.status == ReferralStatus.REPORTED:
            transition(locked, "deliver", actor=None, at=now)
            grants_expire_after(
                locked, days=policy_for(locked.alliance_id).grant_days_after_report, at=now
            )
            notify.notify(
                notify.clinic_recipients(locked),
                locked,
                kind="referral.reported",
                code="referral.reported",
                dedup="reported",
                email=True,
            )
            notify.broadcast(locked)
    return locked


# --- Timers (driven by beat through tasks.referrals_sweep) ----------------------------------


def _ids(qs: Any, limit: int = 500) -> list[int]:
    return list(qs.order_by("pk").values_list("pk", flat=True)[:limit])


@in_hub_language
def deadline_warn(referral_id: int, *, now: dt.datetime) -> bool:
    with transaction.atomic():
        referral = _locked(referral_id)
        if (
            referral is None
            or referral.warned_at is not None
            or referral.status not in OPEN_STATUSES
            or referral.warn_at > now
        ):
            return False
        transition(referral, "warn", at=now)
        readers = [u for u in (referral.claimed_by, referral.assigned_to) if u is not None]
        notify.notify(
            readers or notify.hospital_leads(referral),
            referral,
            kind="referral.warning",
            code="referral.warning",
            dedup="warn",
        )
        notify.broadcast(referral)
    return True


@in_hub_language
def deadline_breach(referral_id: int, *, now: dt.datetime) -> bool:
    """Past its deadline: record the breach and escalate as the alliance's policy says."""
    with transaction.atomic():
        referral = _locked(referral_id)
        if (
            referral is None
            or referral.breached_at is not None
            or referral.status not in OPEN_STATUSES
            or referral.deadline_at > now
        ):
            return False
        transition(referral, "breach", at=now, escalation_level=referral.escalation_level + 1)
        policy = policy_for(referral.alliance_id)
        action = policy.breach_action
        leads = notify.hospital_leads(referral)
        if policy.duty_officer is not None and not leads:
            leads = [policy.duty_officer]
        done = messages.step(
            "routing.breach_action", action=messages.choice("breach_action", action)
        )
        if action == BreachAction.RETURN_TO_POOL and referral.status in (
            ReferralStatus.CLAIMED,
            ReferralStatus.ROUTED,
        ):
            _escalate_to_pool(referral, now=now)
        elif action == BreachAction.NEXT_TIER and referral.pool_id:
            done = _escalate_next_tier(referral, now=now) or done
        transition(referral, "escalate", at=now, reason_steps=[done], data={"action": action})
        notify.notify(
            leads,
            referral,
            kind="referral.breach",
            code="referral.breach",
            params={"done": messages.message(done["code"], **done["params"])},
            dedup="breach",
            email=True,
        )
        notify.broadcast(referral)
    return True


def _escalate_to_pool(referral: Referral, *, now: dt.datetime) -> None:
    """Free the case for the pool: the claim is released (or the proposal withdrawn) and
    another reader is proposed, never the one who let it pass its deadline."""
    assert referral.pool is not None
    previous = referral.claimed_by_id or referral.assigned_to_id
    reader, why = reader_choose(referral.pool, now=now, exclude=_others(previous))
    step = "release" if referral.status == ReferralStatus.CLAIMED else "reroute"
    transition(
        referral,
        step,
        at=now,
        reason_steps=[why],
        claimed_by=None,
        claimed_at=None,
        opened_at=None,
        assigned_to=reader,
    )


def _escalate_next_tier(referral: Referral, *, now: dt.datetime) -> messages.Step | None:
    """Move the case to the pool its pool overflows to; None when there is none."""
    assert referral.pool is not None
    nxt: ReaderPool | None = referral.pool.overflow_to
    if nxt is None or not nxt.is_active or referral.status == ReferralStatus.REPORTING:
        return None
    old_target = referral.target_id
    reader, why = reader_choose(nxt, now=now)
    escalated = messages.step(
        "routing.escalated", pool=pool_name(nxt), why=messages.message(why["code"], **why["params"])
    )
    transition(
        referral,
        "reroute",
        at=now,
        reason_steps=[why],
        pool=nxt,
        target_id=nxt.institution_id,
        claimed_by=None,
        claimed_at=None,
        opened_at=None,
        assigned_to=reader,
        routing_steps=[*referral.routing_steps, escalated],
    )
    if old_target != nxt.institution_id:
        assert old_target is not None
        grants_revoke(referral, institution_id=old_target, at=now)
    grants_give(referral, nxt.institution_id)
    return messages.step("routing.moved_to", pool=pool_name(nxt))


def unopened_claims(now: dt.datetime) -> list[int]:
    """Claims older than their alliance's limit that the reader never opened."""
    found: list[int] = []
    for policy in AlliancePolicy.objects.all():
        cutoff = now - dt.timedelta(minutes=policy.claim_open_minutes)
        found += _ids(
            Referral.objects.filter(
                alliance_id=policy.alliance_id,
                status=ReferralStatus.CLAIMED,
                opened_at__isnull=True,
                claimed_at__lt=cutoff,
            )
        )
    return found


@in_hub_language
def referrals_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """One beat tick: warnings, breaches, unopened claims, and routing that got stuck.

    Each case is handled in its own transaction and re-checked under its lock, so a sweep
    that overlaps another (or a task redelivered after a killed worker) does nothing twice.
    """
    now = now or timezone.now()
    open_cases = Referral.objects.filter(status__in=OPEN_STATUSES)
    counts = {"warned": 0, "breached": 0, "released": 0, "rerouted": 0}
    # Warnings first: a case whose warning and deadline both passed since the last tick is
    # warned, then breached, in that order.
    for pk in _ids(open_cases.filter(warned_at__isnull=True, warn_at__lte=now)):
        counts["warned"] += deadline_warn(pk, now=now)
    for pk in _ids(open_cases.filter(breached_at__isnull=True, deadline_at__lte=now)):
        counts["breached"] += deadline_breach(pk, now=now)
    for pk in unopened_claims(now):
        try:
            referral_release(
                scope=None,
                referral_id=pk,
                now=now,
                reason_steps=[messages.step("routing.claim_not_opened")],
            )
            counts["released"] += 1
        except ReferralConflictError:
            pass
    stuck = Referral.objects.filter(
        status=ReferralStatus.REQUESTED,
        requested_at__lt=now - dt.timedelta(seconds=settings.HUB_ROUTING_REDRIVE_SECONDS),
    )
    for pk in _ids(stuck):
        _queue_routing(pk)
        counts["rerouted"] += 1
    return counts
