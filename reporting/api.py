"""API of the reporting app: templates, reports (draft, autosave, sign, second read), addenda.

Views are thin: each write calls one service in reporting/services.py, whose errors carry
their HTTP status (400 bad input, 403 not allowed, 404 not yours, 409 not now / stale).
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from alliance.parsers import HubJSONParser
from tenants import roles
from tenants.api_reads import AuditedReadsViewSet
from tenants.audit import AuditCode, audit_record
from tenants.errors import ErrorSerializer
from tenants.serializers import StrictModelSerializer, StrictSerializer, takes_no_body
from tenants.viewsets import ScopedGenericViewSet

from . import fhir, key_images, pdf, services, sharing
from .models import (
    Addendum,
    KeyImage,
    Report,
    ReportStatus,
    ReportTemplate,
    SecondRead,
    SecondReadOutcome,
    ShareLink,
)

# --- Serializers -----------------------------------------------------------------------------


class ReportTemplateSerializer(StrictModelSerializer):
    class Meta:
        model = ReportTemplate
        fields = [
            "id",
            "alliance",
            "code",
            "version",
            "modality",
            "body_part",
            "name",
            "name_en",
            "fields",
            "active",
            "created_at",
        ]
        read_only_fields = ["version", "active", "created_at"]


class TemplateVersionSerializer(StrictSerializer):
    fields = serializers.JSONField(  # type: ignore[assignment]
        help_text='{"fields": [{"key", "kind": "text"|"choice"|"measurement", "label", '
        '"label_en", "required", "default", "unit", "choices": [{"value", "label", "label_en"}]}]}'
    )
    name = serializers.CharField(max_length=200, required=False)
    name_en = serializers.CharField(max_length=200, required=False, allow_blank=True)
    base_version = serializers.IntegerField(
        required=False,
        help_text="The version the edit started from; when a newer one was saved meanwhile the "
        "edit is refused with 409 (code stale_template).",
    )


class AddendumSerializer(serializers.ModelSerializer):
    author_name = serializers.CharField(source="author.display_name", read_only=True)

    class Meta:
        model = Addendum
        fields = ["id", "author", "author_name", "text", "signed_at", "sha256"]
        read_only_fields = ["author", "signed_at", "sha256"]


class SecondReadSerializer(serializers.ModelSerializer):
    class Meta:
        model = SecondRead
        fields = ["id", "reviewer", "outcome", "comment", "at"]


class ReportSerializer(serializers.ModelSerializer):
    addenda = AddendumSerializer(many=True, read_only=True)
    author_name = serializers.CharField(source="author.display_name", read_only=True)
    signed_by_name = serializers.CharField(
        source="signed_by.display_name", read_only=True, default=""
    )
    second_read_outcome = serializers.ChoiceField(
        choices=SecondReadOutcome.choices,
        allow_blank=True,
        read_only=True,
        help_text="The senior's second read; empty until there is one.",
    )

    class Meta:
        model = Report
        fields = [
            "id",
            "referral",
            "study",
            "institution",
            "template",
            "template_version",
            "author",
            "author_name",
            "status",
            "content",
            "free_text",
            "version",
            "preliminary_by",
            "preliminary_at",
            "second_read_required",
            "second_read_outcome",
            "signed_by",
            "signed_by_name",
            "signed_at",
            "content_sha256",
            "created_at",
            "updated_at",
            "addenda",
        ]
        read_only_fields = fields


class ReportCreateSerializer(StrictSerializer):
    referral = serializers.IntegerField()
    template = serializers.IntegerField()


class ReportAutosaveSerializer(StrictSerializer):
    version = serializers.IntegerField(
        help_text="The version the client last loaded; a stale one is refused with 409."
    )
    content = serializers.JSONField(required=False)
    free_text = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=50_000
    )


class ReportSignSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=["preliminary", "final"])
    version = serializers.IntegerField()


class SecondReadInputSerializer(StrictSerializer):
    outcome = serializers.ChoiceField(choices=SecondReadOutcome.choices)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    version = serializers.IntegerField()


class AddendumInputSerializer(StrictSerializer):
    text = serializers.CharField(max_length=services.MAX_ADDENDUM)


class KeyImageSerializer(serializers.ModelSerializer):
    """A key image and where to fetch it (the frame's rendered thumbnail)."""

    sop_uid = serializers.CharField(source="instance.sop_uid", read_only=True)
    series_uid = serializers.CharField(source="instance.series.series_uid", read_only=True)
    thumbnail = serializers.SerializerMethodField()

    class Meta:
        model = KeyImage
        fields = ["id", "sop_uid", "series_uid", "frame", "note", "order", "thumbnail"]
        read_only_fields = fields

    def get_thumbnail(self, image: KeyImage) -> str:
        return key_images.thumbnail_url(image)


class KeyImageInputSerializer(StrictSerializer):
    sop_uid = serializers.CharField(max_length=64)
    frame = serializers.IntegerField(min_value=1, default=1)
    note = serializers.CharField(max_length=key_images.MAX_NOTE, required=False, allow_blank=True)


class ReportErrorSerializer(ErrorSerializer):
    current_version = serializers.IntegerField(required=False)


class ShareLinkSerializer(serializers.ModelSerializer):
    created_by_name = serializers.CharField(source="created_by.display_name", read_only=True)

    class Meta:
        model = ShareLink
        fields = [
            "id",
            "report",
            "created_by",
            "created_by_name",
            "created_for",
            "created_at",
            "expires_at",
            "revoked_at",
            "open_count",
            "last_opened_at",
        ]
        read_only_fields = fields


class ShareLinkCreateSerializer(StrictSerializer):
    days = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=sharing.MAX_DAYS,
        help_text="How long the link works (default: the HUB_SHARE_LINK_DAYS setting).",
    )


class ShareLinkCreatedSerializer(ShareLinkSerializer):
    url = serializers.URLField(help_text="The patient's link; the token is shown only here.")
    pdf_url = serializers.URLField()
    qr_svg = serializers.CharField(help_text="The link as a QR code (SVG data URI).")

    class Meta(ShareLinkSerializer.Meta):
        fields = [*ShareLinkSerializer.Meta.fields, "url", "pdf_url", "qr_svg"]
        read_only_fields = fields


class PDFRenderer(BaseRenderer):
    media_type = "application/pdf"
    format = "pdf"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> Any:
        if isinstance(data, bytes):
            return data
        return json.dumps(data, default=str).encode()  # an error answer, as JSON text


class FHIRRenderer(JSONRenderer):
    media_type = "application/fhir+json"
    format = "fhir"


_ERRORS = {
    400: ReportErrorSerializer,
    403: ReportErrorSerializer,
    404: ReportErrorSerializer,
    409: ReportErrorSerializer,
}


# --- Views -----------------------------------------------------------------------------------


class ReportTemplateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedGenericViewSet):
    """Structured report templates of the caller's alliances (alliance admins edit them)."""

    queryset = ReportTemplate.objects.all()
    serializer_class = ReportTemplateSerializer
    parser_classes = [HubJSONParser]
    write_roles = roles.TEMPLATE_ROLES

    def filter_queryset(self, queryset: Any) -> Any:
        params = self.request.query_params
        if params.get("all") != "1":
            queryset = queryset.filter(active=True)
        if params.get("modality"):
            queryset = queryset.filter(modality=params["modality"].upper())
        return queryset

    @extend_schema(
        parameters=[
            OpenApiParameter("modality", str, description="only this modality (CT, MR, DR, US…)"),
            OpenApiParameter("all", str, description="1: include inactive (older) versions"),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=ReportTemplateSerializer, responses={201: ReportTemplateSerializer, **_ERRORS}
    )
    def create(self, request: Request) -> Response:
        form = ReportTemplateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        template = services.template_create(
            scope=self.scope,
            alliance_id=data["alliance"].pk,
            code=data["code"],
            modality=data["modality"],
            body_part=data.get("body_part", ""),
            name=data["name"],
            name_en=data.get("name_en", ""),
            fields=data["fields"],
        )
        return Response(ReportTemplateSerializer(template).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=TemplateVersionSerializer, responses={201: ReportTemplateSerializer, **_ERRORS}
    )
    @action(detail=True, methods=["post"])
    def versions(self, request: Request, pk: str) -> Response:
        """Add a new version of this template (the old one stays for the reports using it)."""
        form = TemplateVersionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        template = services.template_version_add(
            scope=self.scope, template_id=pk, **form.validated_data
        )
        return Response(ReportTemplateSerializer(template).data, status=status.HTTP_201_CREATED)


class ReportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, AuditedReadsViewSet):
    """Reports the caller may see: the reader's drafts, and signed reports on both sides."""

    queryset = Report.objects.select_related("author", "signed_by").prefetch_related(
        "addenda__author"
    )
    serializer_class = ReportSerializer
    parser_classes = [HubJSONParser]
    write_roles = roles.READER_ROLES
    audit_elsewhere = frozenset({"pdf", "fhir"})  # each an export row (_export_audit)

    def filter_queryset(self, queryset: Any) -> Any:
        referral = self.request.query_params.get("referral")
        if referral is not None:
            # isascii: isdigit() also takes digits such as "²", which int() refuses.
            wanted = referral if referral.isascii() and referral.isdigit() else 0
            queryset = queryset.filter(referral_id=wanted)
        return queryset

    @extend_schema(
        parameters=[OpenApiParameter("referral", int, description="the report of this referral")]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def _answer(self, report: Report, code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_object_for(report.pk)
        return Response(ReportSerializer(fresh).data, status=code)

    def get_object_for(self, pk: int) -> Report:
        self.kwargs["pk"] = pk
        return self.get_object()  # type: ignore[return-value]

    @extend_schema(request=ReportCreateSerializer, responses={201: ReportSerializer, **_ERRORS})
    def create(self, request: Request) -> Response:
        """Start (or reopen) the draft of a claimed referral with a template."""
        form = ReportCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        report = services.report_create(
            scope=self.scope,
            referral_id=form.validated_data["referral"],
            template_id=form.validated_data["template"],
        )
        return self._answer(report, status.HTTP_201_CREATED)

    @extend_schema(request=ReportAutosaveSerializer, responses={200: ReportSerializer, **_ERRORS})
    def partial_update(self, request: Request, pk: str) -> Response:
        """Autosave a draft. Send the version you loaded; a stale one gets 409 and no change."""
        form = ReportAutosaveSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        report = services.report_autosave(
            scope=self.scope,
            report_id=pk,
            version=data["version"],
            content=data.get("content"),
            free_text=data.get("free_text"),
        )
        return self._answer(report)

    @extend_schema(request=ReportSignSerializer, responses={200: ReportSerializer, **_ERRORS})
    @action(detail=True, methods=["post"])
    def sign(self, request: Request, pk: str) -> Response:
        """Sign your own report: preliminary (radiologist) or final (senior radiologist)."""
        form = ReportSignSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        report = services.report_sign(scope=self.scope, report_id=pk, **form.validated_data)
        return self._answer(report)

    @extend_schema(request=SecondReadInputSerializer, responses={200: ReportSerializer, **_ERRORS})
    @action(detail=True, methods=["post"], url_path="second-read", url_name="second-read")
    def second_read(self, request: Request, pk: str) -> Response:
        """A senior's second read of a junior's preliminary report.

        agree / minor_discrepancy: the report becomes final, signed by the senior;
        major_discrepancy: it goes back to its author as a draft."""
        form = SecondReadInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        report = services.report_second_read(scope=self.scope, report_id=pk, **form.validated_data)
        return self._answer(report)

    @extend_schema(methods=["get"], responses=AddendumSerializer(many=True))
    @extend_schema(
        methods=["post"],
        request=AddendumInputSerializer,
        responses={201: AddendumSerializer, **_ERRORS},
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def addenda(self, request: Request, pk: str) -> Response:
        """A final report's addenda; POST adds one (the only change after final)."""
        report: Report = self.get_object()  # type: ignore[assignment]
        if request.method == "GET":
            return Response(AddendumSerializer(report.addenda.all(), many=True).data)
        form = AddendumInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        addendum = services.addendum_add(
            scope=self.scope, report_id=report.pk, text=form.validated_data["text"]
        )
        return Response(AddendumSerializer(addendum).data, status=status.HTTP_201_CREATED)

    # --- Key images ---

    @extend_schema(methods=["get"], responses=KeyImageSerializer(many=True))
    @extend_schema(
        methods=["post"],
        request=KeyImageInputSerializer,
        responses={201: KeyImageSerializer, **_ERRORS},
    )
    @action(
        detail=True,
        methods=["get", "post"],
        url_path="key-images",
        url_name="key-images",
        pagination_class=None,
    )
    def key_images(self, request: Request, pk: str) -> Response:
        """The report's key images; POST attaches a frame of its study (author, draft only)."""
        report: Report = self.get_object()  # type: ignore[assignment]
        if request.method == "GET":
            return Response(
                KeyImageSerializer(key_images.key_images_of(self.scope, report), many=True).data
            )
        form = KeyImageInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        image = key_images.key_image_add(
            scope=self.scope, report_id=report.pk, **form.validated_data
        )
        return Response(KeyImageSerializer(image).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None, **_ERRORS})
    @action(
        detail=True,
        methods=["delete"],
        url_name="key-image-remove",
        url_path=r"key-images/(?P<key_image_id>\d+)",
    )
    def key_image_remove(self, request: Request, pk: str, key_image_id: str) -> Response:
        """Detach a key image (author, draft only)."""
        report: Report = self.get_object()  # type: ignore[assignment]
        key_images.key_image_remove(
            scope=self.scope, report_id=report.pk, key_image_id=key_image_id
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    # --- Delivery: PDF, FHIR, patient share links ---------------------

    def _export_audit(self, report: Report, kind: str) -> None:
        audit_record(
            event=AuditCode.EXPORT,
            scope=self.scope,
            request=self.request._request,
            patient_id=report.study.pid,
            study_uid=report.study.study_uid,
            object_type="report",
            object_id=report.pk,
            detail={"format": kind},
        )

    @extend_schema(responses={(200, "application/pdf"): bytes, **_ERRORS})
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, PDFRenderer])
    def pdf(self, request: Request, pk: str) -> HttpResponse:
        """The signed report as a PDF (letterhead, signer, SHA-256, addenda, key images)."""
        report: Report = self.get_object()  # type: ignore[assignment]
        if report.status != ReportStatus.FINAL:
            raise services.ReportConflictError(
                _("Only a final report has a PDF."), code="not_final"
            )
        body = pdf.report_pdf_bytes(report)
        self._export_audit(report, "pdf")
        response = HttpResponse(body, content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="report-{report.pk}.pdf"'
        response["Cache-Control"] = "private, no-store"
        return response

    @extend_schema(responses={(200, fhir.FHIR_JSON): dict, **_ERRORS})
    @action(detail=True, methods=["get"], renderer_classes=[FHIRRenderer, JSONRenderer])
    def fhir(self, request: Request, pk: str) -> Response:
        """The report as a FHIR R4 DiagnosticReport (status amended once it has addenda)."""
        report: Report = self.get_object()  # type: ignore[assignment]
        if report.status == ReportStatus.DRAFT:
            raise services.ReportConflictError(_("A draft is not a report yet."), code="not_signed")
        base = request.build_absolute_uri("/").rstrip("/")
        resource = fhir.diagnostic_report(
            report,
            base_url=base,
            pdf_url=request.build_absolute_uri(reverse("api:report-pdf", args=[report.pk])),
        )
        self._export_audit(report, "fhir")
        return Response(resource, content_type=fhir.FHIR_JSON)

    @extend_schema(methods=["get"], responses=ShareLinkSerializer(many=True))
    @extend_schema(
        methods=["post"],
        request=ShareLinkCreateSerializer,
        responses={201: ShareLinkCreatedSerializer, **_ERRORS},
    )
    @action(
        detail=True,
        methods=["get", "post"],
        url_path="share-links",
        url_name="share-links",
        write_roles=roles.SHARE_ROLES,
        pagination_class=None,
    )
    def share_links(self, request: Request, pk: str) -> Response:
        """The patient's links to this final report; POST makes one (its token shown once)."""
        report: Report = self.get_object()  # type: ignore[assignment]
        if request.method == "GET":
            links = sharing.share_links_visible(self.scope).filter(report=report)
            return Response(ShareLinkSerializer(links, many=True).data)
        form = ShareLinkCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        link, token = sharing.share_link_create(
            scope=self.scope, report_id=report.pk, days=form.validated_data.get("days")
        )
        data = dict(ShareLinkSerializer(link).data)
        data["url"] = request.build_absolute_uri(reverse("share-page", args=[token]))
        data["pdf_url"] = request.build_absolute_uri(reverse("share-pdf", args=[token]))
        data["qr_svg"] = pdf.qr_svg_data_uri(data["url"])
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: ShareLinkSerializer, **_ERRORS})
    @action(
        detail=True,
        methods=["post"],
        url_path=r"share-links/(?P<link_id>\d+)/revoke",
        url_name="share-link-revoke",
        write_roles=roles.SHARE_ROLES,
    )
    @takes_no_body
    def share_link_revoke(self, request: Request, pk: str, link_id: str) -> Response:
        """Withdraw a patient's link at once."""
        report: Report = self.get_object()  # type: ignore[assignment]
        if not sharing.share_links_visible(self.scope).filter(pk=link_id, report=report).exists():
            raise services.ReportNotFoundError(_("No such share link."), code="not_found")
        link = sharing.share_link_revoke(scope=self.scope, link_id=link_id)
        return Response(ShareLinkSerializer(link).data)
