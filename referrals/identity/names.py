"""Patient names as the linker compares them: pinyin, lower case, family name first.

DICOM names come as "Wang^Xiaoming=王^小明", as hanzi alone, or as pinyin alone. The
ideographic form is turned into pinyin (pypinyin), so a hanzi record and a pinyin record of
one person compare equal; a toneless pinyin cannot tell homophones apart, which is why a
demographic match alone is weighed with the birth date and sex.
"""

from __future__ import annotations

import re

from pypinyin import lazy_pinyin

from referrals.archive.person_names import pn_components

_HAN = re.compile(r"[\u3400-\u9fff]")
_NOT_LETTER = re.compile(r"[^a-z]+")


def _pinyin(text: str) -> str:
    return "".join(lazy_pinyin(text)).lower().replace("ü", "v")


def _family_given(value: str) -> tuple[str, str]:
    """(family, given) from a PN group's first form: "^"-separated, else space-separated,
    else (hanzi without separators) the first character as the family name."""
    if "^" in value:
        family, _sep, rest = value.partition("^")
        return family, rest.split("^", 1)[0]
    parts = value.split()
    if len(parts) > 1:
        return parts[0], "".join(parts[1:])
    if _HAN.search(value) and len(value) > 1:
        return value[0], value[1:]
    return value, ""


def name_match_form(pn: str) -> str:
    """ "wang xiaoming" for any of the ways a DICOM PN spells that name; "" for no name."""
    groups = pn.split("=")
    ideographic = groups[1] if len(groups) > 1 and _HAN.search(groups[1]) else ""
    source = ideographic or groups[0]
    if not ideographic and not _HAN.search(source):
        source = pn_components(pn)[0] if "^" not in groups[0] else groups[0]
    family, given = _family_given(source.strip())
    parts = [_NOT_LETTER.sub("", _pinyin(p)) for p in (family, given)]
    return " ".join(p for p in parts if p)


def name_swapped(form: str) -> str:
    """The match form with family and given name exchanged (entered the other way round)."""
    family, _sep, given = form.partition(" ")
    return f"{given} {family}".strip()
