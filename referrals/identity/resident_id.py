"""Resident identity numbers (居民身份证号, GB 11643): recognised, checked, hashed, masked.

A valid number names one person nationwide, so records that carry the same one are linked
without further evidence. The number itself is never stored by the index: only a keyed hash
(like the patient key) and a masked form for people to recognise it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

# DICOM JSON tags: PatientID, OtherPatientIDs (retired but still sent), OtherPatientIDsSequence.
PATIENT_ID = "00100020"
OTHER_PATIENT_IDS = "00101000"
OTHER_PATIENT_IDS_SEQUENCE = "00101002"


def resident_id_normalize(value: str) -> str | None:
    """The 18-digit form of a valid resident identity number, or None.

    The 15-digit numbers issued before 1999 carry no check digit: they are widened as the
    standard does (century "19" inserted, check digit computed) and then checked like any
    18-digit one (birth date and region code), so both forms of one person's number agree.
    """
    number = ric.compact(value or "")
    if len(number) == 15 and number.isdigit():
        body = f"{number[:6]}19{number[6:]}"
        number = body + ric.calc_check_digit(body + "0")
    if len(number) != 18:
        return None
    try:
        return str(ric.validate(number))
    except (ValidationError, ValueError):
        return None


def resident_key(number: str) -> str:
    """Keyed hash of a normalized number: equal for one person at every site."""
    message = f"cn-ric\x1f{number}".encode()
    return hmac.new(settings.PATIENT_KEY_SECRET.encode(), message, hashlib.sha256).hexdigest()


def resident_id_mask(number: str) -> str:
    """What a person may be shown: the region's first digits and the last four."""
    return f"{number[:3]}{'*' * (len(number) - 7)}{number[-4:]}"


def id_mask(patient_id: str) -> str:
    """A patient ID for display to people (every page, via the `masked_id` filter): a resident
    number is masked, others kept."""
    number = resident_id_normalize(patient_id)
    if number is None:
        return patient_id
    return resident_id_mask(ric.compact(patient_id))


def _values(element: Any) -> Iterator[str]:
    if isinstance(element, dict):
        for value in element.get("Value") or []:
            if isinstance(value, str):
                yield value


def metadata_patient_ids(metadata: dict[str, Any]) -> Iterator[str]:
    """Every patient ID an instance's DICOM JSON carries: its own and the other IDs."""
    yield from _values(metadata.get(PATIENT_ID))
    yield from _values(metadata.get(OTHER_PATIENT_IDS))
    sequence = metadata.get(OTHER_PATIENT_IDS_SEQUENCE)
    if isinstance(sequence, dict):
        for item in sequence.get("Value") or []:
            if isinstance(item, dict):
                yield from _values(item.get(PATIENT_ID))


def resident_id_find(candidates: Iterable[str]) -> str | None:
    """The first valid resident identity number among `candidates`, normalized."""
    for value in candidates:
        number = resident_id_normalize(value)
        if number is not None:
            return number
    return None
