"""CSV and Excel renderers of a figure set (`?format=csv` / `?format=xlsx` on every route)."""

from __future__ import annotations

import csv
import io
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from rest_framework.renderers import BaseRenderer

# A text cell that begins with one of these is run as a formula by Excel, LibreOffice and
# WPS; values here come from clinics' DICOM (a Modality of `=2+5`) and site names.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return value


def neutralised(value: Any) -> Any:
    """A text that a spreadsheet would run, as text that it shows (OWASP's CSV injection
    advice: a leading apostrophe); numbers, negative ones included, stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def xlsx_text(value: Any) -> Any:
    """A text with the control characters a worksheet cannot hold (XML 1.0 has no way to
    write them; openpyxl raises) shown as U+FFFD; they come from clinics' DICOM values and
    from error answers that quote what the caller sent."""
    if isinstance(value, str):
        return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    return value


def sections(data: Any, only: str = "") -> list[tuple[str, list[str], list[list[Any]]]]:
    """(title, header, rows) for every part of a response: meta, totals, each table."""
    if not isinstance(data, dict) or "tables" not in data:  # an error answer
        items = data.items() if isinstance(data, dict) else [("detail", data)]
        return [("error", ["field", "message"], [[k, _cell(v)] for k, v in items])]
    tables: dict[str, list[dict[str, Any]]] = data["tables"]
    if only:
        rows = tables.get(only, [])
        header = list(rows[0]) if rows else []
        return [(only, header, [[_cell(r[h]) for h in header] for r in rows])]
    meta = {k: v for k, v in data["meta"].items() if k != "filters"}
    meta.update({f"filter.{k}": v for k, v in data["meta"]["filters"].items()})
    out = [
        ("meta", ["name", "value"], [[k, _cell(v)] for k, v in meta.items()]),
        ("totals", ["name", "value"], [[k, _cell(v)] for k, v in data["totals"].items()]),
    ]
    for name, rows in tables.items():
        header = list(rows[0]) if rows else []
        out.append((name, header, [[_cell(r[h]) for h in header] for r in rows]))
    return out


def _filename(data: Any, ext: str) -> str:
    if isinstance(data, dict) and "meta" in data:
        f = data["meta"]["filters"]
        return f"analytics-{data['figure_set']}-{f['date_from']}-{f['date_to']}.{ext}"
    return f"analytics-error.{ext}"


def _attach(renderer_context: Any, data: Any, ext: str) -> str:
    response = (renderer_context or {}).get("response")
    request = (renderer_context or {}).get("request")
    if response is not None and response.status_code == 200:
        response["Content-Disposition"] = f'attachment; filename="{_filename(data, ext)}"'
    return request.query_params.get("table", "") if request is not None else ""


class CSVRenderer(BaseRenderer):
    """Every section one after the other (a title line, a header, the rows, a blank line);
    with `?table=name`, that table alone as a plain CSV."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        only = _attach(renderer_context, data, "csv")
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        parts = sections(data, only)
        for title, header, rows in parts:
            if not only:
                writer.writerow([f"[{title}]"])
            writer.writerow([neutralised(h) for h in header])
            writer.writerows([neutralised(v) for v in row] for row in rows)
            if not only:
                writer.writerow([])
        # A BOM so Excel opens the Chinese names as UTF-8.
        return ("\ufeff" + buffer.getvalue()).encode("utf-8")


class XLSXRenderer(BaseRenderer):
    """One worksheet per section: meta, totals, then each table."""

    media_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    format = "xlsx"
    charset = None
    render_style = "binary"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        only = _attach(renderer_context, data, "xlsx")
        book = Workbook()
        book.remove(book.active)
        for title, header, rows in sections(data, only):
            sheet = book.create_sheet(title[:31])
            sheet.append([neutralised(xlsx_text(h)) for h in header])
            for row in rows:
                # openpyxl stores a text beginning with "=" as a formula.
                sheet.append([neutralised(xlsx_text(v)) for v in row])
        buffer = io.BytesIO()
        book.save(buffer)
        return buffer.getvalue()
