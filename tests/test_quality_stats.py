"""Second-read quality statistics: discrepancy rates per reader, institution and month, with
exact numbers (reporting.selectors.second_read_quality), and the page that shows them."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.test import Client

from reporting.models import SecondRead
from reporting.selectors import quality_total, second_read_quality
from reporting.workflow import ReportState
from tenants.models import Role

from .conftest import _person
from .reporting_support import desk_make, scope
from .test_report_states import report_row

pytestmark = pytest.mark.django_db

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def at(month: int, day: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


@pytest.fixture
def quality(world, django_capture_on_commit_callbacks):
    """rita: 4 second reads (2 agree, 1 minor, 1 major); rob: 3 (2 agree, 1 minor).

    September (local time): rita's first two, one at 23:30 on the 30th (15:30 UTC, still
    September in Shanghai). October: the other five. One more second read on a report of
    another reading institution must never count for the north reader.
    """
    desk = desk_make(world, django_capture_on_commit_callbacks)
    sam, rita, rob = desk.reading.sam, world.rita, desk.reading.rob
    reads = [
        (rita, "agree", at(9, 12)),
        (rita, "major_discrepancy", at(9, 30, 23, 30)),
        (rita, "minor_discrepancy", at(10, 1, 0, 10)),
        (rita, "agree", at(10, 20)),
        (rob, "agree", at(10, 2)),
        (rob, "agree", at(10, 3)),
        (rob, "minor_discrepancy", at(10, 31, 23, 59)),
    ]
    for author, outcome, when in reads:
        report = report_row(desk, ReportState.SECOND_READ, author=author)
        SecondRead.objects.create(
            report=report,
            reviewer=sam,
            outcome=outcome,
            at=when,
            comment="" if outcome == "agree" else "differs",
        )
    # Written at the clinic (as if it read it itself): its quality record, not the reader's.
    elsewhere = report_row(desk, ReportState.SECOND_READ, author=rita)
    type(elsewhere).objects.filter(pk=elsewhere.pk).update(institution=world.clinic)
    SecondRead.objects.create(
        report=elsewhere, reviewer=sam, outcome="major_discrepancy", at=at(10, 5), comment="x"
    )
    return desk


def test_per_reader(quality):
    rows = second_read_quality(quality.sam(), group="reader")
    assert [r.label for r in rows] == sorted(r.label for r in rows)
    by_reader = {r.key: r for r in rows}
    rita, rob = by_reader[quality.world.rita.pk], by_reader[quality.reading.rob.pk]
    assert (rita.second_reads, rita.agree, rita.minor, rita.major) == (4, 2, 1, 1)
    assert (rita.discrepancy_rate, rita.major_rate) == (0.5, 0.25)
    assert (rob.second_reads, rob.agree, rob.minor, rob.major) == (3, 2, 1, 0)
    assert rob.discrepancy_rate == pytest.approx(1 / 3)
    assert rob.major_rate == 0.0
    total = quality_total(rows)
    assert (total.second_reads, total.agree, total.minor, total.major) == (7, 4, 2, 1)
    assert total.discrepancy_rate == pytest.approx(3 / 7)


def test_per_institution_and_month_in_local_time(quality):
    [reader] = second_read_quality(quality.sam(), group="institution")
    assert (reader.key, reader.second_reads, reader.minor, reader.major) == (
        quality.world.reader.pk,
        7,
        2,
        1,
    )
    months = second_read_quality(quality.sam(), group="month")
    assert [(r.key, r.label, r.second_reads, r.agree, r.minor, r.major) for r in months] == [
        (dt.date(2026, 9, 1), "2026-09", 2, 1, 0, 1),
        (dt.date(2026, 10, 1), "2026-10", 5, 3, 2, 0),
    ]
    assert months[0].discrepancy_rate == 0.5
    assert months[1].discrepancy_rate == 0.4


def test_a_period_includes_both_its_days_in_local_time(quality):
    october = second_read_quality(
        quality.sam(), group="reader", start=dt.date(2026, 10, 1), end=dt.date(2026, 10, 31)
    )
    assert {r.key: (r.second_reads, r.minor, r.major) for r in october} == {
        quality.world.rita.pk: (2, 1, 0),
        quality.reading.rob.pk: (3, 1, 0),
    }
    september = second_read_quality(quality.sam(), group="reader", end=dt.date(2026, 9, 30))
    assert [(r.key, r.second_reads, r.major) for r in september] == [(quality.world.rita.pk, 2, 1)]
    assert second_read_quality(quality.sam(), start=dt.date(2026, 11, 1)) == []


def test_the_clinic_sees_only_its_own_record(quality):
    [clinic] = second_read_quality(quality.alice(), group="institution")
    assert (clinic.key, clinic.second_reads, clinic.major) == (quality.world.clinic.pk, 1, 1)


def _page(user, **params) -> tuple[int, str]:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    answer = client.get("/reports/quality/", params)
    return answer.status_code, answer.content.decode()


def test_the_page_for_senior_radiologists_and_hospital_admins(quality):
    status, page = _page(quality.reading.sam, group="reader")
    assert status == 200
    rita = quality.world.rita.pk
    assert (
        f'<tr data-key="{rita}"><td>{quality.world.rita.display_name}</td>'
        '<td data-col="reads">4</td><td data-col="agree">2</td><td data-col="minor">1</td>'
        '<td data-col="major">1</td><td data-col="rate">50.0 %</td>'
        '<td data-col="major-rate">25.0 %</td></tr>'
    ) in page
    assert (
        '<td data-col="reads">7</td><td data-col="agree">4</td><td data-col="minor">2</td>'
        '<td data-col="major">1</td><td data-col="rate">42.9 %</td>'
        '<td data-col="major-rate">14.3 %</td>'
    ) in page
    status, page = _page(quality.reading.sam, group="month", start="2026-10-01")
    assert status == 200
    assert '<tr data-key="2026-10-01"><td>2026-10</td><td data-col="reads">5</td>' in page
    assert "2026-09" not in page.split('id="quality-table"')[1]
    hanna = _person("hanna", "汉娜", "Hanna", quality.world.reader, Role.HOSPITAL_ADMIN)
    assert _page(hanna)[0] == 200
    assert _page(quality.world.rita)[0] == 403  # a junior radiologist
    assert _page(quality.world.alice)[0] == 403  # the clinic's technician


@pytest.mark.parametrize(
    "params",
    [
        {"group": "bogus"},
        {"start": "2026-13-01"},
        {"end": "yesterday"},
        {"start": "2026-10-02", "end": "2026-10-01"},
    ],
)
def test_bad_filters_are_a_400_that_says_why(quality, params):
    status, page = _page(quality.reading.sam, **params)
    assert status == 400
    assert 'id="quality-error"' in page
    assert 'id="quality-table"' not in page


def test_nothing_to_count(world, django_capture_on_commit_callbacks):
    desk = desk_make(world, django_capture_on_commit_callbacks)
    assert second_read_quality(scope(desk.reading.sam, world.reader)) == []
    total = quality_total([])
    assert (total.second_reads, total.discrepancy_rate) == (0, 0.0)
