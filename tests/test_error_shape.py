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
