"""The administration console's home: the sections the caller may use, for their institution
(a hospital administrator) or their alliance (an alliance administrator)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tenants import access, roles
from tenants.access import scope_for_request
from tenants.models import Role

from .console import console_sections
from .models import Alliance


@login_required
def console_home(request: HttpRequest) -> HttpResponse:
    scope = scope_for_request(request)
    if scope.institution is None or not scope.has_any_role(*roles.CONSOLE_ROLES):
        raise PermissionDenied
    alliances = (
        access.visible(scope, Alliance).order_by("code")
        if scope.has_any_role(Role.ALLIANCE_ADMIN)
        else access.visible(scope, Alliance).none()
    )
    return render(
        request,
        "alliance/console_home.html",
        {
            "sections": console_sections(scope),
            "alliances": alliances,
            "role_labels": [Role(r).label for r in sorted(scope.roles) if r in Role.values],
        },
    )
