"""Reads behind the template editor: an alliance's templates with their use, one template's
versions, and a difference between two versions that an administrator can read.

A template is a family of rows sharing (alliance, code); each edit adds a row (version + 1)
and reports point at the row they were written with. The writes are in reporting/services.py
(`template_create`, `template_version_add`, `template_active_set`), shared with the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count
from django.utils.translation import gettext as _

from tenants.access import Scope, visible
from tenants.models import bilingual

from .models import Report, ReportTemplate


@dataclass(frozen=True)
class TemplateSummary:
    """One template on the list: its newest version and how much it is used."""

    newest: ReportTemplate
    in_use: bool  # one of its versions is offered when a report starts
    reports: int  # reports written with any of its versions


@dataclass(frozen=True)
class TemplateChange:
    """One line of a difference: which field, what changed, before and after."""

    field: str
    what: str
    before: str = ""
    after: str = ""


def _report_counts(template_ids: list[int]) -> dict[int, int]:
    # A count only (no report is shown): reports of the alliance's own template rows.
    rows = (
        Report.objects.filter(template_id__in=template_ids)
        .values("template_id")
        .annotate(n=Count("pk"))
    )
    return {row["template_id"]: row["n"] for row in rows}


def template_summaries(scope: Scope) -> list[TemplateSummary]:
    """The templates of the caller's alliances, newest version of each, in list order."""
    rows = list(
        visible(scope, ReportTemplate)
        .select_related("alliance", "created_by")
        .order_by("alliance_id", "code", "-version")
    )
    counts = _report_counts([t.pk for t in rows])
    families: dict[tuple[int, str], list[ReportTemplate]] = {}
    for row in rows:
        families.setdefault((row.alliance_id, row.code), []).append(row)
    summaries = [
        TemplateSummary(
            newest=versions[0],
            in_use=any(v.active for v in versions),
            reports=sum(counts.get(v.pk, 0) for v in versions),
        )
        for versions in families.values()
    ]
    summaries.sort(
        key=lambda s: (not s.in_use, s.newest.modality, s.newest.body_part, s.newest.code)
    )
    return summaries


@dataclass(frozen=True)
class TemplateVersionRow:
    template: ReportTemplate
    reports: int


def template_versions(scope: Scope, template: ReportTemplate) -> list[TemplateVersionRow]:
    """Every version of `template`'s family the caller may see, newest first, with use."""
    versions = list(
        visible(scope, ReportTemplate)
        .filter(alliance_id=template.alliance_id, code=template.code)
        .select_related("created_by")
        .order_by("-version")
    )
    counts = _report_counts([t.pk for t in versions])
    return [TemplateVersionRow(template=v, reports=counts.get(v.pk, 0)) for v in versions]


def _label(item: dict[str, Any]) -> str:
    return bilingual(str(item.get("label") or ""), str(item.get("label_en") or "")) or str(
        item.get("key", "")
    )


def kind_label(kind: str) -> str:
    return {
        "text": _("Text"),
        "choice": _("Choice"),
        "measurement": _("Measurement"),
    }.get(kind, kind)


def _choices_text(item: dict[str, Any]) -> str:
    return "; ".join(
        f"{c['value']} {bilingual(c.get('label', ''), c.get('label_en', ''))}".strip()
        for c in item.get("choices", [])
    )


def _field_summary(item: dict[str, Any]) -> str:
    parts = [kind_label(item.get("kind", "text"))]
    if item.get("required"):
        parts.append(_("required"))
    if item.get("unit"):
        parts.append(str(item["unit"]))
    if item.get("choices"):
        parts.append(_choices_text(item))
    if item.get("default"):
        parts.append(_("default: %(text)s") % {"text": item["default"]})
    return " · ".join(parts)


def _yes_no(value: Any) -> str:
    return _("yes") if value else _("no")


def template_diff(old: ReportTemplate, new: ReportTemplate) -> list[TemplateChange]:
    """What changed from `old` to `new`, field by field, in words (empty: nothing)."""
    changes: list[TemplateChange] = []
    template_word = _("Template")
    for attribute, what in (
        ("name", _("Chinese name")),
        ("name_en", _("English name")),
        ("modality", _("Modality")),
        ("body_part", _("Body part")),
    ):
        before, after = getattr(old, attribute), getattr(new, attribute)
        if before != after:
            changes.append(TemplateChange(template_word, what, before, after))

    old_fields = {f["key"]: f for f in old.fields.get("fields", [])}
    new_fields = {f["key"]: f for f in new.fields.get("fields", [])}
    for key, item in old_fields.items():
        if key not in new_fields:
            changes.append(TemplateChange(_label(item), _("Removed"), _field_summary(item), ""))
    for key, item in new_fields.items():
        if key not in old_fields:
            changes.append(TemplateChange(_label(item), _("Added"), "", _field_summary(item)))
            continue
        before_item = old_fields[key]
        for attribute, what, show in (
            ("label", _("Chinese label"), str),
            ("label_en", _("English label"), str),
            ("kind", _("Type"), kind_label),
            ("required", _("Required"), _yes_no),
            ("unit", _("Unit"), str),
            ("default", _("Default text"), str),
        ):
            before, after = before_item.get(attribute, ""), item.get(attribute, "")
            if attribute == "required":
                before, after = bool(before), bool(after)
            if before != after:
                changes.append(TemplateChange(_label(item), what, show(before), show(after)))
        if before_item.get("choices", []) != item.get("choices", []):
            changes.append(
                TemplateChange(
                    _label(item), _("Options"), _choices_text(before_item), _choices_text(item)
                )
            )

    # Order: compare the fields both versions have, so an insertion is not read as a move.
    old_order = [k for k in old_fields if k in new_fields]
    new_order = [k for k in new_fields if k in old_fields]
    if old_order != new_order:
        new_positions = {k: n for n, k in enumerate(new_fields, start=1)}
        old_positions = {k: n for n, k in enumerate(old_fields, start=1)}
        for key in new_order:
            if old_order.index(key) != new_order.index(key):
                changes.append(
                    TemplateChange(
                        _label(new_fields[key]),
                        _("Position"),
                        str(old_positions[key]),
                        str(new_positions[key]),
                    )
                )
    return changes
