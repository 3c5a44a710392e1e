"""Web pages of the tenants app: sign-in, institution switch, directory, notifications, audit."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from . import access, services
from .models import AuditEvent, Notification, Role


class LoginView(auth_views.LoginView):
    template_name = "tenants/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or request.META.get("HTTP_REFERER") or fallback
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


@login_required
@require_POST
def switch_institution(request: HttpRequest) -> HttpResponse:
    try:
        scope = services.active_institution_set(
            session=request.session,
            user=request.user,  # type: ignore[arg-type]
            institution_id=request.POST.get("institution", ""),
            request=request,
        )
    except PermissionDenied:
        messages.error(request, _("You are not a member of that institution."))
        return HttpResponseRedirect(reverse("home"))
    assert scope.institution is not None
    messages.success(
        request, _("You now act for %(name)s.") % {"name": scope.institution.display_name}
    )
    return HttpResponseRedirect(_safe_next(request, reverse("home")))


@login_required
def notification_list(request: HttpRequest) -> HttpResponse:
    scope = request.hub_scope  # type: ignore[attr-defined]
    notifications = access.visible(scope, Notification).order_by("-created_at")
    page = Paginator(notifications, 25).get_page(request.GET.get("page"))
    return render(request, "tenants/notification_list.html", {"page": page})


@login_required
def audit_list(request: HttpRequest) -> HttpResponse:
    scope = request.hub_scope  # type: ignore[attr-defined]
    if not scope.has_any_role(Role.HOSPITAL_ADMIN):
        raise PermissionDenied
    events = access.visible(scope, AuditEvent).order_by("-id")
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(request, "tenants/audit_list.html", {"page": page})
