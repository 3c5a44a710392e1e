"""Who sees which MDT sessions; registered with tenants/access.py.

A session is seen by those invited to it (acting for the invitation's institution), and
by the administrators of the institution that organises it.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import Q

from tenants.access import NOTHING, Scope, named, register_rules
from tenants.roles import INSTITUTION_ADMIN_ROLES

from .models import Invitation, MdtSession


def mdt_sessions(scope: Scope) -> Q:
    if scope.user is None:
        return NOTHING
    invited = Q(
        pk__in=Invitation.objects.active()
        .filter(user=scope.user, institution=scope.institution)
        .values("session_id")
    )
    if scope.has_any_role(*INSTITUTION_ADMIN_ROLES):
        return invited | Q(institution=scope.institution)
    return invited


def through_mdt_session(via: str) -> Callable[[Scope], Q]:
    return named(
        lambda s: Q(**{f"{via}__in": MdtSession.objects.filter(mdt_sessions(s)).values("pk")}),
        f"through_mdt_session({via!r})",
    )


RULES = {
    "consultations.mdtsession": mdt_sessions,
    "consultations.sessioncase": through_mdt_session("session"),
    "consultations.invitation": through_mdt_session("session"),
    "consultations.roomevent": through_mdt_session("session"),
    "consultations.vote": through_mdt_session("case__session"),
}


def register() -> None:
    register_rules(RULES)
