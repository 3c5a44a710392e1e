"""API of critical findings: the reader flags one, the clinic acknowledges it.

GET lists the findings the caller may see (with the ladder's steps); POST flags one on a
referral the caller reads; POST .../acknowledge/ is the clinic's confirmation.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from alliance.parsers import HubJSONParser
from tenants import roles
from tenants.api_reads import AuditedReadsViewSet
from tenants.serializers import StrictSerializer

from . import critical
from .api import _ERRORS
from .models import CriticalEvent, CriticalFinding


class CriticalEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = CriticalEvent
        fields = ["action", "at", "actor", "notified"]


class CriticalFindingSerializer(serializers.ModelSerializer):
    events = CriticalEventSerializer(many=True, read_only=True)
    level_name = serializers.CharField(source="get_level_display", read_only=True)

    class Meta:
        model = CriticalFinding
        fields = [
            "id",
            "referral",
            "report",
            "text",
            "flagged_by",
            "flagged_at",
            "ack_minutes",
            "level",
            "level_name",
            "due_at",
            "acknowledged_at",
            "acknowledged_by",
            "ack_note",
            "events",
        ]
        read_only_fields = fields


class CriticalFlagSerializer(StrictSerializer):
    referral = serializers.IntegerField()
    text = serializers.CharField(max_length=critical.MAX_TEXT)


class CriticalAckSerializer(StrictSerializer):
    note = serializers.CharField(max_length=500, required=False, allow_blank=True)


class CriticalFindingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, AuditedReadsViewSet):
    """Critical findings of the referrals the caller may see."""

    queryset = CriticalFinding.objects.prefetch_related("events")
    serializer_class = CriticalFindingSerializer
    parser_classes = [HubJSONParser]
    write_roles = roles.CRITICAL_ROLES
    audit_study = "referral__study"

    def filter_queryset(self, queryset: Any) -> Any:
        referral = self.request.query_params.get("referral")
        if referral is not None:
            # isascii: isdigit() also takes digits such as "²", which int() refuses.
            wanted = referral if referral.isascii() and referral.isdigit() else 0
            queryset = queryset.filter(referral_id=wanted)
        if self.request.query_params.get("open") == "1":
            queryset = queryset.filter(acknowledged_at__isnull=True)
        return queryset

    @extend_schema(
        parameters=[
            OpenApiParameter("referral", int, description="the findings of this referral"),
            OpenApiParameter("open", str, description="1: only those not yet acknowledged"),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=CriticalFlagSerializer, responses={201: CriticalFindingSerializer, **_ERRORS}
    )
    def create(self, request: Request) -> Response:
        """Flag a critical result on a referral you read: the clinic is alerted at once."""
        form = CriticalFlagSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        finding = critical.critical_flag(
            scope=self.scope,
            referral_id=form.validated_data["referral"],
            text=form.validated_data["text"],
        )
        return Response(CriticalFindingSerializer(finding).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=CriticalAckSerializer, responses={200: CriticalFindingSerializer, **_ERRORS}
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str) -> Response:
        """The referring clinic (or the duty officer) confirms it has the critical result."""
        form = CriticalAckSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        finding = critical.critical_acknowledge(
            scope=self.scope, finding_id=pk, note=form.validated_data.get("note", "")
        )
        finding = self.get_queryset().get(pk=finding.pk)
        return Response(CriticalFindingSerializer(finding).data)
