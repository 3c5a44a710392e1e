"""The minutes as a PDF: the minutes page's own template, laid out by WeasyPrint.

WeasyPrint finds fonts through fontconfig, so Chinese names and conclusions come out in
Noto CJK (fonts-noto-cjk, installed by deploy/local/ensure-services.sh and the image).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.template.loader import render_to_string


def minutes_pdf_bytes(record: dict[str, Any], *, request: HttpRequest | None = None) -> bytes:
    from weasyprint import HTML  # heavy import, only when a PDF is asked for

    html = render_to_string("consultations/minutes_print.html", {"record": record}, request=request)
    pdf: bytes = HTML(string=html).write_pdf()
    return pdf
