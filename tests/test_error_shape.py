"""Every API refusal has one JSON shape: {"detail", "code"} and, when fields were refused,
"fields" (tenants/errors.py), whoever raised it."""

from __future__ import annotations

import pytest

from .conftest import api_client_for
from .referral_support import reading_setup, study_at

pytestmark = pytest.mark.django_db


def _shape(answer, status: int) -> dict:
    assert answer.status_code == status, answer.content
    body = answer.json()
    assert set(body) >= {"detail", "code"}, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert isinstance(body["code"], str)
    return body


def test_refusals_of_every_kind_share_the_shape(world):
    reading_setup(world)
    alice = api_client_for(world.alice)
    # A service's refusal (ApplicationError).
    service = _shape(alice.post("/api/v1/referrals/", {"study": 999999}, format="json"), 400)
    assert service["code"] == "bad_study"
    # A serializer's refusal of fields: the first reason is the detail.
    fields = _shape(
        alice.post(
            "/api/v1/referrals/",
            {"study": study_at(world.clinic).pk, "priority": "whenever"},
            format="json",
        ),
        400,
    )
    assert fields["code"] == "invalid_choice"
    assert fields["detail"] == fields["fields"]["priority"][0]
    # A role the caller lacks, and something that is not theirs.
    forbidden = _shape(
        alice.post("/api/v1/memberships/", {"username": "x", "role": "mdt_member"}), 403
    )
    assert forbidden["code"] == "permission_denied"
    assert _shape(alice.get("/api/v1/referrals/999999/"), 404)["code"] == "not_found"
    # Django's own refusal raised in a service (ValidationError) is answered alike.
    adam = api_client_for(world.adam)
    unknown_role = _shape(
        adam.post("/api/v1/memberships/", {"username": "alice", "role": "clinic_technician"}), 400
    )
    assert "fields" in unknown_role
    # No credentials at all.
    from rest_framework.test import APIClient

    assert _shape(APIClient().get("/api/v1/referrals/"), 401)["code"] == "not_authenticated"


def test_nested_refusals_are_flat_fields_each_a_list_of_sentences(world):
    """A list of objects refused item by item names each item's field (`cases.1.study`),
    so `fields` keeps the documented shape {field: [sentence, ...]}."""
    rita = api_client_for(world.rita, world.reader)
    body = {
        "title": "MDT",
        "starts_at": "2026-01-01T08:00:00Z",
        "ends_at": "2026-01-01T09:00:00Z",
        "cases": [{"study": 1}, "not an object", {"study": "x"}],
    }
    refused = _shape(rita.post("/api/v1/mdt-sessions/", body, format="json"), 400)
    assert set(refused["fields"]) == {"cases.1", "cases.2.study"}
    assert all(
        isinstance(reasons, list) and all(isinstance(r, str) for r in reasons)
        for reasons in refused["fields"].values()
    )
    assert refused["detail"] == refused["fields"]["cases.1"][0]


def test_a_nul_in_the_address_is_refused_in_the_shape_too(world):
    refused = _shape(api_client_for(world.rita).get("/api/v1/referrals/", {"q\x00": "1"}), 400)
    assert refused["code"] == "nul_character"
