"""The one image viewer of the hub's pages: what its script needs to page through a study
(series, slices, spacing, windows), its window presets and its words.

Used by the study page, the report editor, the MDT room and the patient's share page; each
passes the rows its caller may see (the access layer's, or a share link's).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import F, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from referrals.models import Instance, Series, Study
from tenants import access

# CT window presets (key, center, width) in HU, as radiology departments commonly set them;
# the order is the buttons' order and their number keys (the image's own window is key 1).
CT_PRESETS = [
    ("brain", 40, 80),
    ("subdural", 75, 215),
    ("stroke", 40, 40),
    ("lung", -600, 1500),
    ("mediastinum", 40, 400),
    ("abdomen", 60, 400),
    ("liver", 60, 160),
    ("bone", 400, 1800),
]


def _ct_labels() -> dict[str, str]:
    return {
        "brain": _("Brain"),
        "subdural": _("Subdural"),
        "stroke": _("Stroke"),
        "lung": _("Lung"),
        "mediastinum": _("Soft tissue"),
        "abdomen": _("Abdomen"),
        "liver": _("Liver"),
        "bone": _("Bone"),
    }


def preset_list() -> list[dict[str, Any]]:
    """The CT presets as the viewer scripts read them, with their names in the page's language."""
    labels = _ct_labels()
    return [{"key": key, "label": labels[key], "center": c, "width": w} for key, c, w in CT_PRESETS]


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
        "key": _("Key {key}"),
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


def _full_range(sample: dict[str, Any], bits: int) -> list[float] | None:
    """[center, width] spanning every value the series' pixels can hold, after rescale: the
    header's smallest/largest pixel values when it has them, else the stored bits' range."""
    signed = (_numbers(_value(sample, "00280103")) or [0.0])[0] == 1
    low_high = _numbers(_value(sample, "00280106")) + _numbers(_value(sample, "00280107"))
    if len(low_high) == 2 and low_high[1] > low_high[0]:
        low, high = low_high
    elif 1 <= bits <= 32:
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    else:
        return None
    slope = (_numbers(_value(sample, "00281053")) or [1.0])[0] or 1.0
    intercept = (_numbers(_value(sample, "00281052")) or [0.0])[0]
    ends = sorted((low * slope + intercept, high * slope + intercept))
    width = ends[1] - ends[0] + 1
    return [round((ends[0] + ends[1]) / 2, 2), round(width, 2)]


def series_presets(
    modality: str, windows: list[list[float]], explanations: list[Any], full: list[float] | None
) -> list[dict[str, Any]]:
    """The window buttons of one series, after "Default" (the image's own window): the CT
    presets for CT; otherwise the windows the header names, and the full range."""
    if modality == "CT":
        return preset_list()
    presets = []
    for n, (center, width) in enumerate(windows, start=1):
        named = explanations[n - 1] if n - 1 < len(explanations) else ""
        label = str(named).strip() if isinstance(named, str) and named.strip() else ""
        presets.append(
            {
                "key": f"header-{n}",
                "label": label or (_("Header window") + (f" {n}" if len(windows) > 1 else "")),
                "center": center,
                "width": width,
            }
        )
    if full is not None:
        presets.append(
            {"key": "full", "label": _("Full range"), "center": full[0], "width": full[1]}
        )
    return presets


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
    # Colour pictures are shown as they are: a window means nothing to them.
    colour = (_numbers(_value(sample, "00280002")) or [1.0])[0] > 1
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
        "presets": []
        if colour
        else series_presets(
            series.modality,
            windows,
            _value(sample, "00281055"),
            _full_range(sample, int(bits[0])),
        ),
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


def viewer_watermark(scope: access.Scope) -> str:
    """The line tiled over a staff viewer's images where HUB_VIEWER_WATERMARK is on: who
    looks, for which institution, and when (the hub's time); empty when off or nobody."""
    if not settings.HUB_VIEWER_WATERMARK or scope.user is None:
        return ""
    parts = [scope.user.display_name or scope.user.get_username()]
    if scope.institution is not None:
        parts.append(scope.institution.display_name)
    parts.append(timezone.localtime().strftime("%Y-%m-%d %H:%M"))
    return " · ".join(parts)
