"""The console's "Studies of this institution": the way in for an administrator, who
corrects studies but reads no images (docs/correction.md)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from referrals.archive.ingest import name_search_form
from tenants.audit import AuditCode
from tenants.models import AuditEvent

from .ingest_support import media  # noqa: F401  (a storage of each test's own)
from .referral_support import study_at

pytestmark = pytest.mark.django_db

URL = "/console/studies/"


def web(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


@pytest.fixture
def studies(world):
    wang = study_at(
        world.clinic, patient_id="MZ-1001", patient_name="Wang^Xiaoming", study_date="2030-02-03"
    )
    li = study_at(
        world.clinic,
        patient_id="MZ-2002",
        patient_name="Li^Na",
        patient_key="key-li",
        study_date="2030-02-04",
    )
    # Ingest's search form of each name (study_at leaves it empty).
    for study in (wang, li):
        type(study).objects.filter(pk=study.pk).update(
            patient_name_search=name_search_form(study.patient_name)
        )
    type(li).objects.filter(pk=li.pk).update(accession_number="ZX-77")
    return wang, li


def test_the_console_links_the_finder_for_administrators_only(world):
    assert f'href="{URL}"' in web(world.adam).get("/console/").content.decode()
    home = web(world.alice).get("/console/")
    assert home.status_code != 200 or f'href="{URL}"' not in home.content.decode()


def test_an_administrator_finds_a_study_and_its_correct_link(world, studies):
    wang, li = studies
    client = web(world.adam)
    everything = client.get(URL)
    assert everything.status_code == 200
    page = everything.content.decode()
    assert f'href="/studies/{wang.pk}/correct/"' in page
    assert f'href="/studies/{li.pk}/correct/"' in page
    for term, found, not_found in [
        ("MZ-1001", wang, li),  # patient ID
        ("wang xiaoming", wang, li),  # name, as typed
        ("ZX-77", li, wang),  # accession number
    ]:
        page = client.get(URL, {"q": term}).content.decode()
        assert f"/studies/{found.pk}/correct/" in page, term
        assert f"/studies/{not_found.pk}/correct/" not in page, term
    by_date = client.get(URL, {"date": "2030-02-04"}).content.decode()
    assert f"/studies/{li.pk}/correct/" in by_date
    assert f"/studies/{wang.pk}/correct/" not in by_date
    bad = client.get(URL, {"date": "Feb"})
    assert bad.status_code == 200
    assert "not a date" in bad.content.decode()
    # The correction page itself opens for the pure administrator (no image role).
    assert client.get(f"/studies/{wang.pk}/correct/").status_code == 200


def test_each_search_is_audited_as_a_query(world, studies):
    web(world.adam).get(URL, {"q": "MZ-1001", "date": "2030-02-03"})
    row = AuditEvent.objects.filter(event=AuditCode.QUERY).latest("id")
    assert row.user_id_value == world.adam.pk
    assert row.institution_id == world.clinic.pk
    assert row.object_type == "study"
    assert row.detail["query"] == "MZ-1001"
    assert row.detail["date"] == "2030-02-03"
    assert row.detail["shown"] == 1


def test_the_finder_shows_index_columns_only(world, studies):
    from referrals.archive.correction.selectors import FINDER_COLUMNS, correctable_studies
    from tenants.access import scope_for_user

    rows = list(correctable_studies(scope=scope_for_user(world.adam), day=dt.date(2030, 2, 3)))
    assert len(rows) == 1
    assert set(rows[0]) == set(FINDER_COLUMNS)
    assert list(correctable_studies(scope=scope_for_user(world.alice))) == []


def test_who_may_not_use_the_finder(world, studies):
    technician = web(world.alice).get(URL)
    assert technician.status_code == 403
    assert "administrators" in technician.content.decode()
    assert web(world.rita).get(URL).status_code == 403
    assert web(world.carl).get(URL).status_code == 403


@pytest.mark.usefixtures("media")
def test_a_study_merged_away_on_the_page_returns_to_the_finder(
    world, tmp_path, django_capture_on_commit_callbacks
):
    """The pure administrator cannot open the study list: after the study they were
    correcting is gone (all its series moved), the page sends them back to the finder."""
    from .test_correction import WANG, store

    kept = store(world, WANG, tmp_path, count=1)
    gone = store(world, WANG, tmp_path, count=1)
    series_uid = gone.series.get().series_uid
    client = web(world.adam)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            f"/studies/{gone.pk}/correct/",
            {
                "kind": "move",
                "reason": "one exam",
                "series_uids": [series_uid],
                "target_study_uid": kept.study_uid,
            },
        )
    assert answer.status_code == 302
    said = [str(m) for m in answer.wsgi_request._messages]  # type: ignore[attr-defined]
    assert answer["Location"] == URL, said
    assert not type(gone).objects.filter(pk=gone.pk).exists()  # the task removed it
