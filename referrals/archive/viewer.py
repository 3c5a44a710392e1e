"""The one image viewer of the hub's pages: what its script needs to page through a study
(series, slices, spacing, windows), its window presets and its words.

Used by the study page, the report editor, the MDT room and the patient's share page; each
passes the rows its caller may see (the access layer's, or a share link's).
"""

from __future__ import annotations

from typing import Any

from django.db.models import F, QuerySet
from django.urls import reverse
from django.utils.translation import gettext as _

from referrals.models import Instance, Series, Study
from tenants import access

# CT window presets (center, width) in HU, as radiology departments commonly set them.
CT_PRESETS = [
    ("lung", -600, 1500),
    ("mediastinum", 40, 400),
    ("bone", 400, 1800),
    ("brain", 40, 80),
]


def preset_list() -> list[dict[str, Any]]:
    """The presets as the viewer script reads them."""
    return [{"key": key, "center": c, "width": w} for key, c, w in CT_PRESETS]


def viewer_strings() -> dict[str, str]:
    """The viewer's words, in the page's language (its script formats the {placeholders})."""
    return {
        "image": _("Image {n} of {total}"),
        "series": _("Series {n}"),
        "window": _("W {width} L {center}"),
        "zoom": _("Zoom {percent}%"),
        "mm": _("{length} mm"),
        "px": _("{length} px (no pixel spacing)"),
        "loading": _("Loading…"),
        "failed": _("This image could not be shown."),
    }


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


def series_viewer_data(
    series: Series, images: list[dict[str, Any]], sample: dict[str, Any]
) -> dict[str, Any]:
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


def viewer_data(
    *, series: QuerySet[Series], instances: QuerySet[Instance], base: str
) -> tuple[list[Series], dict[str, Any]]:
    """The study's series (for the page) and the viewer script's data, from the series and
    instances the caller may see; `base` is where the frames are fetched from."""
    series_list = list(series.order_by(F("series_number").asc(nulls_last=True), "pk"))
    images: dict[int, list[dict[str, Any]]] = {}
    for row in (
        instances.filter(rows__isnull=False, columns__isnull=False)
        .order_by(F("instance_number").asc(nulls_last=True), "pk")
        .values("pk", "series_id", "sop_uid", "number_of_frames", "rows", "columns")
    ):
        images.setdefault(row["series_id"], []).append(dict(row))
    # One instance's full metadata per series (the middle one) gives spacing and windows.
    middles = [items[len(items) // 2]["pk"] for items in images.values()]
    samples = dict(instances.filter(pk__in=middles).values_list("series_id", "metadata"))
    data = {
        "series": [
            series_viewer_data(s, images[s.pk], samples.get(s.pk) or {})
            for s in series_list
            if s.pk in images
        ],
        "base": base,
        "presets": preset_list(),
    }
    return series_list, data


def study_viewer_data(scope: access.Scope, study: Study) -> tuple[list[Series], dict[str, Any]]:
    """The viewer for a signed-in caller: what the access layer lets them see of `study`."""
    return viewer_data(
        series=access.visible(scope, Series).filter(study=study),
        instances=access.visible(scope, Instance).filter(study=study),
        base=reverse("dicomweb:study-thumbnail", args=[study.study_uid]).removesuffix("/thumbnail"),
    )
