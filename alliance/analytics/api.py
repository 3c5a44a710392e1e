"""/api/v1/analytics/...: the commission's figures, read-only, as JSON, CSV or Excel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alliance.access_rules import analytics_alliance_ids
from alliance.models import Alliance, AllianceMember
from tenants import access
from tenants.roles import REGION_VIEWER_ROLES

from . import selectors
from .cache import figures_cached, remember_asked
from .export import CSVRenderer, XLSXRenderer
from .models import StudyRollup
from .refresh import last_refresh
from .selection import AnalyticsQuerySerializer, selection_parse


class AnalyticsPermission(permissions.BasePermission):
    """Commission viewers and alliance administrators; everyone else 403."""

    message = _("Only commission viewers and alliance administrators see the analytics.")

    def has_permission(self, request: Request, view: Any) -> bool:
        scope = access.scope_for_request(request)
        if scope.is_gateway or scope.institution is None:
            return False
        return request.method in permissions.SAFE_METHODS and scope.has_any_role(
            *REGION_VIEWER_ROLES
        )


FIGURE_SET_RESPONSE = inline_serializer(
    "AnalyticsFigureSet",
    {
        "figure_set": serializers.CharField(),
        "meta": serializers.DictField(
            help_text="refreshed_at (how fresh the rollups are), "
            "full_refresh_at, generated_at, filters echoed, "
            "and notes such as percentile_method"
        ),
        "totals": serializers.DictField(help_text="headline figures"),
        "tables": serializers.DictField(
            child=serializers.ListField(child=serializers.DictField()),
            help_text="named tables of flat rows; see docs/analytics.md",
        ),
    },
)
FORMAT = OpenApiParameter(
    "format",
    str,
    enum=["json", "csv", "xlsx"],
    description="json (default), csv or xlsx (an attachment)",
)


class AnalyticsView(APIView):
    permission_classes = [permissions.IsAuthenticated, AnalyticsPermission]
    renderer_classes = [JSONRenderer, CSVRenderer, XLSXRenderer]
    figure: str = ""

    def get(self, request: Request) -> Response:
        scope = access.scope_for_request(request)
        selection = selection_parse(scope, request.query_params)
        compute: Callable[..., selectors.FigureSet] = selectors.FIGURE_SETS[self.figure]
        state = last_refresh()
        answer = figures_cached(
            self.figure, selection, lambda: compute(selection).as_dict(selection), state
        )
        if scope.user is not None:
            remember_asked(
                self.figure,
                user_id=scope.user.pk,
                institution_id=scope.institution.pk if scope.institution else None,
                params=request.query_params,
            )
        # A cached answer is as fresh as the last refresh, even one that changed nothing.
        if state is not None and state.refreshed_at is not None:
            answer = {
                **answer,
                "meta": {**answer["meta"], "refreshed_at": state.refreshed_at.isoformat()},
            }
        if selection.table and selection.table not in answer["tables"]:
            raise exceptions.ValidationError(
                {
                    "table": _("This figure set has the tables: %(names)s.")
                    % {"names": ", ".join(answer["tables"])}
                }
            )
        return Response(answer)


def _figure_view(name: str, summary: str, description: str) -> type[AnalyticsView]:
    # The schema goes on the method: drf-spectacular refuses an operation_id on a class.
    @extend_schema(
        operation_id=f"analytics_{name}",
        summary=summary,
        description=description,
        parameters=[AnalyticsQuerySerializer, FORMAT],
        responses={200: FIGURE_SET_RESPONSE},
        tags=["analytics"],
    )
    def get(self: AnalyticsView, request: Request) -> Response:
        return AnalyticsView.get(self, request)

    return type(f"Analytics{name.title()}View", (AnalyticsView,), {"figure": name, "get": get})


VolumesView = _figure_view(
    "volumes",
    "Volumes by period, site and modality, and the share read remotely",
    "Tables: by_period (period, studies, remote_read, remote_share), by_site, by_modality.",
)
TurnaroundView = _figure_view(
    "turnaround",
    "Turnaround (request to signed report) p50/p90, breaches, escalations",
    "Tables: by_priority, by_reader, by_period. meta.percentile_method is exact or "
    "histogram (with meta.percentile_precision).",
)
FlowsView = _figure_view(
    "flows",
    "Referral flows between tiers, upward and downward",
    "Table: links (source_tier, target_tier, kind, direction, referrals) for a Sankey chart.",
)
WorkloadView = _figure_view(
    "workload",
    "Reader hospitals' workload against capacity",
    "Table: by_reader (referrals, reported, reported_per_day, open_now, capacity, capacity_use).",
)
ScannersView = _figure_view(
    "scanners",
    "Scanner utilisation per grassroots site and modality",
    "Table: by_site_modality (studies, studies_per_day, capacity_per_day, utilisation).",
)
QualityView = _figure_view(
    "quality",
    "Returns for quality, second-read discrepancies, critical findings",
    "Tables: by_site, return_reasons, by_reader.",
)
RecognitionView = _figure_view(
    "recognition",
    "Mutual recognition: shared priors and repeat examinations within 30 days",
    "Table: by_site (studies, repeats_30d, repeats_cross_site, referrals, priors_shared).",
)


class OptionsView(APIView):
    """What the filters can take for this caller, and how fresh the rollups are."""

    permission_classes = [permissions.IsAuthenticated, AnalyticsPermission]

    @extend_schema(
        operation_id="analytics_options",
        tags=["analytics"],
        responses={
            200: inline_serializer(
                "AnalyticsOptions",
                {
                    "refreshed_at": serializers.DateTimeField(allow_null=True),
                    "alliances": serializers.ListField(child=serializers.DictField()),
                    "institutions": serializers.ListField(child=serializers.DictField()),
                    "regions": serializers.ListField(child=serializers.CharField()),
                    "tiers": serializers.ListField(child=serializers.CharField()),
                    "modalities": serializers.ListField(child=serializers.CharField()),
                    "priorities": serializers.ListField(child=serializers.CharField()),
                    "figure_sets": serializers.ListField(child=serializers.CharField()),
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        scope = access.scope_for_request(request)
        ids = sorted(analytics_alliance_ids(scope))
        alliances = (
            access.visible(scope, Alliance).filter(pk__in=ids).select_related("lead_hospital")
        )
        members = (
            access.visible(scope, AllianceMember)
            .filter(alliance_id__in=ids)
            .select_related("institution")
            .order_by("institution__code")
        )
        state = last_refresh()
        modalities = sorted(
            set(
                access.visible(scope, StudyRollup)
                .filter(grain="month")
                .values_list("modality", flat=True)
                .distinct()
            )
        )
        return Response(
            {
                "refreshed_at": state.refreshed_at.isoformat()
                if state and state.refreshed_at
                else None,
                "alliances": [
                    {
                        "id": a.pk,
                        "code": a.code,
                        "name": a.display_name,
                        "region_code": a.region_code,
                    }
                    for a in alliances
                ],
                "institutions": [
                    {
                        "id": m.institution_id,
                        "code": m.institution.code,
                        "name": m.institution.display_name,
                        "tier": m.tier,
                        "region_code": m.institution.region_code,
                        "alliance_id": m.alliance_id,
                    }
                    for m in members
                ],
                "regions": sorted({m.institution.region_code for m in members}),
                "tiers": ["grassroots", "county", "central"],
                "modalities": modalities,
                "priorities": ["stat", "urgent", "routine"],
                "figure_sets": list(selectors.FIGURE_SETS),
            }
        )
