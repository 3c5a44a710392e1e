"""Who sees which reports and critical findings; registered with tenants/access.py.

Whoever sees the referral sees its report, except that a draft stays at the reader; second
reads are the reading institution's own quality record.
"""

from __future__ import annotations

from django.db.models import Q

from referrals.access_rules import through_referral
from tenants.access import Scope, in_alliance, register_rules

from .models import CriticalFinding, Report


def reports(scope: Scope) -> Q:
    assert scope.institution is not None
    return through_referral(scope) & (~Q(status="draft") | Q(institution=scope.institution))


def through_report(scope: Scope) -> Q:
    return Q(report__in=Report.objects.filter(reports(scope)).values("pk"))


def second_reads(scope: Scope) -> Q:
    return through_report(scope) & Q(report__institution=scope.institution)


def critical_events(scope: Scope) -> Q:
    return Q(finding__in=CriticalFinding.objects.filter(through_referral(scope)).values("pk"))


RULES = {
    "reporting.reporttemplate": in_alliance("alliance"),
    "reporting.report": reports,
    "reporting.addendum": through_report,
    "reporting.secondread": second_reads,
    # Critical findings go with the referral; key images with the report.
    "reporting.criticalfinding": through_referral,
    "reporting.criticalevent": critical_events,
    "reporting.keyimage": through_report,
}


def register() -> None:
    register_rules(RULES)
