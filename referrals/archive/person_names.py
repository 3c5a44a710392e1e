"""DICOM person names (PN) as people read them, in the reader's language."""

from __future__ import annotations

from django.utils.translation import get_language


def pn_components(value: str) -> tuple[str, str]:
    """(alphabetic, ideographic) of a DICOM PN: 'Wang^Xiaoming=王^小明' ->
    ('Wang Xiaoming', '王小明'). The phonetic group, if any, is not shown."""
    groups = (value or "").split("=")
    alphabetic = " ".join(p.strip() for p in groups[0].split("^") if p.strip())
    ideographic = "".join(p.strip() for p in groups[1].split("^")) if len(groups) > 1 else ""
    return alphabetic, ideographic


def dicom_person_name(value: str, *, language: str | None = None) -> str:
    """A DICOM PN for reading in `language` (the active one by default): the form of the
    reader's language first, the other in brackets, so that a reader of either language can
    match the patient: '王小明 (Wang Xiaoming)' on a Chinese page, 'Wang Xiaoming (王小明)'
    on an English one."""
    alphabetic, ideographic = pn_components(value)
    english = (language or get_language() or "").startswith("en")
    first, second = (alphabetic, ideographic) if english else (ideographic, alphabetic)
    if first and second:
        return f"{first} ({second})"
    return first or second or value
