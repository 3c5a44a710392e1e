"""DICOM person names (PN) as people read them."""

from __future__ import annotations


def dicom_person_name(value: str) -> str:
    """A DICOM PN for reading: 'Wang^Xiaoming=王^小明' -> '王小明 (Wang Xiaoming)'."""
    groups = value.split("=")
    alphabetic = " ".join(p.strip() for p in groups[0].split("^") if p.strip())
    ideographic = "".join(p.strip() for p in groups[1].split("^")) if len(groups) > 1 else ""
    if ideographic and alphabetic:
        return f"{ideographic} ({alphabetic})"
    return ideographic or alphabetic or value
