"""The console page of an alliance's deadline policy (its administrator only)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms.models import model_to_dict
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _

from tenants.access import get_visible_or_404, scope_for_request

from .policy_forms import AlliancePolicyForm
from .policy_services import (
    POLICY_FIELDS,
    alliance_policy_for,
    alliance_policy_update,
    policy_alliances,
)


@login_required
def policy_edit(request: HttpRequest) -> HttpResponse:
    scope = scope_for_request(request)
    alliances = policy_alliances(scope=scope)
    if not alliances.exists():
        raise PermissionDenied
    wanted = request.GET.get("alliance")
    alliance = get_visible_or_404(scope, alliances, pk=wanted) if wanted else alliances.first()
    assert alliance is not None
    policy = alliance_policy_for(alliance=alliance)
    form = AlliancePolicyForm(
        request.POST or None,
        scope=scope,
        alliance=alliance,
        initial=model_to_dict(policy, fields=POLICY_FIELDS),
    )
    if request.method == "POST" and form.is_valid():
        try:
            alliance_policy_update(
                scope=scope, alliance=alliance, changes=form.cleaned_data, request=request
            )
        except ValidationError as exc:
            for name, errors in exc.message_dict.items():
                form.add_error(name if name in form.fields else None, errors)
        else:
            messages.success(request, _("The deadline policy is saved."))
            return HttpResponseRedirect(f"{reverse('console-policy')}?alliance={alliance.pk}")
    return render(
        request,
        "alliance/console_policy.html",
        {"form": form, "alliance": alliance, "alliances": alliances},
    )
