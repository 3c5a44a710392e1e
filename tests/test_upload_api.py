"""The upload check (/api/v1/uploads/check/), the upload page's gate, and the vendored assets."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import pydicom
import pytest
from django.core.management import call_command
from django.test import Client, override_settings
from rest_framework.test import APIClient

from alliance.frontend.checks import vendor_packages_installed
from referrals.archive.upload import UPLOAD_CHECK_MAX
from tenants.access import scope_for_user
from tenants.models import Role
from tenants.services import gateway_credential_create

from .conftest import api_client_for
from .dicom_support import ct_files, multipart_related
from .factories import MembershipFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/uploads/check/"


def stored_parts(client: APIClient, count: int = 2) -> list[bytes]:
    parts = ct_files(count)
    body, content_type = multipart_related(parts)
    assert client.post("/dicomweb/studies", data=body, content_type=content_type).status_code == 200
    return parts


def candidate(part: bytes) -> dict[str, str]:
    return {
        "sop_instance_uid": pydicom.dcmread(io.BytesIO(part)).SOPInstanceUID,
        "sha256": hashlib.sha256(part).hexdigest(),
    }


def ask(client: APIClient, instances: object):
    return client.post(URL, {"instances": instances}, format="json")


def statuses(response) -> dict[str, str]:
    assert response.status_code == 200, response.content
    return {i["sop_instance_uid"]: i["status"] for i in response.json()["instances"]}


def test_stored_instances_are_told_apart_from_missing_ones(world):
    alice = api_client_for(world.alice)
    stored = stored_parts(alice, 2)
    missing = ct_files(1)
    asked = [candidate(p) for p in [stored[0], *missing, stored[1]]]
    response = ask(alice, asked)
    # In the order asked, so the page can match answers to files.
    assert [i["sop_instance_uid"] for i in response.json()["instances"]] == [
        a["sop_instance_uid"] for a in asked
    ]
    assert list(statuses(response).values()) == ["stored", "missing", "stored"]


def test_other_bytes_under_a_stored_uid_are_a_conflict_only_by_their_data_set(world):
    alice = api_client_for(world.alice)
    part = stored_parts(alice, 1)[0]
    asked = candidate(part)
    other = dict(asked, sha256=hashlib.sha256(b"something else").hexdigest())
    upper = dict(asked, sha256=asked["sha256"].upper())  # hex case does not matter
    # Other file bytes may be the same data set under other file meta: the hub judges it
    # when the file arrives, so without the data set's digest it is "missing".
    answers = ask(alice, [other]).json()["instances"]
    assert answers == [{"sop_instance_uid": asked["sop_instance_uid"], "status": "missing"}]
    another_data_set = dict(other, dataset_sha256=hashlib.sha256(b"another").hexdigest())
    answers = ask(alice, [another_data_set]).json()["instances"]
    assert answers == [{"sop_instance_uid": asked["sop_instance_uid"], "status": "conflict"}]
    assert statuses(ask(alice, [upper])) == {asked["sop_instance_uid"]: "stored"}


def test_another_institutions_instances_are_never_reported_present(world):
    north_parts = stored_parts(api_client_for(world.alice), 2)
    asked = [candidate(p) for p in north_parts]
    # Oscar (south clinic) holds nothing; the same UIDs and bytes are "missing" for him.
    assert set(statuses(ask(api_client_for(world.oscar), asked)).values()) == {"missing"}
    # Rita reads at the north's reader hospital: still not *her* institution's archive.
    assert set(statuses(ask(api_client_for(world.rita), asked)).values()) == {"missing"}
    # The same person acting for another institution gets that institution's answer.
    MembershipFactory(user=world.alice, institution=world.reader, role=Role.RADIOLOGIST)
    as_reader = api_client_for(world.alice, institution=world.reader)
    assert set(statuses(ask(as_reader, asked)).values()) == {"missing"}
    as_clinic = api_client_for(world.alice, institution=world.clinic)
    assert set(statuses(ask(as_clinic, asked)).values()) == {"stored"}


def test_the_list_is_capped(world):
    alice = api_client_for(world.alice)
    one = candidate(ct_files(1)[0])
    at_cap = ask(alice, [one] * UPLOAD_CHECK_MAX)
    assert at_cap.status_code == 200
    over = ask(alice, [one] * (UPLOAD_CHECK_MAX + 1))
    assert over.status_code == 400
    assert str(UPLOAD_CHECK_MAX) in over.json()["fields"]["instances"][0]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"instances": []}, "instances"),
        ({"instances": "1.2.3"}, "instances"),
        ({}, "instances"),
        ({"instances": ["1.2.3"]}, "instances"),
        ({"instances": [{"sop_instance_uid": "1.2.3"}]}, "sha256"),
        ({"instances": [{"sop_instance_uid": "1.2.3", "sha256": "ab" * 31}]}, "sha256"),
        ({"instances": [{"sop_instance_uid": "1.2.3", "sha256": "zz" * 32}]}, "sha256"),
        (
            {"instances": [{"sop_instance_uid": "../../etc", "sha256": "ab" * 32}]},
            "sop_instance_uid",
        ),
        ({"instances": [{"sop_instance_uid": "1.02.3", "sha256": "ab" * 32}]}, "sop_instance_uid"),
        ({"instances": [{"sop_instance_uid": "1." * 40, "sha256": "ab" * 32}]}, "sop_instance_uid"),
        (
            {"instances": [{"sop_instance_uid": "<script>", "sha256": "ab" * 32}]},
            "sop_instance_uid",
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field(world, payload, field):
    response = api_client_for(world.alice).post(URL, payload, format="json")
    assert response.status_code == 400
    assert field in str(response.json())


def test_a_body_that_is_not_json_is_a_400(world):
    response = api_client_for(world.alice).post(
        URL, data=b"\xff\x00{", content_type="application/json"
    )
    assert response.status_code == 400


def test_only_json_is_read(world):
    response = api_client_for(world.alice).post(URL, {"instances": "x"}, format="multipart")
    assert response.status_code == 415


def test_anonymous_callers_are_refused(world):
    response = APIClient().post(URL, {"instances": []}, format="json")
    assert response.status_code == 401


def test_roles_that_do_not_send_images_are_refused(world):
    one = [candidate(ct_files(1)[0])]
    for user in (world.adam, world.carl):  # hospital admin, commission viewer
        assert ask(api_client_for(user), one).status_code == 403


def test_a_gateway_credential_is_refused(world):
    """Gateways send by STOW-RS with their own credential; this endpoint is for people."""
    credential, secret = gateway_credential_create(
        scope=scope_for_user(world.adam), label="edge", calling_ae_titles=[]
    )
    client = APIClient()
    basic = base64.b64encode(f"{credential.key_id}:{secret}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {basic}")
    assert ask(client, [candidate(ct_files(1)[0])]).status_code == 401


def test_a_browser_session_needs_the_csrf_token(world):
    client = Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world.alice)
    body = {"instances": [candidate(ct_files(1)[0])]}
    refused = client.post(URL, body, content_type="application/json")
    assert refused.status_code == 403
    page = client.get("/studies/upload/")
    token = page.cookies["csrftoken"].value
    allowed = client.post(URL, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert allowed.status_code == 200


def test_the_page_sends_by_stow_rs_over_its_session_with_the_csrf_token(world):
    """The page posts STOW-RS bodies with the session cookie: the CSRF check must neither
    refuse a request carrying the token nor swallow the body before the view reads it."""
    client = Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world.alice)
    token = client.get("/studies/upload/").cookies["csrftoken"].value
    parts = ct_files(2)
    body, content_type = multipart_related(parts)
    without = client.post("/dicomweb/studies", data=body, content_type=content_type)
    assert without.status_code == 403
    sent = client.post(
        "/dicomweb/studies",
        data=body,
        content_type=content_type,
        HTTP_X_CSRFTOKEN=token,
        HTTP_X_INSTITUTION=str(world.clinic.pk),
    )
    assert sent.status_code == 200, sent.content
    assert len(sent.json()["00081199"]["Value"]) == 2
    assert statuses(ask(api_client_for(world.alice), [candidate(p) for p in parts])) == {
        candidate(p)["sop_instance_uid"]: "stored" for p in parts
    }


# --- The page's gate ------------------------------------------------------------------------


def web(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def test_the_page_is_offered_to_senders_only(world):
    page = web(world.alice).get("/studies/upload/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="upload-folder"' in html
    assert "webkitdirectory" in html
    assert "/static/vendor/dicom-parser/dicomParser.min.js" in html
    assert "Beishan Township Health Centre" in html
    assert 'href="/studies/upload/"' in html  # in the navigation
    for user in (world.adam, world.carl):
        assert web(user).get("/studies/upload/").status_code == 403
        assert 'href="/studies/upload/"' not in web(user).get("/").content.decode()
    assert Client().get("/studies/upload/").status_code == 302  # to the sign-in page


def test_the_page_speaks_chinese_by_default(world):
    client = Client()
    client.force_login(world.alice)
    html = client.get("/studies/upload/").content.decode()
    assert '<html lang="zh-hans">' in html
    assert "upload-strings" in html


# --- Vendored front-end packages ------------------------------------------------------------


def test_the_vendored_parser_is_installed_and_served(world):
    call_command("check", "--fail-level", "ERROR")
    assert vendor_packages_installed() == []
    from django.contrib.staticfiles import finders

    found = finders.find("vendor/dicom-parser/dicomParser.min.js")
    assert found
    assert Path(found).stat().st_size > 10_000
    # Only the package's dist is exposed, not its package.json or sources.
    assert finders.find("vendor/dicom-parser/package.json") is None


def test_a_missing_install_is_a_startup_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with override_settings(
        STATICFILES_DIRS=[
            ("vendor/dicom-parser", tmp_path / "missing"),
            ("vendor/charts", empty),
            tmp_path,  # a plain folder, not a vendored package: not this check's business
        ]
    ):
        errors = vendor_packages_installed()
    assert [e.id for e in errors] == ["alliance.E001", "alliance.E001"]
    assert "/static/vendor/dicom-parser/" in errors[0].msg
    assert "npm ci" in errors[0].hint
