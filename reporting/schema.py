"""The shape of a template's `fields` and the checks of a report's content against it.

A template's fields are a list under "fields"; each field is
    {"key": "findings", "kind": "text", "label": "所见", "label_en": "Findings",
     "required": true}
or a coded item whose value must be one of its choices:
    {"key": "lung_rads", "kind": "choice", "label": "Lung-RADS", "label_en": "Lung-RADS",
     "required": true, "choices": [{"value": "2", "label": "2 良性", "label_en": "2 Benign"}]}
or a measurement, a number in its unit:
    {"key": "nodule_size", "kind": "measurement", "label": "结节大小", "label_en": "Nodule size",
     "required": false, "unit": "mm"}
Any field may carry a "default": the text (or choice value, or number) a new report starts
with, so an alliance writes its "normal" phrasing once.
A report's content is a flat object {key: value}; free text lives beside it.
"""

from __future__ import annotations

import re
from typing import Any

from django.utils.translation import gettext as _

KINDS = ("text", "choice", "measurement")
MEASUREMENT_RE = re.compile(r"^-?\d{1,9}(\.\d{1,6})?\Z")
MAX_UNIT = 16
KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}\Z")
MAX_TEXT = 20_000
MAX_FIELDS = 40
MAX_CHOICES = 40


class SchemaError(ValueError):
    """A template's fields or a report's content do not fit; the message says where."""


def fields_check(fields: Any) -> dict[str, Any]:
    """A template's field list, checked and normalised; SchemaError when it is not one."""
    if not isinstance(fields, dict) or not isinstance(fields.get("fields"), list):
        raise SchemaError(_('Template fields must be an object with a "fields" list.'))
    items = fields["fields"]
    if not items or len(items) > MAX_FIELDS:
        raise SchemaError(_("A template has between 1 and %(n)d fields.") % {"n": MAX_FIELDS})
    seen: set[str] = set()
    clean: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            raise SchemaError(_("Each field must be an object."))
        key, kind = item.get("key"), item.get("kind", "text")
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise SchemaError(
                _("A field key is lower-case letters, digits and _: %(key)r") % {"key": key}
            )
        if key in seen:
            raise SchemaError(_("The field key %(key)s appears twice.") % {"key": key})
        seen.add(key)
        if kind not in KINDS:
            raise SchemaError(_("Unknown field kind %(kind)r.") % {"kind": kind})
        label = item.get("label")
        if not isinstance(label, str) or not label.strip():
            raise SchemaError(_("The field %(key)s needs a label.") % {"key": key})
        field = {
            "key": key,
            "kind": kind,
            "label": label.strip(),
            "label_en": str(item.get("label_en") or "").strip(),
            "required": bool(item.get("required", False)),
        }
        if kind == "choice":
            choices = item.get("choices")
            if not isinstance(choices, list) or not 1 <= len(choices) <= MAX_CHOICES:
                raise SchemaError(
                    _("The coded field %(key)s needs 1 to %(n)d choices.")
                    % {"key": key, "n": MAX_CHOICES}
                )
            values = []
            for c in choices:
                if not isinstance(c, dict) or not isinstance(c.get("value"), str) or not c["value"]:
                    raise SchemaError(_("Each choice of %(key)s needs a value.") % {"key": key})
                values.append(
                    {
                        "value": c["value"],
                        "label": str(c.get("label") or c["value"]),
                        "label_en": str(c.get("label_en") or ""),
                    }
                )
            if len({v["value"] for v in values}) != len(values):
                raise SchemaError(_("The choices of %(key)s repeat a value.") % {"key": key})
            field["choices"] = values
        if kind == "measurement":
            unit = str(item.get("unit") or "").strip()
            if len(unit) > MAX_UNIT:
                raise SchemaError(
                    _("The unit of %(key)s is at most %(n)d characters.")
                    % {"key": key, "n": MAX_UNIT}
                )
            field["unit"] = unit
        default = str(item.get("default") or "")
        if default.strip():
            field["default"] = _default_check(field, default)
        clean.append(field)
    return {"fields": clean}


def _default_check(field: dict[str, Any], default: str) -> str:
    if len(default) > MAX_TEXT:
        raise SchemaError(_("The default of %(key)s is too long.") % {"key": field["key"]})
    if field["kind"] == "choice" and default not in {c["value"] for c in field["choices"]}:
        raise SchemaError(
            _("The default of %(key)s must be one of its choices.") % {"key": field["key"]}
        )
    if field["kind"] == "measurement" and not MEASUREMENT_RE.match(default.strip()):
        raise SchemaError(
            _("The default of %(key)s must be a number, such as 12.5.") % {"key": field["key"]}
        )
    return default.strip() if field["kind"] != "text" else default


def content_defaults(template_fields: dict[str, Any]) -> dict[str, str]:
    """The content a new report starts with: each field's default, or empty."""
    return {f["key"]: str(f.get("default") or "") for f in template_fields.get("fields", [])}


def content_check(
    template_fields: dict[str, Any], content: Any, *, complete: bool
) -> dict[str, str]:
    """A report's content checked against its template; `complete` also needs required ones."""
    if not isinstance(content, dict):
        raise SchemaError(_("Report content must be an object of field values."))
    by_key = {f["key"]: f for f in template_fields.get("fields", [])}
    unknown = sorted(set(content) - set(by_key))
    if unknown:
        raise SchemaError(_("This template has no field %(key)s.") % {"key": unknown[0]})
    clean: dict[str, str] = {}
    for key, value in content.items():
        field = by_key[key]
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise SchemaError(_("The value of %(key)s must be text.") % {"key": key})
        if len(value) > MAX_TEXT:
            raise SchemaError(_("%(key)s is too long.") % {"key": key})
        if (
            field["kind"] == "choice"
            and value
            and value not in {c["value"] for c in field["choices"]}
        ):
            raise SchemaError(
                _("%(value)r is not an allowed value of %(key)s.") % {"value": value, "key": key}
            )
        # A draft keeps what is typed ("12." on the way to "12.5"); signing needs a number.
        if complete and field["kind"] == "measurement" and value.strip():
            value = value.strip()
            if not MEASUREMENT_RE.match(value):
                raise SchemaError(
                    _("%(label)s must be a number, such as 12.5.")
                    % {"label": field.get("label_en") or field["label"]}
                )
        clean[key] = value
    if complete:
        for field in by_key.values():
            if field["required"] and not clean.get(field["key"], "").strip():
                raise SchemaError(
                    _("Fill in %(label)s before signing.")
                    % {"label": field["label_en"] or field["label"]}
                )
    return clean
