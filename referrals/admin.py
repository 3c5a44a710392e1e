"""Django admin for referrals: read-only, with their timeline.

A referral's status changes only through the state machine (referrals/workflow/states.py, called
by referrals/workflow/services.py), so the admin shows referrals and their events and edits nothing.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from alliance.admin import admin_scope, is_alliance_admin, scoped_list_filter
from referrals.models import Referral, ReferralEvent, ReferralStudy
from tenants import access


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return True  # shown only inside a referral the viewer may already see


class ReferralEventInline(ReadOnlyInline):
    model = ReferralEvent
    fields = readonly_fields = (
        "at",
        "action",
        "from_status",
        "to_status",
        "actor",
        "actor_institution",
        "reason",
        "data",
    )
    ordering = ["at", "pk"]


class ReferralStudyInline(ReadOnlyInline):
    model = ReferralStudy
    fields = readonly_fields = ("study", "is_prior")


@admin.register(Referral)
class ReferralAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "status",
        "priority",
        "source",
        "target",
        "pool",
        "claimed_by",
        "requested_at",
        "deadline_at",
        "breached_at",
        "unroutable",
    ]
    list_filter = ["status", "priority", "kind", "unroutable", "alliance"]
    search_fields = ["=id", "study__study_uid", "study__accession_number"]
    date_hierarchy = "requested_at"
    list_select_related = ["source", "target", "pool", "claimed_by"]
    inlines = [ReferralStudyInline, ReferralEventInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Referral._meta.fields]

    def get_list_filter(self, request: HttpRequest) -> Any:
        return scoped_list_filter(self, request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Referral]:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return access.visible(admin_scope(request), qs)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) or is_alliance_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if super().has_view_permission(request, obj):
            return True
        return is_alliance_admin(request) and (
            obj is None or self.get_queryset(request).filter(pk=obj.pk).exists()
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
