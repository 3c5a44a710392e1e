"""Attach the caller's scope (user, active institution, roles) to every web request."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from .access import scope_for_request


class ActiveInstitutionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.hub_scope = SimpleLazyObject(lambda: scope_for_request(request))  # type: ignore[attr-defined]
        return self.get_response(request)
