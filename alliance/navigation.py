"""The navigation bar: which pages each role is offered (one list, read by the layout)."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from referrals.dicomweb.base import IMAGE_READ_ROLES, IMAGE_SEND_ROLES
from tenants.access import GATEWAY_ROLE, Scope
from tenants.models import Role


@dataclass(frozen=True)
class NavItem:
    label: str | Promise
    url_name: str
    roles: frozenset[str] | None = None  # None: every member
    staff_only: bool = False


NAVIGATION = [
    NavItem(_("Home"), "home"),
    NavItem(_("Studies"), "study-list", roles=IMAGE_READ_ROLES),
    NavItem(_("Send studies"), "study-upload", roles=IMAGE_SEND_ROLES - {GATEWAY_ROLE}),
    NavItem(_("Worklist"), "worklist",
            roles=frozenset({Role.RADIOLOGIST, Role.SENIOR_RADIOLOGIST})),
    NavItem(_("Referrals"), "referral-list",
            roles=frozenset({Role.CLINIC_TECHNICIAN, Role.REFERRING_PHYSICIAN})),
    NavItem(_("MDT"), "mdt-list"),
    NavItem(_("Figures"), "analytics-dashboard",
            roles=frozenset({Role.COMMISSION_VIEWER, Role.ALLIANCE_ADMIN})),
    NavItem(_("Institutions"), "institution-list"),
    NavItem(_("Notifications"), "notification-list"),
    NavItem(_("Report quality"), "report-quality",
            roles=frozenset({Role.HOSPITAL_ADMIN, Role.SENIOR_RADIOLOGIST})),
    NavItem(_("Audit trail"), "audit-list", roles=frozenset({Role.HOSPITAL_ADMIN})),
    NavItem(_("API"), "api-docs"),
    NavItem(_("Administration"), "admin:index", staff_only=True),
]


@dataclass(frozen=True)
class NavLink:
    label: str | Promise
    url: str
    active: bool


def navigation_for(scope: Scope, *, current_path: str) -> list[NavLink]:
    links = []
    for item in NAVIGATION:
        if item.staff_only and not (scope.user and scope.user.is_staff):
            continue
        if item.roles is not None and not scope.has_any_role(*item.roles):
            continue
        url = reverse(item.url_name)
        active = current_path == url if url == "/" else current_path.startswith(url)
        links.append(NavLink(item.label, url, active))
    # Nested pages (/studies/ and /studies/upload/): only the closest item is current.
    closest = max((link.url for link in links if link.active), key=len, default=None)
    return [NavLink(link.label, link.url, link.url == closest) for link in links]
