"""Template filters of the identity pages: a patient ID as it may be shown."""

from __future__ import annotations

from django import template

from referrals.identity.resident_id import id_mask

register = template.Library()


@register.filter
def masked_id(value: str) -> str:
    """A resident identity number masked; any other patient ID as it is."""
    return id_mask(value or "")
