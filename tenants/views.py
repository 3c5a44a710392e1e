"""Web pages of the tenants app: sign-in, password reset, institution switch, notices, audit."""

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
from django_ratelimit.core import is_ratelimited

from . import access, roles, services
from .audit import AuditCode, audit_read, audit_record
from .console.forms import HubPasswordResetForm
from .console.services import StaffMail, password_set_by_link_record
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


# "Forgot your password?" mails at most this often to one address, and from one client
# address: nobody can flood a colleague's mailbox with links (django-ratelimit, default cache).
RESET_RATE_PER_ADDRESS = "3/h"
RESET_RATE_PER_CLIENT = "20/h"


class PasswordResetView(auth_views.PasswordResetView):
    """Forgot your password? The same answer whether or not the address is known, and
    whether or not the rate limit held the mail back."""

    template_name = "tenants/password_reset.html"
    form_class = HubPasswordResetForm
    success_url = reverse_lazy("password-reset-done")

    def form_valid(self, form: Any) -> HttpResponse:
        address = form.cleaned_data["email"].strip().lower()
        limited = [
            is_ratelimited(
                self.request,
                group="password-reset-client",
                key="ip",
                rate=RESET_RATE_PER_CLIENT,
                increment=True,
            ),
            is_ratelimited(
                self.request,
                group="password-reset-address",
                key=lambda _group, _request: address,
                rate=RESET_RATE_PER_ADDRESS,
                increment=True,
            ),
        ]
        if any(limited):
            return HttpResponseRedirect(self.get_success_url())
        return super().form_valid(form)


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "tenants/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """The e-mailed link: choose a password (the policy in AUTH_PASSWORD_VALIDATORS applies),
    then be signed in. Django's token makes the link work once."""

    template_name = "tenants/password_set.html"
    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"
    success_url = reverse_lazy("home")
    link_kind = StaffMail.PASSWORD_RESET

    def get_user(self, uidb64: str) -> Any:
        user = super().get_user(uidb64)
        return user if user is not None and user.is_active else None

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(**kwargs) | {"link_kind": self.link_kind}

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        password_set_by_link_record(user=form.user, kind=self.link_kind, request=self.request)
        messages.success(self.request, _("Your password is set. You are signed in."))
        return response


class InviteAcceptView(PasswordResetConfirmView):
    """The invitation's link: the new member chooses their first password."""

    link_kind = StaffMail.INVITATION


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
