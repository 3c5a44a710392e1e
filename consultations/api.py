"""API of MDT consultations: my sessions, creating one, its cases, invitations, minutes."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from alliance.models import Alliance
from referrals.models import Study
from tenants import access, roles
from tenants.api_reads import AuditedReadsViewSet
from tenants.audit import AuditObject
from tenants.models import Institution, User
from tenants.serializers import StrictSerializer, takes_no_body
from tenants.viewsets import ScopedGenericViewSet

from . import selectors, services
from .models import Invitation, MdtSession, SessionCase, SessionKind, SessionRole


class SessionCaseSerializer(serializers.ModelSerializer):
    study_uid = serializers.CharField(source="study.study_uid", read_only=True)

    class Meta:
        model = SessionCase
        fields = [
            "id",
            "study",
            "study_uid",
            "clinical_summary",
            "position",
            "conclusion",
            "recommendations",
            "closed_at",
        ]
        read_only_fields = fields


class MdtSessionSerializer(serializers.ModelSerializer):
    cases = SessionCaseSerializer(many=True, read_only=True)
    room_url = serializers.SerializerMethodField()

    class Meta:
        model = MdtSession
        fields = [
            "id",
            "title",
            "kind",
            "status",
            "starts_at",
            "ends_at",
            "alliance",
            "institution",
            "chair",
            "presenter",
            "cases",
            "room_url",
            "closed_at",
        ]
        read_only_fields = fields

    def get_room_url(self, obj: MdtSession) -> str:
        return f"/mdt/{obj.pk}/"


class CaseInputSerializer(StrictSerializer):
    study = serializers.IntegerField(min_value=1)
    clinical_summary = serializers.CharField(
        max_length=10000, required=False, allow_blank=True, default=""
    )


class MdtSessionCreateSerializer(StrictSerializer):
    title = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=SessionKind.choices, default=SessionKind.MDT)
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    alliance = serializers.IntegerField(min_value=1, required=False)
    cases = serializers.ListField(
        child=CaseInputSerializer(), required=False, default=list, max_length=services.MAX_CASES
    )


class InvitationSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="user.display_name", read_only=True)
    institution_name = serializers.CharField(source="institution.display_name", read_only=True)

    class Meta:
        model = Invitation
        fields = [
            "id",
            "session",
            "user",
            "name",
            "institution",
            "institution_name",
            "role",
            "chat_muted",
            "answer",
            "answered_at",
            "created_at",
            "revoked_at",
        ]
        read_only_fields = fields


class InvitationCreateSerializer(StrictSerializer):
    user = serializers.IntegerField(min_value=1)
    institution = serializers.IntegerField(min_value=1)
    role = serializers.ChoiceField(
        choices=[r for r in SessionRole.choices if r[0] != SessionRole.CHAIR]
    )


def _study(scope: access.Scope, pk: int) -> Study:
    study = access.visible(scope, Study).filter(pk=pk).first()
    if study is None:
        raise serializers.ValidationError({"study": ["No such study."]})
    return study


class MdtSessionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, AuditedReadsViewSet):
    """Sessions the caller is invited to (and, for hospital administrators, those their
    institution organises). Creating one makes the caller its chair."""

    queryset = MdtSession.objects.select_related("chair").prefetch_related("cases__study")
    serializer_class = MdtSessionSerializer
    write_roles = roles.MDT_ORGANISER_ROLES
    audit_object_type = AuditObject.MDT_SESSION
    audit_study = "cases__study"

    @extend_schema(request=MdtSessionCreateSerializer, responses={201: MdtSessionSerializer})
    def create(self, request: Request) -> Response:
        form = MdtSessionCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data: dict[str, Any] = form.validated_data
        alliance = None
        if "alliance" in data:
            alliance = access.visible(self.scope, Alliance).filter(pk=data["alliance"]).first()
            if alliance is None:
                raise serializers.ValidationError({"alliance": ["No such alliance."]})
        cases = [(_study(self.scope, c["study"]), c["clinical_summary"]) for c in data["cases"]]
        session = services.session_create(
            scope=self.scope,
            title=data["title"],
            kind=data["kind"],
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
            alliance=alliance,
            cases=cases,
        )
        return Response(MdtSessionSerializer(session).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=CaseInputSerializer, responses={201: SessionCaseSerializer})
    @action(detail=True, methods=["post"])
    def cases(self, request: Request, pk: str) -> Response:
        session = cast(MdtSession, self.get_object())
        form = CaseInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        case = services.case_add(
            scope=self.scope,
            session=session,
            study=_study(self.scope, form.validated_data["study"]),
            clinical_summary=form.validated_data["clinical_summary"],
        )
        return Response(SessionCaseSerializer(case).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=InvitationCreateSerializer, responses={201: InvitationSerializer})
    @action(detail=True, methods=["post"])
    def invitations(self, request: Request, pk: str) -> Response:
        session = cast(MdtSession, self.get_object())
        form = InvitationCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        user = User.objects.filter(pk=data["user"], is_active=True).first()
        institution = access.visible(self.scope, Institution).filter(pk=data["institution"]).first()
        if user is None or institution is None:
            raise serializers.ValidationError({"user": ["No such user at that institution."]})
        invitation = services.invitation_create(
            scope=self.scope, session=session, user=user, institution=institution, role=data["role"]
        )
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=dict)
    @action(detail=True, methods=["get"], url_path="minutes")
    def minutes(self, request: Request, pk: str) -> Response:
        record = selectors.minutes(session=cast(MdtSession, self.get_object()))
        return Response(
            {
                "session": MdtSessionSerializer(record["session"]).data,
                "closed": record["closed"],
                "attendance": record["people"],
                "cases": [
                    {
                        **{k: v for k, v in c.items() if k != "study"},
                        "study": c["study"].pk,
                        "study_uid": c["study"].study_uid,
                    }
                    for c in record["cases"]
                ],
            }
        )


class InvitationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedGenericViewSet):
    """Invitations of the sessions the caller may see; the chair revokes them."""

    queryset = Invitation.objects.select_related("user", "institution", "session")
    serializer_class = InvitationSerializer
    write_roles = roles.MDT_ORGANISER_ROLES

    @extend_schema(request=None, responses=InvitationSerializer)
    @action(detail=True, methods=["post"])
    @takes_no_body
    def revoke(self, request: Request, pk: str) -> Response:
        invitation = cast(Invitation, self.get_object())
        invitation = services.invitation_revoke(scope=self.scope, invitation=invitation)
        return Response(InvitationSerializer(invitation).data)
