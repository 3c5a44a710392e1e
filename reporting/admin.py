"""Django admin for reporting: templates, reports, addenda and second reads, read-only.

A report is changed only through reporting/services.py (autosave, sign, second read); the
admin can look but not touch, so no admin form or bulk action can alter a signed report.
Templates likewise: a version row that reports point at must never change in place, so they
are edited in the console's template editor (/console/templates/), where each save is a new
version, checked and audited.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Addendum, Report, ReportTemplate, SecondRead


class _ReadOnlyAdmin(admin.ModelAdmin):
    actions = None

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReportTemplate)
class ReportTemplateAdmin(_ReadOnlyAdmin):
    list_display = ["code", "version", "modality", "body_part", "name", "alliance", "active"]
    list_filter = ["modality", "active", "alliance"]


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
