"""API of the alliance: the alliances the caller belongs to, with their tiers."""

from __future__ import annotations

from rest_framework import serializers

from tenants.api import InstitutionSerializer
from tenants.viewsets import ScopedReadOnlyViewSet

from .models import Alliance, AllianceMember


class AllianceMemberSerializer(serializers.ModelSerializer):
    institution = InstitutionSerializer(read_only=True)

    class Meta:
        model = AllianceMember
        fields = ["institution", "tier", "joined_at"]


class AllianceSerializer(serializers.ModelSerializer):
    lead_hospital = InstitutionSerializer(read_only=True)
    commission = InstitutionSerializer(read_only=True)
    members = AllianceMemberSerializer(many=True, read_only=True)

    class Meta:
        model = Alliance
        fields = [
            "id",
            "code",
            "name",
            "name_en",
            "region_code",
            "lead_hospital",
            "commission",
            "members",
        ]


class AllianceViewSet(ScopedReadOnlyViewSet):
    """Alliances the active institution belongs to, leads or oversees."""

    queryset = Alliance.objects.select_related("lead_hospital", "commission").prefetch_related(
        "members__institution"
    )
    serializer_class = AllianceSerializer
