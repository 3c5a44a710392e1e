"""Web pages of a referral: one referral with its timeline (both sides see it)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tenants import access

from .models import Referral


@login_required
def referral_detail(request: HttpRequest, pk: int) -> HttpResponse:
    scope: access.Scope = request.hub_scope  # type: ignore[attr-defined]
    referral = access.get_visible_or_404(
        scope, Referral.objects.select_related("study", "source", "target", "pool"), pk=pk)
    events = referral.events.select_related("actor", "actor_institution")
    return render(request, "referrals/referral_detail.html",
                  {"referral": referral, "events": events})
