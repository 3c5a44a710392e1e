"""Writes of the routing console: reading pools, their members, the roster, routing rules.

Each service checks the caller's right itself (selectors.py says who may do what), writes
in one transaction and appends one audit event (CONFIGURATION_CHANGE) saying what changed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from alliance.models import Alliance, PoolMember, ReaderPool, RosterShift, RoutingRule
from referrals.routing import selectors
from tenants import access
from tenants.audit import AuditCode, audit_record
from tenants.errors import ApplicationError, ForbiddenError
from tenants.models import AuditEvent, Institution, User

MAX_WEEKS = 26
MAX_SHIFT_HOURS = 24
POOL_FIELDS = ("name", "name_en", "subspecialty", "cap", "roster_required", "lead", "overflow_to")
RULE_FIELDS = (
    "name",
    "source_institution",
    "source_tier",
    "modality",
    "body_part",
    "priority",
    "kind",
    "time_from",
    "time_to",
    "pool",
)


class RoutingConfigError(ApplicationError):
    default_code = "routing_config"


def _audit(
    scope: access.Scope,
    *,
    action: str,
    object_type: str,
    object_id: int | str,
    detail: dict[str, Any],
) -> None:
    audit_record(
        event=AuditCode.CONFIGURATION_CHANGE,
        action=action,
        scope=scope,
        object_type=object_type,
        object_id=object_id,
        detail=detail,
    )


def _plain(value: Any) -> Any:
    """A field's value as the audit trail keeps it (a row by its id)."""
    return getattr(value, "pk", value)


def _fields_save(
    scope: access.Scope, row: ReaderPool | RoutingRule, fields: dict[str, Any], object_type: str
) -> None:
    """Write the fields that differ, audited as [before, after]; nothing if none does."""
    changed = {
        name: [_plain(getattr(row, name)), _plain(value)]
        for name, value in fields.items()
        if getattr(row, name) != value
    }
    if not changed:
        return
    with transaction.atomic():
        for name, value in fields.items():
            setattr(row, name, value)
        row.save(update_fields=list(fields))
        _audit(
            scope,
            action=AuditEvent.Action.UPDATE,
            object_type=object_type,
            object_id=row.pk,
            detail={"changed": changed},
        )


def _active_save(
    scope: access.Scope, row: ReaderPool | RoutingRule, active: bool, object_type: str
) -> None:
    """Switch the row on or off, audited; nothing if it is so already."""
    if row.is_active == active:
        return
    with transaction.atomic():
        row.is_active = active
        row.save(update_fields=["is_active"])
        _audit(
            scope,
            action=AuditEvent.Action.UPDATE,
            object_type=object_type,
            object_id=row.pk,
            detail={"changed": {"is_active": [not active, active]}},
        )


def _require_staffing(scope: access.Scope, pool: ReaderPool | None = None) -> None:
    if not selectors.may_staff_pools(scope):
        raise ForbiddenError(_("You may not manage reading pools."))
    if pool is not None and not selectors.console_pools(scope).filter(pk=pool.pk).exists():
        raise ForbiddenError(_("You may not manage this pool."))


def _require_routing(scope: access.Scope, alliance_id: int) -> None:
    if not selectors.may_configure_routing(scope) or alliance_id not in scope.alliance_ids:
        raise ForbiddenError(_("Only the alliance's administrator manages routing rules."))


# --- Pools -----------------------------------------------------------------------------


def _check_pool_fields(
    scope: access.Scope, alliance: Alliance, fields: dict[str, Any], pool: ReaderPool | None = None
) -> None:
    unknown = set(fields) - set(POOL_FIELDS)
    if unknown:
        raise TypeError(f"unknown pool fields: {sorted(unknown)}")
    overflow = fields.get("overflow_to")
    if "overflow_to" in fields and overflow != (pool.overflow_to if pool else None):
        if not selectors.may_configure_routing(scope):
            raise ForbiddenError(_("Only the alliance's administrator sets overflow."))
        if overflow is not None and overflow.alliance_id != alliance.pk:
            raise RoutingConfigError(_("The overflow pool belongs to another alliance."))
        if overflow is not None and pool is not None and overflow.pk == pool.pk:
            raise RoutingConfigError(_("A pool cannot overflow to itself."))
    lead = fields.get("lead")
    unchanged = pool is not None and lead == pool.lead
    if (
        lead is not None
        and not unchanged
        and not selectors.eligible_readers(scope, alliance=alliance).filter(pk=lead.pk).exists()
    ):
        raise RoutingConfigError(_("The lead must be a reader of the alliance."))


def pool_create(
    *, scope: access.Scope, alliance: Alliance, institution: Institution, **fields: Any
) -> ReaderPool:
    _require_staffing(scope)
    if not selectors.console_alliances(scope).filter(pk=alliance.pk).exists():
        raise ForbiddenError(_("You may not manage this alliance's pools."))
    if not selectors.may_configure_routing(scope) and institution != scope.institution:
        raise ForbiddenError(_("You may add pools at your own institution only."))
    if not selectors.pool_institutions(scope, alliance).filter(pk=institution.pk).exists():
        raise RoutingConfigError(_("A pool sits at a reading institution of its alliance."))
    _check_pool_fields(scope, alliance, fields)
    with transaction.atomic():
        pool = ReaderPool.objects.create(alliance=alliance, institution=institution, **fields)
        _audit(
            scope,
            action=AuditEvent.Action.CREATE,
            object_type="reader_pool",
            object_id=pool.pk,
            detail={
                "alliance": alliance.code,
                "institution": institution.code,
                **{k: _plain(v) for k, v in fields.items()},
            },
        )
    return pool


def pool_update(*, scope: access.Scope, pool: ReaderPool, **fields: Any) -> ReaderPool:
    _require_staffing(scope, pool)
    _check_pool_fields(scope, pool.alliance, fields, pool)
    _fields_save(scope, pool, fields, "reader_pool")
    return pool


def pool_set_active(*, scope: access.Scope, pool: ReaderPool, active: bool) -> ReaderPool:
    """Take a pool out of routing (its rules and overflow skip it) or back in."""
    _require_staffing(scope, pool)
    _active_save(scope, pool, active, "reader_pool")
    return pool


def pool_member_add(
    *, scope: access.Scope, pool: ReaderPool, user: User, capacity: int
) -> PoolMember:
    """Add an eligible reader to the pool (or bring a former member back)."""
    _require_staffing(scope, pool)
    if not selectors.eligible_readers(scope, alliance=pool.alliance).filter(pk=user.pk).exists():
        raise RoutingConfigError(
            _("Only readers of the alliance's institutions can join a reading pool.")
        )
    if capacity < 1:
        raise RoutingConfigError(_("A reader's capacity is at least one open case."))
    with transaction.atomic():
        member, created = PoolMember.objects.select_for_update().get_or_create(
            pool=pool, user=user, defaults={"capacity": capacity}
        )
        if not created and member.is_active:
            raise RoutingConfigError(_("This reader is already in the pool."))
        member.capacity, member.is_active = capacity, True
        member.save(update_fields=["capacity", "is_active"])
        _audit(
            scope,
            action=AuditEvent.Action.CREATE,
            object_type="pool_member",
            object_id=member.pk,
            detail={"pool": pool.pk, "user": user.pk, "capacity": capacity},
        )
    return member


def pool_member_update(*, scope: access.Scope, member: PoolMember, capacity: int) -> PoolMember:
    _require_staffing(scope, member.pool)
    if capacity < 1:
        raise RoutingConfigError(_("A reader's capacity is at least one open case."))
    if member.capacity == capacity:
        return member
    with transaction.atomic():
        before, member.capacity = member.capacity, capacity
        member.save(update_fields=["capacity"])
        _audit(
            scope,
            action=AuditEvent.Action.UPDATE,
            object_type="pool_member",
            object_id=member.pk,
            detail={"pool": member.pool_id, "user": member.user_id, "capacity": [before, capacity]},
        )
    return member


def pool_member_remove(*, scope: access.Scope, member: PoolMember) -> None:
    """Take the reader out of the pool; their shifts in it from now on go too."""
    _require_staffing(scope, member.pool)
    with transaction.atomic():
        member.is_active = False
        member.save(update_fields=["is_active"])
        removed, _counts = RosterShift.objects.filter(
            pool=member.pool_id, user=member.user_id, starts_at__gte=timezone.now()
        ).delete()
        _audit(
            scope,
            action=AuditEvent.Action.DELETE,
            object_type="pool_member",
            object_id=member.pk,
            detail={"pool": member.pool_id, "user": member.user_id, "future_shifts": removed},
        )


# --- The roster ------------------------------------------------------------------------


def roster_shifts_add(
    *,
    scope: access.Scope,
    pool: ReaderPool,
    user: User,
    first_day: dt.date,
    starts: dt.time,
    ends: dt.time,
    weekdays: frozenset[int] = frozenset(),
    weeks: int = 1,
) -> list[RosterShift]:
    """One shift on `first_day`, or a weekly series: on each of `weekdays` (Monday = 0) for
    `weeks` weeks from `first_day`'s week, never before `first_day`. Times are local
    (settings.TIME_ZONE); a shift that ends at or before its start ends the next day."""
    _require_staffing(scope, pool)
    if not PoolMember.objects.filter(pool=pool, user=user, is_active=True).exists():
        raise RoutingConfigError(_("Only the pool's members can be put on its roster."))
    if not 1 <= weeks <= MAX_WEEKS:
        raise RoutingConfigError(_("A series runs for 1 to %(max)d weeks.") % {"max": MAX_WEEKS})
    if not weekdays <= frozenset(selectors.WEEKDAYS):
        raise RoutingConfigError(_("Unknown day of the week."))
    if starts == ends:
        raise RoutingConfigError(_("A shift ends after it starts."))
    if weekdays:
        monday = selectors.week_start(first_day)
        days = sorted(
            day
            for week in range(weeks)
            for weekday in weekdays
            if (day := monday + dt.timedelta(days=7 * week + weekday)) >= first_day
        )
    else:
        days = [first_day]
    if not days:
        raise RoutingConfigError(_("No day of the series falls on or after the first day."))
    series = uuid.uuid4() if len(days) > 1 else None
    rows = []
    for day in days:
        start_at = timezone.make_aware(dt.datetime.combine(day, starts))
        end_day = day if ends > starts else day + dt.timedelta(days=1)
        rows.append(
            RosterShift(
                pool=pool,
                user=user,
                starts_at=start_at,
                ends_at=timezone.make_aware(dt.datetime.combine(end_day, ends)),
                series=series,
            )
        )
    with transaction.atomic():
        made = RosterShift.objects.bulk_create(rows)
        _audit(
            scope,
            action=AuditEvent.Action.CREATE,
            object_type="roster_shift",
            object_id=str(series) if series else made[0].pk,
            detail={
                "pool": pool.pk,
                "user": user.pk,
                "shifts": len(made),
                "first": rows[0].starts_at.isoformat(),
                "last": rows[-1].starts_at.isoformat(),
                "starts": starts.isoformat(),
                "ends": ends.isoformat(),
                "weekdays": sorted(weekdays),
                "weeks": weeks,
            },
        )
    return made


def roster_shift_delete(*, scope: access.Scope, shift: RosterShift, following: bool = False) -> int:
    """Delete one shift, or (`following`) it and the later shifts of its series."""
    _require_staffing(scope, shift.pool)
    doomed = RosterShift.objects.filter(pk=shift.pk)
    if following and shift.series is not None:
        doomed = RosterShift.objects.filter(
            pool=shift.pool_id, series=shift.series, starts_at__gte=shift.starts_at
        )
    with transaction.atomic():
        count, _counts = doomed.delete()
        _audit(
            scope,
            action=AuditEvent.Action.DELETE,
            object_type="roster_shift",
            object_id=shift.pk,
            detail={
                "pool": shift.pool_id,
                "user": shift.user_id,
                "starts_at": shift.starts_at.isoformat(),
                "series": str(shift.series) if shift.series else None,
                "following": following,
                "deleted": count,
            },
        )
    return count


# --- Routing rules ---------------------------------------------------------------------


def _check_rule_fields(alliance_id: int, fields: dict[str, Any]) -> None:
    pool = fields.get("pool")
    if pool is not None and pool.alliance_id != alliance_id:
        raise RoutingConfigError(_("The pool belongs to another alliance."))
    source = fields.get("source_institution")
    if source is not None and not source.alliance_memberships.filter(alliance=alliance_id).exists():
        raise RoutingConfigError(_("The site is not a member of the alliance."))
    if (fields.get("time_from") is None) != (fields.get("time_to") is None):
        raise RoutingConfigError(_("Give both ends of the time window, or neither."))
    if fields.get("time_from") is not None and fields["time_from"] == fields["time_to"]:
        raise RoutingConfigError(_("The time window's ends differ."))
    for name in ("modality", "body_part"):
        if name in fields:
            fields[name] = (fields[name] or "").strip().upper()


def rule_create(*, scope: access.Scope, alliance: Alliance, **fields: Any) -> RoutingRule:
    """A new rule, tried after the alliance's existing ones."""
    _require_routing(scope, alliance.pk)
    unknown = set(fields) - set(RULE_FIELDS)
    if unknown or "pool" not in fields:
        raise TypeError(f"rule fields: unknown {sorted(unknown)}, pool required")
    _check_rule_fields(alliance.pk, fields)
    with transaction.atomic():
        last = RoutingRule.objects.filter(alliance=alliance).aggregate(m=Max("order"))["m"]
        rule = RoutingRule.objects.create(alliance=alliance, order=(last or 0) + 10, **fields)
        _audit(
            scope,
            action=AuditEvent.Action.CREATE,
            object_type="routing_rule",
            object_id=rule.pk,
            detail={"alliance": alliance.code, "order": rule.order}
            | {k: _plain(v) for k, v in fields.items()},
        )
    return rule


def rule_update(*, scope: access.Scope, rule: RoutingRule, **fields: Any) -> RoutingRule:
    _require_routing(scope, rule.alliance_id)
    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise TypeError(f"unknown rule fields: {sorted(unknown)}")
    whole = {name: getattr(rule, name) for name in RULE_FIELDS} | fields
    _check_rule_fields(rule.alliance_id, whole)
    _fields_save(scope, rule, {name: whole[name] for name in fields}, "routing_rule")
    return rule


def rule_set_active(*, scope: access.Scope, rule: RoutingRule, active: bool) -> RoutingRule:
    _require_routing(scope, rule.alliance_id)
    _active_save(scope, rule, active, "routing_rule")
    return rule


def rule_move(*, scope: access.Scope, rule: RoutingRule, up: bool) -> RoutingRule:
    """Swap the rule with its neighbour in the alliance's order; the rules are numbered
    10, 20, 30... afterwards, so equal numbers never leave the order to chance."""
    _require_routing(scope, rule.alliance_id)
    with transaction.atomic():
        rules = list(
            RoutingRule.objects.select_for_update()
            .filter(alliance=rule.alliance_id)
            .order_by("order", "pk")
        )
        at = next(i for i, r in enumerate(rules) if r.pk == rule.pk)
        other = at - 1 if up else at + 1
        if not 0 <= other < len(rules):
            return rule
        rules[at], rules[other] = rules[other], rules[at]
        before = {r.pk: r.order for r in rules}
        for position, row in enumerate(rules, start=1):
            row.order = position * 10
        RoutingRule.objects.bulk_update(rules, ["order"])
        _audit(
            scope,
            action=AuditEvent.Action.UPDATE,
            object_type="routing_rule",
            object_id=rule.pk,
            detail={
                "moved": "up" if up else "down",
                "order": {str(r.pk): [before[r.pk], r.order] for r in rules},
            },
        )
    rule.order = next(r.order for r in rules if r.pk == rule.pk)
    return rule
