"""Django admin for reporting: templates editable; reports, addenda and second reads read-only.

A report is changed only through reporting/services.py (autosave, sign, second read); the
admin can look but not touch, so no admin form or bulk action can alter a signed report.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Addendum, Report, ReportTemplate, SecondRead


@admin.register(ReportTemplate)
class ReportTemplateAdmin(admin.ModelAdmin):
    list_display = ["code", "version", "modality", "body_part", "name", "alliance", "active"]
    list_filter = ["modality", "active", "alliance"]
    readonly_fields = ["version", "created_by", "created_at"]


class _ReadOnlyAdmin(admin.ModelAdmin):
    actions = None

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Report)
class ReportAdmin(_ReadOnlyAdmin):
    list_display = ["id", "referral", "status", "author", "signed_by", "signed_at"]
    list_filter = ["status"]


@admin.register(Addendum)
class AddendumAdmin(_ReadOnlyAdmin):
    list_display = ["id", "report", "author", "signed_at"]


@admin.register(SecondRead)
class SecondReadAdmin(_ReadOnlyAdmin):
    list_display = ["id", "report", "reviewer", "outcome", "at"]
