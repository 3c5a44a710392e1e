"""The second factor's pages: set it up, enter a code at sign-in, recovery codes, remove."""

from __future__ import annotations

import django_otp
from axes.helpers import get_lockout_response
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from ..models import User
from . import services

CODES_SESSION_KEY = "hub_two_factor_new_codes"
CODE_FIELD = "otp_token"


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


def _next_url(request: HttpRequest) -> str:
    """Where to go after the code: the page first asked for, if it is one of ours."""
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    safe = url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    if not safe or wanted.startswith(reverse("two-factor-verify")):
        return reverse("home")
    return wanted


def _show_codes(request: HttpRequest, codes: list[str]) -> HttpResponse:
    # Shown once, on the next page (a reload of the form's answer would not post it again).
    request.session[CODES_SESSION_KEY] = codes
    return redirect("two-factor-recovery-codes")


@login_required
def two_factor_manage(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    return render(
        request,
        "tenants/two_factor/manage.html",
        {
            "device": services.two_factor_device(user=user),
            "codes_left": services.recovery_codes_left(user=user),
            "required": services.two_factor_required(user=user),
        },
    )


@login_required
def two_factor_enrol(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if services.two_factor_enrolled(user=user):
        return redirect("two-factor")
    error = ""
    if request.method == "POST":
        try:
            device, codes = services.two_factor_enrol_confirm(
                user=user, code=request.POST.get(CODE_FIELD, ""), request=request
            )
        except ValidationError as refusal:
            error = " ".join(refusal.messages)
        else:
            django_otp.login(request, device)
            request.session.cycle_key()
            return _show_codes(request, codes)
    device = services.two_factor_enrol_start(user=user)
    return render(
        request,
        "tenants/two_factor/enrol.html",
        {
            "qr": services.two_factor_qr_data_uri(device),
            "secret": services.two_factor_secret(device),
            "required": services.two_factor_required(user=user),
            "error": error,
            "next": _next_url(request),
        },
        status=400 if error else 200,
    )


@login_required
def two_factor_recovery_codes(request: HttpRequest) -> HttpResponse:
    codes = request.session.pop(CODES_SESSION_KEY, None)
    if not codes:
        return redirect("two-factor")
    return render(request, "tenants/two_factor/recovery_codes.html", {"codes": codes})


@login_required
@require_POST
def two_factor_regenerate(request: HttpRequest) -> HttpResponse:
    try:
        codes = services.two_factor_recovery_codes_regenerate(
            user=_user(request), code=request.POST.get(CODE_FIELD, ""), request=request
        )
    except ValidationError as refusal:
        messages.error(request, " ".join(refusal.messages))
        return redirect("two-factor")
    return _show_codes(request, codes)


@login_required
@require_POST
def two_factor_remove(request: HttpRequest) -> HttpResponse:
    try:
        services.two_factor_remove(
            user=_user(request), code=request.POST.get(CODE_FIELD, ""), request=request
        )
    except (ValidationError, PermissionDenied) as refusal:
        text = " ".join(refusal.messages) if isinstance(refusal, ValidationError) else str(refusal)
        messages.error(request, text)
    else:
        messages.success(request, _("The second factor is removed: a password alone signs you in."))
    return redirect("two-factor")


@login_required
def two_factor_verify(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if user.is_verified() or not services.two_factor_enrolled(user=user):  # type: ignore[attr-defined]
        return HttpResponseRedirect(_next_url(request))
    if services.two_factor_locked(user=user, request=request):
        return _locked_out(request)
    error = ""
    if request.method == "POST":
        try:
            device = services.two_factor_verify(
                user=user, code=request.POST.get(CODE_FIELD, ""), request=request
            )
        except ValidationError as refusal:
            if getattr(request, "axes_locked_out", False):
                return _locked_out(request)
            error = " ".join(refusal.messages)
        else:
            django_otp.login(request, device)
            request.session.cycle_key()
            return HttpResponseRedirect(_next_url(request))
    return render(
        request,
        "tenants/two_factor/verify.html",
        {"error": error, "next": _next_url(request)},
        status=400 if error else 200,
    )


def _locked_out(request: HttpRequest) -> HttpResponse:
    """The account waits: this half-signed-in session ends, and the lockout page says so."""
    credentials = {"username": _user(request).get_username()}
    logout(request)
    return get_lockout_response(request, None, credentials)
