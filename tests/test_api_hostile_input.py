"""Hostile input on the API: a specific 4xx with a sentence every time, never a 500."""

from __future__ import annotations

import io

import pytest
from django.core.cache import cache
from knox.models import AuthToken
from openpyxl import load_workbook
from rest_framework.test import APIClient

from alliance.parsers import MAX_JSON_DEPTH, json_body_problem
from alliance.urls import router
from referrals.models import Instance
from tenants.models import AuditEvent

from .conftest import World, api_client_for
from .dicom_support import ct_files
from .ingest_support import media, stow  # noqa: F401 - fixture
from .reporting_support import CHEST, Desk, desk_make

pytestmark = pytest.mark.django_db

DEEP_LIST = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000
TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels"
PAST_BIGINT = str(2**63)
# An explicit month, so no answer depends on today's date.
NOV = {"date_from": "2026-11-01", "date_to": "2026-11-30"}


def nested_lists(depth: int) -> list:
    document: list = []
    for _level in range(depth - 1):
        document = [document]
    return document


@pytest.fixture(autouse=True)
def _no_rate_limit_counts_of_earlier_tests() -> None:
    cache.clear()  # the login throttle counts per address; this Redis db is this suite's


@pytest.fixture
def desk(world, django_capture_on_commit_callbacks) -> Desk:
    return desk_make(world, django_capture_on_commit_callbacks)


# --- Format suffixes and ?format= ----------------------------------------------------------


def test_no_api_route_takes_a_format_suffix():
    assert [str(p.pattern) for p in router.urls if "format" in str(p.pattern)] == []


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/worklist.json/",
        "/api/v1/reports/3/pdf.json/",
        "/api/v1/reports/3/addenda.json/",
        "/api/v1/referrals/3/events.json/",
        "/api/v1/referrals.json",
        "/api/v1/critical-findings/3/acknowledge.json/",
    ],
)
def test_format_suffix_urls_are_404(world: World, url: str):
    client = api_client_for(world.rita)
    assert client.get(url).status_code == 404
    assert client.post(url, {}, format="json").status_code == 404


def test_an_unknown_format_parameter_is_404_and_json_still_works(world: World):
    client = api_client_for(world.rita)
    assert client.get("/api/v1/worklist/", {"format": "xml"}).status_code == 404
    assert client.get("/api/v1/worklist/", {"format": "json"}).status_code == 200


# --- Deeply nested and NUL-holding JSON bodies ---------------------------------------------


@pytest.mark.parametrize("body", [DEEP_LIST, DEEP_OBJECT], ids=["list", "object"])
@pytest.mark.parametrize(
    ("who", "url"),
    [
        ("", "/api/v1/auth/login/"),
        ("rita", "/api/v1/reports/"),
        ("alice", "/api/v1/referrals/"),
        ("alice", "/api/v1/uploads/check/"),
        ("adam", "/api/v1/gateway-credentials/"),
    ],
)
def test_a_deeply_nested_json_body_is_400(world: World, who: str, url: str, body: str):
    client = api_client_for(getattr(world, who)) if who else APIClient(HTTP_ACCEPT_LANGUAGE="en")
    answer = client.post(url, body, content_type="application/json")
    assert answer.status_code == 400, answer.content[:300]
    assert TOO_DEEP in answer.json()["detail"]


def test_json_is_accepted_to_the_depth_limit_and_refused_one_level_beyond():
    assert json_body_problem(nested_lists(MAX_JSON_DEPTH)) is None
    assert TOO_DEEP in (json_body_problem(nested_lists(MAX_JSON_DEPTH + 1)) or "")
    assert TOO_DEEP in (json_body_problem({"a": nested_lists(MAX_JSON_DEPTH)}) or "")


def test_a_nul_character_in_a_json_body_is_400(desk: Desk):
    rita = api_client_for(desk.world.rita, desk.world.reader)
    started = rita.post(
        "/api/v1/reports/", {"referral": desk.chest.pk, "template": desk.ct_chest.pk}, format="json"
    )
    assert started.status_code == 201, started.content
    url = f"/api/v1/reports/{started.json()['id']}/"
    content = {**CHEST, "findings": "nodule\u0000"}
    answer = rita.patch(url, {"version": 1, "content": content}, format="json")
    assert answer.status_code == 400
    assert "NUL character" in answer.json()["detail"]
    assert rita.patch(url, {"version": 1, "content": CHEST}, format="json").status_code == 200


# --- NUL characters in the address ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/report-templates/?modality=a%00b",
        "/api/v1/referrals/?status=%00",
        "/api/v1/reports/%00/",
        "/api/v1/worklist/?modality=C%00T",
    ],
)
def test_a_nul_character_in_an_api_address_is_400(world: World, url: str):
    answer = api_client_for(world.rita).get(url)
    assert answer.status_code == 400
    assert "NUL character" in answer.json()["detail"]


@pytest.mark.parametrize("url", ["/dicomweb/studies?%00=1", "/dicomweb/studies?Patient%00Name=a"])
def test_a_nul_character_in_a_qido_query_key_is_400_and_audited(world: World, url: str):
    answer = api_client_for(world.rita).get(url, HTTP_ACCEPT="application/dicom+json")
    assert answer.status_code == 400
    assert answer.content.decode() == "A query key holds a NUL character (byte 0)."
    refused = AuditEvent.objects.filter(event="query").latest("id")
    assert refused.outcome == 4
    assert refused.detail["error"] == "A query key holds a NUL character (byte 0)."


@pytest.mark.parametrize(
    "headers", [{"HTTP_AUTHORIZATION": "Token abc\x00def"}, {"HTTP_X_INSTITUTION": "1\x00"}]
)
def test_a_nul_character_in_a_header_is_400(world: World, headers: dict):
    answer = APIClient(HTTP_ACCEPT_LANGUAGE="en").post(
        "/api/v1/uploads/check/", b"{}", content_type="application/json", **headers
    )
    assert answer.status_code == 400
    assert "header holds a NUL character" in answer.json()["detail"]


@pytest.mark.parametrize(
    "form", [{"username": "alice\x00", "password": "x"}, {"username": "\x00", "password": "\x00"}]
)
def test_a_nul_character_in_a_login_form_is_400(world: World, form: dict):
    for body in ("multipart", None):
        answer = APIClient(HTTP_ACCEPT_LANGUAGE="en").post("/api/v1/auth/login/", form, format=body)
        assert answer.status_code == 400
        assert answer.json() == {"detail": "Wrong user name or password.", "code": "invalid"}


def test_the_nul_refusal_speaks_the_callers_language(world: World):
    _instance, token = AuthToken.objects.create(user=world.rita)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}", HTTP_ACCEPT_LANGUAGE="zh-hans")
    answer = client.get("/api/v1/report-templates/?modality=%00")
    assert answer.status_code == 400
    assert "NUL" in answer.json()["detail"]
    assert "character" not in answer.json()["detail"]


# --- Page numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize("param", ["limit", "offset"])
def test_a_limit_or_offset_past_any_database_number_is_400(world: World, param: str):
    answer = api_client_for(world.adam).get("/api/v1/memberships/", {param: PAST_BIGINT})
    assert answer.status_code == 400
    message = f"{param} must be at most 2147483647."
    assert answer.json() == {"detail": message, "code": "invalid", "fields": {param: [message]}}


def test_ordinary_and_unreadable_page_numbers_still_answer_a_page(world: World):
    client = api_client_for(world.adam)
    page = client.get("/api/v1/memberships/", {"limit": 1, "offset": 1})
    assert page.status_code == 200
    assert page.json()["count"] == 2
    assert len(page.json()["results"]) == 1
    assert client.get("/api/v1/memberships/", {"limit": "many"}).status_code == 200


# --- Findings of the Schemathesis run ------------------------------------------------------


def test_an_xlsx_error_answer_quoting_a_control_character_is_a_workbook(world: World):
    answer = api_client_for(world.carl).get(
        "/api/v1/analytics/volumes/", {**NOV, "priority": "\x02urgent", "format": "xlsx"}
    )
    assert answer.status_code == 400
    book = load_workbook(io.BytesIO(answer.content), read_only=True)
    text = " ".join(str(cell) for row in book["error"].iter_rows(values_only=True) for cell in row)
    assert "\ufffdurgent" in text


@pytest.mark.parametrize(
    "form",
    [
        {"label": "edge", "calling_ae_titles": "null"},  # a form field read as JSON null
        {"label": "edge", "calling_ae_titles": "5"},
    ],
)
def test_calling_ae_titles_that_are_not_a_list_of_texts_are_400(world: World, form: dict):
    answer = api_client_for(world.adam).post(
        "/api/v1/gateway-credentials/", form, format="multipart"
    )
    assert answer.status_code == 400
    assert "A list of AE titles" in answer.json()["fields"]["calling_ae_titles"][0]


def test_calling_ae_titles_as_a_json_list_still_make_a_credential(world: World):
    answer = api_client_for(world.adam).post(
        "/api/v1/gateway-credentials/",
        {"label": "edge", "calling_ae_titles": ["CT01"]},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["calling_ae_titles"] == ["CT01"]


@pytest.mark.parametrize("url", ["/api/v1/reports/", "/api/v1/critical-findings/"])
def test_a_referral_filter_in_non_ascii_digits_finds_nothing(world: World, url: str):
    answer = api_client_for(world.rita).get(url, {"referral": "²"})
    assert answer.status_code == 200
    assert answer.json()["count"] == 0


@pytest.mark.usefixtures("media")
@pytest.mark.parametrize("frames", ["²", "1,²"])
def test_a_frame_number_in_non_ascii_digits_is_400(world: World, frames: str):
    alice = api_client_for(world.alice)
    assert stow(alice, ct_files(1, size=16)).status_code == 200
    instance = Instance.objects.select_related("series", "study").get()
    base = (
        f"/dicomweb/studies/{instance.study.study_uid}/series/"
        f"{instance.series.series_uid}/instances/{instance.sop_uid}/frames/"
    )
    answer = alice.get(
        base + frames, HTTP_ACCEPT='multipart/related; type="application/octet-stream"'
    )
    assert answer.status_code == 400
    assert "is not a frame number" in answer.content.decode()
    assert (
        alice.get(
            base + "1", HTTP_ACCEPT='multipart/related; type="application/octet-stream"'
        ).status_code
        == 200
    )
