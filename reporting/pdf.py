"""A final report as a PDF: letterhead, facts and the clinical question, fields, critical
findings, both signatures of a second read, addenda, key images with their notes, QR.

Laid out by WeasyPrint from reporting/templates/reporting/report_pdf.html; fontconfig
finds Noto CJK (fonts-noto-cjk, installed by deploy/local/ensure-services.sh and the image)
for the Chinese text. Key images are rendered with referrals/archive/rendering.py and embedded as
JPEG data URIs; the QR code (segno) points at the patient's share link when there is one.

Speed (docs/benchmarks.md, report PDFs): most of a PDF's time is WeasyPrint subsetting
each font face it used, about 0.2-0.3 s per Noto CJK face (65,535 glyphs). So the document
uses exactly one CJK face (Noto Sans CJK SC Regular: headings are set apart by size and
colour, not bold; the page footer names the font too, or it falls back to DejaVu Serif plus
a Japanese CJK face) and one small Latin mono face for hashes. Key images are JPEG, which
WeasyPrint embeds as they are (a PNG is decoded and re-compressed), and reach WeasyPrint
through its URL fetcher as `hub-picture:N` rather than as base64 data URIs in the HTML
(its pure-Python HTML parser would read every character of them); the same fetcher
refuses every other URL, so a PDF never reads a file or the network. The facts table has a
fixed layout (no min/max-content pass over every cell), and each thread keeps one
FontConfiguration (fontconfig/Pango set-up) across documents.
"""

from __future__ import annotations

import base64
import io
import threading
from dataclasses import dataclass, field
from typing import Any

import segno
from django.template.loader import render_to_string
from django.utils import timezone, translation

from referrals.archive import rendering
from referrals.archive.person_names import dicom_person_name

from .models import CriticalFinding, Report, ReportStatus

KEY_IMAGE_OPTIONS = rendering.RenderOptions(
    media_type=rendering.JPEG, viewport=rendering.Viewport(512, 512), quality=90
)
MAX_KEY_IMAGES = 12


@dataclass
class ReportDocument:
    """What a report shows, in the order it shows it (PDF, share page and FHIR use it)."""

    report: Report
    fields: list[dict[str, str]]
    addenda: list[Any]
    key_images: list[Any] = field(default_factory=list)


def _choice_label(item: dict[str, Any], value: str) -> str:
    for choice in item.get("choices", []):
        if choice.get("value") == value:
            label = choice.get("label") or value
            label_en = choice.get("label_en")
            return f"{label} / {label_en}" if label_en and label_en != label else label
    return value


def report_fields(report: Report) -> list[dict[str, str]]:
    """The template's fields with their labels (Chinese / English) and the written values."""
    rows = []
    for item in report.template.fields.get("fields", []):
        value = str(report.content.get(item["key"], "") or "")
        if item.get("kind") == "choice" and value:
            value = _choice_label(item, value)
        if item.get("kind") == "measurement" and value and item.get("unit"):
            value = f"{value} {item['unit']}"
        rows.append(
            {
                "key": item["key"],
                "label": item.get("label", item["key"]),
                "label_en": item.get("label_en", ""),
                "value": value,
            }
        )
    return rows


def report_document(report: Report) -> ReportDocument:
    return ReportDocument(
        report=report,
        fields=report_fields(report),
        addenda=list(report.addenda.select_related("author")),
    )


def key_image_pictures(report: Report) -> list[tuple[bytes, str]]:
    """The report's key images (reporting.KeyImage), each rendered as a JPEG, with its note."""
    pictures = []
    for key in report.key_images.select_related("instance")[:MAX_KEY_IMAGES]:
        try:
            picture = rendering.frame_render(key.instance, key.frame, KEY_IMAGE_OPTIONS)
        except rendering.RenderError:
            continue  # an image that cannot be drawn is left out, never the whole report
        pictures.append((picture, key.note))
    return pictures


def critical_findings(report: Report) -> list[CriticalFinding]:
    """Every critical result flagged on the report's referral, oldest first: the printed
    report must carry what the clinic was alerted to and whether it acknowledged it."""
    return list(
        report.referral.critical_findings.select_related("flagged_by", "acknowledged_by").order_by(
            "flagged_at", "pk"
        )
    )


PICTURE_SCHEME = "hub-picture:"


def _media_type(picture: bytes) -> str:
    return "image/png" if picture.startswith(b"\x89PNG") else "image/jpeg"


def _fetcher(pictures: list[bytes]) -> Any:
    """WeasyPrint's URL fetcher for one document: its pictures and data URIs, nothing else."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class PictureFetcher(URLFetcher):
        def fetch(self, url: str, headers: Any = None) -> Any:
            if url.startswith(PICTURE_SCHEME):
                picture = pictures[int(url.removeprefix(PICTURE_SCHEME))]
                return URLFetcherResponse(url, picture, {"Content-Type": _media_type(picture)})
            if url.startswith("data:"):
                return super().fetch(url, headers)
            raise ValueError(f"a report PDF fetches nothing else: {url[:60]}")

    return PictureFetcher(allowed_protocols=("data",))


_local = threading.local()


def _font_config() -> Any:
    """This thread's WeasyPrint FontConfiguration (made once: fontconfig and Pango set-up)."""
    config = getattr(_local, "font_config", None)
    if config is None:
        from weasyprint.text.fonts import FontConfiguration

        config = _local.font_config = FontConfiguration()
    return config


def qr_svg_data_uri(url: str) -> str:
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", scale=4, border=2)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def report_pdf_bytes(
    report: Report, *, key_images: list[bytes] | None = None, share_url: str = ""
) -> bytes:
    """The PDF of a final report. `key_images` are JPEGs or PNGs without notes (from
    KeyImage, with their notes, if None)."""
    from weasyprint import HTML  # heavy import, only when a PDF is asked for

    if report.status != ReportStatus.FINAL:
        raise ValueError("only a final report is printed")
    keyed = key_image_pictures(report) if key_images is None else [(p, "") for p in key_images]
    pictures = [picture for picture, _note in keyed]
    document = report_document(report)
    study = report.study
    co_signed = report.preliminary_by_id is not None and (
        report.preliminary_by_id != report.signed_by_id
    )
    context = {
        "doc": document,
        "report": report,
        "study": study,
        "hospital": report.institution,
        "patient_name": dicom_person_name(study.patient_name),
        "clinical_question": report.referral.clinical_question,
        "findings": critical_findings(report),
        "preliminary_by": report.preliminary_by if co_signed else None,
        "images": [
            {"src": f"{PICTURE_SCHEME}{n}", "note": note} for n, (_p, note) in enumerate(keyed)
        ],
        "share_url": share_url,
        "qr": qr_svg_data_uri(share_url) if share_url else "",
        "printed_at": timezone.now(),
    }
    with translation.override("zh-hans"):
        html = render_to_string("reporting/report_pdf.html", context)
    pdf: bytes = HTML(string=html, url_fetcher=_fetcher(pictures)).write_pdf(
        font_config=_font_config()
    )
    return pdf
