"""API: /api/v1/archive/studies/<uid>/corrections/: ask for a correction, follow its progress."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alliance.parsers import HubJSONParser
from referrals.archive.correction.services import correction_request, study_for_correction
from referrals.models import Correction, CorrectionKind
from tenants import access
from tenants.serializers import StrictSerializer


class CorrectionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Correction
        fields = [
            "id",
            "kind",
            "status",
            "study_uid",
            "params",
            "previous",
            "reason",
            "total",
            "done",
            "error",
            "created_at",
            "finished_at",
        ]


class CorrectionRequestSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=CorrectionKind.choices)
    reason = serializers.CharField(max_length=2000)
    changes = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    series_uids = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=1000
    )
    sop_uids = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=10000
    )
    target_study_uid = serializers.CharField(max_length=64, required=False)
    other_study_uid = serializers.CharField(max_length=64, required=False)
    code = serializers.CharField(max_length=16, required=False)
    rejection = serializers.IntegerField(required=False)


class StudyCorrectionsView(APIView):
    """The corrections of one study of the caller's institution; POST asks for one."""

    permission_classes = [permissions.IsAuthenticated]
    parser_classes = [HubJSONParser]

    @extend_schema(responses=CorrectionSerializer(many=True))
    def get(self, request: Request, study_uid: str) -> Response:
        scope = access.scope_for_request(request)
        study = study_for_correction(scope=scope, study_uid=study_uid)
        rows = access.visible(scope, Correction).filter(study=study).order_by("-created_at")
        return Response(CorrectionSerializer(rows[:200], many=True).data)

    @extend_schema(request=CorrectionRequestSerializer, responses={202: CorrectionSerializer})
    def post(self, request: Request, study_uid: str) -> Response:
        scope = access.scope_for_request(request)
        study = study_for_correction(scope=scope, study_uid=study_uid)
        form = CorrectionRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(form.validated_data)
        correction = correction_request(
            scope=scope, study=study, kind=data.pop("kind"), data=data, request=request
        )
        correction.refresh_from_db()
        return Response(CorrectionSerializer(correction).data, status=status.HTTP_202_ACCEPTED)


class StudyCorrectionView(APIView):
    """One correction: its status and progress (done of total)."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=CorrectionSerializer)
    def get(self, request: Request, study_uid: str, pk: int) -> Response:
        scope = access.scope_for_request(request)
        study_for_correction(scope=scope, study_uid=study_uid)
        correction = access.get_visible_or_404(
            scope, Correction.objects.all(), pk=pk, study_uid=study_uid
        )
        return Response(CorrectionSerializer(correction).data)
