"""Reporting over HTTP: the API (autosave 409, sign, second read, addenda), who sees what,
the admin (read-only for reports) and the drafting page."""

from __future__ import annotations

import pytest
from django.test import Client

from reporting import services
from reporting.models import Report, ReportStatus
from tenants.models import User

from .conftest import api_client_for
from .reporting_support import CHEST, desk_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(world, django_capture_on_commit_callbacks):
    return desk_make(world, django_capture_on_commit_callbacks)


def _api(desk, user=None, institution=None):
    return api_client_for(user or desk.world.rita, institution or desk.world.reader)


def _start(desk):
    answer = _api(desk).post(
        "/api/v1/reports/", {"referral": desk.chest.pk, "template": desk.ct_chest.pk}, format="json"
    )
    assert answer.status_code == 201, answer.content
    return answer.json()


def test_templates_are_listed_for_the_alliance_and_created_by_its_admin(desk):
    listed = _api(desk).get("/api/v1/report-templates/?modality=ct").json()["results"]
    assert {t["code"] for t in listed} == {"ct-chest", "ct-head"}
    fields = {"fields": [{"key": "findings", "label": "所见", "required": True}]}
    body = {
        "alliance": desk.world.north.pk,
        "code": "ct-neck",
        "modality": "CT",
        "name": "颈部 CT",
        "fields": fields,
    }
    assert _api(desk).post("/api/v1/report-templates/", body, format="json").status_code == 403
    ada = _api(desk, desk.ada)
    made = ada.post("/api/v1/report-templates/", body, format="json")
    assert made.status_code == 201
    v2 = ada.post(
        f"/api/v1/report-templates/{made.json()['id']}/versions/",
        {"fields": fields, "name_en": "CT neck"},
        format="json",
    )
    assert v2.status_code == 201
    assert v2.json()["version"] == 2
    bad = ada.post(
        f"/api/v1/report-templates/{made.json()['id']}/versions/",
        {"fields": {"fields": "nope"}},
        format="json",
    )
    assert bad.status_code == 400
    assert bad.json()["code"] == "bad_fields"


def test_autosave_conflict_sign_and_second_read_over_the_api(desk):
    report = _start(desk)
    rita = _api(desk)
    url = f"/api/v1/reports/{report['id']}/"
    saved = rita.patch(url, {"version": 1, "content": CHEST, "free_text": "ok"}, format="json")
    assert saved.status_code == 200
    assert saved.json()["version"] == 2
    stale = rita.patch(url, {"version": 1, "content": {"findings": "old tab"}}, format="json")
    assert stale.status_code == 409
    assert stale.json()["code"] == "stale_version"
    assert stale.json()["current_version"] == 2
    assert Report.objects.get(pk=report["id"]).content["findings"] == CHEST["findings"]
    assert rita.patch(url, {"content": CHEST}, format="json").status_code == 400  # no version
    assert (
        rita.post(f"{url}sign/", {"kind": "final", "version": 2}, format="json").status_code == 403
    )
    assert (
        rita.post(f"{url}sign/", {"kind": "someday", "version": 2}, format="json").status_code
        == 400
    )
    prelim = rita.post(f"{url}sign/", {"kind": "preliminary", "version": 2}, format="json")
    assert prelim.status_code == 200
    assert prelim.json()["status"] == "preliminary"
    again = rita.post(f"{url}sign/", {"kind": "preliminary", "version": 3}, format="json")
    assert again.status_code == 409
    sam = _api(desk, desk.reading.sam)
    assert (
        sam.post(
            f"{url}second-read/", {"outcome": "maybe", "version": 3}, format="json"
        ).status_code
        == 400
    )
    final = sam.post(f"{url}second-read/", {"outcome": "agree", "version": 3}, format="json")
    assert final.status_code == 200, final.content
    body = final.json()
    assert body["status"] == "final"
    assert body["signed_by"] == desk.reading.sam.pk
    assert len(body["content_sha256"]) == 64
    # After final: PATCH refused, an addendum is the way, and the original stays.
    assert sam.patch(
        url, {"version": body["version"], "content": {"impression": "x"}}, format="json"
    ).status_code in (403, 409)
    assert (
        rita.patch(
            url, {"version": body["version"], "content": {"impression": "x"}}, format="json"
        ).status_code
        == 409
    )
    added = sam.post(f"{url}addenda/", {"text": "Also: old rib fracture."}, format="json")
    assert added.status_code == 201
    shown = _api(desk, desk.world.alice, desk.world.clinic).get(url).json()
    assert shown["content"]["impression"] == CHEST["impression"]
    assert [a["text"] for a in shown["addenda"]] == ["Also: old rib fracture."]


def test_a_draft_is_seen_only_by_the_reading_institution(desk):
    report = _start(desk)
    url = f"/api/v1/reports/{report['id']}/"
    alice = _api(desk, desk.world.alice, desk.world.clinic)
    assert alice.get(url).status_code == 404
    assert alice.get("/api/v1/reports/").json()["results"] == []
    assert _api(desk, desk.reading.rob).get(url).status_code == 200  # a colleague at the reader
    services.report_sign(
        scope=desk.rita(),
        report_id=report["id"],
        kind="preliminary",
        version=services.report_autosave(
            scope=desk.rita(), report_id=report["id"], version=1, content=CHEST
        ).version,
    )
    assert alice.get(url).status_code == 200  # the source clinic sees it once signed
    carl = _api(desk, desk.world.carl, desk.world.commission)
    assert carl.get(url).status_code == 404  # the commission sees figures, not cases
    oscar = _api(desk, desk.world.oscar, desk.world.outsider)
    assert oscar.get(url).status_code == 404
    assert oscar.post(f"{url}addenda/", {"text": "x"}, format="json").status_code in (403, 404)


def test_the_admin_shows_a_final_report_but_cannot_change_it(
    desk, django_capture_on_commit_callbacks
):
    report = _start(desk)
    draft = Report.objects.get(pk=report["id"])
    services.report_autosave(scope=desk.rita(), report_id=draft.pk, version=1, content=CHEST)
    draft.refresh_from_db()
    services.report_sign(
        scope=desk.rita(), report_id=draft.pk, kind="preliminary", version=draft.version
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.report_second_read(
            scope=desk.sam(), report_id=draft.pk, outcome="agree", version=draft.version + 1
        )
    root = User.objects.create_superuser("root", "root@example.org", "pw-root-123")
    client = Client()
    client.force_login(root)
    page = f"/admin/reporting/report/{draft.pk}/change/"
    assert client.get(page).status_code == 200
    posted = client.post(page, {"content": '{"impression": "changed"}', "status": "draft"})
    assert posted.status_code == 403
    deleted = client.post(f"/admin/reporting/report/{draft.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 403
    draft.refresh_from_db()
    assert draft.status == ReportStatus.FINAL
    assert draft.content["impression"] == CHEST["impression"]


def test_the_drafting_page_starts_a_draft_and_shows_the_form(desk):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(desk.world.rita)
    page = f"/reports/{desk.chest.pk}/edit/"
    first = client.get(page)
    assert first.status_code == 200
    assert "CT chest" in first.content.decode()  # the template picker, fitting one first
    started = client.post(page, {"template": desk.ct_chest.pk})
    assert started.status_code == 302
    shown = client.get(page).content.decode()
    assert 'data-key="lung_rads"' in shown
    assert "report-config" in shown
    assert "4A Suspicious" in shown
    refused = Client(HTTP_ACCEPT_LANGUAGE="en")
    refused.force_login(desk.reading.rob)
    assert (
        refused.post(f"/reports/{desk.mr.pk}/edit/", {"template": desk.mr_knee.pk}).status_code
        == 409
    )  # not rob's claim
    alice = Client()
    alice.force_login(desk.world.alice)
    assert alice.get(page).status_code == 403
