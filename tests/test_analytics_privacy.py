"""No patient identifier in any analytics answer or export; only the right people see it."""

from __future__ import annotations

import io

import pytest
from freezegun import freeze_time
from openpyxl import load_workbook

from alliance.analytics.refresh import analytics_refresh
from alliance.analytics.selectors import FIGURE_SETS
from referrals.models import Patient, Study
from tenants.models import Role

from .analytics_support import T0, analytics_world
from .conftest import _person, api_client_for

pytestmark = pytest.mark.django_db
NOV = {"date_from": "2026-11-01", "date_to": "2026-11-30"}
ROUTES = ["options", *FIGURE_SETS]


@pytest.fixture
def seeded(world, django_capture_on_commit_callbacks):
    analytics_world(world, django_capture_on_commit_callbacks)
    with freeze_time(T0.replace(day=28)):
        analytics_refresh(full=True)
    return world


def _identifiers() -> set[str]:
    found: set[str] = set()
    for p in Patient.objects.all():
        found |= {p.patient_id, p.name, p.patient_key, *p.name.split("^")}
    for s in Study.objects.all():
        found |= {s.study_uid, s.accession_number, s.pid, s.patient_key}
    return {v for v in found if v and len(v) >= 3}


def _xlsx_text(content: bytes) -> str:
    book = load_workbook(io.BytesIO(content), read_only=True)
    return "\n".join(
        str(cell)
        for sheet in book.worksheets
        for row in sheet.iter_rows(values_only=True)
        for cell in row
        if cell is not None
    )


@pytest.mark.parametrize("who", ["carl", "ada"])
def test_no_patient_identifier_in_any_answer_or_export(seeded, who):
    identifiers = _identifiers()
    assert {"Wang^Xiaoming", "P-1", "key-p1", "Xiaoming"} <= identifiers
    user = (
        seeded.carl
        if who == "carl"
        else _person("ada2", "阿达", "Ada", seeded.reader, Role.ALLIANCE_ADMIN)
    )
    client = api_client_for(user)
    checked = 0
    for route in ROUTES:
        for fmt in ("json", "csv", "xlsx"):
            if route == "options" and fmt != "json":
                continue
            answer = client.get(f"/api/v1/analytics/{route}/", {**NOV, "format": fmt})
            assert answer.status_code == 200, (route, fmt, answer.content[:200])
            text = _xlsx_text(answer.content) if fmt == "xlsx" else answer.content.decode()
            assert "north-" in text or route == "flows", route  # real figures, not empty
            leaked = [v for v in identifiers if v in text]
            assert not leaked, (route, fmt, leaked)
            checked += 1
    assert checked == 1 + 3 * len(FIGURE_SETS)


def test_exports_are_attachments_with_every_table(seeded):
    client = api_client_for(seeded.carl)
    answer = client.get("/api/v1/analytics/volumes/", {**NOV, "format": "csv"})
    assert answer["Content-Type"].startswith("text/csv")
    assert 'filename="analytics-volumes-2026-11-01-2026-11-30.csv"' in answer["Content-Disposition"]
    text = answer.content.decode("utf-8-sig")
    for section in ("[meta]", "[totals]", "[by_period]", "[by_site]", "[by_modality]"):
        assert section in text
    one = client.get("/api/v1/analytics/volumes/", {**NOV, "format": "csv", "table": "by_site"})
    lines = one.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("site_id,site_code,site_name,tier,studies")
    assert len(lines) == 3
    book = load_workbook(
        io.BytesIO(client.get("/api/v1/analytics/quality/", {**NOV, "format": "xlsx"}).content)
    )
    assert book.sheetnames == ["meta", "totals", "by_site", "return_reasons", "by_reader"]


def test_exports_show_a_formula_from_a_clinics_dicom_as_text_never_run_it(seeded):
    from .referral_support import study_at

    with freeze_time(T0.replace(day=22)):
        study_at(
            seeded.clinic,
            modality="=2+5",
            body_part="@SUM(A1)",
            patient_id="P-X",
            patient_key="key-px",
            study_date="2026-11-22",
        )
    with freeze_time(T0.replace(day=28, hour=3)):
        analytics_refresh(full=True)
    client = api_client_for(seeded.carl)
    csv_text = client.get(
        "/api/v1/analytics/volumes/", {**NOV, "format": "csv", "table": "by_modality"}
    ).content.decode("utf-8-sig")
    assert "'=2+5" in csv_text
    assert ",=2+5" not in csv_text
    assert not csv_text.startswith("=")
    book = load_workbook(
        io.BytesIO(client.get("/api/v1/analytics/volumes/", {**NOV, "format": "xlsx"}).content)
    )
    cells = [cell for row in book["by_modality"].iter_rows() for cell in row]
    assert "'=2+5" in [c.value for c in cells]
    assert not [c for c in cells if c.data_type == "f"], "a formula in the workbook"
    # Numbers stay numbers.
    assert any(isinstance(c.value, int) for c in cells)


@pytest.mark.parametrize(
    "params",
    [
        {"date_from": "2026-13-01"},
        {"date_from": "2026-11-30", "date_to": "2026-11-01"},
        {"date_from": "2020-01-01", "date_to": "2026-01-01"},
        {"tier": "planet"},
        {"modality": "C1"},
        {"region": "4210"[:3]},
        {"alliance": "x"},
        {"granularity": "hour"},
        {"priority": "soon"},
        {"institution": "-1"},
        {"table": "nope"},
    ],
)
def test_bad_filters_are_400(seeded, params):
    answer = api_client_for(seeded.carl).get("/api/v1/analytics/volumes/", params)
    assert answer.status_code == 400, answer.content


def test_roles_and_alliances(seeded):
    north = seeded.north
    # A radiologist and a clinic technician: 403 on every route.
    for user in (seeded.rita, seeded.alice, seeded.oscar):
        for route in ROUTES:
            assert api_client_for(user).get(f"/api/v1/analytics/{route}/").status_code == 403
    # The commission of another alliance sees nothing of the north.
    south_hc = seeded.south.commission
    sue = _person("sue", "苏", "Sue", south_hc, Role.COMMISSION_VIEWER)
    client = api_client_for(sue)
    assert client.get("/api/v1/analytics/volumes/", {"alliance": north.pk}).status_code == 404
    assert (
        client.get("/api/v1/analytics/volumes/", {"institution": seeded.clinic.pk}).status_code
        == 404
    )
    mine = client.get("/api/v1/analytics/volumes/", NOV).json()
    assert mine["totals"]["studies"] == 0
    assert mine["tables"]["by_site"] == []
    assert mine["meta"]["filters"]["alliances"] == [seeded.south.pk]
    options = client.get("/api/v1/analytics/options/").json()
    assert [a["code"] for a in options["alliances"]] == ["south"]
    assert "north-clinic" not in str(options)
    # Writes are refused.
    assert api_client_for(seeded.carl).post("/api/v1/analytics/volumes/").status_code == 403
