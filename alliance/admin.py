"""Django admin for alliances, their tiers, and routing: policies, sites, pools, rosters, rules.

Superusers see everything. A staff user who is an alliance administrator manages the
routing of their own alliance only: every list, object and choice goes through
tenants/access.py, exactly as the pages and the API do.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from tenants import access
from tenants.models import Institution, Membership, Role, User

from .models import (
    Alliance,
    AllianceMember,
    AlliancePolicy,
    PoolMember,
    ReaderPool,
    RosterShift,
    RoutingRule,
    SiteSettings,
)
from .signals import alliance_created


def admin_scope(request: HttpRequest) -> access.Scope:
    return request.hub_scope  # type: ignore[attr-defined]


def is_alliance_admin(request: HttpRequest) -> bool:
    """A staff user acting for an institution where they hold the alliance-admin role."""
    user = request.user
    return bool(
        user.is_active and user.is_staff and admin_scope(request).has_any_role(Role.ALLIANCE_ADMIN)
    )


def _choices(request: HttpRequest, model: type[Model]) -> QuerySet[Any]:
    """The rows an alliance administrator may pick in a form (their alliance's)."""
    scope = admin_scope(request)
    if model is User:
        sites = access.visible(scope, Institution).values("pk")
        members = Membership.objects.active().filter(institution__in=sites).values("user_id")
        return User.objects.filter(pk__in=members)
    return access.visible(scope, model)


class ScopedChoices:
    """Foreign-key choices limited to the alliance administrator's alliance."""

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if not request.user.is_superuser:
            kwargs["queryset"] = _choices(request, db_field.related_model)
        return super().formfield_for_foreignkey(  # type: ignore[misc]
            db_field, request, **kwargs
        )


def scoped_list_filter(model_admin: admin.ModelAdmin, request: HttpRequest) -> list[Any]:
    """The sidebar's filters: for anyone but a superuser, a filter on a related row lists
    only the rows that occur in the (scoped) list, never every alliance's names."""
    filters = list(admin.ModelAdmin.get_list_filter(model_admin, request))
    if request.user.is_superuser:
        return filters
    scoped: list[Any] = []
    for item in filters:
        if isinstance(item, str) and _is_relation(model_admin.model, item):
            scoped.append((item, admin.RelatedOnlyFieldListFilter))
        else:
            scoped.append(item)
    return scoped


def _is_relation(model: type[Model], path: str) -> bool:
    field: Any = None
    for part in path.split("__"):
        field = model._meta.get_field(part)
        if field.is_relation:
            model = field.related_model
    return bool(field is not None and field.is_relation)


class AllianceScopedAdmin(ScopedChoices, admin.ModelAdmin):
    """An alliance administrator manages their alliance's rows; superusers manage all."""

    def get_list_filter(self, request: HttpRequest) -> Any:
        return scoped_list_filter(self, request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return access.visible(admin_scope(request), qs)

    def _allowed(self, request: HttpRequest, obj: Any) -> bool:
        if not is_alliance_admin(request):
            return False
        return obj is None or self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) or is_alliance_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or self._allowed(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) or is_alliance_admin(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) or self._allowed(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) or self._allowed(request, obj)


class ScopedInline(ScopedChoices, admin.TabularInline):
    """An inline the alliance administrator edits along with its (scoped) parent."""

    extra = 0

    def _parent_allowed(self, request: HttpRequest) -> bool:
        return is_alliance_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or self._parent_allowed(request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_add_permission(request, obj) or self._parent_allowed(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) or self._parent_allowed(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) or self._parent_allowed(request)


class AllianceMemberInline(admin.TabularInline):
    model = AllianceMember
    extra = 0
    autocomplete_fields = ["institution"]


@admin.register(Alliance)
class AllianceAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "name_en", "lead_hospital", "commission", "region_code"]
    search_fields = ["code", "name", "name_en"]
    autocomplete_fields = ["lead_hospital", "commission"]
    inlines = [AllianceMemberInline]

    def save_model(self, request: HttpRequest, obj: Alliance, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:  # e.g. the starter report templates, from its first day
            alliance_created.send(sender=Alliance, alliance=obj)


@admin.register(AlliancePolicy)
class AlliancePolicyAdmin(AllianceScopedAdmin):
    list_display = [
        "alliance",
        "stat_minutes",
        "urgent_minutes",
        "routine_minutes",
        "warn_fraction",
        "breach_action",
        "fallback_pool",
        "duty_officer",
    ]
    fieldsets = [
        (None, {"fields": ["alliance"]}),
        (
            _("Deadlines"),
            {
                "fields": [
                    "stat_minutes",
                    "urgent_minutes",
                    "routine_minutes",
                    "warn_fraction",
                    "breach_action",
                    "claim_open_minutes",
                ]
            },
        ),
        (_("Routing"), {"fields": ["fallback_pool", "duty_officer", "grant_days_after_report"]}),
    ]


@admin.register(SiteSettings)
class SiteSettingsAdmin(AllianceScopedAdmin):
    list_display = ["member", "auto_remote_read", "auto_priority"]
    list_filter = ["auto_remote_read", "member__alliance"]
    list_editable = ["auto_remote_read", "auto_priority"]
    search_fields = ["member__institution__name", "member__institution__name_en"]


class PoolMemberInline(ScopedInline):
    model = PoolMember
    fields = ["user", "capacity", "is_active"]


class RosterShiftInline(ScopedInline):
    model = RosterShift
    fields = ["user", "starts_at", "ends_at"]


@admin.register(ReaderPool)
class ReaderPoolAdmin(AllianceScopedAdmin):
    list_display = [
        "display_name",
        "alliance",
        "institution",
        "subspecialty",
        "cap",
        "overflow_to",
        "roster_required",
        "is_active",
    ]
    list_filter = ["alliance", "is_active", "roster_required"]
    search_fields = ["name", "name_en", "subspecialty"]
    inlines = [PoolMemberInline, RosterShiftInline]


@admin.register(RosterShift)
class RosterShiftAdmin(AllianceScopedAdmin):
    list_display = ["user", "pool", "starts_at", "ends_at"]
    list_filter = ["pool"]
    date_hierarchy = "starts_at"


@admin.register(RoutingRule)
class RoutingRuleAdmin(AllianceScopedAdmin):
    list_display = [
        "order",
        "name",
        "is_active",
        "alliance",
        "source_institution",
        "source_tier",
        "modality",
        "body_part",
        "priority",
        "time_from",
        "time_to",
        "pool",
    ]
    list_display_links = ["name"]
    list_editable = ["order", "is_active"]
    list_filter = ["alliance", "is_active", "source_tier", "modality"]
    ordering = ["alliance", "order", "pk"]
    search_fields = ["name", "modality", "body_part"]
