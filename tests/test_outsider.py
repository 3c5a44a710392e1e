"""The outsider (oscar/otto, another alliance) gets 404 on every object of the north.

`test_every_endpoint_has_an_outsider_case` walks the URL map, so a new endpoint without a
case here fails the suite until someone writes one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from knox.models import AuthToken

from tenants.audit import AuditCode, audit_record
from tenants.models import GatewayCredential, Membership
from tenants.services import notification_send

from .conftest import World, api_client_for

pytestmark = pytest.mark.django_db

Case = Callable[[World], None]
CASES: dict[str, Case] = {}

# Endpoints that hold no tenant-owned object (public, or only about the caller).
NO_TENANT_OBJECT = {
    "healthz", "login", "logout", "set_language", "javascript-catalog", "api-schema",
    "api-docs", "api:api-root", "api:me", "api:token-login", "api:gateway-whoami",
}


def case(*names: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        for name in names:
            CASES[name] = fn
        return fn
    return register


def web(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def _api_404(world: World, user, path: str, method: str = "get") -> None:
    response = getattr(api_client_for(user), method)(path)
    assert response.status_code == 404, (path, response.status_code)


@case("api:institution-detail", "api:institution-list")
def _institutions(world: World) -> None:
    _api_404(world, world.oscar, f"/api/v1/institutions/{world.clinic.pk}/")
    codes = [i["code"] for i in api_client_for(world.oscar).get(
        "/api/v1/institutions/").json()["results"]]
    assert "north-clinic" not in codes
    assert "south-clinic" in codes


@case("api:alliance-detail", "api:alliance-list")
def _alliances(world: World) -> None:
    _api_404(world, world.oscar, f"/api/v1/alliances/{world.north.pk}/")
    listed = api_client_for(world.oscar).get("/api/v1/alliances/").json()["results"]
    assert [a["code"] for a in listed] == ["south"]


@case("api:membership-detail", "api:membership-list")
def _memberships(world: World) -> None:
    alices = Membership.objects.get(user=world.alice)
    _api_404(world, world.oscar, f"/api/v1/memberships/{alices.pk}/")
    _api_404(world, world.otto, f"/api/v1/memberships/{alices.pk}/", "delete")
    alices.refresh_from_db()
    assert alices.revoked_at is None
    listed = api_client_for(world.otto).get("/api/v1/memberships/").json()["results"]
    assert {m["username"] for m in listed} == {"oscar", "otto"}


@case("api:gateway-credential-detail", "api:gateway-credential-list")
def _gateway_credentials(world: World) -> None:
    north = GatewayCredential.objects.create(institution=world.clinic, label="n",
                                             key_id="gw_north", secret_hash="0" * 64)
    _api_404(world, world.otto, f"/api/v1/gateway-credentials/{north.pk}/")
    _api_404(world, world.otto, f"/api/v1/gateway-credentials/{north.pk}/", "delete")
    north.refresh_from_db()
    assert north.revoked_at is None
    assert api_client_for(world.otto).get(
        "/api/v1/gateway-credentials/").json()["results"] == []


@case("api:audit-event-detail", "api:audit-event-list")
def _audit_events(world: World) -> None:
    event = audit_record(event=AuditCode.QUERY, user=world.alice, institution=world.clinic)
    _api_404(world, world.otto, f"/api/v1/audit-events/{event.pk}/")
    listed = api_client_for(world.otto).get("/api/v1/audit-events/").json()["results"]
    assert event.pk not in [e["id"] for e in listed]


@case("api:notification-detail", "api:notification-list", "api:notification-read")
def _notifications(world: World) -> None:
    note = notification_send(user=world.alice, kind="k", title="for alice")
    _api_404(world, world.oscar, f"/api/v1/notifications/{note.pk}/")
    _api_404(world, world.oscar, f"/api/v1/notifications/{note.pk}/read/", "post")
    note.refresh_from_db()
    assert note.read_at is None
    assert api_client_for(world.oscar).get("/api/v1/notifications/").json()["results"] == []


@case("api:token-detail", "api:token-list")
def _tokens(world: World) -> None:
    AuthToken.objects.create(user=world.alice)
    key = AuthToken.objects.get(user=world.alice).token_key
    _api_404(world, world.oscar, f"/api/v1/auth/tokens/{key}/", "delete")
    assert AuthToken.objects.filter(token_key=key).exists()


@case("institution-detail", "institution-list")
def _web_institutions(world: World) -> None:
    client = web(world.oscar)
    theirs = client.get(f"/institutions/{world.clinic.pk}/")
    missing = client.get("/institutions/999999999/")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.content == missing.content  # nothing tells "exists" from "not yours"
    assert b"Beishan" not in client.get("/institutions/").content


@case("home")
def _web_home(world: World) -> None:
    page = web(world.oscar).get("/").content.decode()
    assert "Nanling Village Clinic" in page
    assert "Beishan" not in page
    assert "North" not in page


@case("notification-list")
def _web_notifications(world: World) -> None:
    notification_send(user=world.alice, kind="k", title="secret for alice")
    assert b"secret for alice" not in web(world.oscar).get("/notifications/").content


@case("audit-list")
def _web_audit(world: World) -> None:
    audit_record(event=AuditCode.QUERY, user=world.alice, institution=world.clinic,
                 object_id="north-only-object")
    assert web(world.otto).get("/audit/").status_code == 200
    assert b"north-only-object" not in web(world.otto).get("/audit/").content


@case("switch-institution")
def _web_switch(world: World) -> None:
    client = web(world.oscar)
    client.post("/accounts/institution/", {"institution": world.clinic.pk})
    assert "Beishan" not in client.get("/").content.decode()
    assert client.session.get("active_institution_id") in (None, world.outsider.pk)


@case("dicomweb:studies", "dicomweb:study")
def _dicomweb_store(world: World) -> None:
    import io

    import pydicom

    from referrals.models import Study

    from .dicom_support import ct_files, multipart_related

    north_parts = ct_files(2)
    body, ctype = multipart_related(north_parts[:1])
    api_client_for(world.alice).post("/dicomweb/studies", data=body, content_type=ctype)
    north = Study.objects.get(institution=world.clinic)
    # The outsider sends an instance into the north's study UID: it lands in the outsider's
    # own archive and the north's study is untouched.
    body, ctype = multipart_related(north_parts[1:])
    sent = api_client_for(world.oscar).post(f"/dicomweb/studies/{north.study_uid}", data=body,
                                            content_type=ctype)
    assert sent.status_code == 200
    north.refresh_from_db()
    assert north.num_instances == 1
    theirs = Study.objects.get(institution=world.outsider)
    assert theirs.study_uid == pydicom.dcmread(io.BytesIO(north_parts[1])).StudyInstanceUID


def _named_routes() -> set[str]:
    names: set[str] = set()

    def walk(patterns, namespace: str = "") -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                if p.app_name == "admin":
                    continue  # Django admin: staff only, tested by Django itself
                ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
                walk(p.url_patterns, ns)
            elif isinstance(p, URLPattern) and p.name:
                names.add(namespace + p.name)

    walk(get_resolver().url_patterns)
    return names


def test_every_endpoint_has_an_outsider_case():
    routes = _named_routes()
    assert {"api:institution-detail", "institution-detail", "home"} <= routes  # the walk works
    uncovered = routes - set(CASES) - NO_TENANT_OBJECT
    assert not uncovered, f"write an outsider case for: {sorted(uncovered)}"


@case("api:upload-check", "study-upload")
def _upload(world: World) -> None:
    import hashlib
    import io

    import pydicom

    from .dicom_support import ct_files, multipart_related

    north_part = ct_files(1)[0]
    body, ctype = multipart_related([north_part])
    api_client_for(world.alice).post("/dicomweb/studies", data=body, content_type=ctype)
    asked = {"sop_instance_uid": pydicom.dcmread(io.BytesIO(north_part)).SOPInstanceUID,
             "sha256": hashlib.sha256(north_part).hexdigest()}
    # The north's instance is "missing" for the outsider: nothing tells it exists.
    answer = api_client_for(world.oscar).post("/api/v1/uploads/check/", {"instances": [asked]},
                                              format="json")
    assert answer.json()["instances"] == [{"sop_instance_uid": asked["sop_instance_uid"],
                                           "status": "missing"}]
    page = web(world.oscar).get("/studies/upload/").content.decode()
    assert "Nanling Village Clinic" in page
    assert "Beishan" not in page
    assert web(world.otto).get("/studies/upload/").status_code == 403


@case("dicomweb:frames", "dicomweb:frame-rendered", "dicomweb:frame-thumbnail",
      "dicomweb:instance-rendered", "dicomweb:instance-thumbnail", "dicomweb:series-thumbnail",
      "dicomweb:study-thumbnail")
def _dicomweb_pixels(world: World) -> None:
    from referrals.models import Instance

    from .dicom_support import ct_files, multipart_related

    body, ctype = multipart_related(ct_files(1))
    api_client_for(world.alice).post("/dicomweb/studies", data=body, content_type=ctype)
    north = Instance.objects.select_related("study", "series").get(institution=world.clinic)
    study = f"/dicomweb/studies/{north.study.study_uid}"
    series = f"{study}/series/{north.series.series_uid}"
    instance = f"{series}/instances/{north.sop_uid}"
    urls = [f"{instance}/frames/1", f"{instance}/frames/1/rendered",
            f"{instance}/frames/1/thumbnail", f"{instance}/rendered", f"{instance}/thumbnail",
            f"{series}/thumbnail", f"{study}/thumbnail"]
    alice, oscar = api_client_for(world.alice), api_client_for(world.oscar)
    for url in urls:
        assert alice.get(url).status_code == 200, url  # the URL is right: only access differs
        _api_404(world, world.oscar, url)
        missing = oscar.get(url.replace(north.sop_uid, "1.2.3").replace(
            north.series.series_uid, "1.2.4").replace(north.study.study_uid, "1.2.5"))
        assert missing.status_code == 404
        assert missing.content == oscar.get(url).content


@case("study-list", "study-detail")
def _web_studies(world: World) -> None:
    from referrals.models import Study

    from .dicom_support import ct_files, multipart_related

    body, ctype = multipart_related(ct_files(1))
    api_client_for(world.alice).post("/dicomweb/studies", data=body, content_type=ctype)
    north = Study.objects.get(institution=world.clinic)
    client = web(world.oscar)
    listed = client.get("/studies/?q=Wang").content.decode()
    assert "Xiaoming" not in listed  # the query itself is echoed in the search box
    assert f"/studies/{north.pk}/" not in listed
    theirs = client.get(f"/studies/{north.pk}/")
    missing = client.get("/studies/999999999/")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.content == missing.content
    assert web(world.alice).get(f"/studies/{north.pk}/").status_code == 200


@case("dicomweb:study-metadata", "dicomweb:study-series", "dicomweb:study-instances",
      "dicomweb:series", "dicomweb:series-metadata", "dicomweb:series-instances",
      "dicomweb:instance", "dicomweb:instance-metadata", "dicomweb:bulkdata",
      "dicomweb:all-series", "dicomweb:all-instances")
def _dicomweb_query_and_retrieve(world: World) -> None:
    from referrals.models import Instance

    from .dicom_support import ct_files, multipart_related

    body, ctype = multipart_related(ct_files(1))
    api_client_for(world.alice).post("/dicomweb/studies", data=body, content_type=ctype)
    north = Instance.objects.select_related("study", "series").get(institution=world.clinic)
    study = f"/dicomweb/studies/{north.study.study_uid}"
    series = f"{study}/series/{north.series.series_uid}"
    instance = f"{series}/instances/{north.sop_uid}"
    alice, oscar = api_client_for(world.alice), api_client_for(world.oscar)
    # Searches answer the outsider with an empty list, whatever it names.
    searches = ["/dicomweb/studies", f"/dicomweb/studies?StudyInstanceUID={north.study.study_uid}",
                f"{study}/series", f"{study}/instances", f"{series}/instances",
                "/dicomweb/series", f"/dicomweb/instances?SOPInstanceUID={north.sop_uid}"]
    for url in searches:
        assert len(alice.get(url).json()) == 1, url  # the URL is right: only access differs
        answer = oscar.get(url)
        assert answer.status_code == 200, url
        assert answer.json() == [], url
    # Retrieval answers 404, byte for byte the same as for a UID that does not exist.
    retrievals = [study, f"{study}/metadata", series, f"{series}/metadata", instance,
                  f"{instance}/metadata", f"{instance}/bulk/7FE00010"]
    for url in retrievals:
        assert alice.get(url).status_code == 200, url
        theirs = oscar.get(url)
        missing = oscar.get(url.replace(north.study.study_uid, "1.2.5"))
        assert theirs.status_code == missing.status_code == 404, url
        assert theirs.content == missing.content


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Parametrized at collection, after the whole module ran: every @case is included,
    # wherever in the file it was registered.
    if metafunc.function.__name__ == "test_outsider_sees_nothing":
        metafunc.parametrize("name", sorted(set(CASES)))


def test_outsider_sees_nothing(world, name):
    CASES[name](world)


# --- Referrals (issue 4) ---------------------------------------------------------------------


def _north_referral(world: World):
    from referrals import services
    from tenants import access

    from .referral_support import reading_setup, study_at

    reading_setup(world)
    study = study_at(world.clinic, modality="MR", body_part="BRAIN")
    referral, _ = services.referral_request(
        scope=access.scope_for_user(world.alice, institution_id=world.clinic.pk), study=study)
    services.referral_route(referral.pk)
    return referral


@case("referral-detail")
def _referral_pages(world: World) -> None:
    referral = _north_referral(world)
    response = web(world.oscar).get(f"/referrals/{referral.pk}/")
    assert response.status_code == 404
    assert web(world.alice).get(f"/referrals/{referral.pk}/").status_code == 200
