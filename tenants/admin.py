"""Django admin for onboarding: institutions, users, roles, gateway credentials; audit read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .audit import AuditCode, audit_record
from .auth import gateway_credential_new_secret
from .models import AuditEvent, GatewayCredential, Institution, Membership, User


def _audit_admin_change(request: HttpRequest, obj: Any, change: str) -> None:
    audit_record(
        event=AuditCode.PERMISSION_CHANGE
        if isinstance(obj, Membership)
        else AuditCode.CREDENTIAL_CHANGE,
        action=AuditEvent.Action.UPDATE,
        user=request.user,  # type: ignore[arg-type]
        request=request,
        object_type=obj._meta.model_name,
        object_id=obj.pk,
        detail={"via": "admin", "change": change, "object": str(obj)},
    )


class MembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "user"
    extra = 0
    fields = ["institution", "role", "created_at", "revoked_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["institution"]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = (
        *(BaseUserAdmin.fieldsets or ()),
        (_("Hub"), {"fields": ("name", "name_en", "phone", "language")}),
    )
    list_display = ["username", "name", "name_en", "email", "is_active", "is_staff"]
    search_fields = ["username", "name", "name_en", "email"]
    inlines = [MembershipInline]

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects + [o for o, _f in formset.changed_objects]:
            _audit_admin_change(request, obj, "saved")


@admin.register(Institution)
class InstitutionAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "name_en", "kind", "region_code", "is_active"]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name", "name_en", "region_code"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "institution", "role", "created_at", "revoked_at"]
    list_filter = ["role", "institution"]
    search_fields = ["user__username", "user__name", "institution__name"]
    autocomplete_fields = ["user", "institution"]
    readonly_fields = ["granted_by"]

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        if not change:
            obj.granted_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)
        _audit_admin_change(request, obj, "changed" if change else "granted")

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        _audit_admin_change(request, obj, "deleted")
        super().delete_model(request, obj)


@admin.register(GatewayCredential)
class GatewayCredentialAdmin(admin.ModelAdmin):
    list_display = ["key_id", "label", "institution", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["institution"]
    readonly_fields = ["key_id", "created_by", "created_at", "last_used_at"]
    fields = [
        "institution",
        "label",
        "calling_ae_titles",
        "key_id",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    actions = ["revoke"]

    def save_model(
        self, request: HttpRequest, obj: GatewayCredential, form: Any, change: bool
    ) -> None:
        if not change:
            obj.key_id, secret, obj.secret_hash = gateway_credential_new_secret()
            obj.created_by = request.user  # type: ignore[assignment]
            messages.warning(
                request,
                _(
                    "Gateway secret for %(key)s (shown once, store it in the gateway now): "
                    "%(secret)s"
                )
                % {"key": obj.key_id, "secret": secret},
            )
        super().save_model(request, obj, form, change)
        _audit_admin_change(request, obj, "changed" if change else "created")

    @admin.action(description=_("Revoke the selected credentials"))
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        for credential in queryset.filter(revoked_at__isnull=True):
            credential.revoked_at = timezone.now()
            credential.save(update_fields=["revoked_at"])
            _audit_admin_change(request, credential, "revoked")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "occurred_at",
        "event",
        "outcome",
        "username",
        "institution_code",
        "source_address",
        "study_uid",
    ]
    list_filter = ["event", "outcome"]
    search_fields = ["username", "patient_id", "study_uid", "object_id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
