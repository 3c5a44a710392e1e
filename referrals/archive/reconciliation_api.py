"""API of the reconciliation queue (/api/v1/archive/held/): list the site's held instances
and decide about one (with every instance held with it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from alliance.parsers import HubJSONParser
from referrals.archive import reconciliation as service
from referrals.archive.patient_match import PatientAttributes
from referrals.models import HeldInstance
from tenants.errors import ConflictError, ErrorSerializer
from tenants.roles import ARCHIVE_MANAGE_ROLES
from tenants.serializers import StrictSerializer, takes_no_body
from tenants.viewsets import ScopedGenericViewSet


class PatientSerializer(serializers.Serializer):
    patient_id = serializers.CharField()
    issuer = serializers.CharField()
    name = serializers.CharField()
    birth_date = serializers.CharField()
    sex = serializers.CharField()


class HeldInstanceSerializer(serializers.ModelSerializer):
    # Blank until a person decides (or the arrival refused it).
    decision = serializers.ChoiceField(
        choices=HeldInstance.Decision.choices, allow_blank=True, read_only=True
    )
    study_patient = serializers.SerializerMethodField()
    held_under_study_uid = serializers.SerializerMethodField()

    class Meta:
        model = HeldInstance
        fields = [
            "id",
            "kind",
            "sop_uid",
            "sop_class_uid",
            "study_uid",
            "series_uid",
            "transfer_syntax_uid",
            "patient_id",
            "issuer",
            "patient_name",
            "birth_date",
            "sex",
            "differences",
            "study_patient",
            "held_under_study_uid",
            "received_via",
            "size_bytes",
            "created_at",
            "resent",
            "resolved_at",
            "decision",
            "new_study_uid",
        ]
        read_only_fields = fields

    @extend_schema_field(PatientSerializer(allow_null=True))
    def get_study_patient(self, held: HeldInstance) -> dict[str, str] | None:
        if held.study is None:
            return None
        attrs = PatientAttributes.of_patient(held.study.patient)
        return {
            "patient_id": attrs.patient_id,
            "issuer": attrs.issuer,
            "name": attrs.name,
            "birth_date": attrs.birth_date,
            "sex": attrs.sex,
        }

    def get_held_under_study_uid(self, held: HeldInstance) -> str:
        """The study the instance contradicts (the one holding its series, for `series`)."""
        return held.study.study_uid if held.study else ""


class DecisionSerializer(StrictSerializer):
    confirm = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Required true to reject: the held objects are deleted.",
    )


class ResolutionSerializer(serializers.Serializer):
    decision = serializers.CharField()
    resolved = serializers.IntegerField()
    study_uid = serializers.CharField()


DECIDED = {
    200: ResolutionSerializer,
    409: OpenApiResponse(
        ErrorSerializer,
        description="Already decided, or the decision does not fit this kind of hold.",
    ),
}


class HeldInstanceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedGenericViewSet):
    """The active institution's reconciliation queue. `?state=open` (default), `resolved`,
    `conflict` or `all`."""

    queryset = HeldInstance.objects.select_related("study", "study__patient").order_by(
        "created_at", "pk"
    )
    serializer_class = HeldInstanceSerializer
    parser_classes = [HubJSONParser]
    read_roles = ARCHIVE_MANAGE_ROLES
    write_roles = ARCHIVE_MANAGE_ROLES

    def filter_queryset(self, queryset: Any) -> Any:
        if self.action != "list":
            return queryset
        state = self.request.query_params.get("state", "open")
        if state == "open":
            return queryset.filter(resolved_at__isnull=True)
        if state == "resolved":
            return queryset.filter(resolved_at__isnull=False).exclude(
                kind=HeldInstance.Kind.CONFLICT
            )
        if state == "conflict":
            return queryset.filter(kind=HeldInstance.Kind.CONFLICT)
        if state == "all":
            return queryset
        raise ValidationError({"state": [_("Choose open, resolved, conflict or all.")]})

    def _decide(self, action_: Callable[..., service.Resolution]) -> Response:
        held = self.get_object()
        assert isinstance(held, HeldInstance)
        try:
            resolution = action_(scope=self.scope, held=held, request=self.request._request)
        except service.ReconciliationError as error:
            raise ConflictError(str(error), code="held_not_decidable") from error
        return Response(
            {
                "decision": resolution.decision,
                "resolved": resolution.resolved,
                "study_uid": resolution.study_uid,
            }
        )

    @extend_schema(request=None, responses=DECIDED)
    @action(detail=True, methods=["post"])
    @takes_no_body
    def accept(self, request: Request, pk: str) -> Response:
        """File the held instance (and those held with it) into the study it names."""
        return self._decide(service.held_instance_accept)

    @extend_schema(request=None, responses=DECIDED)
    @action(detail=True, methods=["post"], url_path="new-study")
    @takes_no_body
    def new_study(self, request: Request, pk: str) -> Response:
        """Rewrite them with a new Study Instance UID and file them there."""
        return self._decide(service.held_instance_file_as_new_study)

    @extend_schema(request=None, responses=DECIDED)
    @action(detail=True, methods=["post"], url_path="new-patient")
    @takes_no_body
    def new_patient(self, request: Request, pk: str) -> Response:
        """File them under a new patient record: same Patient ID, a derived issuer."""
        return self._decide(service.held_instance_file_as_new_patient)

    @extend_schema(request=DecisionSerializer, responses=DECIDED)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str) -> Response:
        """Delete their objects (send {"confirm": true}); the rows stay with the decision."""
        self.get_object()  # not yours or not there: 404 before anything is said about the body
        form = DecisionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        if not form.validated_data["confirm"]:
            raise ValidationError(
                {"confirm": [_("Rejecting deletes the held instances: send confirm true.")]}
            )
        return self._decide(service.held_instance_reject)
