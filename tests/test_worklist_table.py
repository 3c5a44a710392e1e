"""The worklist as a dense table: its columns (age and sex, prior studies), its sorts (a
whitelist of keys, both ways), its filters (kept in every link and in the live refresh), the
same on the API, and in Chromium at desk and phone width."""

from __future__ import annotations

import datetime as dt
import urllib.parse

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation

from referrals.models import Patient, Priority, Referral, ReferralStatus, Study
from referrals.workflow import services
from referrals.worklists import selectors
from referrals.worklists.selectors import WorklistFilterError, WorklistFilters
from tenants import access

from .conftest import api_client_for
from .referral_support import reading_setup, study_at
from .test_worklist_page import refer, web

pytestmark = pytest.mark.django_db

PRIORITY_RANK = {Priority.STAT: 0, Priority.URGENT: 1, Priority.ROUTINE: 2}


@pytest.fixture(autouse=True)
def _english():
    """Refusals are read in English here (the hub speaks Chinese by default)."""
    with translation.override("en"):
        yield


@pytest.fixture
def reading(world):
    return reading_setup(world)


def rita_scope(world):
    return access.scope_for_user(world.rita, institution_id=world.reader.pk)


def ids(scope, **params) -> list[int]:
    filters = WorklistFilters.parse({key: str(value) for key, value in params.items()})
    return [r.pk for r in selectors.worklist(scope=scope, filters=filters)]


def patient_case(world, name: str, pid: str, **study) -> Referral:
    return refer(world, patient_name=name, patient_id=pid, patient_key=f"key-{pid}", **study)


def born(referral: Referral, birth_date: str | None, sex: str = "") -> None:
    Patient.objects.filter(studies__referrals=referral).update(birth_date=birth_date, sex=sex)


# --- Three held cases that differ in every sortable column, each in another order ----------


@pytest.fixture
def trio(world, reading):
    """x, y, z: claimed cases in rita's pools, each column ordering them differently."""
    x = patient_case(world, "Bai^Lu", "P-X")
    y = patient_case(world, "Chen^Wei", "P-Y")
    z = patient_case(world, "An^Ping", "P-Z")
    now = timezone.now()
    fields = (
        "hours_ago",
        "born",
        "modality",
        "body",
        "desc",
        "source",
        "priority",
        "deadline_h",
        "reader",
    )
    rows = {
        x: (1, "1950-03-01", "DX", "KNEE", "A knee", world.clinic, Priority.ROUTINE, 5,
            reading.sam),
        y: (9, "1990-03-01", "CR", "CHEST", "C chest", world.outsider, Priority.STAT, 9,
            world.rita),
        z: (5, "2000-03-01", "MR", "ABDOMEN", "B abdomen", world.commission, Priority.URGENT, 1,
            reading.rob),
    }  # fmt: skip
    values = {referral: dict(zip(fields, row, strict=True)) for referral, row in rows.items()}
    for referral, v in values.items():
        Study.objects.filter(pk=referral.study_id).update(
            modalities=v["modality"], body_parts=v["body"], description=v["desc"]
        )
        born(referral, v["born"], "F")
        Referral.objects.filter(pk=referral.pk).update(
            requested_at=now - dt.timedelta(hours=v["hours_ago"]),
            source=v["source"],
            priority=v["priority"],
            priority_rank=PRIORITY_RANK[v["priority"]],
            deadline_at=now + dt.timedelta(hours=v["deadline_h"]),
            status=ReferralStatus.CLAIMED,
            claimed_by=v["reader"],
            assigned_to=None,
        )
    return x.pk, y.pk, z.pk


ASCENDING = {  # key: (English order, Chinese order) of x, y, z
    "received": ("yzx", "yzx"),
    "patient": ("zxy", "zxy"),
    "age": ("zyx", "zyx"),
    "modality": ("yxz", "yxz"),
    "body_part": ("zyx", "zyx"),
    "description": ("xzy", "xzy"),
    # Beishan < Nanling < North; 北城卫健委 < 北山镇卫生院 < 南岭村卫生室
    "source": ("xyz", "zxy"),
    "priority": ("yzx", "yzx"),
    "deadline": ("zxy", "zxy"),
    # Rita < Rob < Sam; 丽塔 < 山姆 < 罗伯
    "claimed_by": ("yzx", "yxz"),
}


def test_every_sort_key_is_tested():
    assert set(ASCENDING) | {"status"} == set(selectors.SORT_KEYS)


@pytest.mark.parametrize("key", sorted(ASCENDING))
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_each_column_sorts_both_ways(world, trio, key, language):
    named = dict(zip("xyz", trio, strict=True))
    english, chinese = ASCENDING[key]
    expected = [named[c] for c in (english if language == "en" else chinese)]
    scope = rita_scope(world)
    with translation.override(language):
        assert ids(scope, view="pool", status="claimed", sort=key) == expected
        assert ids(scope, view="pool", status="claimed", sort=f"-{key}") == expected[::-1]


def test_status_sorts_in_the_order_of_the_work(world, reading):
    routed, claimed, reporting = (
        patient_case(world, "A^A", f"P-S{n}") for n in range(3)
    )  # refer() proposes each to a reader; make them all rita's
    Referral.objects.filter(pk=routed.pk).update(assigned_to=world.rita)
    Referral.objects.filter(pk=claimed.pk).update(
        status=ReferralStatus.CLAIMED, claimed_by=world.rita, assigned_to=None
    )
    Referral.objects.filter(pk=reporting.pk).update(
        status=ReferralStatus.REPORTING, claimed_by=world.rita, assigned_to=None
    )
    scope = rita_scope(world)
    assert ids(scope, sort="status") == [routed.pk, claimed.pk, reporting.pk]
    assert ids(scope, sort="-status") == [reporting.pk, claimed.pk, routed.pk]


def test_an_unknown_age_goes_last_both_ways(world, trio):
    x, y, z = trio
    born(Referral.objects.get(pk=y), None)
    scope = rita_scope(world)
    assert ids(scope, view="pool", status="claimed", sort="age") == [z, x, y]
    assert ids(scope, view="pool", status="claimed", sort="-age") == [x, z, y]


def test_the_default_order_is_priority_then_deadline(world, trio):
    x, y, z = trio
    Referral.objects.filter(pk=x).update(priority=Priority.STAT, priority_rank=0)
    # x and y are both STAT now: the one due first (x: 5 h) comes first.
    assert ids(rita_scope(world), view="pool", status="claimed") == [x, y, z]
    assert WorklistFilters.parse({}).sort == "priority"
    assert WorklistFilters.parse({"signed_by_me": "1"}).sort == "-received"


@pytest.mark.parametrize(
    "sort",
    ["password", "study__patient_name", "-", "--received", "priors", "received,patient", " "],
)
def test_a_sort_key_outside_the_whitelist_is_refused(sort):
    if sort == " ":  # blank is the default order, not an error
        assert WorklistFilters.parse({"sort": sort}).sort == "priority"
        return
    with pytest.raises(WorklistFilterError, match="cannot be sorted that way"):
        WorklistFilters.parse({"sort": sort})
    with pytest.raises(WorklistFilterError):
        selectors.worklist_ordering(sort)


# --- Filters -------------------------------------------------------------------------------


def test_modality_body_part_site_priority_and_status(world, trio):
    x, y, z = trio
    scope = rita_scope(world)
    base = {"view": "pool", "status": "claimed", "sort": "patient"}
    assert ids(scope, **base, modality="mr") == [z]
    assert ids(scope, **base, body_part="chest") == [y]
    assert ids(scope, **base, site=world.commission.pk) == [z]
    assert ids(scope, **base, priority="routine") == [x]
    assert ids(scope, **{**base, "status": "routed"}) == []
    for bad in ({"body_part": "CHEST;--"}, {"modality": "C T"}, {"status": "delivered"}):
        with pytest.raises(WorklistFilterError):
            WorklistFilters.parse(bad)


@pytest.mark.parametrize(
    ("search", "found"),
    [
        ("chen", "y"),
        ("Chen Wei", "y"),
        ("chen^wei", "y"),
        ("CHENWEI", "y"),
        ("p-z", "z"),  # the patient ID, any case
        ("-", "xyz"),  # every ID holds a hyphen
        ("%", ""),  # a literal percent sign, not "anything"
        ("_", ""),  # a literal underscore, not "any one character"
        ("P_X", ""),
        ("\\", ""),
        ("Bai%", ""),
    ],
)
def test_the_patient_search_matches_name_or_id_literally(world, trio, search, found):
    named = dict(zip("xyz", trio, strict=True))
    got = ids(rita_scope(world), view="pool", status="claimed", patient=search, sort="patient")
    assert sorted(got) == sorted(named[c] for c in found)


def test_the_patient_search_finds_the_chinese_name(world, reading):
    case = patient_case(world, "Wang^Xiaoming=王^小明", "P-W")
    Referral.objects.filter(pk=case.pk).update(assigned_to=None)
    scope = rita_scope(world)
    assert ids(scope, view="pool", patient="王小明") == [case.pk]
    assert ids(scope, view="pool", patient="小明") == [case.pk]
    assert ids(scope, view="pool", patient="王大明") == []
    with pytest.raises(WorklistFilterError, match="too long"):
        WorklistFilters.parse({"patient": "x" * 65})


def test_the_received_range_counts_whole_days_of_the_hub(world, trio, settings):
    x, y, z = trio
    tz = timezone.get_current_timezone()
    day = dt.date(2026, 11, 20)
    at = {  # just inside and just outside the day, in the hub's time zone
        x: dt.datetime(2026, 11, 20, 0, 0, tzinfo=tz),
        y: dt.datetime(2026, 11, 20, 23, 59, tzinfo=tz),
        z: dt.datetime(2026, 11, 21, 0, 0, tzinfo=tz),
    }
    for pk, when in at.items():
        Referral.objects.filter(pk=pk).update(requested_at=when)
    scope = rita_scope(world)
    base = {"view": "pool", "status": "claimed", "sort": "received"}
    assert ids(scope, **base, received_from=day, received_to=day) == [x, y]
    assert ids(scope, **base, received_from=day + dt.timedelta(days=1)) == [z]
    assert ids(scope, **base, received_to=day - dt.timedelta(days=1)) == []
    with pytest.raises(WorklistFilterError, match="comes after"):
        WorklistFilters.parse({"received_from": "2026-11-21", "received_to": "2026-11-20"})
    with pytest.raises(WorklistFilterError, match="YYYY-MM-DD"):
        WorklistFilters.parse({"received_from": "20/11/2026"})


def test_claimed_by_me_keeps_the_cases_i_hold(world, reading):
    held = patient_case(world, "A^A", "P-H")
    proposed = patient_case(world, "B^B", "P-P")
    robs = patient_case(world, "C^C", "P-R")
    scope = rita_scope(world)
    services.referral_claim(scope=scope, referral_id=held.pk)
    Referral.objects.filter(pk=proposed.pk).update(assigned_to=world.rita)
    services.referral_claim(scope=access.scope_for_user(reading.rob), referral_id=robs.pk)
    assert sorted(ids(scope)) == sorted([held.pk, proposed.pk])
    assert ids(scope, claimed_by_me=1) == [held.pk]
    assert ids(scope, view="pool", claimed_by_me=1) == [held.pk]
    assert ids(scope, view="pool", claimed_by_me=1, status="reporting") == []
    assert sorted(ids(scope, view="pool", status="claimed")) == sorted([held.pk, robs.pk])
    with pytest.raises(WorklistFilterError, match="yes/no"):
        WorklistFilters.parse({"claimed_by_me": "maybe"})


def _sign(world, user, referral) -> None:
    scope = access.scope_for_user(user, institution_id=world.reader.pk)
    services.referral_claim(scope=scope, referral_id=referral.pk)
    services.referral_report_started(referral=referral, user=user)
    services.referral_reported(referral=referral, user=user)


def test_signed_by_me_lists_the_cases_whose_report_i_signed(world, reading):
    older = patient_case(world, "A^A", "P-1A")
    newer = patient_case(world, "B^B", "P-1B")
    robs = patient_case(world, "C^C", "P-1C")
    open_case = patient_case(world, "D^D", "P-1D")
    Referral.objects.filter(pk=older.pk).update(requested_at=timezone.now() - dt.timedelta(days=2))
    _sign(world, world.rita, older)
    _sign(world, world.rita, newer)
    _sign(world, reading.rob, robs)
    services.referral_claim(scope=rita_scope(world), referral_id=open_case.pk)
    scope = rita_scope(world)
    # Newest first by default; whatever the view.
    assert ids(scope, signed_by_me=1) == [newer.pk, older.pk]
    assert ids(scope, view="pool", signed_by_me=1) == [newer.pk, older.pk]
    assert ids(scope, signed_by_me=1, sort="received") == [older.pk, newer.pk]
    assert ids(scope, signed_by_me=1, status="delivered", patient="b^b") == [newer.pk]
    assert ids(scope, signed_by_me=1, status="acknowledged") == []
    assert ids(access.scope_for_user(reading.rob), signed_by_me=1) == [robs.pk]
    # An open case is not signed; "claimed" is not a status a signed case has.
    assert open_case.pk not in ids(scope, signed_by_me=1)
    with pytest.raises(WorklistFilterError, match="reported, delivered or acknowledged"):
        WorklistFilters.parse({"signed_by_me": "1", "status": "claimed"})


# --- Age, sex and prior studies ------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "on", "age"),
    [
        ("1980-11-21", "2026-11-20", (45, "years")),  # the day before the birthday
        ("1980-11-20", "2026-11-20", (46, "years")),
        ("2025-01-31", "2026-11-20", (21, "months")),
        ("2026-10-20", "2026-11-20", (1, "months")),
        ("2026-10-21", "2026-11-20", (30, "days")),
        ("2026-11-20", "2026-11-20", (0, "days")),
        ("2026-11-21", "2026-11-20", None),  # born after the study: a wrong date
        (None, "2026-11-20", None),
        ("1980-11-21", None, None),
    ],
)
def test_the_age_is_taken_on_the_study_day(birth, on, age):
    day = dt.date.fromisoformat
    assert selectors.patient_age(birth and day(birth), on and day(on)) == age


def _prior(institution, pid: str, key: str, when: str) -> Study:
    return study_at(institution, patient_id=pid, patient_key=key, study_date=when)


def test_the_prior_count_is_the_earlier_studies_the_reader_may_open(world, reading):
    # Before the referral: two earlier studies at the clinic, one at the reader hospital,
    # one later study, and one of the same patient key in the other alliance.
    _prior(world.clinic, "P-7", "key-7", "2024-05-01")
    _prior(world.clinic, "P-7", "key-7", "2025-01-01")
    _prior(world.reader, "H-7", "key-7", "2023-02-02")
    _prior(world.clinic, "P-7", "key-7", "2026-12-01")
    _prior(world.outsider, "O-7", "key-7", "2020-01-01")
    case = refer(world, patient_id="P-7", patient_key="key-7", study_date="2026-11-20")
    lone = refer(world, patient_id="P-8", patient_key="key-8", study_date="2026-11-20")
    undated = refer(world, patient_id="P-7", patient_key="key-7", study_date="2026-11-20")
    Study.objects.filter(pk=undated.study_id).update(study_date=None)
    cases = list(Referral.objects.filter(pk__in=[case.pk, lone.pk, undated.pk]))
    counts = selectors.worklist_prior_counts(scope=rita_scope(world), cases=cases)
    assert counts == {case.pk: 3, lone.pk: 0}
    # A revoked grant takes its study off the count, as it takes it off the case page.
    clinic_2024 = Study.objects.get(institution=world.clinic, study_date="2024-05-01")
    from referrals.models import StudyGrant

    StudyGrant.objects.filter(study=clinic_2024).update(revoked_at=timezone.now())
    counts = selectors.worklist_prior_counts(scope=rita_scope(world), cases=cases)
    assert counts[case.pk] == 2
    # The clinic sees its own studies only (the reader hospital's is not theirs).
    clinic = access.scope_for_user(world.alice, institution_id=world.clinic.pk)
    assert selectors.worklist_prior_counts(scope=clinic, cases=cases)[case.pk] == 2


def test_the_page_shows_age_sex_and_priors(world, reading):
    _prior(world.clinic, "P-9", "key-9", "2025-06-01")
    case = refer(world, patient_name="Li^Lei", patient_id="P-9", patient_key="key-9")
    born(case, "1980-11-21", "M")
    Referral.objects.filter(pk=case.pk).update(assigned_to=world.rita)
    html = web(world.rita).get("/worklist/").content.decode()
    row = html[html.index(f'data-referral-id="{case.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "Li Lei" in row
    assert "45 y · Male" in row
    assert '<td class="wl-priors" data-label="Prior studies">1</td>' in row
    assert "North general" not in row  # the pool is not a column; the site is
    assert "Beishan Township Health Centre" in row
    with translation.override("zh-hans"):
        assert selectors.patient_age(dt.date(1980, 11, 21), dt.date(2026, 11, 20)) == (45, "years")


def test_the_page_reads_a_constant_number_of_queries(world, reading, django_assert_max_num_queries):
    def make(n: int, start: int) -> None:
        for i in range(start, start + n):
            _prior(world.clinic, f"P-Q{i}", f"key-q{i}", "2024-01-01")
            case = refer(world, patient_id=f"P-Q{i}", patient_key=f"key-q{i}")
            born(case, "1970-01-01", "F")
            if i % 2:
                services.referral_claim(scope=rita_scope(world), referral_id=case.pk)
        Referral.objects.update(assigned_to=None)

    client = web(world.rita)
    make(2, 0)
    client.get("/worklist/")  # the session, the scope's caches
    with CaptureQueriesContext(connection) as few:
        assert client.get("/worklist/?sort=-age").status_code == 200
    make(10, 2)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get("/worklist/?sort=-age").content.decode()
    assert page.count('class="worklist-row') == 12


# --- The page: headers, links that keep the filters, the live rows -------------------------


def test_headers_sort_with_aria_sort_and_links_keep_the_filters(world, trio):
    _x, y, _z = trio
    client = web(world.rita)
    html = client.get("/worklist/?modality=CR&sort=patient").content.decode()
    head = html[html.index("<thead>") : html.index("</thead>")]
    assert 'aria-sort="ascending"' in head
    assert head.count("aria-sort=") == 1
    # The sorted column's link turns it round; the others sort ascending; filters stay.
    links = {
        urllib.parse.unquote(part.split('"')[0]).replace("&amp;", "&")
        for part in head.split('href="')[1:]
    }
    assert "/worklist/?modality=CR&sort=-patient" in links
    assert "/worklist/?modality=CR&sort=received" in links
    assert "/worklist/?modality=CR&sort=claimed_by" in links
    assert len(links) == 11  # every column but the prior count
    assert '<th scope="col" class="wl-col-priors">Prior studies</th>' in head
    page = client.get("/worklist/?modality=CR&sort=-patient").content.decode()
    assert 'aria-sort="descending"' in page
    assert 'data-rows-url="/worklist/rows/?modality=CR&amp;sort=-patient"' in page
    assert f'data-referral-id="{y}"' in page


def test_the_live_rows_keep_the_sort_and_the_filters(world, trio):
    x, y, z = trio
    Referral.objects.filter(pk__in=trio).update(
        status=ReferralStatus.ROUTED, claimed_by=None, assigned_to=world.rita
    )
    client = web(world.rita)
    rows = client.get("/worklist/rows/?sort=-patient").content.decode()
    mine = rows[: rows.index('id="worklist-pool"')]
    assert [mine.index(f'data-referral-id="{pk}"') for pk in (y, x, z)] == sorted(
        mine.index(f'data-referral-id="{pk}"') for pk in (y, x, z)
    )
    assert 'aria-sort="descending"' in rows
    narrowed = client.get("/worklist/rows/?modality=MR").content.decode()
    assert f'data-referral-id="{z}"' in narrowed
    assert f'data-referral-id="{x}"' not in narrowed
    # Claiming from a filtered page comes back to it.
    claimed = client.post(f"/worklist/{z}/claim/", {"query": "modality=MR&sort=-patient"})
    assert claimed["Location"] == "/worklist/?modality=MR&sort=-patient"


def test_no_case_matching_says_so_and_offers_to_clear(world, trio):
    client = web(world.rita)
    html = client.get("/worklist/?patient=nobody-by-that-name").content.decode()
    assert html.count("No cases match these filters.") == 2  # mine and my pool
    assert 'id="wl-clear"' in html
    plain = client.get("/worklist/").content.decode()
    assert "No cases match" not in plain
    assert "No case is waiting in your pools." in plain
    assert 'id="wl-clear"' not in plain


def test_the_claimed_and_signed_views_of_the_page(world, reading):
    held = patient_case(world, "A^A", "P-2A")
    signed = patient_case(world, "B^B", "P-2B")
    services.referral_claim(scope=rita_scope(world), referral_id=held.pk)
    _sign(world, world.rita, signed)
    client = web(world.rita)
    claimed = client.get("/worklist/?claimed_by_me=1").content.decode()
    assert 'id="worklist-pool"' not in claimed
    assert "Claimed by me" in claimed
    assert f'data-referral-id="{held.pk}"' in claimed
    assert f'data-referral-id="{signed.pk}"' not in claimed
    page = client.get("/worklist/?signed_by_me=1").content.decode()
    assert 'id="worklist-signed"' in page
    assert f'data-referral-id="{signed.pk}"' in page
    assert f'data-referral-id="{held.pk}"' not in page
    assert '<option value="delivered"' in page  # the signed statuses, in the status filter
    assert '<option value="routed"' not in page


def test_a_bad_sort_on_the_page_says_so_and_shows_the_default(world, trio):
    page = web(world.rita).get("/worklist/?sort=password&patient=chen")
    html = page.content.decode()
    assert page.status_code == 200
    assert "The worklist cannot be sorted that way." in html
    _x, y, _z = trio
    assert html.count("data-referral-id=") == 1  # the default view, unfiltered: rita's y
    assert f'data-referral-id="{y}"' in html
    assert 'id="wl-clear"' in html


# --- The API takes the same filters and sorts ----------------------------------------------


def test_the_api_takes_the_same_filters_and_sort(world, trio):
    x, y, z = trio
    client = api_client_for(world.rita, world.reader)
    got = client.get("/api/v1/worklist/", {"view": "pool", "status": "claimed", "sort": "-age"})
    assert got.status_code == 200
    assert [r["id"] for r in got.json()["results"]] == [x, y, z]
    found = client.get(
        "/api/v1/worklist/", {"view": "pool", "status": "claimed", "patient": "chen"}
    )
    assert [r["id"] for r in found.json()["results"]] == [y]
    refused = client.get("/api/v1/worklist/", {"sort": "study__patient__birth_date"})
    assert refused.status_code == 400
    assert "cannot be sorted that way" in str(refused.json())
    assert client.get("/api/v1/worklist/", {"claimed_by_me": "perhaps"}).status_code == 400
