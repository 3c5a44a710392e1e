"""A body naming a field the operation does not take is refused: 400, the one error shape,
a sentence naming the field, before any other check and before anything is written.

The walks discover the operations from the OpenAPI document the code generates, so a new
write operation is checked the day it appears: its request serializer must derive from
tenants.serializers.StrictSerializer (or StrictModelSerializer), and an action without a
body must be decorated with `takes_no_body`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import translation
from drf_spectacular.generators import SchemaGenerator
from knox.models import AuthToken
from rest_framework import serializers
from rest_framework.test import APIClient

from consultations.models import MdtSession
from referrals.models import Referral, Study
from reporting.models import Report
from tenants.models import GatewayCredential
from tenants.serializers import NAMES_SHOWN, StrictSerializer, unknown_fields_message

from .conftest import World, api_client_for
from .referral_support import reading_setup, study_at
from .reporting_support import CHEST, Desk, desk_make
from .schema_fuzz_support import DEMO_ROLES, fuzz_world_build

pytestmark = pytest.mark.django_db

UNKNOWN = "unknown_field_xyz"
WRITE_METHODS = ("post", "put", "patch")


@pytest.fixture(autouse=True)
def _no_rate_limit_counts_of_earlier_tests() -> None:
    cache.clear()  # the login throttle counts per address; this Redis db is this suite's


@functools.cache
def openapi() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def write_operations() -> list[tuple[str, str]]:
    """(method, path) of every operation of the document that may carry a body."""
    return [
        (method.upper(), path)
        for path, item in openapi()["paths"].items()
        for method in item
        if method in WRITE_METHODS
    ]


def _refused_for_unknown(answer: Any) -> str:
    """'' if `answer` is the refusal of UNKNOWN, else what is wrong with it."""
    if answer.status_code != 400:
        return f"{answer.status_code} {answer.content[:200]!r}"
    body = answer.json()
    if body.get("code") != "unknown_field" or UNKNOWN not in body.get("detail", ""):
        return f"400 but not the unknown-field refusal: {body}"
    if UNKNOWN not in body.get("fields", {}):
        return f"400 without the field in `fields`: {body}"
    return ""


# --- Every write operation, from the schema -------------------------------------------------


def _object_schemas(node: Any, seen: set[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The object schemas (with named properties) a request body is made of, nested ones too."""
    if isinstance(node, list):
        for item in node:
            yield from _object_schemas(item, seen)
        return
    if not isinstance(node, dict):
        return
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            seen.add(name)
            resolved = openapi()["components"]["schemas"][name]
            if "properties" in resolved:
                yield name, resolved
            yield from _object_schemas(resolved, seen)
        return
    for key in ("properties", "items", "allOf", "oneOf", "anyOf"):
        inner = node.get(key)
        yield from _object_schemas(
            list(inner.values()) if key == "properties" and isinstance(inner, dict) else inner,
            seen,
        )


def test_every_request_body_of_the_schema_refuses_unknown_fields():
    """tenants/openapi.py writes `additionalProperties: false` for strict serializers only."""
    operations = write_operations()
    assert len(operations) >= 25, operations  # the walk found the API
    lax = []
    for method, path in operations:
        body = openapi()["paths"][path][method.lower()].get("requestBody")
        if body is None:
            continue
        for media in body["content"].values():
            for name, schema in _object_schemas(media["schema"], set()):
                if schema.get("additionalProperties") is not False:
                    lax.append(f"{method} {path}: {name}")
    assert not lax, (
        "request bodies that accept unknown fields (derive their serializers from "
        "tenants.serializers.StrictSerializer):\n" + "\n".join(sorted(set(lax)))
    )


def _listed_keys(client: APIClient, url: str, param: str) -> list[str]:
    """Up to three keys (`param`, else `id`) of what the caller sees in the listing at `url`
    (a page or a plain list)."""
    if param == "study_uid":
        # No listing of studies under /api/: one study of each institution of the world.
        uids = dict(Study.objects.order_by("-pk").values_list("institution_id", "study_uid"))
        return sorted(uids.values())
    answer = client.get(url)
    if answer.status_code != 200 or "json" not in answer.get("Content-Type", ""):
        return []
    rows = answer.json()
    rows = rows.get("results", []) if isinstance(rows, dict) else rows
    keys = [row.get(param, row.get("id")) for row in rows if isinstance(row, dict)]
    return [str(key) for key in keys if key is not None][:3]


def _addresses(client: APIClient, path: str) -> list[str]:
    """`path` with its parameters filled in from what the caller can list, left to right
    (`/reports/{id}/share-links/{link_id}/...`: a report of /reports/, then one of its links)."""
    addresses = [path]
    for param in re.findall(r"\{(\w+)\}", path):
        filled = []
        for address in addresses:
            listing = address[: address.index("{" + param + "}")]
            filled += [
                address.replace("{" + param + "}", key, 1)
                for key in _listed_keys(client, listing, param)
            ]
        addresses = filled
    return addresses


def test_every_write_operation_refuses_a_body_of_only_an_unknown_field():
    """As every demo user (and signed out) on the demo hub with real data behind every route:
    the first caller that gets past 401/403/404 must be refused for the unknown field, so
    the refusal comes before any other check of the body and nothing is written."""
    tokens = fuzz_world_build()
    callers = {"anonymous": APIClient(HTTP_ACCEPT_LANGUAGE="en")}
    for name in DEMO_ROLES:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[name]}", HTTP_ACCEPT_LANGUAGE="en")
        callers[name] = client
    referrals_before = Referral.objects.count()
    failures, reached = [], []
    for method, path in write_operations():
        outcome = ""
        for who, client in callers.items():
            for address in _addresses(client, path):
                answer = client.generic(method, address, f'{{"{UNKNOWN}": 1}}', "application/json")
                if answer.status_code in (401, 403, 404):
                    continue
                outcome = f"{who}: " + (_refused_for_unknown(answer) or "refused")
                break
            if outcome:
                break
        if not outcome:
            failures.append(
                f"{method} {path}: no demo user got past 401/403/404 (give "
                "tests/schema_fuzz_support.py an object this operation can reach)"
            )
        elif not outcome.endswith(": refused"):
            failures.append(f"{method} {path}: {outcome}")
        else:
            reached.append(path)
    assert not failures, "\n".join(failures)
    assert Referral.objects.count() == referrals_before
    assert "/api/v1/worklist/next/" in reached
    assert "/api/v1/auth/login/" in reached


# --- A valid body plus one unknown field ----------------------------------------------------


@pytest.fixture
def desk(world, django_capture_on_commit_callbacks) -> Desk:
    return desk_make(world, django_capture_on_commit_callbacks)


def test_a_valid_referral_request_with_an_unknown_field_is_refused_and_not_made(world: World):
    reading_setup(world)
    alice = api_client_for(world.alice)
    body = {"study": study_at(world.clinic).pk, "priority": "urgent"}
    answer = alice.post("/api/v1/referrals/", {**body, UNKNOWN: 1}, format="json")
    assert answer.json() == {
        "detail": f'Unknown field "{UNKNOWN}": this request takes study, kind, priority, '
        "clinical_question.",
        "code": "unknown_field",
        "fields": {UNKNOWN: ["Not a field of this request."]},
    }
    assert answer.status_code == 400
    assert not Referral.objects.exists()
    assert alice.post("/api/v1/referrals/", body, format="json").status_code == 201


def test_a_misspelt_field_is_refused_not_defaulted(world: World):
    reading_setup(world)
    answer = api_client_for(world.alice).post(
        "/api/v1/referrals/",
        {"study": study_at(world.clinic).pk, "priorty": "stat", "questoin": "?"},
        format="json",
    )
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith('Unknown fields "priorty", "questoin": ')
    assert set(answer.json()["fields"]) == {"priorty", "questoin"}
    assert not Referral.objects.exists()


def test_the_unknown_field_is_refused_before_the_other_fields_are_checked(world: World):
    answer = api_client_for(world.alice).post(
        "/api/v1/referrals/", {"priority": "whenever", UNKNOWN: 1}, format="json"
    )
    assert _refused_for_unknown(answer) == ""
    assert set(answer.json()["fields"]) == {UNKNOWN}


def test_an_autosave_with_an_unknown_field_changes_nothing(desk: Desk):
    rita = api_client_for(desk.world.rita, desk.world.reader)
    started = rita.post(
        "/api/v1/reports/", {"referral": desk.chest.pk, "template": desk.ct_chest.pk}, format="json"
    )
    assert started.status_code == 201, started.content
    url = f"/api/v1/reports/{started.json()['id']}/"
    answer = rita.patch(url, {"version": 1, "content": CHEST, UNKNOWN: 1}, format="json")
    assert _refused_for_unknown(answer) == ""
    assert Report.objects.get().version == 1
    assert rita.patch(url, {"version": 1, "content": CHEST}, format="json").status_code == 200


def test_an_unknown_field_inside_a_nested_object_is_named_by_its_path(world: World):
    rita = api_client_for(world.rita, world.reader)
    body = {
        "title": "MDT",
        "starts_at": "2026-01-01T08:00:00Z",
        "ends_at": "2026-01-01T09:00:00Z",
        "cases": [{"study": study_at(world.reader).pk, UNKNOWN: 1}],
    }
    answer = rita.post("/api/v1/mdt-sessions/", body, format="json")
    assert answer.status_code == 400
    assert answer.json()["code"] == "unknown_field"
    assert set(answer.json()["fields"]) == {"cases.0", f"cases.0.{UNKNOWN}"}
    assert UNKNOWN in answer.json()["detail"]
    assert not MdtSession.objects.exists()
    check = api_client_for(world.alice).post(
        "/api/v1/uploads/check/",
        {"instances": [{"sop_instance_uid": "1.2.3", "sha256": "0" * 64, "size": 9}]},
        format="json",
    )
    assert check.status_code == 400
    assert set(check.json()["fields"]) == {"instances.0", "instances.0.size"}


def test_an_action_without_a_body_refuses_a_field_and_takes_an_empty_object(desk: Desk):
    rita = api_client_for(desk.world.rita, desk.world.reader)
    url = f"/api/v1/referrals/{desk.chest.pk}/open/"
    answer = rita.post(url, {UNKNOWN: 1}, format="json")
    assert _refused_for_unknown(answer) == ""
    assert answer.json()["detail"] == f'Unknown field "{UNKNOWN}": this request takes no fields.'
    assert Referral.objects.get(pk=desk.chest.pk).opened_at is None
    assert rita.post(url, {}, format="json").status_code == 200
    assert Referral.objects.get(pk=desk.chest.pk).opened_at is not None


def test_the_token_login_refuses_an_unknown_field_before_checking_the_password(world: World):
    world.alice.set_password("correct horse")
    world.alice.save()
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    good = {"username": "alice", "password": "correct horse"}
    for body_format in ("json", "multipart"):
        answer = client.post("/api/v1/auth/login/", {**good, UNKNOWN: 1}, format=body_format)
        assert _refused_for_unknown(answer) == "", body_format
    assert client.post("/api/v1/auth/login/", good, format="json").status_code == 201


def test_a_read_only_field_sent_back_is_ignored_as_documented(world: World):
    adam = api_client_for(world.adam)
    answer = adam.post(
        "/api/v1/gateway-credentials/",
        {"label": "CT room", "id": 999, "key_id": "gw_mine", "created_at": "2020-01-01"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    credential = GatewayCredential.objects.get()
    assert credential.key_id != "gw_mine"
    assert credential.created_at.year != 2020


def test_unknown_query_parameters_are_still_ignored(world: World):
    reading_setup(world)
    rita = api_client_for(world.rita)
    assert rita.get("/api/v1/referrals/", {UNKNOWN: "1", "lang": "en"}).status_code == 200
    assert rita.get("/api/v1/worklist/", {UNKNOWN: "1"}).status_code == 200


def test_the_refusal_speaks_the_callers_language(world: World):
    _instance, token = AuthToken.objects.create(user=world.alice)
    alice = APIClient()
    alice.credentials(HTTP_AUTHORIZATION=f"Token {token}", HTTP_ACCEPT_LANGUAGE="zh-hans")
    answer = alice.post("/api/v1/referrals/", {UNKNOWN: 1}, format="json")
    assert answer.status_code == 400
    assert UNKNOWN in answer.json()["detail"]
    assert "Unknown" not in answer.json()["detail"]


def test_a_program_that_names_no_language_reads_english(world: World):
    _instance, token = AuthToken.objects.create(user=world.alice)
    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    answer = script.post("/api/v1/referrals/", {UNKNOWN: 1}, format="json")
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith(f'Unknown field "{UNKNOWN}": ')


# --- The mechanism ---------------------------------------------------------------------------


class _Probe(StrictSerializer):
    name = serializers.CharField()
    made = serializers.DateTimeField(read_only=True)


def test_many_unknown_names_are_shown_cut_short():
    invented = {f"k{n}{'x' * 100}": n for n in range(NAMES_SHOWN + 5)}
    form = _Probe(data={"name": "a", **invented})
    assert not form.is_valid()
    assert len(form.errors) == NAMES_SHOWN + 1  # the sentence, and each name shown
    with translation.override("en"):
        sentence = unknown_fields_message(list(invented), ["name"])
    assert sentence.endswith(", …: this request takes name.")
    assert sentence.count('"') == 2 * NAMES_SHOWN
    assert "x" * 100 not in sentence


def test_a_key_named_like_the_refusals_own_keys_is_still_named():
    form = _Probe(data={"name": "a", "detail": 1, "made": "2020-01-01T00:00:00Z"})
    assert not form.is_valid()
    assert list(form.errors) == ["non_field_errors"]
    assert '"detail"' in str(form.errors["non_field_errors"][0])
    assert _Probe(data={"name": "a", "made": "2020-01-01T00:00:00Z"}).is_valid()
