"""One family of refusals and one way to answer them over the API.

Services raise an `ApplicationError` (or a subclass: each app names its own, e.g.
`ReferralError`, `ReportError`) with a sentence for the person who asked, in their
language. Every API refusal, whoever raised it (a service, DRF, Django), answers the same
JSON shape:

    {"detail": "<a sentence>", "code": "<machine code>", "fields": {"<field>": ["..."]}}

`fields` is there only when particular fields were refused; `detail` then repeats the
first of them, so a page can always show `detail`. A service may add facts of its own
(e.g. `current_version` on a conflict of versions).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApplicationError(Exception):
    """A request the hub refuses, with a message for the person who made it."""

    status_code = 400
    default_code = "invalid"

    def __init__(self, message: Any, *, code: str = "", **extra: Any) -> None:
        super().__init__(str(message))
        self.code = code or self.default_code
        self.extra = extra


class ForbiddenError(ApplicationError):
    status_code = 403
    default_code = "forbidden"


class NotFoundError(ApplicationError):
    status_code = 404
    default_code = "not_found"


class ConflictError(ApplicationError):
    status_code = 409
    default_code = "conflict"


class ErrorSerializer(serializers.Serializer):
    """The shape of every refusal (for the OpenAPI document)."""

    detail = serializers.CharField(help_text="A sentence for the person who asked.")
    code = serializers.CharField(help_text="What was refused, for programs.")
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="The refused fields, each with its reasons.",
    )


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for value in detail.values():
            return _first_message(value)
        return ""
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else ""
    return str(detail)


def _code_of(detail: Any, fallback: str) -> str:
    codes = detail
    while isinstance(codes, dict | list) and codes:
        codes = next(iter(codes.values())) if isinstance(codes, dict) else codes[0]
    code = getattr(codes, "code", None)
    return str(code) if code else fallback


def _flatten(name: str, reasons: Any, into: dict[str, list[str]]) -> None:
    """Nested refusals (a list of objects, an object inside an object) as flat fields:
    `cases.1.study`, so every field's reasons are a list of sentences."""
    if isinstance(reasons, dict):
        for key, value in reasons.items():
            inner = name if key in ("non_field_errors", "detail") else f"{name}.{key}"
            _flatten(inner, value, into)
    elif isinstance(reasons, list):
        for index, value in enumerate(reasons):
            if isinstance(value, dict | list):
                _flatten(f"{name}.{index}", value, into)
            else:
                into.setdefault(name, []).append(value)
    else:
        into.setdefault(name, []).append(reasons)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """The hub's DRF exception handler: every refusal in the one shape."""
    if isinstance(exc, ApplicationError):
        return Response({"detail": str(exc), "code": exc.code, **exc.extra}, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(detail=str(exc) or None)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    detail: Any = exc.detail
    if isinstance(detail, dict) and set(detail) - {"detail", "non_field_errors"}:
        fields: dict[str, list[str]] = {}
        for key, value in detail.items():
            if key not in ("detail", "non_field_errors"):
                _flatten(str(key), value, fields)
        general = detail.get("non_field_errors") or detail.get("detail")
        response.data = {
            "detail": _first_message(general) if general else _first_message(fields),
            "code": _code_of(detail, "invalid"),
            "fields": fields,
        }
    elif isinstance(detail, dict):
        inner = detail.get("detail", detail.get("non_field_errors", ""))
        response.data = {"detail": _first_message(inner), "code": _code_of(inner, exc.default_code)}
    elif isinstance(detail, list):
        response.data = {
            "detail": _first_message(detail) or _("The request was refused."),
            "code": _code_of(detail, exc.default_code),
        }
    else:
        response.data = {"detail": str(detail), "code": _code_of(detail, exc.default_code)}
    return response
