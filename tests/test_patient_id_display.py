"""Resident identity numbers (身份证) are masked wherever a patient ID is shown to people,
by the one `masked_id` filter; DICOMweb answers to machines carry the real ID."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from referrals.models import Study

from .conftest import api_client_for
from .referral_support import study_at

RESIDENT_ID = "11010519491231002X"
MASKED = "110***********002X"
DICOM_JSON = "application/dicom+json"
ROOT = Path(__file__).resolve().parent.parent
# A value printed by a template: `{{ value|filters }}` or a blocktranslate's `with x=value|...`.
_PRINTED = re.compile(r"{{\s*(?P<a>[^}]+?)\s*}}|\bwith\s+\w+=(?P<b>\S+)")


@pytest.fixture
def resident_study(world) -> Study:
    return study_at(world.clinic, patient_id=RESIDENT_ID, patient_key="key-ric")


def _page(user, url: str) -> str:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


@pytest.mark.django_db
def test_the_study_list_and_page_mask_a_resident_number(world, resident_study):
    listed = _page(world.alice, "/studies/")
    assert MASKED in listed
    assert RESIDENT_ID not in listed
    page = _page(world.alice, f"/studies/{resident_study.pk}/")
    assert MASKED in page
    assert RESIDENT_ID not in page
    # Searching by the full number still finds the study (only the display is masked).
    assert MASKED in _page(world.alice, f"/studies/?q={RESIDENT_ID}")


@pytest.mark.django_db
def test_an_ordinary_patient_id_is_shown_as_it_is(world):
    study_at(world.clinic, patient_id="MZ-4711")
    assert "MZ-4711" in _page(world.alice, "/studies/")


@pytest.mark.django_db
def test_qido_answers_a_machine_with_the_real_id(world, resident_study):
    response = api_client_for(world.alice).get(
        "/dicomweb/studies", {"PatientID": RESIDENT_ID}, HTTP_ACCEPT=DICOM_JSON
    )
    assert response.status_code == 200
    assert [row["00100020"]["Value"][0] for row in response.json()] == [RESIDENT_ID]


def test_every_template_shows_a_patient_id_through_the_one_filter():
    """A lint: each `{{ ...pid }}` / `{{ ...patient_id }}` in a template goes through
    `masked_id` (form fields and the correction form, which edits the real value, aside)."""
    unmasked = []
    for template in sorted(ROOT.glob("*/templates/**/*.html")):
        if template.name == "study_correct.html":  # the form edits the real ID
            continue
        for number, line in enumerate(template.read_text().splitlines(), 1):
            for match in _PRINTED.finditer(line):
                value, *filters = (match.group("a") or match.group("b")).split("|")
                is_patient_id = value.endswith(".pid") or value.endswith("patient_id")
                if is_patient_id and not any(f.startswith("masked_id") for f in filters):
                    unmasked.append(f"{template.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert unmasked == []
