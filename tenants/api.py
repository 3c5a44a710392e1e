"""API of the tenants app: who am I, tokens, institutions, memberships, credentials, audit."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from . import access, roles, services
from .audit import AuditCode, audit_read, audit_record
from .auth import GatewayCredentialAuthentication
from .models import AuditEvent, GatewayCredential, Institution, Membership, Notification, Role, User
from .serializers import (
    StrictModelSerializer,
    StrictSerializer,
    takes_no_body,
    unknown_fields_refuse,
)
from .two_factor.services import two_factor_check_for_token
from .viewsets import ScopedGenericViewSet, ScopedReadOnlyViewSet

# --- Serializers ---------------------------------------------------------------------------


class InstitutionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Institution
        fields = [
            "id",
            "code",
            "name",
            "name_en",
            "kind",
            "region_code",
            "address",
            "phone",
            "is_active",
        ]


class MembershipSerializer(serializers.ModelSerializer):
    institution = InstitutionSerializer(read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    user_name = serializers.CharField(source="user.display_name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "user_name", "institution", "role", "created_at"]


class MembershipGrantSerializer(StrictSerializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)


class GatewayCredentialSerializer(StrictModelSerializer):
    class Meta:
        model = GatewayCredential
        fields = [
            "id",
            "label",
            "key_id",
            "calling_ae_titles",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = ["key_id", "created_at", "last_used_at", "revoked_at"]

    def validate_calling_ae_titles(self, value: Any) -> list[str]:
        # The model's JSONField takes any JSON; the service walks a list of texts.
        if not isinstance(value, list) or not all(isinstance(title, str) for title in value):
            raise serializers.ValidationError(_('A list of AE titles, each a text such as "CT01".'))
        return value


class GatewayCredentialCreatedSerializer(GatewayCredentialSerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta(GatewayCredentialSerializer.Meta):
        fields = [*GatewayCredentialSerializer.Meta.fields, "secret"]


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "occurred_at",
            "event",
            "action",
            "outcome",
            "username",
            "role",
            "institution_code",
            "source_address",
            "patient_id",
            "study_uid",
            "object_type",
            "object_id",
            "detail",
            "hash",
        ]


class NotificationSerializer(serializers.ModelSerializer):
    """`title` and `body` in the caller's language (Accept-Language), put into words from
    `code` and `params` (tenants/messages.py); `code` is empty on notifications from before
    codes, whose words are as they were stored."""

    title = serializers.CharField(source="display_title", read_only=True)
    body = serializers.CharField(source="display_body", read_only=True)
    params = serializers.JSONField(read_only=True)

    class Meta:
        model = Notification
        fields = ["id", "kind", "code", "params", "title", "body", "link", "created_at", "read_at"]
        read_only_fields = fields


class TokenLoginSerializer(StrictSerializer):
    # The view reads the fields itself (one refusal for any wrong credential): this names
    # them for the OpenAPI document and for the refusal of unknown fields.
    username = serializers.CharField()
    password = serializers.CharField()
    otp = serializers.CharField(
        required=False,
        help_text="The current code of the user's authenticator app (or a recovery code): "
        "required when the user has a second factor.",
    )


class TokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuthToken
        fields = ["token_key", "created", "expiry"]


# --- Views ---------------------------------------------------------------------------------


class MeView(APIView):
    """The caller, the institution they act for and their roles there."""

    @extend_schema(
        responses=inline_serializer(
            "Me",
            {
                "username": serializers.CharField(),
                "name": serializers.CharField(),
                "active_institution": InstitutionSerializer(allow_null=True),
                "roles": serializers.ListField(child=serializers.CharField()),
                "memberships": MembershipSerializer(many=True),
            },
        )
    )
    def get(self, request: Request) -> Response:
        if isinstance(request.auth, GatewayCredential):
            raise exceptions.PermissionDenied(_("Gateways use /api/v1/gateway/whoami/."))
        scope = access.scope_for_request(request)
        user = request.user
        assert isinstance(user, User)
        return Response(
            {
                "username": user.get_username(),
                "name": user.display_name,
                "active_institution": (
                    InstitutionSerializer(scope.institution).data if scope.institution else None
                ),
                "roles": sorted(scope.roles),
                "memberships": MembershipSerializer(access.memberships_of(user), many=True).data,
            }
        )


class TokenLoginView(APIView):
    """Exchange a user name and password for an API token (shown once)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(
        request=TokenLoginSerializer,
        responses=inline_serializer(
            "TokenIssued", {"token": serializers.CharField(), "expiry": serializers.DateTimeField()}
        ),
    )
    def post(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        unknown_fields_refuse(data, fields=TokenLoginSerializer().fields)
        username = str(data.get("username", ""))
        password = str(data.get("password", ""))
        if "\x00" in username + password:
            # No account holds a NUL, and the user lookup would pass it to PostgreSQL (a 500).
            raise exceptions.ValidationError({"detail": _("Wrong user name or password.")})
        user = authenticate(request._request, username=username, password=password)
        if getattr(request._request, "axes_locked_out", False):
            raise exceptions.PermissionDenied(
                _("Too many failed sign-ins: this account is locked for a while.")
            )
        if user is None:
            raise exceptions.ValidationError({"detail": _("Wrong user name or password.")})
        two_factor_check_for_token(
            user=user, code=str(data.get("otp", "")), request=request._request
        )
        instance, token = services.api_token_issue(user=user, request=request._request)
        return Response({"token": token, "expiry": instance.expiry}, status=status.HTTP_201_CREATED)


class TokenViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, ScopedGenericViewSet):
    """The caller's own API tokens; DELETE revokes one at once."""

    queryset = AuthToken.objects.all()
    serializer_class = TokenSerializer
    lookup_field = "token_key"
    write_roles = frozenset(Role.values)

    def perform_destroy(self, instance: AuthToken) -> None:
        audit_record(
            event=AuditCode.CREDENTIAL_CHANGE,
            action=AuditEvent.Action.DELETE,
            scope=self.scope,
            request=self.request._request,
            object_type="api_token",
            object_id=instance.token_key,
        )
        instance.delete()


class InstitutionViewSet(ScopedReadOnlyViewSet):
    """Institutions of the caller's alliances (a directory to refer to)."""

    queryset = Institution.objects.filter(is_active=True).order_by("code")
    serializer_class = InstitutionSerializer


class MembershipViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, ScopedGenericViewSet
):
    """Roles held at the active institution. Administrators grant and revoke them, within
    their authority (tenants/roles.py)."""

    queryset = Membership.objects.active().select_related("user", "institution")
    serializer_class = MembershipSerializer
    write_roles = roles.GRANTER_ROLES

    @extend_schema(request=MembershipGrantSerializer, responses=MembershipSerializer)
    def create(self, request: Request) -> Response:
        form = MembershipGrantSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        user = User.objects.filter(username=form.validated_data["username"], is_active=True).first()
        if user is None:
            raise exceptions.ValidationError({"username": [services.no_such_user_message()]})
        membership = services.membership_grant(
            scope=self.scope,
            user=user,
            role=form.validated_data["role"],
            request=request._request,
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Membership) -> None:
        services.membership_revoke(
            scope=self.scope, membership=instance, request=self.request._request
        )


class GatewayCredentialViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, ScopedGenericViewSet
):
    """The site's gateway credentials (hospital administrators). DELETE revokes."""

    queryset = GatewayCredential.objects.select_related("institution")
    serializer_class = GatewayCredentialSerializer
    read_roles = roles.INSTITUTION_ADMIN_ROLES
    write_roles = roles.INSTITUTION_ADMIN_ROLES

    @extend_schema(
        request=GatewayCredentialSerializer, responses=GatewayCredentialCreatedSerializer
    )
    def create(self, request: Request) -> Response:
        form = GatewayCredentialSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        credential, secret = services.gateway_credential_create(
            scope=self.scope,
            label=form.validated_data["label"],
            calling_ae_titles=form.validated_data.get("calling_ae_titles", []),
            request=request._request,
        )
        data = dict(GatewayCredentialSerializer(credential).data, secret=secret)
        return Response(data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: GatewayCredential) -> None:
        services.gateway_credential_revoke(
            scope=self.scope, credential=instance, request=self.request._request
        )


class AuditEventViewSet(ScopedReadOnlyViewSet):
    """The active institution's audit trail (hospital administrators)."""

    queryset = AuditEvent.objects.order_by("-id")
    serializer_class = AuditEventSerializer
    read_roles = roles.AUDIT_ROLES

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        audit_read(
            event=AuditCode.AUDIT_VIEWED,
            scope=self.scope,
            request=request._request,
            object_type="audit_trail",
            detail={"via": "api"},
        )
        return response

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().retrieve(request, *args, **kwargs)
        audit_read(
            event=AuditCode.AUDIT_VIEWED,
            scope=self.scope,
            request=request._request,
            object_type="audit_event",
            object_id=str(kwargs.get("pk", "")),
            detail={"via": "api"},
        )
        return response


class NotificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedGenericViewSet):
    """The caller's own notifications."""

    queryset = Notification.objects.all()
    serializer_class = NotificationSerializer
    write_roles = frozenset(Role.values)

    @extend_schema(request=None, responses=NotificationSerializer)
    @action(detail=True, methods=["post"])
    @takes_no_body
    def read(self, request: Request, pk: str) -> Response:
        notification = self.get_object()
        assert isinstance(notification, Notification)
        assert isinstance(request.user, User)
        notification = services.notification_mark_read(user=request.user, notification=notification)
        return Response(NotificationSerializer(notification).data)


class GatewayWhoAmIView(APIView):
    """A gateway checks its credential at start and learns which AE titles to accept."""

    authentication_classes = [GatewayCredentialAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses=inline_serializer(
            "GatewayIdentity",
            {
                "key_id": serializers.CharField(),
                "institution": InstitutionSerializer(),
                "calling_ae_titles": serializers.ListField(child=serializers.CharField()),
                "server_time": serializers.DateTimeField(),
            },
        )
    )
    def get(self, request: Request) -> Response:
        credential = request.auth
        assert isinstance(credential, GatewayCredential)
        return Response(
            {
                "key_id": credential.key_id,
                "institution": InstitutionSerializer(credential.institution).data,
                "calling_ae_titles": credential.calling_ae_titles,
                "server_time": timezone.now(),
            }
        )
