"""CSV and Excel renderers of a figure set (`?format=csv` / `?format=xlsx` on every route)."""

from __future__ import annotations

import csv
import io
from typing import Any

from openpyxl import Workbook
from rest_framework.renderers import BaseRenderer


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
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
    out = [("meta", ["name", "value"], [[k, _cell(v)] for k, v in meta.items()]),
           ("totals", ["name", "value"], [[k, _cell(v)] for k, v in data["totals"].items()])]
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

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Any = None) -> bytes:
        only = _attach(renderer_context, data, "csv")
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        parts = sections(data, only)
        for title, header, rows in parts:
            if not only:
                writer.writerow([f"[{title}]"])
            writer.writerow(header)
            writer.writerows(rows)
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

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Any = None) -> bytes:
        only = _attach(renderer_context, data, "xlsx")
        book = Workbook()
        book.remove(book.active)
        for title, header, rows in sections(data, only):
            sheet = book.create_sheet(title[:31])
            sheet.append(header)
            for row in rows:
                sheet.append(row)
        buffer = io.BytesIO()
        book.save(buffer)
        return buffer.getvalue()
