"""Template filter: a DICOM person name in the reader's language (`{{ name|person_name }}`)."""

from __future__ import annotations

from django import template

from referrals.archive.person_names import dicom_person_name

register = template.Library()


@register.filter
def person_name(value: str) -> str:
    return dicom_person_name(value or "")
