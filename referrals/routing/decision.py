"""Routing: which pool reads a referral, and which reader in it should take it.

`routing_decide()` reads the alliance's rules in order; the first that matches names a pool.
A pool whose open cases reach its cap overflows to the pool it names (the next tier);
what no rule matches goes to the alliance's fallback pool and is flagged. Inside the pool
the reader with the most room (open cases against capacity) is proposed. Every step is
written down in the decision's explanation, which the referral keeps as codes with their
parameters (tenants/messages.py): each reader reads it in their own language.

Pure reads: the caller (referrals/workflow/services.py) applies the decision under a row lock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q
from django.utils import timezone

from alliance.models import AllianceMember, PoolMember, ReaderPool, RosterShift, RoutingRule
from referrals.messages import pool_name
from tenants.messages import Step, choice, message, person, step, steps_text
from tenants.models import User

if TYPE_CHECKING:
    from referrals.models import Referral


@dataclass
class RoutingDecision:
    pool: ReaderPool | None
    rule: RoutingRule | None = None
    reader: User | None = None
    unroutable: bool = False
    # Each step as stored: {"code", "params"} (referrals/messages.py has the words).
    steps: list[Step] = field(default_factory=list)

    @property
    def explanation(self) -> str:
        """The steps in words, in the active language."""
        return steps_text(self.steps)


@dataclass(frozen=True)
class Case:
    """What the rules look at."""

    source_id: int
    tier: str
    modalities: frozenset[str]
    body_parts: frozenset[str]
    priority: str
    kind: str
    local_time: dt.time

    @classmethod
    def of(cls, referral: Referral, *, now: dt.datetime) -> Case:
        study = referral.study
        member = AllianceMember.objects.filter(
            alliance_id=referral.alliance_id, institution_id=referral.source_id
        ).first()
        return cls(
            source_id=referral.source_id,
            tier=member.tier if member else "",
            modalities=_codes(study.modalities),
            body_parts=_codes(study.body_parts),
            priority=referral.priority,
            kind=referral.kind,
            local_time=timezone.localtime(now).time(),
        )

    def describe(self) -> dict[str, Any]:
        """The case as a message parameter: its DICOM codes, and its tier by its label."""
        parts = [" ".join(sorted(self.modalities)), " ".join(sorted(self.body_parts))]
        what: Any = " ".join(p for p in parts if p) or message("routing.study")
        tier: Any = choice("tier", self.tier) if self.tier else "-"
        return message("routing.case", what=what, tier=tier)


def _codes(value: str) -> frozenset[str]:
    return frozenset(c.strip().upper() for c in value.replace(",", "\\").split("\\") if c.strip())


def rule_failures(rule: RoutingRule, case: Case) -> list[str]:
    """The conditions of `rule` that `case` does not meet (their field names); none: a match.

    The live decision and the console's dry run share this one reading of a rule."""
    failed = []
    if rule.source_institution_id and rule.source_institution_id != case.source_id:
        failed.append("source_institution")
    if rule.source_tier and rule.source_tier != case.tier:
        failed.append("source_tier")
    if rule.modality and rule.modality.upper() not in case.modalities:
        failed.append("modality")
    if rule.body_part and rule.body_part.upper() not in case.body_parts:
        failed.append("body_part")
    if rule.priority and rule.priority != case.priority:
        failed.append("priority")
    if rule.kind and rule.kind != case.kind:
        failed.append("kind")
    if rule.time_from is not None and rule.time_to is not None:
        start, end, t = rule.time_from, rule.time_to, case.local_time
        inside = start <= t < end if start <= end else (t >= start or t < end)
        if not inside:
            failed.append("time_window")
    return failed


def rule_matches(rule: RoutingRule, case: Case) -> bool:
    return not rule_failures(rule, case)


def pool_open_load(pool: ReaderPool) -> int:
    from referrals.models import READER_LOAD_STATUSES, Referral

    return Referral.objects.filter(pool=pool, status__in=READER_LOAD_STATUSES).count()


def readers_on_duty(pool: ReaderPool, *, now: dt.datetime) -> list[PoolMember]:
    members = PoolMember.objects.filter(pool=pool, is_active=True, user__is_active=True)
    if pool.roster_required:
        on_shift = RosterShift.objects.filter(
            pool=pool, starts_at__lte=now, ends_at__gt=now
        ).values("user_id")
        members = members.filter(user_id__in=on_shift)
    return list(members.select_related("user").order_by("user_id"))


def reader_loads(user_ids: list[int]) -> dict[int, int]:
    """Open cases per reader: proposed to them (routed) or taken by them."""
    from referrals.models import READER_LOAD_STATUSES, Referral, ReferralStatus

    open_cases = Referral.objects.filter(status__in=READER_LOAD_STATUSES)
    loads = dict.fromkeys(user_ids, 0)
    proposed = (
        open_cases.filter(status=ReferralStatus.ROUTED, assigned_to__in=user_ids)
        .values("assigned_to")
        .annotate(n=Count("pk"))
    )
    taken = (
        open_cases.filter(~Q(status=ReferralStatus.ROUTED), claimed_by__in=user_ids)
        .values("claimed_by")
        .annotate(n=Count("pk"))
    )
    for proposed_row in proposed:
        loads[proposed_row["assigned_to"]] += proposed_row["n"]
    for taken_row in taken:
        loads[taken_row["claimed_by"]] += taken_row["n"]
    return loads


def reader_choose(
    pool: ReaderPool, *, now: dt.datetime, exclude: frozenset[int] = frozenset()
) -> tuple[User | None, Step]:
    """The reader with the most room in `pool`, and the step saying why."""
    members = [m for m in readers_on_duty(pool, now=now) if m.user_id not in exclude]
    if not members:
        return None, step("routing.no_reader")
    loads = reader_loads([m.user_id for m in members])
    with_room = [m for m in members if loads[m.user_id] < m.capacity]
    on_duty = message("routing.on_duty", n=len(members))
    if not with_room:
        return None, step("routing.all_at_capacity", duty=on_duty)
    best = min(
        with_room, key=lambda m: (loads[m.user_id] / m.capacity, loads[m.user_id], m.user_id)
    )
    return best.user, step(
        "routing.chose",
        duty=on_duty,
        name=person(best.user),
        open=loads[best.user_id],
        cap=best.capacity,
    )


def _fallback(referral: Referral) -> ReaderPool | None:
    from alliance.models import AlliancePolicy

    policy = AlliancePolicy.objects.filter(alliance_id=referral.alliance_id).first()
    if policy is not None and policy.fallback_pool is not None and policy.fallback_pool.is_active:
        return policy.fallback_pool
    return (
        ReaderPool.objects.filter(
            alliance_id=referral.alliance_id,
            is_active=True,
            institution_id=referral.alliance.lead_hospital_id,
        )
        .order_by("pk")
        .first()
    )


def with_overflow(
    pool: ReaderPool, steps: list[Step], skip: frozenset[int] = frozenset()
) -> ReaderPool:
    """Follow `overflow_to` while the pool is at its cap (or is one to skip)."""
    seen: set[int] = set()
    while pool.pk not in seen:
        seen.add(pool.pk)
        load = pool_open_load(pool)
        at_cap = load >= pool.cap
        nxt = pool.overflow_to if pool.overflow_to_id else None
        if pool.pk in skip and nxt is not None:
            steps.append(step("routing.passed_over", pool=pool_name(pool), next=pool_name(nxt)))
        elif at_cap and nxt is not None and nxt.is_active:
            steps.append(
                step(
                    "routing.overflow",
                    pool=pool_name(pool),
                    load=load,
                    cap=pool.cap,
                    next=pool_name(nxt),
                )
            )
        else:
            return pool
        pool = nxt
    return pool


def routing_decide(
    referral: Referral,
    *,
    now: dt.datetime | None = None,
    skip_pools: frozenset[int] = frozenset(),
    exclude_readers: frozenset[int] = frozenset(),
) -> RoutingDecision:
    """Where `referral` should go now. `skip_pools` moves a case on (escalation)."""
    now = now or timezone.now()
    case = Case.of(referral, now=now)
    rules = (
        RoutingRule.objects.filter(
            alliance_id=referral.alliance_id, is_active=True, pool__is_active=True
        )
        .select_related("pool", "pool__overflow_to")
        .order_by("order", "pk")
    )
    decision = RoutingDecision(pool=None)
    for rule in rules:
        if rule_matches(rule, case):
            decision.rule = rule
            decision.steps.append(
                step(
                    "routing.rule",
                    order=rule.order,
                    name=rule.name,
                    case=case.describe(),
                    pool=pool_name(rule.pool),
                )
            )
            decision.pool = with_overflow(rule.pool, decision.steps, skip_pools)
            break
    if decision.pool is None:
        fallback = _fallback(referral)
        decision.unroutable = True
        if fallback is None:
            decision.steps.append(step("routing.no_fallback", case=case.describe()))
            return decision
        decision.steps.append(
            step("routing.fallback", case=case.describe(), pool=pool_name(fallback))
        )
        decision.pool = with_overflow(fallback, decision.steps, skip_pools)
    decision.reader, why = reader_choose(decision.pool, now=now, exclude=exclude_readers)
    decision.steps.append(why)
    return decision
