"""Django admin for alliances and their tiers."""

from django.contrib import admin

from .models import Alliance, AllianceMember


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
