"""A signed-in session that owes its second factor sees only the code or enrolment page.

After django-otp's OTPMiddleware (which says whether this session verified a device):
- a user with a confirmed factor who has not entered a code in this session is sent to the
  code page, the page they asked for kept in `next`;
- a user whose role requires a factor (HUB_TWO_FACTOR_REQUIRED, tenants/roles.py
  TWO_FACTOR_ROLES) and who has none is sent to the enrolment page.
Left alone: the two pages themselves, signing out, static files, the language switch, the
health check and the patients' share-link pages (no account). The API and DICOMweb answer
API tokens (whose sign-in asks the code itself): there a session that owes its factor
counts as no session at all.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import Resolver404, resolve, reverse

from . import services

EXEMPT_URL_NAMES = frozenset(
    {
        "two-factor-verify",
        "two-factor-enrol",
        "logout",
        "oidc_logout",
        "healthz",
        "set_language",
        "javascript-catalog",
        "share-page",
        "share-patient",
        "share-pdf",
        "share-viewer",
        "share-frame",
    }
)
TOKEN_PREFIXES = ("/api/", "/dicomweb/")


class TwoFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or user.is_verified():
            return self.get_response(request)
        path = request.path_info
        if path.startswith(settings.STATIC_URL) or _url_name(path) in EXEMPT_URL_NAMES:
            return self.get_response(request)
        enrolled = services.two_factor_enrolled(user=user)
        if not enrolled and not services.two_factor_required(user=user):
            return self.get_response(request)
        if path.startswith(TOKEN_PREFIXES):
            request.user = AnonymousUser()
            return self.get_response(request)
        page = "two-factor-verify" if enrolled else "two-factor-enrol"
        target = reverse(page)
        if request.method == "GET":
            target += "?" + urlencode({"next": request.get_full_path()})
        return HttpResponseRedirect(target)


def _url_name(path: str) -> str:
    try:
        return resolve(path).url_name or ""
    except Resolver404:
        return ""
