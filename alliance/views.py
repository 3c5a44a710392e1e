"""The home page and the health check."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from referrals.models import ReferralStatus
from referrals.workflow.selectors import clinic_home_referrals
from reporting.selectors import clinic_open_criticals
from tenants import access, roles
from tenants.models import Notification, Role

from .models import Alliance, AllianceMember
from .tasks import HEARTBEAT_KEY

HOME_ROWS = 10
"""How many rows each of the clinic's home sections shows before "see all"."""


@login_required
def home(request: HttpRequest) -> HttpResponse:
    scope = request.hub_scope  # type: ignore[attr-defined]
    alliances = (
        access.visible(scope, Alliance)
        .select_related("lead_hospital", "commission")
        .order_by("code")
    )
    members = (
        access.visible(scope, AllianceMember)
        .select_related("institution")
        .order_by("alliance__code", "-tier", "institution__code")
    )
    by_alliance: dict[int, list[AllianceMember]] = {}
    for member in members:
        by_alliance.setdefault(member.alliance_id, []).append(member)
    recent = access.visible(scope, Notification).order_by("-created_at")[:5]
    clinic = scope.institution is not None and scope.has_any_role(*roles.CLINIC_ROLES)
    return render(
        request,
        "alliance/home.html",
        {
            "clinic_home": clinic_home_referrals(scope=scope, limit=HOME_ROWS) if clinic else None,
            "criticals": clinic_open_criticals(scope=scope, limit=HOME_ROWS) if clinic else None,
            # The live sections (referrals.js) name a changed status before they re-read.
            "status_labels": dict(ReferralStatus.choices) if clinic else None,
            "alliances": [(a, by_alliance.get(a.pk, [])) for a in alliances],
            "recent_notifications": recent,
            "role_labels": [
                Role(role).label for role in sorted(scope.roles) if role in Role.values
            ],
        },
    )


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: the database answers; the worker's last heartbeat."""
    checks: dict[str, object] = {}
    healthy = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # the check exists to report exactly this
        checks["database"] = f"error: {exc.__class__.__name__}"
        healthy = False
    try:
        beat = cache.get(HEARTBEAT_KEY)
        checks["cache"] = "ok"
    except Exception as exc:
        beat = None
        checks["cache"] = f"error: {exc.__class__.__name__}"
        healthy = False
    if beat:
        age = (timezone.now() - datetime.fromisoformat(beat)).total_seconds()
        checks["worker_heartbeat_age_s"] = round(age, 1)
    else:
        checks["worker_heartbeat_age_s"] = None
    return JsonResponse(
        {"status": "ok" if healthy else "error", "checks": checks}, status=200 if healthy else 503
    )
