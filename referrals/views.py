"""Web pages of the referrals app: the institution's studies, and one study with its viewer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _

from tenants import access
from tenants.audit import AuditCode, audit_record
from tenants.models import AuditEvent

from . import selectors
from .dicomweb.base import IMAGE_READ_ROLES
from .models import Instance, Series, Study
from .referral_views import study_referral_context

STUDIES_PER_PAGE = 25
MAX_QUERY = 64
# CT window presets (center, width) in HU, as radiology departments commonly set them.
CT_PRESETS = [
    ("lung", -600, 1500),
    ("mediastinum", 40, 400),
    ("bone", 400, 1800),
    ("brain", 40, 80),
]


def person_name(value: str) -> str:
    """A DICOM PN for reading: 'Wang^Xiaoming=王^小明' -> '王小明 (Wang Xiaoming)'."""
    groups = value.split("=")
    alphabetic = " ".join(p.strip() for p in groups[0].split("^") if p.strip())
    ideographic = "".join(p.strip() for p in groups[1].split("^")) if len(groups) > 1 else ""
    if ideographic and alphabetic:
        return f"{ideographic} ({alphabetic})"
    return ideographic or alphabetic or value


def _require_image_role(request: HttpRequest) -> access.Scope:
    scope: access.Scope = request.hub_scope  # type: ignore[attr-defined]
    if not scope.has_any_role(*IMAGE_READ_ROLES):
        raise PermissionDenied
    return scope


@dataclass(frozen=True)
class StudyRow:
    study: Study
    patient: str

    @property
    def modalities(self) -> list[str]:
        return [m for m in self.study.modalities.split("\\") if m]


@login_required
def study_list(request: HttpRequest) -> HttpResponse:
    scope = _require_image_role(request)
    query = request.GET.get("q", "").strip()[:MAX_QUERY]
    page = Paginator(selectors.study_search(scope=scope, query=query), STUDIES_PER_PAGE).get_page(
        request.GET.get("page"))
    rows = [StudyRow(study, person_name(study.patient_name)) for study in page]
    return render(request, "referrals/study_list.html",
                  {"page": page, "rows": rows, "query": query})


def _value(metadata: dict[str, Any], tag: str) -> list[Any]:
    element = metadata.get(tag) or {}
    values = element.get("Value") if isinstance(element, dict) else None
    return values if isinstance(values, list) else []


def _numbers(values: list[Any]) -> list[float]:
    out = []
    for value in values:
        try:
            out.append(float(value))
        except (TypeError, ValueError):
            return []
    return out


def _series_viewer_data(series: Series, images: list[dict[str, Any]],
                        sample: dict[str, Any]) -> dict[str, Any]:
    spacing = _numbers(_value(sample, "00280030"))  # PixelSpacing: row, column (mm)
    if len(spacing) != 2 or min(spacing) <= 0:
        spacing = _numbers(_value(sample, "00181164"))  # ImagerPixelSpacing
    centers = _numbers(_value(sample, "00281050"))
    widths = _numbers(_value(sample, "00281051"))
    bits = _numbers(_value(sample, "00280101")) or [8.0]
    windows = [[c, w] for c, w in zip(centers, widths, strict=False) if w > 0]
    slices = []
    for image in images:
        for frame in range(1, image["number_of_frames"] + 1):
            slices.append([image["sop_uid"], frame, image["rows"], image["columns"]])
    return {
        "uid": series.series_uid,
        "number": series.series_number,
        "modality": series.modality,
        "pixelSpacing": spacing if len(spacing) == 2 and min(spacing) > 0 else None,
        "windows": windows,
        "bitsStored": int(bits[0]),
        "slices": slices,
    }


def study_viewer_data(scope: access.Scope, study: Study) -> tuple[list[Series], dict[str, Any]]:
    """The study's series (for the page) and what the viewer script needs to page through them."""
    series_list = list(access.visible(scope, Series).filter(study=study)
                       .order_by(F("series_number").asc(nulls_last=True), "pk"))
    images: dict[int, list[dict[str, Any]]] = {}
    for row in (access.visible(scope, Instance)
                .filter(study=study, rows__isnull=False, columns__isnull=False)
                .order_by(F("instance_number").asc(nulls_last=True), "pk")
                .values("pk", "series_id", "sop_uid", "number_of_frames", "rows", "columns")):
        images.setdefault(row["series_id"], []).append(dict(row))
    # One instance's full metadata per series (the middle one) gives spacing and windows.
    middles = [items[len(items) // 2]["pk"] for items in images.values()]
    samples = dict(access.visible(scope, Instance).filter(pk__in=middles)
                   .values_list("series_id", "metadata"))
    data = {
        "series": [_series_viewer_data(s, images[s.pk], samples.get(s.pk) or {})
                   for s in series_list if s.pk in images],
        "base": reverse("dicomweb:study-thumbnail", args=[study.study_uid]).removesuffix(
            "/thumbnail"),
        "presets": [{"key": key, "center": c, "width": w} for key, c, w in CT_PRESETS],
    }
    return series_list, data


@login_required
def study_detail(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _require_image_role(request)
    study = access.get_visible_or_404(scope, Study.objects.select_related("patient"), pk=pk)
    series_list, viewer = study_viewer_data(scope, study)
    audit_record(event=AuditCode.STUDY_VIEWED, action=AuditEvent.Action.READ, scope=scope,
                 request=request, patient_id=study.pid, study_uid=study.study_uid,
                 object_type="study", object_id=study.study_uid)
    strings = {
        "image": _("Image {n} of {total}"),
        "series": _("Series {n}"),
        "window": _("W {width} L {center}"),
        "zoom": _("Zoom {percent}%"),
        "mm": _("{length} mm"),
        "px": _("{length} px (no pixel spacing)"),
        "loading": _("Loading…"),
        "failed": _("This image could not be shown."),
    }
    return render(request, "referrals/study_detail.html", {
        "study": study,
        "patient_display": person_name(study.patient.name or study.patient_name),
        "referring_display": person_name(study.referring_physician_name),
        "series_list": series_list,
        "viewable": {s["uid"] for s in viewer["series"]},
        "viewer": viewer,
        "viewer_strings": strings,
        "modalities": [m for m in study.modalities.split("\\") if m],
        "is_ct": "CT" in study.modalities.split("\\"),
        "presets": [(key, c, w) for key, c, w in CT_PRESETS],
        **study_referral_context(scope, study),
    })
