"""What every DICOMweb view shares: who may call it, and DICOM JSON responses."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from django.utils.translation import gettext
from rest_framework import permissions
from rest_framework.authentication import SessionAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from referrals.archive.selectors import InstancesRejectedError
from tenants import access
from tenants.auth import GatewayCredentialAuthentication, HubTokenAuthentication
from tenants.connected_systems import ConnectedSystemAuthentication
from tenants.roles import IMAGE_READ_ROLES, IMAGE_SEND_ROLES

DICOM_JSON = "application/dicom+json"


class HasDicomRole(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        scope = access.scope_for_request(request)
        if scope.institution is None:
            return False
        return scope.has_any_role(*view.roles_for(request.method or "GET"))


class DicomContentNegotiation(BaseContentNegotiation):
    """DICOMweb views read the Accept header themselves (PS3.18 8.7); DRF only renders
    its own errors (401/403), always as JSON."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: Any, format_suffix: Any = None
    ) -> tuple[Any, str]:
        return renderers[0], renderers[0].media_type


class UnreadBodyParser(BaseParser):
    """DICOMweb views stream request bodies themselves (STOW-RS); DRF must leave them unread.

    Session authentication's CSRF check asks DRF for `request.POST`, which would otherwise
    run a parser over (and consume) a browser's STOW body before the view sees it.
    """

    media_type = "*/*"

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        return {}


class DicomWebView(APIView):
    """Base for DICOMweb endpoints: sessions (the viewer), tokens, gateways (STOW), and the
    hospitals' connected systems (a PACS, a viewer)."""

    content_negotiation_class = DicomContentNegotiation
    renderer_classes = [JSONRenderer]
    parser_classes = [UnreadBodyParser]
    schema = None  # DICOMweb is specified by PS3.18, not by our OpenAPI document

    authentication_classes = [
        GatewayCredentialAuthentication,
        ConnectedSystemAuthentication,
        HubTokenAuthentication,
        SessionAuthentication,
    ]
    permission_classes = [permissions.IsAuthenticated, HasDicomRole]

    def roles_for(self, method: str) -> frozenset[str]:
        """Sending images (POST) and looking at them (everything else) are different rights."""
        return IMAGE_SEND_ROLES if method == "POST" else IMAGE_READ_ROLES

    @property
    def scope(self) -> access.Scope:
        return access.scope_for_request(self.request)

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, InstancesRejectedError):
            return HttpResponse(
                gettext(
                    "These images were rejected (%(reason)s) by the archive's administrators "
                    "and are no longer available."
                )
                % {"reason": rejection_reason_label(exc.code)},
                status=410,
                content_type="text/plain; charset=utf-8",
            )
        return super().handle_exception(exc)


def rejection_reason_label(code: str) -> str:
    """An IOCM rejection code as a person reads it."""
    labels = {
        "113001": gettext("rejected for quality reasons"),
        "113037": gettext("rejected for patient safety reasons"),
        "113038": gettext("incorrect modality worklist entry"),
        "113039": gettext("data retention policy expired"),
    }
    return labels.get(code, code)


def dicom_json_response(body: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(
        json.dumps(body, ensure_ascii=False), status=status, content_type=DICOM_JSON
    )


def element(vr: str, *values: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"vr": vr}
    if values and values != (None,):
        item["Value"] = list(values)
    return item
