"""The navigation bar: which pages each role is offered (one list, read by the layout)."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from tenants import roles
from tenants.access import Scope


@dataclass(frozen=True)
class NavItem:
    label: str | Promise
    url_name: str
    roles: frozenset[str] | None = None  # None: every member
    superuser_only: bool = False  # Django's admin: the system's own administrators


NAVIGATION = [
    NavItem(_("Home"), "home"),
    NavItem(_("Registered exams"), "registration-list", roles=roles.REGISTRATION_ROLES),
    NavItem(_("Studies"), "study-list", roles=roles.IMAGE_READ_ROLES),
    NavItem(_("Send studies"), "study-upload", roles=roles.UPLOAD_ROLES),
    NavItem(_("Held instances"), "held-list", roles=roles.ARCHIVE_MANAGE_ROLES),
    NavItem(_("Worklist"), "worklist", roles=roles.READER_ROLES),
    NavItem(_("Second reads"), "second-read-queue", roles=roles.FINAL_SIGN_ROLES),
    NavItem(_("Referrals"), "referral-list", roles=roles.CLINIC_ROLES),
    NavItem(_("MDT"), "mdt-list"),
    NavItem(_("Figures"), "analytics-dashboard", roles=roles.REGION_VIEWER_ROLES),
    NavItem(_("Institutions"), "institution-list"),
    NavItem(_("Notifications"), "notification-list"),
    NavItem(_("Report quality"), "report-quality", roles=roles.QUALITY_ROLES),
    NavItem(_("Audit trail"), "audit-list", roles=roles.AUDIT_ROLES),
    NavItem(_("API"), "api-docs"),
    NavItem(_("Administration"), "console-home", roles=roles.CONSOLE_ROLES),
    NavItem(_("Django admin"), "admin:index", superuser_only=True),
]


@dataclass(frozen=True)
class NavLink:
    label: str | Promise
    url: str
    active: bool


def navigation_for(scope: Scope, *, current_path: str) -> list[NavLink]:
    links = []
    for item in NAVIGATION:
        if item.superuser_only and not (scope.user and scope.user.is_superuser):
            continue
        if item.roles is not None and not scope.has_any_role(*item.roles):
            continue
        url = reverse(item.url_name)
        active = current_path == url if url == "/" else current_path.startswith(url)
        links.append(NavLink(item.label, url, active))
    # Nested pages (/studies/ and /studies/upload/): only the closest item is current.
    closest = max((link.url for link in links if link.active), key=len, default=None)
    return [NavLink(link.label, link.url, link.url == closest) for link in links]
