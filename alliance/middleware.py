"""The hub's own request middleware: NUL characters refused, and machine clients' language.

A request holding a NUL character is refused here, as PostgreSQL cannot store or match one.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.middleware.locale import LocaleMiddleware
from django.utils import translation
from django.utils.translation import gettext as _

NUL = "\x00"
# DICOMweb answers and audits its own refusals of a query (PS3.18;
# referrals/archive/dicomweb/qido.py).
OWN_QUERY_CHECKS = "/dicomweb/"


def _shown(name: str) -> str:
    return name.replace(NUL, "\\0")[:80]


def nul_refusal(request: HttpRequest) -> str | None:
    """Why the request cannot be served (where it holds a NUL), or None when it holds none."""
    if NUL in request.path:
        return _("The address holds a NUL character (byte 0), which no identifier may contain.")
    for name, value in request.META.items():
        is_header = name.startswith("HTTP_") or name in ("CONTENT_TYPE", "CONTENT_LENGTH")
        if is_header and isinstance(value, str) and NUL in value:
            header = name.removeprefix("HTTP_").replace("_", "-").title()
            return _(
                "The %(name)s header holds a NUL character (byte 0), which HTTP does not allow."
            ) % {"name": header}
    if request.path.startswith(OWN_QUERY_CHECKS):
        return None
    for key, values in request.GET.lists():
        if NUL in key or any(NUL in value for value in values):
            return _(
                "The query parameter %(name)s holds a NUL character (byte 0), which no "
                "search may contain."
            ) % {"name": _shown(key)}
    return None


class RefuseNulCharactersMiddleware:
    """A 400 with a sentence, before any view can pass the NUL to the database (a 500).

    One place rather than every filter of every list and the token lookup: PostgreSQL
    refuses NUL in any text or JSON value, so no view can do anything useful with one.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = nul_refusal(request)
        if refusal is None:
            return self.get_response(request)
        if request.path.startswith("/api/"):
            # The API's one error shape (tenants.errors), like every other refusal it makes.
            return JsonResponse({"detail": refusal, "code": "nul_character"}, status=400)
        return HttpResponseBadRequest(refusal, content_type="text/plain; charset=utf-8")


# Where the callers are programs (PACS, viewers, scripts, gateways) rather than pages.
MACHINE_PREFIXES = ("/api/", "/dicomweb/")
MACHINE_LANGUAGE = "en"


def asks_for_a_language(request: HttpRequest) -> bool:
    """Whether the caller said which language it reads: a header, or the site's cookie."""
    return bool(request.META.get("HTTP_ACCEPT_LANGUAGE", "").strip()) or bool(
        request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
    )


class HubLocaleMiddleware(LocaleMiddleware):
    """Django's choice of language, except for programs that name none.

    The site's default is Chinese, for the people who open its pages (browsers always send
    Accept-Language). A PACS, a script or dicomweb-client sends no Accept-Language, and its
    refusals end up in logs and in tickets read by integrators: English, the lingua franca of
    DICOM and HTTP logs, unless the request asks for another language.
    """

    def process_request(self, request: HttpRequest) -> None:
        if request.path.startswith(MACHINE_PREFIXES) and not asks_for_a_language(request):
            translation.activate(MACHINE_LANGUAGE)
            request.LANGUAGE_CODE = translation.get_language()
            return
        super().process_request(request)
