"""The alliance administrator's report template editor, in the console (/console/templates/):
the list, a structured editor (each save a new version), history, one version, a diff between
two versions, retire and reactivate.

Views are thin: the reads are reporting/templates_admin.py's, the writes reporting/services.py's
(the same the API uses). Another alliance's template answers 404, like a missing one; a person
without the alliance administrator role gets 403.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from alliance.models import Alliance
from tenants import access
from tenants.roles import TEMPLATE_ROLES

from . import services, templates_admin
from .models import ReportTemplate
from .schema import SchemaError
from .template_forms import (
    MODALITY_SUGGESTIONS,
    STARTING_ROWS,
    FieldRowFormSet,
    TemplateFactsForm,
    fields_from_rows,
    rows_from_fields,
)

ROWS_PREFIX = "f"


def _scope(request: HttpRequest) -> access.Scope:
    scope: access.Scope = request.hub_scope  # type: ignore[attr-defined]
    if scope.user is None or scope.institution is None or not scope.has_any_role(*TEMPLATE_ROLES):
        raise PermissionDenied
    return scope


def _template(scope: access.Scope, pk: int) -> ReportTemplate:
    return access.get_visible_or_404(
        scope, ReportTemplate.objects.select_related("alliance", "created_by"), pk=pk
    )


def _newest(scope: access.Scope, template: ReportTemplate) -> ReportTemplate:
    newest = (
        access.visible(scope, ReportTemplate)
        .filter(alliance_id=template.alliance_id, code=template.code)
        .order_by("-version")
        .first()
    )
    assert newest is not None  # `template` itself is one of them
    return newest


def _alliances(scope: access.Scope) -> list[tuple[int, str]]:
    rows = access.visible(scope, Alliance).filter(pk__in=scope.alliance_ids).order_by("pk")
    return [(a.pk, str(a)) for a in rows]


def _editor_context(
    facts: TemplateFactsForm, rows: Any, error: str = "", **extra: Any
) -> dict[str, Any]:
    return {
        "facts": facts,
        "rows": rows,
        # After a refused save, the rows come back in the order the person gave them.
        "row_forms": sorted(rows.forms, key=_row_position),
        "error": error,
        "modality_suggestions": MODALITY_SUGGESTIONS,
        **extra,
    }


def _row_position(form: Any) -> int:
    value = str(form["ORDER"].value() or "")
    return int(value) if value.isascii() and value.isdigit() else 10_000


@login_required
@require_GET
def template_list(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    summaries = templates_admin.template_summaries(scope)
    return render(
        request,
        "reporting/template_editor/list.html",
        {
            "summaries": summaries,
            "several_alliances": len({s.newest.alliance_id for s in summaries}) > 1,
        },
    )


def _rows_formset(request: HttpRequest, initial: list[dict[str, Any]]) -> Any:
    if request.method == "POST":
        return FieldRowFormSet(request.POST, prefix=ROWS_PREFIX)
    return FieldRowFormSet(initial=initial, prefix=ROWS_PREFIX)


def _fields(rows: Any) -> tuple[dict[str, Any] | None, str]:
    """The rows as template fields, or the sentence that says why not."""
    if not rows.is_valid():
        return None, _("Some fields need attention; see the messages below.")
    try:
        return fields_from_rows(rows.rows()), ""
    except SchemaError as exc:
        return None, str(exc)


@login_required
def template_create(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    alliances = _alliances(scope)
    if not alliances:
        raise PermissionDenied
    data = request.POST if request.method == "POST" else None
    facts = TemplateFactsForm(data, creating=True, alliances=alliances)
    rows = _rows_formset(request, STARTING_ROWS)
    error, status = "", 200
    if request.method == "POST":
        fields, error = _fields(rows)
        if facts.is_valid() and fields is not None:
            try:
                made = services.template_create(
                    scope=scope,
                    alliance_id=facts.cleaned_data["alliance"],
                    code=facts.cleaned_data["code"],
                    modality=facts.cleaned_data["modality"],
                    body_part=facts.cleaned_data["body_part"],
                    name=facts.cleaned_data["name"],
                    name_en=facts.cleaned_data["name_en"],
                    fields=fields,
                )
            except services.ReportError as exc:
                error, status = str(exc), exc.status_code
            else:
                messages.success(request, _("The template was created as version 1."))
                return redirect(reverse("console-template-history", args=[made.pk]))
        error = error or _("Some fields need attention; see the messages below.")
        status = status if status != 200 else 400
    context = _editor_context(facts, rows, error, creating=True)
    return render(request, "reporting/template_editor/edit.html", context, status=status)


@login_required
def template_edit(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope(request)
    newest = _newest(scope, _template(scope, pk))
    data = request.POST if request.method == "POST" else None
    initial = {
        "name": newest.name,
        "name_en": newest.name_en,
        "modality": newest.modality,
        "body_part": newest.body_part,
    }
    facts = TemplateFactsForm(data, initial=initial, creating=False, alliances=[])
    rows = _rows_formset(request, rows_from_fields(newest.fields))
    base_version = newest.version
    error, status = "", 200
    if request.method == "POST":
        try:
            base_version = int(request.POST.get("base_version", ""))
        except ValueError:
            base_version = 0  # refused below as edited from an older version
        fields, error = _fields(rows)
        if facts.is_valid() and fields is not None:
            try:
                saved = services.template_version_add(
                    scope=scope,
                    template_id=newest.pk,
                    fields=fields,
                    base_version=base_version,
                    **facts.cleaned_data,
                )
            except services.ReportError as exc:
                error, status = str(exc), exc.status_code
            else:
                messages.success(
                    request,
                    _("Saved as version %(v)d; reports already written keep their version.")
                    % {"v": saved.version},
                )
                return redirect(reverse("console-template-history", args=[saved.pk]))
        error = error or _("Some fields need attention; see the messages below.")
        status = status if status != 200 else 400
    context = _editor_context(
        facts, rows, error, creating=False, template=newest, base_version=base_version
    )
    return render(request, "reporting/template_editor/edit.html", context, status=status)


@login_required
@require_GET
def template_history(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope(request)
    template = _template(scope, pk)
    versions = templates_admin.template_versions(scope, template)
    newest = versions[0].template
    return render(
        request,
        "reporting/template_editor/history.html",
        {
            "template": newest,
            "versions": versions,
            "in_use": any(row.template.active for row in versions),
        },
    )


@login_required
@require_GET
def template_version(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope(request)
    template = _template(scope, pk)
    newest = _newest(scope, template)
    return render(
        request,
        "reporting/template_editor/version.html",
        {
            "template": template,
            "newest": newest,
            "fields": [
                {**item, "kind_label": templates_admin.kind_label(item.get("kind", "text"))}
                for item in template.fields.get("fields", [])
            ],
        },
    )


def _version_number(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()):
        raise Http404
    return int(text)


@login_required
@require_GET
def template_diff(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope(request)
    template = _template(scope, pk)
    versions = [row.template for row in templates_admin.template_versions(scope, template)]
    by_number = {v.version: v for v in versions}
    after_number = _version_number(request.GET.get("to")) or versions[0].version
    before_number = _version_number(request.GET.get("from"))
    if before_number is None:
        before_number = max((n for n in by_number if n < after_number), default=after_number)
    if before_number not in by_number or after_number not in by_number:
        raise Http404
    before, after = by_number[before_number], by_number[after_number]
    return render(
        request,
        "reporting/template_editor/diff.html",
        {
            "template": versions[0],
            "before": before,
            "after": after,
            "numbers": sorted(by_number, reverse=True),
            "changes": templates_admin.template_diff(before, after),
        },
    )


@login_required
@require_POST
def template_status(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope(request)
    template = _template(scope, pk)
    active = request.POST.get("active") == "1"
    newest = services.template_active_set(scope=scope, template_id=template.pk, active=active)
    if active:
        messages.success(
            request,
            _("Version %(v)d is offered again when a report starts.") % {"v": newest.version},
        )
    else:
        messages.success(
            request,
            _("The template is retired: new reports cannot use it; written ones keep it."),
        )
    return redirect(reverse("console-template-history", args=[newest.pk]))
