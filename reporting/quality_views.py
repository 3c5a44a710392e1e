"""Second-read quality for the reading hospital: discrepancy rates per reader, institution or
month (reporting.selectors.second_read_quality), for hospital admins and senior radiologists.

`/reports/quality/?group=reader|institution|month&start=YYYY-MM-DD&end=YYYY-MM-DD`; a bad
group or date is a 400 page saying which, never a 500.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from tenants import access
from tenants.roles import QUALITY_ROLES

from . import selectors


def _date(request: HttpRequest, name: str) -> dt.date | None:
    text = request.GET.get(name, "").strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(_("%(name)s is not a date (YYYY-MM-DD).") % {"name": name}) from None


@login_required
@require_GET
def report_quality(request: HttpRequest) -> HttpResponse:
    scope: access.Scope = request.hub_scope  # type: ignore[attr-defined]
    if scope.institution is None or not scope.has_any_role(*QUALITY_ROLES):
        raise PermissionDenied
    group = request.GET.get("group", "reader")
    context: dict[str, Any] = {
        "group": group,
        "groups": [
            ("reader", _("Reader")),
            ("institution", _("Reading institution")),
            ("month", _("Month")),
        ],
        "start": request.GET.get("start", ""),
        "end": request.GET.get("end", ""),
        "rows": [],
        "error": "",
    }
    try:
        if group not in selectors.QUALITY_GROUPS:
            raise ValueError(_("Group by reader, institution or month."))
        start, end = _date(request, "start"), _date(request, "end")
        if start and end and start > end:
            raise ValueError(_("The start comes after the end."))
    except ValueError as exc:
        context["error"] = str(exc)
        return render(request, "reporting/quality.html", context, status=400)
    rows = selectors.second_read_quality(scope, group=group, start=start, end=end)
    context.update({"rows": rows, "total": selectors.quality_total(rows)})
    return render(request, "reporting/quality.html", context)
