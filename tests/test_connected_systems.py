"""Connected systems: a hospital PACS or viewer reading its institution's studies over DICOMweb
with a long-lived credential (Basic or Bearer); revocation, expiry, scope, audit, console."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone, translation

from referrals.models import Study
from tenants.access import scope_for_user
from tenants.audit import AuditCode
from tenants.connected_systems import (
    bearer_token,
    connected_system_create,
    connected_system_revoke,
    secret_digest,
)
from tenants.models import AuditEvent, ConnectedSystem, ConnectedSystemKind

from .conftest import World
from .test_qido import OBRIEN, WANG, ZHANG, series, store

pytestmark = pytest.mark.django_db

DICOM_JSON = "application/dicom+json"


@pytest.fixture
def archive(world: World, tmp_path: Path) -> dict[str, str]:
    """Three studies at the north clinic; the same patient ID's study at the south clinic."""
    uids = {}
    for name, institution, patient in [
        ("wang", world.clinic, WANG),
        ("zhang", world.clinic, ZHANG),
        ("obrien", world.clinic, OBRIEN),
        ("south", world.outsider, WANG),
    ]:
        datasets = series(patient, count=1)
        store(institution, datasets, tmp_path)
        uids[name] = str(datasets[0].StudyInstanceUID)
    return uids


def basic(key_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()


def connect(world: World, **options: object) -> tuple[ConnectedSystem, str]:
    return connected_system_create(
        scope=scope_for_user(world.adam),
        name="Radiology PACS",
        **options,  # type: ignore[arg-type]
    )


def qido(authorization: str, path: str = "/dicomweb/studies", **params: str):
    return Client().get(path, params, HTTP_AUTHORIZATION=authorization, HTTP_ACCEPT=DICOM_JSON)


def study_uids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {item["0020000D"]["Value"][0] for item in response.json()}


def clinic_study_uids(world: World) -> set[str]:
    return set(Study.objects.filter(institution=world.clinic).values_list("study_uid", flat=True))


def test_a_pacs_reads_its_institutions_studies_only_with_basic_or_bearer(world, archive):
    system, secret = connect(world)
    assert system.key_id.startswith("cs_")
    assert system.secret_hash == secret_digest(secret)
    assert secret not in system.secret_hash
    expected = {archive["wang"], archive["zhang"], archive["obrien"]}
    assert clinic_study_uids(world) == expected

    assert study_uids(qido(basic(system.key_id, secret))) == expected
    assert study_uids(qido(f"Bearer {bearer_token(system, secret)}")) == expected
    # The other alliance's study, by UID, at every level: not found.
    south = archive["south"]
    assert study_uids(qido(basic(system.key_id, secret), StudyInstanceUID=south)) == set()
    for path in (f"/dicomweb/studies/{south}", f"/dicomweb/studies/{south}/metadata"):
        answer = Client().get(
            path, HTTP_AUTHORIZATION=basic(system.key_id, secret), HTTP_ACCEPT="*/*"
        )
        assert answer.status_code == 404, path
    # Its own study: retrieved.
    own = Client().get(
        f"/dicomweb/studies/{archive['wang']}/metadata",
        HTTP_AUTHORIZATION=basic(system.key_id, secret),
        HTTP_ACCEPT=DICOM_JSON,
    )
    assert own.status_code == 200
    metadata = json.loads(b"".join(own.streaming_content))  # type: ignore[attr-defined]
    assert {i["0020000D"]["Value"][0] for i in metadata} == {archive["wang"]}


def test_its_reads_are_audited_with_the_system_as_actor(world, archive):
    system, secret = connect(world)
    study_uids(qido(basic(system.key_id, secret)))
    Client().get(
        f"/dicomweb/studies/{archive['wang']}",
        HTTP_AUTHORIZATION=basic(system.key_id, secret),
        HTTP_ACCEPT='multipart/related; type="application/dicom"',
    )
    rows = AuditEvent.objects.filter(username=f"{system.key_id} (Radiology PACS)")
    events = {row.event for row in rows}
    assert {AuditCode.QUERY, AuditCode.IMAGES_VIEWED} <= events
    for row in rows.filter(event__in=[AuditCode.QUERY, AuditCode.IMAGES_VIEWED]):
        assert row.institution == world.clinic
        assert row.role == "connected_system"
        assert row.user_id_value is None
    assert rows.get(event=AuditCode.IMAGES_VIEWED).study_uid == archive["wang"]


def test_revoked_is_refused_at_once_and_expired_too(world, archive):
    system, secret = connect(world)
    header = basic(system.key_id, secret)
    assert qido(header).status_code == 200
    connected_system_revoke(scope=scope_for_user(world.adam), system=system)
    with translation.override("en"):
        refused = qido(header)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    assert refused["WWW-Authenticate"].startswith("Basic")
    assert qido(f"Bearer {bearer_token(system, secret)}").status_code == 401

    dated, dated_secret = connect(world, expires_at=timezone.now() + dt.timedelta(days=30))
    assert qido(basic(dated.key_id, dated_secret)).status_code == 200
    ConnectedSystem.objects.filter(pk=dated.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert qido(basic(dated.key_id, dated_secret)).status_code == 401


def test_a_wrong_secret_or_unknown_key_is_401(world, archive):
    system, secret = connect(world)
    assert qido(basic(system.key_id, secret + "x")).status_code == 401
    assert qido(basic("cs_0000000000000000", secret)).status_code == 401
    assert qido(f"Bearer {system.key_id}.{secret[:-1]}").status_code == 401
    assert qido("Bearer cs_garbage").status_code == 401


def test_it_may_not_store_unless_allowed_nor_use_the_rest_of_the_api(world, tmp_path: Path):
    from .ingest_support import minimal_instance

    reader, reader_secret = connect(world)
    stow = Client().post(
        "/dicomweb/studies",
        data=b"",
        content_type='multipart/related; type="application/dicom"; boundary=x',
        HTTP_AUTHORIZATION=basic(reader.key_id, reader_secret),
    )
    assert stow.status_code == 403
    writer, writer_secret = connect(world, may_store=True)
    body = b"--x\r\nContent-Type: application/dicom\r\n\r\n" + minimal_instance() + b"\r\n--x--\r\n"
    stored = Client().post(
        "/dicomweb/studies",
        data=body,
        content_type='multipart/related; type="application/dicom"; boundary=x',
        HTTP_AUTHORIZATION=basic(writer.key_id, writer_secret),
        HTTP_ACCEPT=DICOM_JSON,
    )
    assert stored.status_code == 200, stored.content
    assert Study.objects.filter(institution=world.clinic).count() == 1
    # The hub's own API is for people (and gateways): a system's credential opens none of it.
    for path in ("/api/v1/institutions/", "/api/v1/memberships/", "/api/v1/me/"):
        answer = Client().get(path, HTTP_AUTHORIZATION=basic(writer.key_id, writer_secret))
        assert answer.status_code in (401, 403), path


def test_last_used_is_written_at_most_once_a_minute(world, archive):
    system, secret = connect(world)
    assert system.last_used_at is None
    qido(basic(system.key_id, secret))
    system.refresh_from_db()
    first = system.last_used_at
    assert first is not None
    recent = first - dt.timedelta(seconds=30)
    ConnectedSystem.objects.filter(pk=system.pk).update(last_used_at=recent)
    qido(basic(system.key_id, secret))
    system.refresh_from_db()
    assert system.last_used_at == recent  # within the minute: no write
    stale = first - dt.timedelta(minutes=2)
    ConnectedSystem.objects.filter(pk=system.pk).update(last_used_at=stale)
    qido(basic(system.key_id, secret))
    system.refresh_from_db()
    assert system.last_used_at is not None
    assert system.last_used_at > stale


def test_it_sees_what_a_grant_gives_its_institution(world, tmp_path):
    """The same scope as a member of the institution: a study granted to the reading
    hospital (a referral) is readable by the reading hospital's PACS."""
    from referrals.models import StudyGrant

    store(world.clinic, series(WANG, count=1), tmp_path)
    study = Study.objects.get(institution=world.clinic)
    system, secret = connected_system_create(
        scope=scope_for_user(_admin_of(world.reader)), name="Central PACS"
    )
    assert study_uids(qido(basic(system.key_id, secret))) == set()
    StudyGrant.objects.create(
        study=study, institution=world.reader, source=StudyGrant.Source.REFERRAL, source_id=1
    )
    assert study_uids(qido(basic(system.key_id, secret))) == {study.study_uid}


def _admin_of(institution):
    from tenants.models import Role

    from .conftest import _person

    return _person("hilda", "希尔达", "Hilda", institution, Role.HOSPITAL_ADMIN)


# --- The administration console -----------------------------------------------------------


def admin_web(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def test_the_hospital_admin_connects_a_system_and_sees_its_secret_once(world):
    client = admin_web(world.adam)
    assert "Connected systems" in client.get("/console/").content.decode()
    created = client.post(
        "/console/connected-systems/",
        {"name": "Orthanc PACS", "kind": ConnectedSystemKind.PACS, "expires_on": ""},
    )
    assert created.status_code == 200
    page = created.content.decode()
    system = ConnectedSystem.objects.get(name="Orthanc PACS")
    assert system.institution == world.clinic
    assert system.created_by == world.adam
    assert system.expires_at is None
    assert not system.may_store
    secret = page.split('id="new-secret-value">', 1)[1].split("<", 1)[0]
    assert secret_digest(secret) == system.secret_hash
    assert f"&quot;Username&quot;: &quot;{system.key_id}&quot;" in page
    assert "/dicomweb/" in page
    again = client.get("/console/connected-systems/").content.decode()
    assert system.key_id in again
    assert secret not in again
    audit = AuditEvent.objects.get(event=AuditCode.CREDENTIAL_CHANGE, object_id=system.key_id)
    assert audit.object_type == "connected_system"

    revoked = client.post(f"/console/connected-systems/{system.pk}/revoke/", follow=True)
    assert "Orthanc PACS is revoked" in revoked.content.decode()
    system.refresh_from_db()
    assert system.revoked_at is not None
    assert system.revoked_by == world.adam


def test_the_form_refuses_a_past_expiry_and_a_missing_name(world):
    client = admin_web(world.adam)
    past = (timezone.localdate() - dt.timedelta(days=1)).isoformat()
    answer = client.post(
        "/console/connected-systems/", {"name": "PACS", "kind": "pacs", "expires_on": past}
    )
    assert answer.status_code == 400
    assert "The expiry date must be in the future." in answer.content.decode()
    assert client.post("/console/connected-systems/", {"kind": "pacs"}).status_code == 400
    assert not ConnectedSystem.objects.exists()
    future = (timezone.localdate() + dt.timedelta(days=365)).isoformat()
    client.post(
        "/console/connected-systems/",
        {"name": "Viewer", "kind": "viewer", "expires_on": future, "may_store": "on"},
    )
    system = ConnectedSystem.objects.get()
    assert system.may_store
    assert system.kind == "viewer"
    assert timezone.localtime(system.expires_at).date().isoformat() == future


def test_only_the_hospital_admin_manages_connected_systems(world):
    assert admin_web(world.alice).get("/console/connected-systems/").status_code == 403
    assert admin_web(world.rita).get("/console/connected-systems/").status_code == 403
    system, _secret = connect(world)
    assert (
        admin_web(world.alice).post(f"/console/connected-systems/{system.pk}/revoke/").status_code
        == 403
    )
    system.refresh_from_db()
    assert system.revoked_at is None
