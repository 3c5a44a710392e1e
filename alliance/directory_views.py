"""The alliance's directory of institutions: whom a site can refer to, and where each stands."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tenants import access
from tenants.models import Institution

from .models import AllianceMember


@login_required
def institution_list(request: HttpRequest) -> HttpResponse:
    scope = request.hub_scope  # type: ignore[attr-defined]
    institutions = access.visible(scope, Institution).order_by("kind", "code")
    return render(request, "alliance/institution_list.html", {"institutions": institutions})


@login_required
def institution_detail(request: HttpRequest, pk: int) -> HttpResponse:
    scope = request.hub_scope  # type: ignore[attr-defined]
    institution = access.institution_for_user(scope, pk)
    places = (
        access.visible(scope, AllianceMember)
        .filter(institution=institution)
        .select_related("alliance")
    )
    return render(
        request, "alliance/institution_detail.html", {"institution": institution, "places": places}
    )
