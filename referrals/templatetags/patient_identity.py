"""The one template filter for a patient ID shown to people: every page, the worklist, the
report PDF and share pages use `masked_id` (machines over DICOMweb get the real ID)."""

from __future__ import annotations

from django import template

from referrals.identity.resident_id import id_mask

register = template.Library()


@register.filter
def masked_id(value: str) -> str:
    """A resident identity number masked; any other patient ID as it is."""
    return id_mask(value or "")
