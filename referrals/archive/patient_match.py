"""Does an incoming instance's patient contradict the patient of the study it names?

Compared: the patient ID always; the issuer, the name, the birth date and the sex when both
sides carry one (a modality that leaves the sex empty says nothing against the study). Values
are compared as a person would read them: case, runs of spaces and empty trailing name
components ("WANG^XIAOMING^^" is "Wang^Xiaoming") do not count. A name is compared group by
group (alphabetic, ideographic, phonetic), and only where both carry the group: "Wang^Xiaoming"
and "王^小明" cannot be judged against each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext_lazy as _

# The codes stored in HeldInstance.differences, in the order a page shows them.
PATIENT_ID = "patient_id"
ISSUER = "issuer"
NAME = "name"
BIRTH_DATE = "birth_date"
SEX = "sex"
SERIES_STUDY = "series_study"  # the series is held under another study

DIFFERENCE_LABELS = {
    PATIENT_ID: _("Patient ID"),
    ISSUER: _("Issuer of patient ID"),
    NAME: _("Name"),
    BIRTH_DATE: _("Birth date"),
    SEX: _("Sex"),
    SERIES_STUDY: _("Series held under another study"),
}


@dataclass(frozen=True)
class PatientAttributes:
    """A patient as an instance or a study names them (DICOM text, DA as YYYYMMDD)."""

    patient_id: str = ""
    issuer: str = ""
    name: str = ""
    birth_date: str = ""
    sex: str = ""

    @classmethod
    def of_patient(cls, patient: Any) -> PatientAttributes:
        """From a referrals.models.Patient row."""
        born = patient.birth_date
        return cls(
            patient_id=patient.patient_id,
            issuer=patient.issuer,
            name=patient.name,
            birth_date=born.strftime("%Y%m%d") if born else "",
            sex=patient.sex,
        )


def _plain(value: str) -> str:
    return " ".join(value.split()).upper()


def _name_groups(value: str) -> list[str]:
    groups = []
    for group in value.split("="):
        components = [_plain(c) for c in group.split("^")]
        while components and not components[-1]:
            components.pop()
        groups.append("^".join(components))
    return groups


def _names_differ(sent: str, held: str) -> bool:
    pairs = zip(_name_groups(sent), _name_groups(held), strict=False)
    return any(a and b and a != b for a, b in pairs)


def _both_and_differ(sent: str, held: str) -> bool:
    a, b = _plain(sent), _plain(held)
    return bool(a and b and a != b)


def patient_differences(sent: PatientAttributes, held: PatientAttributes) -> list[str]:
    """The codes of what contradicts; an empty list when nothing does."""
    found = []
    if _plain(sent.patient_id) != _plain(held.patient_id):
        found.append(PATIENT_ID)
    if _both_and_differ(sent.issuer, held.issuer):
        found.append(ISSUER)
    if _names_differ(sent.name, held.name):
        found.append(NAME)
    if _both_and_differ(sent.birth_date, held.birth_date):
        found.append(BIRTH_DATE)
    if _both_and_differ(sent.sex, held.sex):
        found.append(SEX)
    return found
