"""Web pages of the tenants app: sign-in, institution switch, directory, notifications, audit."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from . import access, roles, services
from .audit import AuditCode, audit_read, audit_record
from .models import AuditEvent, Notification


class LoginView(auth_views.LoginView):
    template_name = "tenants/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


class PasswordChangeView(auth_views.PasswordChangeView):
    """The user changes their own password (the policy in AUTH_PASSWORD_VALIDATORS applies);
    audited as a change of their credentials. This session stays signed in."""

    template_name = "tenants/password_change.html"
    success_url = reverse_lazy("password-change-done")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        audit_record(
            event=AuditCode.CREDENTIAL_CHANGE,
            action=AuditEvent.Action.UPDATE,
            scope=self.request.hub_scope,  # type: ignore[attr-defined]
            request=self.request,
            object_type="password",
            object_id=self.request.user.pk or "",
            detail={"change": "password"},
        )
        return response


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "tenants/password_change_done.html"


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
    if not scope.has_any_role(*roles.AUDIT_ROLES):
        raise PermissionDenied
    # Recorded first, so the page lists its own reading too (counted before and read after a
    # new row, a page would lose its oldest line).
    audit_read(
        event=AuditCode.AUDIT_VIEWED,
        scope=scope,
        request=request,
        object_type="audit_trail",
        detail={"page": request.GET.get("page") or "1"},
    )
    events = access.visible(scope, AuditEvent).order_by("-id")
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(request, "tenants/audit_list.html", {"page": page})
