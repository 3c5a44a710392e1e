"""The administration console's sections: one list, read by the console home page.

Each section names its page by URL name and the roles that may use it (tenants/roles.py).
A section whose page is not (yet) in the URL map is left out rather than failing the page,
so sections can arrive one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from tenants import roles
from tenants.access import Scope


@dataclass(frozen=True)
class ConsoleSection:
    label: str | Promise
    description: str | Promise
    url_name: str
    roles: frozenset[str]


SECTIONS = [
    ConsoleSection(
        _("Staff and roles"),
        _("Invite people, grant and take back roles, switch accounts off."),
        "console-staff",
        roles.CONSOLE_ROLES,
    ),
    ConsoleSection(
        _("Gateway credentials"),
        _("The keys your site's DICOM gateways send images with."),
        "console-gateways",
        roles.INSTITUTION_ADMIN_ROLES,
    ),
    ConsoleSection(
        _("Issuers of patient IDs"),
        _("Who issued the patient IDs of images that name no issuer: the site, each gateway."),
        "identity-issuers",
        roles.PATIENT_ID_ISSUER_ROLES,
    ),
    ConsoleSection(
        _("Studies of this institution"),
        _("Find a stored study by patient ID, name, accession number or date, to correct it."),
        "console-correct-studies",
        roles.CORRECTION_ROLES,
    ),
    ConsoleSection(
        _("Connected systems"),
        _("Your PACS and viewers: long-lived DICOMweb credentials to read your studies."),
        "console-connected-systems",
        roles.CONNECTED_SYSTEM_ADMIN_ROLES,
    ),
    ConsoleSection(
        _("Deadline policy"),
        _("How fast each priority must be read, warnings and escalation."),
        "console-policy",
        roles.ALLIANCE_POLICY_ROLES,
    ),
    ConsoleSection(
        _("Reading pools"),
        _("Groups of readers, their caps and overflow."),
        "console-pools",
        roles.POOL_STAFFING_ROLES,
    ),
    ConsoleSection(
        _("On-call roster"),
        _("Who reads when."),
        "console-roster",
        roles.POOL_STAFFING_ROLES,
    ),
    ConsoleSection(
        _("Routing rules"),
        _("Which pool reads which sites' studies."),
        "console-rules",
        roles.ROUTING_ROLES,
    ),
    ConsoleSection(
        _("Report templates"),
        _("The structured templates readers write reports from."),
        "console-templates",
        roles.TEMPLATE_ROLES,
    ),
    ConsoleSection(
        _("Patient identity"),
        _("One person's records across the sites: links to review, link and unlink."),
        "identity-review",
        roles.PATIENT_IDENTITY_ROLES,
    ),
    ConsoleSection(
        _("Audit trail"),
        _("Who did what at your institution."),
        "audit-list",
        roles.AUDIT_ROLES,
    ),
]


@dataclass(frozen=True)
class ConsoleLink:
    label: str | Promise
    description: str | Promise
    url: str


def console_sections(scope: Scope) -> list[ConsoleLink]:
    """The sections `scope` may use, in the list's order."""
    links = []
    for section in SECTIONS:
        if not scope.has_any_role(*section.roles):
            continue
        try:
            url = reverse(section.url_name)
        except NoReverseMatch:  # a section whose page is not in this build
            continue
        links.append(ConsoleLink(section.label, section.description, url))
    return links
