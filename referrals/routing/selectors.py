"""Reads of the routing console: who may manage which pools, eligible readers, the roster's
week, and the dry run of a routing rule against real referrals.

Who may do what (the model decides it: a pool belongs to one alliance and sits at one
reading institution; a rule routes the whole alliance's cases):

- an alliance administrator (`roles.ROUTING_ROLES`) manages every pool, member, shift and
  routing rule of their alliances, and offers any reader of the alliance to a pool;
- a hospital administrator (the rest of `roles.POOL_STAFFING_ROLES`) manages the pools whose
  reading institution is their own: the pool's settings, its members and its roster, and
  offers only their own institution's readers. Rules and overflow between pools send cases
  from one institution to another, so they stay with the alliance administrator.

Everything is read through the access layer first (tenants/access.py), then narrowed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Q, QuerySet
from django.utils import timezone

from alliance.models import (
    Alliance,
    AllianceMember,
    PoolMember,
    ReaderPool,
    RosterShift,
    RoutingRule,
)
from referrals.models import Referral
from referrals.routing.decision import Case, RoutingDecision, routing_decide, rule_failures
from tenants import access, roles
from tenants.messages import message_text
from tenants.models import Institution, InstitutionKind, Membership, User

WEEKDAYS = range(7)  # Monday = 0, as datetime.weekday()


def may_configure_routing(scope: access.Scope) -> bool:
    return scope.has_any_role(*roles.ROUTING_ROLES)


def may_staff_pools(scope: access.Scope) -> bool:
    return scope.has_any_role(*roles.POOL_STAFFING_ROLES)


def console_alliances(scope: access.Scope) -> QuerySet[Alliance]:
    """The alliances whose pools the caller may create (all of theirs for an alliance
    administrator, those their institution belongs to for a hospital administrator)."""
    if not may_staff_pools(scope):
        return Alliance.objects.none()
    alliances = access.visible(scope, Alliance)
    if not may_configure_routing(scope):
        alliances = alliances.filter(members__institution=scope.institution)
    return alliances.order_by("code").distinct()


def console_pools(scope: access.Scope) -> QuerySet[ReaderPool]:
    """The pools the caller manages."""
    pools = access.visible(scope, ReaderPool.objects.select_related("alliance", "institution"))
    if may_configure_routing(scope):
        return pools
    if may_staff_pools(scope):
        return pools.filter(institution=scope.institution)
    return pools.none()


def console_pool(scope: access.Scope, pk: object) -> ReaderPool:
    """One pool the caller manages, or 404 alike for missing and not theirs."""
    return access.get_visible_or_404(scope, console_pools(scope), pk=pk)


def pool_institutions(scope: access.Scope, alliance: Alliance) -> QuerySet[Institution]:
    """Where a pool of `alliance` may sit: a member institution that is not a commission
    (a hospital administrator: their own institution only)."""
    institutions = access.visible(scope, Institution).filter(
        pk__in=AllianceMember.objects.filter(alliance=alliance).values("institution")
    )
    institutions = institutions.exclude(kind=InstitutionKind.HEALTH_COMMISSION)
    if not may_configure_routing(scope):
        own = [scope.institution.pk] if scope.institution is not None else []
        institutions = institutions.filter(pk__in=own)
    return institutions.order_by("code")


def pool_overflow_choices(scope: access.Scope, pool: ReaderPool | None, alliance: Alliance):
    """Pools of the same alliance a pool may overflow to (not itself)."""
    pools = access.visible(scope, ReaderPool).filter(alliance=alliance, is_active=True)
    if pool is not None:
        pools = pools.exclude(pk=pool.pk)
    return pools.order_by("institution__code", "name")


def eligible_readers(
    scope: access.Scope, *, alliance: Alliance, institution: Institution | None = None
) -> QuerySet[User]:
    """Users holding a reader role (roles.READER_ROLES) at an institution of `alliance`;
    a hospital administrator is offered their own institution's readers only."""
    if not may_staff_pools(scope) or alliance.pk not in scope.alliance_ids:
        return User.objects.none()
    places = Q(
        institution__in=AllianceMember.objects.filter(alliance=alliance).values("institution")
    ) | Q(institution=alliance.lead_hospital_id)
    readers = Membership.objects.active().filter(places, role__in=list(roles.READER_ROLES))
    if not may_configure_routing(scope):
        readers = readers.filter(institution=scope.institution)
    if institution is not None:
        readers = readers.filter(institution=institution)
    return User.objects.filter(is_active=True, pk__in=readers.values("user")).order_by(
        "name_en", "username"
    )


def pool_members(pool: ReaderPool) -> list[PoolMember]:
    """The pool's active members (the pool came from console_pool)."""
    return list(
        PoolMember.objects.filter(pool=pool, is_active=True)
        .select_related("user")
        .order_by("user__name_en", "user__username")
    )


def pool_member_candidates(scope: access.Scope, pool: ReaderPool) -> QuerySet[User]:
    """Eligible readers who are not yet active members of `pool`."""
    members = PoolMember.objects.filter(pool=pool, is_active=True).values("user")
    return eligible_readers(scope, alliance=pool.alliance).exclude(pk__in=members)


def console_pool_member(scope: access.Scope, pool: ReaderPool, pk: object) -> PoolMember:
    return access.get_visible_or_404(
        scope, PoolMember.objects.filter(pool=pool, is_active=True).select_related("user"), pk=pk
    )


# --- The roster ------------------------------------------------------------------------


def week_start(day: dt.date) -> dt.date:
    """The Monday of `day`'s week."""
    return day - dt.timedelta(days=day.weekday())


@dataclass(frozen=True)
class ShiftView:
    shift: RosterShift
    starts: dt.datetime  # local time (settings.TIME_ZONE)
    ends: dt.datetime

    @property
    def overnight(self) -> bool:
        return self.ends.date() > self.starts.date()


@dataclass
class RosterDay:
    day: dt.date
    shifts: list[ShiftView] = field(default_factory=list)

    @property
    def is_today(self) -> bool:
        return self.day == timezone.localdate()


@dataclass
class RosterWeek:
    start: dt.date
    days: list[RosterDay]

    @property
    def previous(self) -> dt.date:
        return self.start - dt.timedelta(days=7)

    @property
    def next(self) -> dt.date:
        return self.start + dt.timedelta(days=7)

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=6)


def local_midnight(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def roster_week(
    scope: access.Scope, *, start: dt.date, pool: ReaderPool | None = None
) -> RosterWeek:
    """The shifts starting in the week from `start` (a Monday), of `pool` or of every pool
    the caller manages, by local day."""
    start = week_start(start)
    days = [RosterDay(start + dt.timedelta(days=i)) for i in WEEKDAYS]
    shifts = access.visible(scope, RosterShift).filter(
        pool__in=console_pools(scope) if pool is None else [pool],
        starts_at__gte=local_midnight(start),
        starts_at__lt=local_midnight(start + dt.timedelta(days=7)),
    )
    for shift in shifts.select_related("pool", "user").order_by("starts_at", "pool__name", "pk"):
        starts = timezone.localtime(shift.starts_at)
        view = ShiftView(shift, starts, timezone.localtime(shift.ends_at))
        days[(starts.date() - start).days].shifts.append(view)
    return RosterWeek(start, days)


def console_shift(scope: access.Scope, pk: object) -> RosterShift:
    return access.get_visible_or_404(
        scope,
        RosterShift.objects.filter(pool__in=console_pools(scope)).select_related("pool", "user"),
        pk=pk,
    )


# --- Routing rules ---------------------------------------------------------------------


def console_rules(scope: access.Scope) -> QuerySet[RoutingRule]:
    rules = access.visible(
        scope, RoutingRule.objects.select_related("alliance", "pool", "source_institution")
    )
    if not may_configure_routing(scope):
        return rules.none()
    return rules.order_by("alliance__code", "order", "pk")


def console_rule(scope: access.Scope, pk: object) -> RoutingRule:
    return access.get_visible_or_404(scope, console_rules(scope), pk=pk)


def rule_source_choices(scope: access.Scope, alliance: Alliance) -> QuerySet[Institution]:
    """The sites of `alliance` a rule may name."""
    return (
        access.visible(scope, Institution)
        .filter(pk__in=AllianceMember.objects.filter(alliance=alliance).values("institution"))
        .order_by("code")
    )


def rule_pool_choices(scope: access.Scope, alliance: Alliance) -> QuerySet[ReaderPool]:
    return (
        access.visible(scope, ReaderPool)
        .filter(alliance=alliance, is_active=True)
        .select_related("institution")
        .order_by("institution__code", "name")
    )


# --- The dry run -----------------------------------------------------------------------

DRY_RUN_CANDIDATES = 30


def dry_run_referrals(scope: access.Scope, rule: RoutingRule) -> list[Referral]:
    """Recent referrals of the rule's alliance that the caller may see (newest first)."""
    return list(
        access.visible(scope, Referral)
        .filter(alliance=rule.alliance_id)
        .select_related("study", "source", "alliance", "pool")
        .order_by("-requested_at", "-pk")[:DRY_RUN_CANDIDATES]
    )


@dataclass(frozen=True)
class DryRunRow:
    referral: Referral
    case: Case
    failures: list[str]
    decision: RoutingDecision

    @property
    def matches(self) -> bool:
        return not self.failures

    @property
    def case_text(self) -> str:
        """What the rules saw of the case, in the active language."""
        described = self.case.describe()
        return message_text(described["code"], described["params"])

    @property
    def decided_by_this_rule(self) -> bool:
        return self.decision.rule is not None and self.decision.rule.pk == self.rule_pk

    rule_pk: int = 0


def routing_rule_dry_run(
    *, rule: RoutingRule, referrals: list[Referral], now: dt.datetime | None = None
) -> list[DryRunRow]:
    """For each referral: does `rule` match it (and which conditions fail), and where would
    the live decision send it now. Reads only: routing_decide writes nothing, the caller
    (referrals/workflow/services.py) applies a decision; nothing here applies one."""
    now = now or timezone.now()
    rows = []
    for referral in referrals:
        case = Case.of(referral, now=now)
        rows.append(
            DryRunRow(
                referral=referral,
                case=case,
                failures=rule_failures(rule, case),
                decision=routing_decide(referral, now=now),
                rule_pk=rule.pk,
            )
        )
    return rows
