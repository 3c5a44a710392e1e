"""Reads of the staff console: the people of the caller's institution and what may be done
to each (the administrator's authority comes from tenants/roles.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils.translation import gettext as _

from .. import access, roles
from ..access import Scope
from ..models import Institution, Membership, Role, User


def _outside_users(scope: Scope) -> QuerySet[Membership]:
    """Active memberships at institutions beyond the caller's alliances."""
    ours = access.visible(scope, Institution).values("pk")
    return Membership.objects.active().exclude(institution__in=ours)


def staff_queryset(*, scope: Scope) -> QuerySet[User]:
    """Everyone who holds, or held, a role at the caller's institution.

    Someone whose roles here were all taken back and who now works in another alliance is
    no longer listed: the administrators learn nothing of another alliance's staff.
    """
    here = access.visible(scope, Membership)
    active_here = here.filter(revoked_at__isnull=True).values("user_id")
    elsewhere = _outside_users(scope).values("user_id")
    return (
        User.objects.filter(pk__in=here.values("user_id"))
        .filter(Q(pk__in=active_here) | ~Q(pk__in=elsewhere))
        .distinct()
    )


def staff_list(*, scope: Scope, query: str = "") -> QuerySet[User]:
    people = staff_queryset(scope=scope)
    query = query.strip()
    if query:
        people = people.filter(
            Q(username__icontains=query)
            | Q(name__icontains=query)
            | Q(name_en__icontains=query)
            | Q(email__icontains=query)
        )
    return people.order_by("username")


def staff_member_for_user(scope: Scope, pk: int | str) -> User:
    """One person of the caller's institution, or 404 alike for missing and not-yours."""
    try:
        return staff_queryset(scope=scope).get(pk=pk)
    except (User.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404 from exc


def roles_here(*, scope: Scope, user: User) -> list[Membership]:
    """The person's active roles at the caller's institution."""
    return list(
        access.visible(scope, Membership)
        .filter(user=user, revoked_at__isnull=True)
        .select_related("granted_by")
        .order_by("role")
    )


def roles_by_user(*, scope: Scope, users: list[User]) -> dict[int, list[Membership]]:
    """Active roles here of each listed person (one query for a page of the list)."""
    found: dict[int, list[Membership]] = {}
    for membership in (
        access.visible(scope, Membership)
        .filter(user__in=users, revoked_at__isnull=True)
        .order_by("role")
    ):
        found.setdefault(membership.user_id, []).append(membership)
    return found


def grantable_roles_here(*, scope: Scope) -> list[str]:
    """The roles the caller may grant at their institution (in the table's order)."""
    if scope.institution is None:
        return []
    granted = roles.grantable_roles(scope.roles)
    kind = scope.institution.kind
    return [r for r in Role.values if r in granted and roles.may_be_held_at(r, kind)]


@dataclass(frozen=True)
class AccountAuthority:
    """Whether the caller may switch the person's account off (or on) for the whole hub, and
    if not, why: only someone who holds roles at the caller's institution alone, all within
    the caller's authority, is theirs to deactivate. Anyone else is removed from this
    institution instead (their roles here taken back); their account stays as it is."""

    allowed: bool
    reasons: list[str] = field(default_factory=list)


def account_authority(*, scope: Scope, user: User) -> AccountAuthority:
    here = getattr(scope.institution, "pk", None)
    reasons: list[str] = []
    if user.pk == getattr(scope.user, "pk", None):
        reasons.append(_("You cannot switch off your own account."))
    if user.is_superuser:
        reasons.append(_("This account is a system administrator's."))
    active = list(Membership.objects.active().filter(user=user).select_related("institution"))
    if any(m.institution_id != here for m in active):
        reasons.append(
            _("This person also holds roles at another institution; remove them from yours.")
        )
    granted = roles.grantable_roles(scope.roles)
    if any(m.role not in granted for m in active if m.institution_id == here):
        reasons.append(_("This person holds a role here that your role does not manage."))
    return AccountAuthority(allowed=not reasons, reasons=reasons)
