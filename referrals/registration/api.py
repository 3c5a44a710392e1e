"""API of exam registrations: the site's staff list, register and cancel; its gateway reads
the scheduled ones as its Modality Worklist.

Thin views over referrals/registration/services.py (writes) and selectors.py (reads).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from referrals.archive.person_names import dicom_person_name
from referrals.models import ExamRegistration, RegistrationStatus
from referrals.registration import selectors, services
from tenants import roles
from tenants.api_reads import AuditedReadsViewSet
from tenants.auth import GatewayCredentialAuthentication
from tenants.errors import ErrorSerializer
from tenants.models import GatewayCredential
from tenants.serializers import StrictSerializer, takes_no_body

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Refused: see code."),
    403: OpenApiResponse(ErrorSerializer, description="Your role cannot register exams."),
    404: OpenApiResponse(ErrorSerializer, description="No such registration (or not yours)."),
    409: OpenApiResponse(ErrorSerializer, description="The exam is already done."),
}


class RegistrationSerializer(serializers.ModelSerializer):
    patient_name_display = serializers.SerializerMethodField()
    status_label = serializers.CharField(source="get_status_display", read_only=True)

    class Meta:
        model = ExamRegistration
        fields = [
            "id",
            "patient_id",
            "issuer",
            "patient_name",
            "patient_name_display",
            "birth_date",
            "sex",
            "accession_number",
            "study_uid",
            "modality",
            "body_part",
            "procedure_description",
            "requesting_physician",
            "clinical_question",
            "scheduled_at",
            "station_ae_title",
            "status",
            "status_label",
            "study",
            "matched_at",
            "matched_by",
            "patient_id_mismatch",
            "study_patient_id",
            "created_at",
            "cancelled_at",
        ]
        read_only_fields = fields

    def get_patient_name_display(self, registration: ExamRegistration) -> str:
        return dicom_person_name(registration.patient_name)


class RegistrationCreateSerializer(StrictSerializer):
    patient_id = serializers.CharField(max_length=64)
    issuer = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    family_name = serializers.CharField(max_length=64, help_text="As written, e.g. 王.")
    given_name = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default="", help_text="e.g. 建国."
    )
    family_name_alphabetic = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        default="",
        help_text="Pinyin, e.g. Wang (spelled from the characters when left out).",
    )
    given_name_alphabetic = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default=""
    )
    birth_date = serializers.DateField(required=False, allow_null=True, default=None)
    sex = serializers.ChoiceField(choices=["", "M", "F", "O"], required=False, default="")
    modality = serializers.CharField(max_length=16, help_text="DICOM modality, e.g. CT, DX, US.")
    body_part = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    procedure_description = serializers.CharField(max_length=64)
    requesting_physician = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default=""
    )
    clinical_question = serializers.CharField(
        max_length=4000, required=False, allow_blank=True, default=""
    )
    scheduled_at = serializers.DateTimeField()
    station_ae_title = serializers.CharField(
        max_length=16, required=False, allow_blank=True, default=""
    )


class RegistrationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, AuditedReadsViewSet):
    """The active institution's exam registrations. ?day=YYYY-MM-DD (its local day),
    ?status=scheduled|in_progress|completed|cancelled."""

    queryset = ExamRegistration.objects.select_related("study").order_by("scheduled_at", "pk")
    serializer_class = RegistrationSerializer
    read_roles = roles.REGISTRATION_ROLES
    write_roles = roles.REGISTRATION_ROLES

    def _subjects(self, queryset: QuerySet[Any]) -> list[tuple[str, str]]:
        # A registration names its patient and its (future) study itself.
        pairs = queryset.order_by().values_list("patient_id", "study_uid").distinct()
        return sorted({(pid or "", uid or "") for pid, uid in pairs if uid})

    def filter_queryset(self, queryset: Any) -> Any:
        if self.action != "list":
            return queryset
        day = self.request.query_params.get("day", "")
        if day:
            wanted = selectors.day_parse(day)
            if wanted is None:
                raise services.RegistrationError(
                    _("The day is a date such as 2025-03-01."), code="bad_day"
                )
            start, end = selectors.day_bounds(wanted)
            queryset = queryset.filter(scheduled_at__gte=start, scheduled_at__lt=end)
        wanted_status = self.request.query_params.get("status", "")
        if wanted_status:
            if wanted_status not in RegistrationStatus.values:
                raise services.RegistrationError(_("Unknown status."), code="bad_status")
            queryset = queryset.filter(status=wanted_status)
        return queryset

    @extend_schema(
        parameters=[
            OpenApiParameter("day", OpenApiTypes.DATE, required=False),
            OpenApiParameter("status", enum=RegistrationStatus.values, required=False),
        ],
        responses={200: RegistrationSerializer(many=True), 400: ERRORS[400]},
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: RegistrationSerializer, 404: ERRORS[404]})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request=RegistrationCreateSerializer,
        responses={201: RegistrationSerializer, 400: ERRORS[400], 403: ERRORS[403]},
    )
    def create(self, request: Request) -> Response:
        """Register an exam: the hub gives it an accession number and a Study Instance UID,
        and the site's gateway serves it to the scanners."""
        form = RegistrationCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        registration = services.registration_create(
            scope=self.scope, request=request._request, **form.validated_data
        )
        return Response(RegistrationSerializer(registration).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={
            200: RegistrationSerializer,
            403: ERRORS[403],
            404: ERRORS[404],
            409: ERRORS[409],
        },
    )
    @action(detail=True, methods=["post"])
    @takes_no_body
    def cancel(self, request: Request, pk: str) -> Response:
        registration = self.get_object()
        assert isinstance(registration, ExamRegistration)
        registration = services.registration_cancel(
            scope=self.scope, registration=registration, request=request._request
        )
        return Response(RegistrationSerializer(registration).data)


class GatewayWorklistView(APIView):
    """A gateway's Modality Worklist: its own site's scheduled exams, as DICOM JSON items."""

    authentication_classes = [GatewayCredentialAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses=inline_serializer(
            "GatewayWorklist",
            {
                "institution": serializers.CharField(help_text="The site's code."),
                "generated_at": serializers.DateTimeField(),
                "items": serializers.ListField(
                    child=serializers.DictField(),
                    help_text="Scheduled exams, each a worklist item in DICOM JSON (PS3.18 F.2).",
                ),
            },
        )
    )
    def get(self, request: Request) -> Response:
        credential = request.auth
        if not isinstance(credential, GatewayCredential):  # a person's token or session
            return Response(
                {"detail": str(_("Only a site's gateway reads its worklist.")), "code": "gateway"},
                status=status.HTTP_403_FORBIDDEN,
            )
        return Response(
            {
                "institution": credential.institution.code,
                "generated_at": timezone.now(),
                "items": selectors.worklist_for_gateway(credential=credential),
            }
        )
