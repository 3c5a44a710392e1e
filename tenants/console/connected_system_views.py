"""Console pages of an institution's connected systems (its PACS, viewers): list, create
(the secret shown in that answer only) and revoke. Thin: each action calls one service."""

from __future__ import annotations

import datetime as dt
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from .. import access, roles
from ..access import Scope, scope_for_request
from ..connected_systems import (
    bearer_token,
    connected_system_create,
    connected_system_list,
    connected_system_revoke,
)
from ..models import ConnectedSystem
from .forms import ConnectedSystemForm


def _admin_scope(request: HttpRequest) -> Scope:
    scope = scope_for_request(request)
    if scope.institution is None or not scope.has_any_role(*roles.CONNECTED_SYSTEM_ADMIN_ROLES):
        raise PermissionDenied
    return scope


def _end_of_day(day: dt.date) -> dt.datetime:
    """An expiry date means the credential works through that whole day, local time."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time.max))


def orthanc_example(request: HttpRequest, system: ConnectedSystem, secret: str) -> str:
    """The "DicomWeb" → "Servers" entry of Orthanc's configuration, ready to paste."""
    entry = {
        "DicomWeb": {
            "Servers": {
                "hub": {
                    "Url": request.build_absolute_uri("/dicomweb/"),
                    "Username": system.key_id,
                    "Password": secret,
                }
            }
        }
    }
    return json.dumps(entry, indent=2)


@login_required
def systems_page(request: HttpRequest) -> HttpResponse:
    """The institution's connected systems; a new one's secret is shown in this answer only."""
    scope = _admin_scope(request)
    form = ConnectedSystemForm(request.POST or None)
    created: tuple[ConnectedSystem, str] | None = None
    if request.method == "POST" and form.is_valid():
        expires_on = form.cleaned_data["expires_on"]
        try:
            created = connected_system_create(
                scope=scope,
                name=form.cleaned_data["name"],
                kind=form.cleaned_data["kind"],
                may_store=form.cleaned_data["may_store"],
                expires_at=_end_of_day(expires_on) if expires_on else None,
                request=request,
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error("expires_on" if field == "expires_at" else field, errors)
        else:
            form = ConnectedSystemForm()
    context = {
        "form": form,
        "systems": connected_system_list(scope=scope),
        "dicomweb_url": request.build_absolute_uri("/dicomweb/"),
        "created": None,
    }
    if created is not None:
        system, secret = created
        context.update(
            created=system,
            secret=secret,
            bearer=bearer_token(system, secret),
            orthanc=orthanc_example(request, system, secret),
        )
    status = 400 if request.method == "POST" and created is None else 200
    return render(request, "tenants/console/connected_systems.html", context, status=status)


@login_required
@require_POST
def system_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _admin_scope(request)
    system = access.connected_system_for_user(scope, pk)
    connected_system_revoke(scope=scope, system=system, request=request)
    messages.success(
        request,
        _("%(name)s is revoked: its next request is refused.") % {"name": system.name},
    )
    return HttpResponseRedirect(reverse("console-connected-systems"))
