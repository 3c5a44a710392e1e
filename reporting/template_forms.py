"""The template editor's forms: the template's facts, and one row per field (no raw JSON).

The rows become exactly the `fields` structure reports consume (reporting/schema.py), which
`fields_check` then checks once more in the service. Options of a choice field are written
one a line, "value | 中文 | English"; a field's key is kept when it has one and otherwise made
from its English label.
"""

from __future__ import annotations

import re
from typing import Any, cast

from django import forms
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from .schema import KEY_RE, MAX_CHOICES, MAX_FIELDS, MAX_UNIT, MEASUREMENT_RE, SchemaError
from .schema import fields_check as schema_fields_check

KIND_CHOICES = [
    ("text", _("Text")),
    ("choice", _("Choice (a list of options)")),
    ("measurement", _("Measurement (a number and its unit)")),
]
MODALITY_SUGGESTIONS = ("CT", "MR", "DR", "CR", "DX", "US", "MG", "XA", "RF", "NM", "PT", "OT")
CODE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}\Z")


class TemplateFactsForm(forms.Form):
    """Name, modality and body part; the code and alliance only when the template is new."""

    code = forms.CharField(
        label=_("Code"),
        max_length=40,
        help_text=_("Lower-case letters, digits and hyphens, such as ct-neck; it never changes."),
    )
    alliance = forms.TypedChoiceField(label=_("Alliance"), coerce=int)
    name = forms.CharField(label=_("Name (Chinese)"), max_length=200)
    name_en = forms.CharField(label=_("Name (English)"), max_length=200, required=False)
    modality = forms.CharField(label=_("Modality"), max_length=16)
    body_part = forms.CharField(label=_("Body part"), max_length=64, required=False)

    def __init__(
        self, *args: Any, creating: bool, alliances: list[tuple[int, str]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if creating:
            alliance_field = self.fields["alliance"]
            assert isinstance(alliance_field, forms.ChoiceField)
            alliance_field.choices = alliances
            if len(alliances) == 1:
                self.fields["alliance"].initial = alliances[0][0]
                self.fields["alliance"].widget = forms.HiddenInput()
        else:
            del self.fields["code"]
            del self.fields["alliance"]
        self.fields["modality"].widget.attrs.update(
            {"list": "modality-suggestions", "autocapitalize": "characters"}
        )

    def clean_code(self) -> str:
        code = self.cleaned_data["code"].strip().lower()
        if not CODE_RE.match(code):
            raise forms.ValidationError(
                _("Use lower-case letters, digits and hyphens only, such as ct-neck.")
            )
        return code

    def clean_modality(self) -> str:
        modality = self.cleaned_data["modality"].strip().upper()
        if not re.match(r"^[A-Z0-9]{1,16}\Z", modality):
            raise forms.ValidationError(_("A modality is a DICOM code such as CT, MR or US."))
        return modality

    def clean_body_part(self) -> str:
        return self.cleaned_data["body_part"].strip().upper()


class FieldRowForm(forms.Form):
    """One field of the template, as one row of the editor."""

    label = forms.CharField(label=_("Label (Chinese)"), max_length=200)
    label_en = forms.CharField(label=_("Label (English)"), max_length=200, required=False)
    kind = forms.ChoiceField(label=_("Type"), choices=KIND_CHOICES, initial="text")
    required = forms.BooleanField(label=_("Required before signing"), required=False)
    key = forms.CharField(
        label=_("Key"),
        max_length=40,
        required=False,
        help_text=_("Where the value is stored; left empty, it is made from the English label."),
    )
    default = forms.CharField(
        label=_("Default text"),
        required=False,
        max_length=20_000,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("What a new report starts with (for a choice: the value of an option)."),
    )
    unit = forms.CharField(label=_("Unit"), max_length=MAX_UNIT, required=False)
    choices = forms.CharField(
        label=_("Options"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("One option a line: value | 中文 | English, such as 2 | 2 良性 | 2 Benign."),
    )

    def clean_key(self) -> str:
        key = self.cleaned_data["key"].strip()
        if key and not KEY_RE.match(key):
            raise forms.ValidationError(
                _("A key is lower-case letters, digits and _, starting with a letter.")
            )
        return key

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind == "choice":
            options = choices_parse(data.get("choices", ""))
            if not options:
                self.add_error("choices", _("A choice field needs at least one option."))
            elif len(options) > MAX_CHOICES:
                self.add_error("choices", _("At most %(n)d options.") % {"n": MAX_CHOICES})
            elif len({o["value"] for o in options}) != len(options):
                self.add_error("choices", _("Two options have the same value."))
            elif data.get("default", "").strip() and data["default"].strip() not in {
                o["value"] for o in options
            }:
                self.add_error("default", _("The default must be the value of one option."))
        default = data.get("default", "").strip()
        if kind == "measurement" and default and not MEASUREMENT_RE.match(default):
            self.add_error("default", _("The default must be a number, such as 12.5."))
        return data


class BaseFieldRowFormSet(forms.BaseFormSet):
    def clean(self) -> None:
        super().clean()
        kept = [form for form in self.forms if not form.cleaned_data.get("DELETE")]
        if any(form.errors for form in kept):
            return
        rows = self.rows()
        if not rows:
            raise forms.ValidationError(_("A template needs at least one field."))
        if len(rows) > MAX_FIELDS:
            raise forms.ValidationError(
                _("A template has at most %(n)d fields.") % {"n": MAX_FIELDS}
            )
        seen: dict[str, int] = {}
        for position, row in enumerate(rows, start=1):
            if row["key"] and row["key"] in seen:
                raise forms.ValidationError(
                    _("Fields %(a)d and %(b)d have the same key %(key)s; change one of them.")
                    % {"a": seen[row["key"]], "b": position, "key": row["key"]}
                )
            if row["key"]:
                seen[row["key"]] = position

    def rows(self) -> list[dict[str, Any]]:
        """The kept rows' data in the order the editor shows (removed and blank rows left out)."""
        return [form.cleaned_data for form in self.ordered_forms]


FieldRowFormSet = cast(
    type[BaseFieldRowFormSet],
    forms.formset_factory(
        FieldRowForm,
        formset=BaseFieldRowFormSet,
        extra=0,
        can_order=True,
        can_delete=True,
        max_num=MAX_FIELDS,
        absolute_max=MAX_FIELDS + 10,
    ),
)


def choices_parse(text: str) -> list[dict[str, str]]:
    """Options written one a line, "value | 中文 | English" (label parts may be left out)."""
    options = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split("|")]
        if not parts[0]:
            continue
        value = parts[0]
        label = parts[1] if len(parts) > 1 and parts[1] else value
        label_en = parts[2] if len(parts) > 2 else ""
        options.append({"value": value, "label": label, "label_en": label_en})
    return options


def choices_text(choices: list[dict[str, Any]]) -> str:
    return "\n".join(
        " | ".join(
            [
                c["value"],
                c.get("label") or c["value"],
                *([c["label_en"]] if c.get("label_en") else []),
            ]
        )
        for c in choices
    )


def _new_key(row: dict[str, Any], position: int, taken: set[str]) -> str:
    base = slugify(row.get("label_en") or "").replace("-", "_")[:36].strip("_")
    if not base or not base[0].isalpha():
        base = f"field_{position}"
    key, n = base, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    return key


def fields_from_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The rows as a template's `fields` (checked by reporting.schema; SchemaError if not)."""
    taken = {row["key"] for row in rows if row.get("key")}
    items = []
    for position, row in enumerate(rows, start=1):
        key = row.get("key") or _new_key(row, position, taken)
        taken.add(key)
        item: dict[str, Any] = {
            "key": key,
            "kind": row["kind"],
            "label": row["label"],
            "label_en": row.get("label_en", ""),
            "required": bool(row.get("required")),
            "default": row.get("default", ""),
        }
        if row["kind"] == "choice":
            item["choices"] = choices_parse(row.get("choices", ""))
        if row["kind"] == "measurement":
            item["unit"] = row.get("unit", "")
        items.append(item)
    return schema_fields_check({"fields": items})


def rows_from_fields(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """A template's `fields` as the editor's initial rows."""
    return [
        {
            "label": item.get("label", ""),
            "label_en": item.get("label_en", ""),
            "kind": item.get("kind", "text"),
            "required": bool(item.get("required")),
            "key": item["key"],
            "default": item.get("default", ""),
            "unit": item.get("unit", ""),
            "choices": choices_text(item.get("choices", [])),
            "ORDER": position,
        }
        for position, item in enumerate(fields.get("fields", []), start=1)
    ]


STARTING_ROWS = [
    {"label": "影像所见", "label_en": "Findings", "kind": "text", "required": True, "ORDER": 1},
    {"label": "诊断意见", "label_en": "Impression", "kind": "text", "required": True, "ORDER": 2},
]

__all__ = [
    "FieldRowFormSet",
    "SchemaError",
    "TemplateFactsForm",
    "fields_from_rows",
    "rows_from_fields",
]
