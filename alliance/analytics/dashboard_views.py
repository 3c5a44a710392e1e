"""The commission dashboard page: filters and empty chart panels that dashboard.js fills.

The figures themselves come from the analytics API (/api/v1/analytics/, alliance/analytics/);
this view only checks the caller may see them, offers the filter choices their scope allows
and hands the page its words in the caller's language. Nothing here names a patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from rest_framework import exceptions

from alliance.access_rules import analytics_alliance_ids
from alliance.models import Alliance, AllianceMember, Tier
from referrals.models import Priority, ReferralKind, ReturnReason
from tenants import access
from tenants.roles import REGION_VIEWER_ROLES

from .models import Grain, StudyRollup
from .selection import Selection, selection_parse

# The modalities a grassroots site commonly has (DICOM CID 29 codes); the API accepts any.
MODALITIES = ["CT", "MR", "DR", "CR", "DX", "US", "MG", "XA", "RF", "NM", "PT"]


def require_dashboard_scope(request: HttpRequest) -> access.Scope:
    """Commission viewers (the alliances they oversee) and alliance admins (their own)."""
    scope: access.Scope = request.hub_scope  # type: ignore[attr-defined]
    if not scope.has_any_role(*REGION_VIEWER_ROLES):
        raise PermissionDenied
    return scope


def _messages(detail: Any) -> list[str]:
    """DRF's error detail (a dict of lists, a list or a string) as plain sentences."""
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _messages(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _messages(value)]
    return [str(detail)]


@dataclass(frozen=True)
class SiteChoice:
    pk: int
    name: str
    alliance_ids: str  # space-separated, for the page to narrow the list by alliance
    region: str
    tiers: str


def _sites(members: list[AllianceMember], alliances: list[Alliance]) -> list[SiteChoice]:
    """Member institutions (and lead hospitals) of the alliances, each with where it sits."""
    by_site: dict[int, dict[str, Any]] = {}
    places = [(m.alliance_id, m.institution, m.tier) for m in members]
    places += [(a.pk, a.lead_hospital, Tier.CENTRAL) for a in alliances]
    for alliance_id, institution, tier in places:
        site = by_site.setdefault(
            institution.pk,
            {
                "name": institution.display_name,
                "region": institution.region_code,
                "alliances": set(),
                "tiers": set(),
            },
        )
        site["alliances"].add(str(alliance_id))
        site["tiers"].add(tier)
    return sorted(
        (
            SiteChoice(
                pk,
                s["name"],
                " ".join(sorted(s["alliances"])),
                s["region"],
                " ".join(sorted(s["tiers"])),
            )
            for pk, s in by_site.items()
        ),
        key=lambda c: c.name,
    )


def dashboard_strings() -> dict[str, Any]:
    """What dashboard.js says, translated here so the one django.po catalog holds it all.

    Placeholders are %(name)s, filled in by the page. `columns` names the API's table
    columns (docs/analytics.md); `values` the codes that appear in them.
    """
    minutes = round(settings.HUB_ANALYTICS_REFRESH_SECONDS / 60) or 1
    return {
        "loading": _("Loading figures…"),
        "failed": _("Some figures could not be loaded (HTTP %(status)s)."),
        "noData": _("No data for these filters."),
        "asOf": _("Figures as of %(time)s."),
        "refreshEvery": ngettext(
            "They are brought up to date every %(minutes)s minute.",
            "They are brought up to date every %(minutes)s minutes.",
            minutes,
        )
        % {"minutes": minutes},
        "neverRefreshed": _(
            "The figures have not been computed yet: the first refresh "
            "runs within minutes of the hub starting."
        ),
        "unrouted": _("not routed"),
        "percent": _("%(value)s %%"),
        "columns": {
            "period": _("Period"),
            "site_name": _("Site"),
            "reader_name": _("Reader hospital"),
            "tier": _("Tier"),
            "modality": _("Modality"),
            "priority": _("Priority"),
            "studies": _("Studies"),
            "remote_read": _("Read remotely"),
            "remote_share": _("Share read remotely"),
            "referrals": _("Referrals"),
            "reported": _("Reported"),
            "p50_minutes": _("Median (p50), minutes"),
            "p90_minutes": _("p90, minutes"),
            "mean_minutes": _("Mean, minutes"),
            "breached": _("Deadline breaches"),
            "breach_rate": _("Breach rate"),
            "escalations": _("Escalations"),
            "source_tier": _("From tier"),
            "target_tier": _("To tier"),
            "kind": _("Kind"),
            "direction": _("Direction"),
            "readers": _("Readers"),
            "reported_per_day": _("Reported per day"),
            "reported_per_reader_per_day": _("Reported per reader per day"),
            "open_now": _("Open cases now"),
            "capacity": _("Open-case capacity"),
            "capacity_use": _("Capacity use"),
            "studies_per_day": _("Studies per day"),
            "capacity_per_day": _("Scanner capacity per day"),
            "utilisation": _("Scanner utilisation"),
            "returned": _("Returned for quality"),
            "return_rate": _("Return rate"),
            "reason": _("Reason"),
            "second_reads": _("Second reads"),
            "agree": _("Agreed"),
            "minor": _("Minor discrepancy"),
            "major": _("Major discrepancy"),
            "discrepancy_rate": _("Discrepancy rate"),
            "critical": _("Critical results"),
            "critical_acknowledged": _("Acknowledged"),
            "critical_in_time": _("Acknowledged in time"),
            "critical_escalated": _("Escalated"),
            "critical_mean_ack_minutes": _("Mean minutes to acknowledge"),
            "priors_shared": _("Priors from another site"),
            "priors_shared_rate": _("Share with priors from another site"),
            "repeats_30d": _("Repeats within 30 days"),
            "repeats_cross_site": _("Repeats at another site"),
            "repeat_rate": _("Repeat rate"),
        },
        "values": {
            "tier": dict(Tier.choices),
            "priority": dict(Priority.choices),
            "kind": dict(ReferralKind.choices),
            "reason": dict(ReturnReason.choices),
            "direction": {
                "up": _("upward"),
                "down": _("downward"),
                "same": _("same tier"),
                "unrouted": _("not routed"),
                "unknown": _("unknown"),
            },
        },
    }


@dataclass(frozen=True)
class Panel:
    """One chart of the page: the API figure set and table it shows (dashboard.js draws it)."""

    key: str
    figure_set: str
    table: str
    heading: str
    description: str


def dashboard_panels() -> list[Panel]:
    """The panels, in page order."""
    return [
        Panel(
            "volume-day",
            "volumes",
            "by_period",
            _("Studies by day"),
            _(
                "Studies made each day (each month for ranges over three months), and the share "
                "read remotely."
            ),
        ),
        Panel(
            "volume-site",
            "volumes",
            "by_site",
            _("Studies by site"),
            _("Studies per site, read remotely or locally."),
        ),
        Panel(
            "volume-modality",
            "volumes",
            "by_modality",
            _("Studies by modality"),
            _("Studies per modality."),
        ),
        Panel(
            "tat-priority",
            "turnaround",
            "by_priority",
            _("Turnaround by priority"),
            _("Minutes from request to signed report: median (p50) and p90."),
        ),
        Panel(
            "tat-reader",
            "turnaround",
            "by_reader",
            _("Turnaround by reader hospital"),
            _("Minutes from request to signed report, per reading institution."),
        ),
        Panel(
            "breaches",
            "turnaround",
            "by_priority",
            _("Deadline breaches and escalations"),
            _("Cases signed after their deadline, and the escalations that followed."),
        ),
        Panel(
            "flows",
            "flows",
            "links",
            _("Referral flows between tiers"),
            _("Referrals from tier to tier, upward and downward."),
        ),
        Panel(
            "workload",
            "workload",
            "by_reader",
            _("Reader workload and capacity use"),
            _(
                "Reports signed per reader hospital, and open cases now against its readers' "
                "capacity."
            ),
        ),
        Panel(
            "scanners",
            "scanners",
            "by_site_modality",
            _("Scanner utilisation per grassroots site"),
            _(
                "Studies per day at each grassroots site and modality, against a scanner's "
                "daily capacity."
            ),
        ),
        Panel(
            "quality-returns",
            "quality",
            "by_site",
            _("Returned for quality"),
            _("Remote reads returned to the site for quality, and their rate, per site."),
        ),
        Panel(
            "quality-reasons",
            "quality",
            "return_reasons",
            _("Why studies were returned"),
            _("Returns for quality by reason, per site."),
        ),
        Panel(
            "quality-second-read",
            "quality",
            "by_reader",
            _("Second-read discrepancies"),
            _(
                "Second reads that agreed or found a minor or major discrepancy, per reader "
                "hospital."
            ),
        ),
        Panel(
            "quality-critical",
            "quality",
            "by_site",
            _("Critical results"),
            _("Critical results per site, and how soon the clinic acknowledged them."),
        ),
        Panel(
            "recognition",
            "recognition",
            "by_site",
            _("Mutual recognition"),
            _(
                "Remote reads with priors from another site, and repeat examinations of the "
                "same body part within 30 days."
            ),
        ),
    ]


def _modalities(scope: access.Scope) -> list[str]:
    """The common modalities, then any other the caller's rollups hold."""
    held = set(
        access.visible(scope, StudyRollup)
        .filter(grain=Grain.MONTH)
        .values_list("modality", flat=True)
        .distinct()
    )
    return MODALITIES + sorted(held - set(MODALITIES))


def _exports(panel: Panel, filters: dict[str, Any]) -> dict[str, str]:
    """The API's CSV and Excel of one panel's table (dashboard.js keeps them current)."""
    query = {k: str(v) for k, v in filters.items() if v not in (None, "")}
    base = reverse(f"api:analytics-{panel.figure_set}")
    return {
        fmt: f"{base}?{urlencode({**query, 'format': fmt, 'table': panel.table})}"
        for fmt in ("csv", "xlsx")
    }


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    scope = require_dashboard_scope(request)
    alliances = list(
        access.visible(scope, Alliance)
        .filter(pk__in=analytics_alliance_ids(scope))
        .select_related("lead_hospital")
        .order_by("code")
    )
    members = list(
        access.visible(scope, AllianceMember)
        .filter(alliance__in=alliances)
        .select_related("institution")
    )
    sites = _sites(members, alliances)
    # The page takes exactly the filters the API takes, checked by the API's own parser: a
    # bad value is a 400 here too, and another alliance's id a 404 like a missing one.
    errors: list[str] = []
    try:
        selection: Selection | None = selection_parse(scope, request.GET)
    except exceptions.NotFound as exc:
        raise Http404 from exc
    except exceptions.ValidationError as exc:
        errors, selection = _messages(exc.detail), None
    if selection is None:
        selection = selection_parse(scope, {})
    filters = {
        "alliance": selection.alliance_ids[0]
        if request.GET.get("alliance") and not errors
        else None,
        "region": selection.region,
        "institution": selection.institution,
        "tier": selection.tier,
        "modality": selection.modality,
        "date_from": selection.first,
        "date_to": selection.last,
    }
    return render(
        request,
        "alliance/dashboard.html",
        {
            "errors": errors,
            "filters": filters,
            "alliances": alliances,
            "regions": sorted({s.region for s in sites if s.region}),
            "sites": sites,
            "tiers": Tier.choices,
            "modalities": _modalities(scope),
            "panels": [(panel, _exports(panel, filters)) for panel in dashboard_panels()],
            "strings": dashboard_strings(),
            "api_base": reverse("api:analytics-options").removesuffix("options/"),
        },
        status=400 if errors else 200,
    )
