"""Response headers the hub sets on every answer of its own."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class NoStoreMiddleware:
    """`Cache-Control: no-store` on every answer that does not choose its own caching.

    Pages and API answers hold patient data; on a clinic's shared computer the browser's
    cache must not keep them after the user signs out. Answers that are safe to keep say so
    themselves (rendered frames: private, for the viewer's scrolling; static files are
    served before this middleware by WhiteNoise)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response
