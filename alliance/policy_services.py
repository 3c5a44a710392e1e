"""An alliance's deadline policy: read for the console's form, changed by its administrator
(audited with what changed, before and after)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from tenants import access, roles
from tenants.access import Scope
from tenants.audit import AuditCode, audit_record
from tenants.models import AuditEvent, Institution, Membership, User

from .models import Alliance, AlliancePolicy, ReaderPool

# What the administrator edits (the rest of the policy is the routing's).
POLICY_FIELDS = [
    "stat_minutes",
    "urgent_minutes",
    "routine_minutes",
    "warn_fraction",
    "breach_action",
    "claim_open_minutes",
    "critical_ack_minutes",
    "critical_lead_minutes",
    "grant_days_after_report",
    "fallback_pool",
    "duty_officer",
]
MINUTE_FIELDS = [
    "stat_minutes",
    "urgent_minutes",
    "routine_minutes",
    "claim_open_minutes",
    "critical_ack_minutes",
    "critical_lead_minutes",
]


def policy_alliances(*, scope: Scope) -> QuerySet[Alliance]:
    """The alliances whose policy `scope` may edit."""
    if scope.institution is None or not scope.has_any_role(*roles.ALLIANCE_POLICY_ROLES):
        return Alliance.objects.none()
    return access.visible(scope, Alliance).order_by("code")


def policy_pool_choices(*, scope: Scope, alliance: Alliance) -> QuerySet[ReaderPool]:
    return access.visible(scope, ReaderPool).filter(alliance=alliance, is_active=True)


def policy_duty_officer_choices(*, scope: Scope, alliance: Alliance) -> QuerySet[User]:
    """People holding a role at an institution of the alliance."""
    sites = access.visible(scope, Institution).filter(
        Q(pk__in=alliance.members.values("institution")) | Q(pk=alliance.lead_hospital_id)
    )
    holders = Membership.objects.active().filter(institution__in=sites).values("user_id")
    return User.objects.filter(pk__in=holders, is_active=True).order_by("username")


def alliance_policy_for(*, alliance: Alliance) -> AlliancePolicy:
    """The alliance's policy (its defaults until first saved; nothing is written here)."""
    return AlliancePolicy.objects.filter(alliance=alliance).first() or AlliancePolicy(
        alliance=alliance
    )


def _value(policy: AlliancePolicy, name: str) -> Any:
    field = AlliancePolicy._meta.get_field(name)
    return getattr(policy, getattr(field, "attname", name))


def _check(*, scope: Scope, alliance: Alliance, changes: dict[str, Any]) -> None:
    errors: dict[str, list[str]] = {}
    for name in MINUTE_FIELDS:
        if name in changes and (changes[name] is None or changes[name] < 1):
            errors.setdefault(name, []).append(_("At least one minute."))
    stat, urgent, routine = (
        changes.get("stat_minutes"),
        changes.get("urgent_minutes"),
        changes.get("routine_minutes"),
    )
    if None not in (stat, urgent, routine) and not stat <= urgent <= routine:  # type: ignore[operator]
        errors.setdefault("urgent_minutes", []).append(
            _("STAT must be due no later than urgent, and urgent no later than routine.")
        )
    warn = changes.get("warn_fraction")
    if warn is not None and not 0 < warn < 1:
        errors.setdefault("warn_fraction", []).append(_("A fraction between 0 and 1, e.g. 0.75."))
    if (
        changes.get("grant_days_after_report") is not None
        and changes["grant_days_after_report"] < 0
    ):
        errors.setdefault("grant_days_after_report", []).append(_("Zero days or more."))
    pool = changes.get("fallback_pool")
    if (
        pool is not None
        and not policy_pool_choices(scope=scope, alliance=alliance).filter(pk=pool.pk).exists()
    ):
        errors.setdefault("fallback_pool", []).append(_("Choose a pool of this alliance."))
    officer = changes.get("duty_officer")
    if (
        officer is not None
        and not policy_duty_officer_choices(scope=scope, alliance=alliance)
        .filter(pk=officer.pk)
        .exists()
    ):
        errors.setdefault("duty_officer", []).append(_("Choose someone of this alliance."))
    if errors:
        raise ValidationError(errors)


def alliance_policy_update(
    *, scope: Scope, alliance: Alliance, changes: dict[str, Any], request: Any = None
) -> AlliancePolicy:
    """Save the administrator's changes to the alliance's deadline policy."""
    if not policy_alliances(scope=scope).filter(pk=alliance.pk).exists():
        raise PermissionDenied(_("Only the alliance's administrator may change its policy."))
    unknown = set(changes) - set(POLICY_FIELDS)
    if unknown:
        raise ValidationError(_("Unknown policy fields: %(names)s") % {"names": sorted(unknown)})
    _check(scope=scope, alliance=alliance, changes=changes)
    with transaction.atomic():
        policy, _created = AlliancePolicy.objects.select_for_update().get_or_create(
            alliance=alliance
        )
        before = {name: _value(policy, name) for name in changes}
        for name, value in changes.items():
            setattr(policy, name, value)
        policy.full_clean()
        policy.save()
        altered = {
            name: [before[name], _value(policy, name)]
            for name in changes
            if before[name] != _value(policy, name)
        }
        if altered:
            audit_record(
                event=AuditCode.CONFIGURATION_CHANGE,
                action=AuditEvent.Action.UPDATE,
                scope=scope,
                request=request,
                object_type="alliance_policy",
                object_id=policy.pk,
                detail={"alliance": alliance.code, "changes": altered},
            )
    return policy
