"""What a figure request asks for: the filters, validated, and the rollup rows they select."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, serializers

from alliance.access_rules import analytics_alliance_ids
from alliance.models import Alliance, AllianceMember, Tier
from referrals.models import Priority
from tenants.access import Scope, visible

from .models import Grain, ReadingRollup, StudyRollup

DEFAULT_DAYS = 30
MAX_DAYS = 3 * 366
AUTO_DAILY_MAX_DAYS = 92  # longer ranges are drawn per month by default


class AnalyticsQuerySerializer(serializers.Serializer):
    """The filters every figure set takes (query parameters)."""

    alliance = serializers.IntegerField(
        required=False, min_value=1, help_text="An alliance id (default: every one you see)."
    )
    region = serializers.RegexField(
        r"^\d{2}(\d{2}){0,2}$",
        required=False,
        help_text="A GB/T 2260 region code or its prefix (2, 4 or 6 digits) of the sites.",
    )
    institution = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="An institution id: its own figures as a site and as a reader.",
    )
    tier = serializers.ChoiceField(
        choices=Tier.choices, required=False, help_text="The requesting sites' tier."
    )
    modality = serializers.RegexField(
        r"^[A-Za-z]{2,4}$", required=False, help_text="A modality code, e.g. CT."
    )
    priority = serializers.ChoiceField(
        choices=Priority.choices,
        required=False,
        help_text="Referral priority (referral figures only).",
    )
    date_from = serializers.DateField(
        required=False, help_text="First day, inclusive (default: 30 days ago)."
    )
    date_to = serializers.DateField(required=False, help_text="Last day, inclusive (today).")
    granularity = serializers.ChoiceField(
        choices=["auto", "day", "month"],
        default="auto",
        help_text="Series per day or month; auto: per day up to 92 days, else per month.",
    )
    table = serializers.CharField(
        required=False, max_length=40, help_text="CSV/Excel: export only this table."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        last = attrs.get("date_to") or timezone.localdate()
        first = attrs.get("date_from") or last - dt.timedelta(days=DEFAULT_DAYS - 1)
        if first > last:
            raise serializers.ValidationError(
                {"date_from": _("The first day comes before the last day.")}
            )
        if (last - first).days + 1 > MAX_DAYS:
            raise serializers.ValidationError(
                {"date_from": _("A range is at most %(days)s days.") % {"days": MAX_DAYS}}
            )
        attrs["date_from"], attrs["date_to"] = first, last
        if attrs.get("modality"):
            attrs["modality"] = attrs["modality"].upper()
        return attrs


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def period_q(first: dt.date, last: dt.date) -> Q:
    """[first, last] as whole months (month rows) plus the days at either edge (day rows)."""
    whole = month_start(first) if first.day == 1 else next_month(first)
    months: list[dt.date] = []
    while next_month(whole) - dt.timedelta(days=1) <= last:
        months.append(whole)
        whole = next_month(whole)
    if not months:
        return Q(grain=Grain.DAY, period__gte=first, period__lte=last)
    end = next_month(months[-1])
    return (
        Q(grain=Grain.MONTH, period__in=months)
        | Q(grain=Grain.DAY, period__gte=first, period__lt=months[0])
        | Q(grain=Grain.DAY, period__gte=end, period__lte=last)
    )


@dataclass
class Selection:
    """A caller's validated filters over the alliances they may see."""

    scope: Scope
    alliance_ids: list[int]
    first: dt.date
    last: dt.date
    granularity: str  # "day" or "month"
    region: str
    institution: int | None
    tier: str
    modality: str
    priority: str
    table: str

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def echo(self) -> dict[str, Any]:
        return {
            "alliances": self.alliance_ids,
            "date_from": self.first.isoformat(),
            "date_to": self.last.isoformat(),
            "granularity": self.granularity,
            "region": self.region or None,
            "institution": self.institution,
            "tier": self.tier or None,
            "modality": self.modality or None,
            "priority": self.priority or None,
        }

    def _base(self, model: type[ReadingRollup] | type[StudyRollup], *, series: bool) -> Q:
        if series and self.granularity == "day":
            q = Q(grain=Grain.DAY, period__gte=self.first, period__lte=self.last)
        else:
            q = period_q(self.first, self.last)
        q &= Q(alliance_id__in=self.alliance_ids)
        if self.region:
            q &= Q(site_region__startswith=self.region)
        if self.tier:
            q &= Q(site_tier=self.tier)
        if self.modality:
            q &= Q(modality=self.modality)
        return q

    def readings(self, *, series: bool = False) -> QuerySet[ReadingRollup]:
        q = self._base(ReadingRollup, series=series)
        if self.priority:
            q &= Q(priority=self.priority)
        if self.institution:
            q &= Q(site_id=self.institution) | Q(reader_id=self.institution)
        return visible(self.scope, ReadingRollup).filter(q)

    def studies(self, *, series: bool = False) -> QuerySet[StudyRollup]:
        q = self._base(StudyRollup, series=series)
        if self.institution:
            q &= Q(site_id=self.institution)
        return visible(self.scope, StudyRollup).filter(q)


def selection_parse(scope: Scope, params: Any) -> Selection:
    """Validate the query (400) and check the alliance and institution are the caller's
    (404 alike for "not yours" and "does not exist")."""
    form = AnalyticsQuerySerializer(
        data={k: params.get(k) for k in params if k in AnalyticsQuerySerializer().fields}
    )
    form.is_valid(raise_exception=True)
    data = form.validated_data
    allowed = sorted(analytics_alliance_ids(scope))
    alliance_ids = allowed
    if data.get("alliance") is not None:
        if data["alliance"] not in allowed:
            raise exceptions.NotFound(_("No such alliance."))
        alliance_ids = [data["alliance"]]
    institution = data.get("institution")
    if institution is not None:
        known = (
            AllianceMember.objects.filter(
                alliance_id__in=alliance_ids, institution_id=institution
            ).exists()
            or Alliance.objects.filter(pk__in=alliance_ids, lead_hospital_id=institution).exists()
        )
        if not known:
            raise exceptions.NotFound(_("No such institution."))
    granularity = data["granularity"]
    if granularity == "auto":
        days = (data["date_to"] - data["date_from"]).days + 1
        granularity = "day" if days <= AUTO_DAILY_MAX_DAYS else "month"
    return Selection(
        scope=scope,
        alliance_ids=alliance_ids,
        first=data["date_from"],
        last=data["date_to"],
        granularity=granularity,
        region=data.get("region", ""),
        institution=institution,
        tier=data.get("tier", ""),
        modality=data.get("modality", ""),
        priority=data.get("priority", ""),
        table=data.get("table", ""),
    )
