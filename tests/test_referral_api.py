"""The referral and worklist API: requests, claims, returns, errors, sorting and filters."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from referrals.models import Referral, ReferralStatus

from .conftest import api_client_for
from .referral_support import reading_setup, study_at

pytestmark = pytest.mark.django_db


@pytest.fixture
def reading(world):
    return reading_setup(world)


@pytest.fixture
def send(world, reading, django_capture_on_commit_callbacks):
    """alice asks for a read through the API; routing (queued on commit) runs inline."""
    alice = api_client_for(world.alice)

    def post(study, **fields):
        with django_capture_on_commit_callbacks(execute=True):
            response = alice.post(
                "/api/v1/referrals/", {"study": study.pk, **fields}, format="json"
            )
        assert response.status_code in (200, 201), response.content
        return response

    return post


def api(user):
    return api_client_for(user)


def test_a_clinic_requests_a_read_once_and_it_is_routed(world, reading, send, settings):
    settings.LANGUAGE_CODE = "en"  # the hub writes routing explanations in its language
    study = study_at(world.clinic, modality="MR", body_part="BRAIN")
    first = send(study, priority="urgent", clinical_question="headache, exclude bleed")
    assert first.status_code == 201
    assert first.json()["status"] == "requested"  # routing runs after the request commits
    body = api(world.alice).get(f"/api/v1/referrals/{first.json()['id']}/").json()
    assert body["status"] == "routed"
    assert body["priority"] == "urgent"
    assert body["pool"]["id"] == reading.general.pk
    assert body["study"]["patient_name"] == "Wang^Xiaoming"
    assert body["band"] == "ok"
    assert 0 < body["time_left_seconds"] <= 120 * 60
    assert "rule 20" in body["routing_explanation"]
    again = send(study, priority="urgent")
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    assert Referral.objects.count() == 1


def test_request_refusals_are_4xx_with_a_code(world, reading):
    alice = api(world.alice)
    assert alice.post("/api/v1/referrals/", {"study": 999999}, format="json").json() == {
        "detail": "No such study.",
        "code": "bad_study",
    }
    assert alice.post("/api/v1/referrals/", {"study": "x"}, format="json").status_code == 400
    study = study_at(world.clinic)
    bad = alice.post(
        "/api/v1/referrals/", {"study": study.pk, "priority": "whenever"}, format="json"
    )
    assert bad.status_code == 400
    assert "priority" in bad.json()["fields"]
    # A hospital administrator is not a referring role.
    assert (
        api(world.adam).post("/api/v1/referrals/", {"study": study.pk}, format="json").status_code
        == 403
    )
    # The reader hospital cannot refer a study it does not hold (it sees none of it).
    assert (
        api(world.rita)
        .post("/api/v1/referrals/", {"study": study.pk}, format="json")
        .json()["code"]
        == "bad_study"
    )
    assert not Referral.objects.exists()


def test_claim_conflict_names_the_claimer(world, reading, send):
    referral_id = send(study_at(world.clinic, modality="MR", body_part="BRAIN")).json()["id"]
    claimed = api(world.rita).post(f"/api/v1/referrals/{referral_id}/claim/")
    assert claimed.status_code == 200
    assert claimed.json()["status"] == "claimed"
    assert claimed.json()["claimed_by"]["name"] == world.rita.display_name
    # Claiming again is harmless for the holder.
    assert api(world.rita).post(f"/api/v1/referrals/{referral_id}/claim/").status_code == 200
    conflict = api(reading.rob).post(f"/api/v1/referrals/{referral_id}/claim/")
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "already_claimed"
    assert world.rita.display_name in conflict.json()["detail"]


def test_roles_that_cannot_act_get_403(world, reading, send):
    referral_id = send(study_at(world.clinic, modality="MR", body_part="BRAIN")).json()["id"]
    # The clinic technician sees the referral but is no radiologist.
    refused = api(world.alice).post(f"/api/v1/referrals/{referral_id}/claim/")
    assert refused.status_code == 403
    assert set(refused.json()) == {"detail", "code"}
    # A hospital administrator holds no role that acts on referrals at all.
    assert api(world.adam).post(f"/api/v1/referrals/{referral_id}/cancel/").status_code == 403
    # The reader may not cancel the clinic's request; the clinic may not release a claim.
    assert api(world.rita).post(f"/api/v1/referrals/{referral_id}/cancel/").status_code == 403
    api(world.rita).post(f"/api/v1/referrals/{referral_id}/claim/")
    assert api(world.alice).post(f"/api/v1/referrals/{referral_id}/release/").status_code == 403
    # Only the claimer opens or releases.
    assert api(reading.rob).post(f"/api/v1/referrals/{referral_id}/open/").status_code == 403
    assert api(reading.rob).post(f"/api/v1/referrals/{referral_id}/release/").status_code == 403
    # The commission sees figures, not cases, and has no worklist.
    assert api(world.carl).get(f"/api/v1/referrals/{referral_id}/").status_code == 404
    assert api(world.carl).get("/api/v1/worklist/").status_code == 403


def test_open_release_return_and_the_timeline(world, reading, send):
    referral_id = send(study_at(world.clinic, modality="MR", body_part="BRAIN")).json()["id"]
    rita = api(world.rita)
    rita.post(f"/api/v1/referrals/{referral_id}/claim/")
    opened = rita.post(f"/api/v1/referrals/{referral_id}/open/")
    assert opened.status_code == 200
    assert opened.json()["opened_at"]
    released = rita.post(
        f"/api/v1/referrals/{referral_id}/release/", {"reason": "off shift"}, format="json"
    )
    assert released.status_code == 200
    assert released.json()["status"] == "routed"
    assert released.json()["claimed_by"] is None
    # A second release: the case is no longer claimed (by rita or anyone).
    again = rita.post(f"/api/v1/referrals/{referral_id}/release/")
    assert again.status_code == 403
    bad = rita.post(f"/api/v1/referrals/{referral_id}/return/", {"reason": "ugly"}, format="json")
    assert bad.status_code == 400
    assert "reason" in bad.json()["fields"]
    other = rita.post(
        f"/api/v1/referrals/{referral_id}/return/", {"reason": "other"}, format="json"
    )
    assert other.status_code == 400
    assert other.json()["code"] == "comment_required"
    returned = rita.post(
        f"/api/v1/referrals/{referral_id}/return/",
        {"reason": "motion_artefact", "comment": "repeat the scan"},
        format="json",
    )
    assert returned.status_code == 200
    assert returned.json()["status"] == "returned"
    assert returned.json()["return_reason"] == "motion_artefact"
    # Returning twice: the state machine refuses (409), the row is unchanged.
    twice = rita.post(
        f"/api/v1/referrals/{referral_id}/return/", {"reason": "motion_artefact"}, format="json"
    )
    assert twice.status_code == 409
    assert twice.json()["code"] == "not_allowed_now"
    events = api(world.alice).get(f"/api/v1/referrals/{referral_id}/events/").json()
    assert [e["action"] for e in events] == [
        "create",
        "route",
        "claim",
        "open",
        "release",
        "return",
    ]
    assert events[2]["actor"]["name"] == world.rita.display_name
    assert events[-1]["data"] == {"reason": "motion_artefact"}


def test_the_clinic_cancels_and_acknowledges(world, reading, send):
    referral_id = send(study_at(world.clinic, modality="MR", body_part="BRAIN")).json()["id"]
    alice = api(world.alice)
    ack = alice.post(f"/api/v1/referrals/{referral_id}/acknowledge/")
    assert ack.status_code == 409  # nothing delivered yet
    cancelled = alice.post(
        f"/api/v1/referrals/{referral_id}/cancel/", {"reason": "duplicate"}, format="json"
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert api(world.rita).post(f"/api/v1/referrals/{referral_id}/claim/").status_code == 409


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/referrals/abc/",
        "/api/v1/referrals/99999999/",
        "/api/v1/referrals/-1/",
        "/api/v1/referrals/abc/events/",
        "/api/v1/referrals/99999999999999999999999/events/",
    ],
)
def test_malformed_or_unknown_ids_read_404(world, reading, path):
    assert api(world.rita).get(path).status_code == 404


@pytest.mark.parametrize("verb", ["claim", "open", "release", "return", "cancel", "acknowledge"])
@pytest.mark.parametrize("pk", ["abc", "99999999", "1e3", "99999999999999999999999"])
def test_malformed_or_unknown_ids_act_404(world, reading, verb, pk):
    # claim, open and acknowledge take no body (a field would be refused as unknown).
    body = {"reason": "motion_artefact"} if verb in ("release", "return", "cancel") else {}
    response = api(world.rita).post(f"/api/v1/referrals/{pk}/{verb}/", body, format="json")
    assert response.status_code == 404, response.content


def _route_many(world, send):
    """Five cases: MR to the general pool (rita, rob), CT chest to the thoracic one (rita)."""
    made = {}
    for name, modality, body, priority in [
        ("mr_routine", "MR", "BRAIN", "routine"),
        ("mr_stat", "MR", "BRAIN", "stat"),
        ("mr_urgent", "MR", "KNEE", "urgent"),
        ("ct_urgent", "CT", "CHEST", "urgent"),
        ("mr_urgent_late", "MR", "SPINE", "urgent"),
    ]:
        made[name] = send(
            study_at(world.clinic, modality=modality, body_part=body), priority=priority
        ).json()["id"]
    # The later urgent MR is due sooner: time left decides between equal priorities.
    soon = timezone.now() + dt.timedelta(minutes=5)
    Referral.objects.filter(pk=made["mr_urgent_late"]).update(
        deadline_at=soon, warn_at=soon - dt.timedelta(minutes=30)
    )
    # Nobody is proposed: every case waits in its pool.
    Referral.objects.update(assigned_to=None)
    return made


def test_pool_worklist_is_sorted_by_priority_then_time_left_and_filters(world, reading, send):
    made = _route_many(world, send)
    rob = api(reading.rob)
    rows = rob.get("/api/v1/worklist/?view=pool").json()["results"]
    assert [r["id"] for r in rows] == [
        made["mr_stat"],
        made["mr_urgent_late"],
        made["mr_urgent"],
        made["mr_routine"],
    ]
    assert rows[1]["band"] == "warning"  # past its warn point, 5 minutes left
    assert rows[0]["time_left_seconds"] <= 30 * 60
    # rita reads in both pools, so the CT chest case is on her pool list too.
    rita_rows = api(world.rita).get("/api/v1/worklist/?view=pool").json()["results"]
    assert [r["id"] for r in rita_rows] == [
        made["mr_stat"],
        made["mr_urgent_late"],
        made["mr_urgent"],
        made["ct_urgent"],
        made["mr_routine"],
    ]

    def ids(q):
        return [
            r["id"]
            for r in api(world.rita).get(f"/api/v1/worklist/?view=pool&{q}").json()["results"]
        ]

    assert ids("modality=CT") == [made["ct_urgent"]]
    assert ids("priority=urgent") == [made["mr_urgent_late"], made["mr_urgent"], made["ct_urgent"]]
    assert ids(f"site={world.clinic.pk}&limit=2") == [made["mr_stat"], made["mr_urgent_late"]]
    assert ids(f"site={world.reader.pk}") == []
    assert ids("status=claimed") == []


def test_mine_holds_my_claims_and_what_was_proposed_to_me(world, reading, send):
    made = _route_many(world, send)
    Referral.objects.filter(pk=made["mr_routine"]).update(assigned_to=world.rita)
    rita = api(world.rita)
    rita.post(f"/api/v1/referrals/{made['ct_urgent']}/claim/")
    api(reading.rob).post(f"/api/v1/referrals/{made['mr_stat']}/claim/")
    rows = rita.get("/api/v1/worklist/").json()["results"]
    assert [r["id"] for r in rows] == [made["ct_urgent"], made["mr_routine"]]
    assert [r["proposed_to_me"] for r in rows] == [False, True]
    assert rows[0]["claimed_by"]["name"] == world.rita.display_name
    assert [r["id"] for r in rita.get("/api/v1/worklist/?status=claimed").json()["results"]] == [
        made["ct_urgent"]
    ]
    # rob's claim left the pool list; it is on rob's own list.
    pool = [r["id"] for r in rita.get("/api/v1/worklist/?view=pool").json()["results"]]
    assert made["mr_stat"] not in pool
    assert made["ct_urgent"] not in pool
    assert [
        r["id"] for r in api(reading.rob).get("/api/v1/worklist/?view=mine").json()["results"]
    ] == [made["mr_stat"]]


@pytest.mark.parametrize(
    "query",
    [
        "view=everything",
        "priority=soon",
        "status=reported",
        "site=abc",
        "site=-4",
        "limit=many",
        "modality=C*T",
        "site=99999999999999999999999999",
    ],
)
def test_bad_worklist_filters_answer_400(world, reading, query):
    response = api(world.rita).get(f"/api/v1/worklist/?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "bad_filter"


def test_next_case_claims_the_most_urgent_then_answers_204(world, reading, send):
    made = _route_many(world, send)
    rob = api(reading.rob)
    first = rob.post("/api/v1/worklist/next/")
    assert first.status_code == 200
    assert first.json()["id"] == made["mr_stat"]
    assert first.json()["status"] == "claimed"
    assert rob.post("/api/v1/worklist/next/").json()["id"] == made["mr_urgent_late"]
    assert rob.post("/api/v1/worklist/next/").json()["id"] == made["mr_urgent"]
    assert rob.post("/api/v1/worklist/next/").json()["id"] == made["mr_routine"]
    # The CT chest case is in the thoracic pool, which rob does not read for.
    assert rob.post("/api/v1/worklist/next/").status_code == 204
    assert Referral.objects.get(pk=made["ct_urgent"]).status == ReferralStatus.ROUTED
    assert api(world.alice).post("/api/v1/worklist/next/").status_code == 403


def test_the_sending_clinic_lists_its_referrals(world, reading, send):
    made = _route_many(world, send)
    listed = api(world.alice).get("/api/v1/referrals/?side=sent").json()
    assert listed["count"] == len(made)
    assert api(world.alice).get("/api/v1/referrals/?side=received").json()["count"] == 0
    assert api(world.rita).get("/api/v1/referrals/?side=received").json()["count"] == len(made)
    assert api(world.alice).get("/api/v1/referrals/?status=nope").status_code == 400


def test_the_worklist_rows_are_what_the_schema_documents(world, reading, send):
    """The list builds rows directly for speed; they must equal WorklistRowSerializer's."""
    from referrals.workflow.api import WorklistRowSerializer, worklist_rows
    from referrals.worklists import selectors as worklist_selectors
    from tenants import access

    made = _route_many(world, send)
    api(world.rita).post(f"/api/v1/referrals/{made['mr_urgent']}/claim/")
    scope = access.scope_for_user(world.rita, institution_id=world.reader.pk)
    now = worklist_selectors.now()
    for view in ("mine", "pool"):
        filters = worklist_selectors.WorklistFilters.parse({"view": view})
        cases = worklist_selectors.worklist(scope=scope, filters=filters)
        rows = list(cases)
        assert rows
        documented = WorklistRowSerializer(
            rows, many=True, context={"now": now, "user": world.rita}
        ).data
        assert worklist_rows(cases, now=now, user=world.rita) == [dict(r) for r in documented]
