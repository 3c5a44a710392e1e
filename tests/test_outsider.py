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
    "healthz",
    "login",
    "logout",
    "password-change",  # only ever the caller's own password
    "password-change-done",
    "set_language",
    "javascript-catalog",
    "api-schema",
    "api-docs",
    "api:api-root",
    "api:me",
    "api:token-login",
    "api:gateway-whoami",
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
    codes = [
        i["code"]
        for i in api_client_for(world.oscar).get("/api/v1/institutions/").json()["results"]
    ]
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
    north = GatewayCredential.objects.create(
        institution=world.clinic, label="n", key_id="gw_north", secret_hash="0" * 64
    )
    _api_404(world, world.otto, f"/api/v1/gateway-credentials/{north.pk}/")
    _api_404(world, world.otto, f"/api/v1/gateway-credentials/{north.pk}/", "delete")
    north.refresh_from_db()
    assert north.revoked_at is None
    assert api_client_for(world.otto).get("/api/v1/gateway-credentials/").json()["results"] == []


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
    audit_record(
        event=AuditCode.QUERY,
        user=world.alice,
        institution=world.clinic,
        object_id="north-only-object",
    )
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
    sent = api_client_for(world.oscar).post(
        f"/dicomweb/studies/{north.study_uid}", data=body, content_type=ctype
    )
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
    asked = {
        "sop_instance_uid": pydicom.dcmread(io.BytesIO(north_part)).SOPInstanceUID,
        "sha256": hashlib.sha256(north_part).hexdigest(),
    }
    # The north's instance is "missing" for the outsider: nothing tells it exists.
    answer = api_client_for(world.oscar).post(
        "/api/v1/uploads/check/", {"instances": [asked]}, format="json"
    )
    assert answer.json()["instances"] == [
        {"sop_instance_uid": asked["sop_instance_uid"], "status": "missing"}
    ]
    page = web(world.oscar).get("/studies/upload/").content.decode()
    assert "Nanling Village Clinic" in page
    assert "Beishan" not in page
    assert web(world.otto).get("/studies/upload/").status_code == 403


@case(
    "dicomweb:frames",
    "dicomweb:frame-rendered",
    "dicomweb:frame-thumbnail",
    "dicomweb:instance-rendered",
    "dicomweb:instance-thumbnail",
    "dicomweb:series-thumbnail",
    "dicomweb:study-thumbnail",
)
def _dicomweb_pixels(world: World) -> None:
    from referrals.models import Instance

    from .dicom_support import ct_files, multipart_related

    body, ctype = multipart_related(ct_files(1))
    api_client_for(world.alice).post("/dicomweb/studies", data=body, content_type=ctype)
    north = Instance.objects.select_related("study", "series").get(institution=world.clinic)
    study = f"/dicomweb/studies/{north.study.study_uid}"
    series = f"{study}/series/{north.series.series_uid}"
    instance = f"{series}/instances/{north.sop_uid}"
    urls = [
        f"{instance}/frames/1",
        f"{instance}/frames/1/rendered",
        f"{instance}/frames/1/thumbnail",
        f"{instance}/rendered",
        f"{instance}/thumbnail",
        f"{series}/thumbnail",
        f"{study}/thumbnail",
    ]
    alice, oscar = api_client_for(world.alice), api_client_for(world.oscar)
    for url in urls:
        assert alice.get(url).status_code == 200, url  # the URL is right: only access differs
        _api_404(world, world.oscar, url)
        missing = oscar.get(
            url.replace(north.sop_uid, "1.2.3")
            .replace(north.series.series_uid, "1.2.4")
            .replace(north.study.study_uid, "1.2.5")
        )
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


@case(
    "dicomweb:study-metadata",
    "dicomweb:study-series",
    "dicomweb:study-instances",
    "dicomweb:series",
    "dicomweb:series-metadata",
    "dicomweb:series-instances",
    "dicomweb:instance",
    "dicomweb:instance-metadata",
    "dicomweb:bulkdata",
    "dicomweb:all-series",
    "dicomweb:all-instances",
)
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
    searches = [
        "/dicomweb/studies",
        f"/dicomweb/studies?StudyInstanceUID={north.study.study_uid}",
        f"{study}/series",
        f"{study}/instances",
        f"{series}/instances",
        "/dicomweb/series",
        f"/dicomweb/instances?SOPInstanceUID={north.sop_uid}",
    ]
    for url in searches:
        assert len(alice.get(url).json()) == 1, url  # the URL is right: only access differs
        answer = oscar.get(url)
        assert answer.status_code == 200, url
        assert answer.json() == [], url
    # Retrieval answers 404, byte for byte the same as for a UID that does not exist.
    retrievals = [
        study,
        f"{study}/metadata",
        series,
        f"{series}/metadata",
        instance,
        f"{instance}/metadata",
        f"{instance}/bulk/7FE00010",
    ]
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


# --- Referrals ---------------------------------------------------------------------


def _north_referral(world: World):
    from referrals.workflow import services
    from tenants import access

    from .referral_support import reading_setup, study_at

    reading_setup(world)
    study = study_at(world.clinic, modality="MR", body_part="BRAIN")
    referral, _ = services.referral_request(
        scope=access.scope_for_user(world.alice, institution_id=world.clinic.pk), study=study
    )
    services.referral_route(referral.pk)
    return referral


# Referral pages of the clinic's side: send, list, detail, cancel, acknowledge.
@case(
    "referral-detail", "referral-list", "referral-send", "referral-cancel", "referral-acknowledge"
)
def _referral_pages(world: World) -> None:
    from referrals.models import Referral, Study

    referral = _north_referral(world)
    oscar, alice = web(world.oscar), web(world.alice)
    theirs = oscar.get(f"/referrals/{referral.pk}/")
    missing = oscar.get("/referrals/999999999/")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.content == missing.content
    assert alice.get(f"/referrals/{referral.pk}/").status_code == 200
    # The list shows only the outsider's own requests.
    listed = oscar.get("/referrals/").content.decode()
    assert f"/referrals/{referral.pk}/" not in listed
    assert f"/referrals/{referral.pk}/" in alice.get("/referrals/").content.decode()
    # Sending a north study, cancelling or acknowledging a north referral: 404, nothing done.
    form = {"kind": "consultation", "priority": "stat", "clinical_question": "x"}
    assert oscar.get(f"/studies/{referral.study_id}/refer/").status_code == 404
    assert oscar.post(f"/studies/{referral.study_id}/refer/", form).status_code == 404
    for step in ("cancel", "acknowledge"):
        assert oscar.post(f"/referrals/{referral.pk}/{step}/").status_code == 404
    referral.refresh_from_db()
    assert referral.status == "routed"
    assert Referral.objects.filter(study=referral.study).count() == 1
    assert Study.objects.filter(institution=world.outsider).count() == 0


# --- Reporting ---------------------------------------------------------------------


def _north_report(world: World):
    """A signed-preliminary report on a north referral (visible to both north sides)."""
    from alliance.models import PoolMember
    from referrals.workflow import services as referral_services
    from reporting import services
    from reporting.models import ReportTemplate
    from reporting.seed import templates_seed
    from tenants import access

    from .referral_support import reading_setup, study_at

    reading = reading_setup(world)
    PoolMember.objects.create(pool=reading.general, user=reading.sam, capacity=10)
    templates_seed(alliance=world.north)
    alice = access.scope_for_user(world.alice, institution_id=world.clinic.pk)
    sam = access.scope_for_user(reading.sam, institution_id=world.reader.pk)
    referral, _ = referral_services.referral_request(
        scope=alice, study=study_at(world.clinic, modality="MR", body_part="KNEE")
    )
    referral_services.referral_route(referral.pk)
    referral_services.referral_claim(scope=sam, referral_id=referral.pk)
    template = ReportTemplate.objects.get(alliance=world.north, code="mr-knee")
    report = services.report_create(scope=sam, referral_id=referral.pk, template_id=template.pk)
    report = services.report_autosave(
        scope=sam,
        report_id=report.pk,
        version=report.version,
        content={"findings": "north secret", "impression": "ok"},
    )
    return services.report_sign(
        scope=sam, report_id=report.pk, kind="preliminary", version=report.version
    ), reading


@case("api:report-template-list", "api:report-template-detail", "api:report-template-versions")
def _report_templates(world: World) -> None:
    from reporting.models import ReportTemplate
    from reporting.seed import templates_seed

    templates_seed(alliance=world.north)
    north = ReportTemplate.objects.filter(alliance=world.north).first()
    assert north is not None
    _api_404(world, world.oscar, f"/api/v1/report-templates/{north.pk}/")
    assert api_client_for(world.oscar).get("/api/v1/report-templates/").json()["results"] == []
    answer = api_client_for(world.otto).post(
        f"/api/v1/report-templates/{north.pk}/versions/", {"fields": north.fields}, format="json"
    )
    assert answer.status_code in (403, 404)
    assert ReportTemplate.objects.filter(code=north.code).count() == 1


@case(
    "api:report-list",
    "api:report-detail",
    "api:report-sign",
    "api:report-second-read",
    "api:report-addenda",
    "report-edit",
)
def _reports(world: World) -> None:
    from reporting.models import Addendum, Report

    report, _reading = _north_report(world)
    oscar = api_client_for(world.oscar)
    _api_404(world, world.oscar, f"/api/v1/reports/{report.pk}/")
    _api_404(world, world.oscar, f"/api/v1/reports/{report.pk}/addenda/")
    assert oscar.get("/api/v1/reports/").json()["results"] == []
    assert (
        b"north secret" not in oscar.get(f"/api/v1/reports/?referral={report.referral_id}").content
    )
    for path, body in [
        (f"/api/v1/reports/{report.pk}/sign/", {"kind": "final", "version": 3}),
        (f"/api/v1/reports/{report.pk}/second-read/", {"outcome": "agree", "version": 3}),
        (f"/api/v1/reports/{report.pk}/addenda/", {"text": "x"}),
    ]:
        assert oscar.post(path, body, format="json").status_code in (403, 404), path
    assert oscar.patch(
        f"/api/v1/reports/{report.pk}/", {"version": 3, "content": {}}, format="json"
    ).status_code in (403, 404)
    theirs = web(world.oscar).get(f"/reports/{report.referral_id}/edit/")
    assert theirs.status_code == 404
    assert b"north secret" not in theirs.content
    report.refresh_from_db()
    assert report.status == "preliminary"
    assert report.content["findings"] == "north secret"
    assert not Addendum.objects.exists()
    assert Report.objects.count() == 1
    # The URL is right: the north's own reader opens it.
    assert web(_reading.sam).get(f"/reports/{report.referral_id}/edit/").status_code == 200


@case("second-read-queue", "reading-next")
def _second_reads(world: World) -> None:
    from alliance.models import PoolMember
    from referrals.models import Referral
    from referrals.workflow import services as referral_services
    from reporting import services
    from reporting.models import ReportTemplate
    from reporting.seed import templates_seed
    from tenants import access
    from tenants.models import Role

    from .conftest import _person
    from .referral_support import reading_setup, study_at

    # A junior's north report waiting for its second read, and a routed north case.
    reading = reading_setup(world)
    PoolMember.objects.create(pool=reading.general, user=reading.sam, capacity=10)
    templates_seed(alliance=world.north)
    alice = access.scope_for_user(world.alice, institution_id=world.clinic.pk)
    rita = access.scope_for_user(world.rita, institution_id=world.reader.pk)
    referral, _ = referral_services.referral_request(
        scope=alice, study=study_at(world.clinic, modality="MR", body_part="KNEE")
    )
    referral_services.referral_route(referral.pk)
    referral_services.referral_claim(scope=rita, referral_id=referral.pk)
    template = ReportTemplate.objects.get(alliance=world.north, code="mr-knee")
    report = services.report_create(scope=rita, referral_id=referral.pk, template_id=template.pk)
    report = services.report_autosave(
        scope=rita,
        report_id=report.pk,
        version=report.version,
        content={"findings": "north secret", "impression": "ok"},
    )
    services.report_sign(
        scope=rita, report_id=report.pk, kind="preliminary", version=report.version
    )
    waiting, _ = referral_services.referral_request(
        scope=alice, study=study_at(world.clinic, modality="MR", body_part="KNEE", patient_id="P-8")
    )
    referral_services.referral_route(waiting.pk)
    # A south senior: the roles that open the queue and ask for the next case.
    sol = web(_person("sol", "索尔", "Sol", world.outsider, Role.SENIOR_RADIOLOGIST))
    page = sol.get("/reports/second-reads/")
    assert page.status_code == 200
    assert "north secret" not in page.content.decode()
    assert f'data-report-id="{report.pk}"' not in page.content.decode()
    edit = f"/reports/{referral.pk}/edit/"
    assert sol.post("/reports/next/", {"queue": "second_read"})["Location"] != edit
    assert sol.post("/reports/next/", {"queue": "reading"})["Location"] == "/worklist/"
    waiting.refresh_from_db()
    assert waiting.claimed_by is None
    assert not Referral.objects.filter(claimed_by__username="sol").exists()
    # oscar holds no reading role: neither page.
    assert web(world.oscar).get("/reports/second-reads/").status_code == 403
    assert web(world.oscar).post("/reports/next/").status_code == 403
    # The north's own senior finds the report waiting.
    assert (
        f'data-report-id="{report.pk}"'
        in web(reading.sam).get("/reports/second-reads/").content.decode()
    )


# Critical findings and key images.
@case(
    "api:critical-finding-list",
    "api:critical-finding-detail",
    "api:critical-finding-acknowledge",
    "critical-acknowledge",
    "api:report-key-images",
    "api:report-key-image-remove",
)
def _critical_and_key_images(world: World) -> None:
    from referrals.models import Instance, Series
    from reporting import critical, key_images
    from reporting.models import CriticalFinding, KeyImage
    from tenants import access

    report, reading = _north_report(world)
    sam = access.scope_for_user(reading.sam, institution_id=world.reader.pk)
    finding = critical.critical_flag(
        scope=sam, referral_id=report.referral_id, text="north critical"
    )
    oscar, otto = api_client_for(world.oscar), api_client_for(world.otto)
    _api_404(world, world.oscar, f"/api/v1/critical-findings/{finding.pk}/")
    assert oscar.get("/api/v1/critical-findings/").json()["results"] == []
    assert (
        otto.post(
            f"/api/v1/critical-findings/{finding.pk}/acknowledge/", {}, format="json"
        ).status_code
        == 404
    )
    assert oscar.post(
        "/api/v1/critical-findings/", {"referral": report.referral_id, "text": "x"}, format="json"
    ).status_code in (403, 404)
    assert web(world.otto).post(f"/reports/critical/{finding.pk}/acknowledge/").status_code == 404
    finding.refresh_from_db()
    assert finding.acknowledged_at is None
    assert CriticalFinding.objects.count() == 1
    # Key images: the north's (preliminary) report with one attached.
    series = Series.objects.create(
        institution=world.clinic, study=report.study, series_uid="1.2.3.9", modality="MR"
    )
    instance = Instance.objects.create(
        institution=world.clinic,
        study=report.study,
        series=series,
        sop_uid="1.2.3.9.1",
        sop_class_uid="1.2",
        transfer_syntax_uid="1.2",
        rows=8,
        columns=8,
        size_bytes=1,
        sha256="0" * 64,
        received_via="test",
    )
    image = KeyImage.objects.create(report=report, instance=instance, frame=1)
    _api_404(world, world.oscar, f"/api/v1/reports/{report.pk}/key-images/")
    assert oscar.post(
        f"/api/v1/reports/{report.pk}/key-images/", {"sop_uid": instance.sop_uid}, format="json"
    ).status_code in (403, 404)
    assert oscar.delete(f"/api/v1/reports/{report.pk}/key-images/{image.pk}/").status_code in (
        403,
        404,
    )
    assert KeyImage.objects.count() == 1
    assert (
        key_images.key_images_of(
            access.scope_for_user(world.oscar, institution_id=world.outsider.pk), report
        )
        == []
    )


# --- MDT consultations -------------------------------------------------------------


@case(
    "api:mdt-session-list",
    "api:mdt-session-detail",
    "api:mdt-session-cases",
    "api:mdt-session-invitations",
    "api:mdt-session-minutes",
    "api:mdt-invitation-list",
    "api:mdt-invitation-detail",
    "api:mdt-invitation-revoke",
)
def _mdt_api(world: World) -> None:
    from tenants.models import Role

    from .conftest import _person
    from .mdt_support import mdt_setup

    mdt = mdt_setup(world)
    # A south MDT member: a role that may write here, so only access can answer 404.
    olga = _person("olga", "奥尔加", "Olga", world.outsider, Role.MDT_MEMBER)
    base = f"/api/v1/mdt-sessions/{mdt.session.pk}/"
    invitation = f"/api/v1/mdt-invitations/{mdt.alice_invitation.pk}/"
    for path, method in [
        (base, "get"),
        (f"{base}minutes/", "get"),
        (f"{base}cases/", "post"),
        (f"{base}invitations/", "post"),
        (invitation, "get"),
        (f"{invitation}revoke/", "post"),
    ]:
        _api_404(world, olga, path, method)
    mdt.alice_invitation.refresh_from_db()
    assert mdt.alice_invitation.revoked_at is None
    outsider = api_client_for(olga)
    assert outsider.get("/api/v1/mdt-sessions/").json()["results"] == []
    assert outsider.get("/api/v1/mdt-invitations/").json()["results"] == []
    assert api_client_for(world.alice).get(base).status_code == 200


@case("mdt-list", "mdt-room", "mdt-minutes", "mdt-minutes-pdf")
def _mdt_pages(world: World) -> None:
    from .mdt_support import mdt_setup

    mdt = mdt_setup(world)
    pk = mdt.session.pk
    oscar, alice = web(world.oscar), web(world.alice)
    for url in (f"/mdt/{pk}/", f"/mdt/{pk}/minutes/", f"/mdt/{pk}/minutes.pdf"):
        assert oscar.get(url).status_code == 404, url
    assert alice.get(f"/mdt/{pk}/minutes/").status_code == 200
    assert mdt.session.title not in oscar.get("/mdt/").content.decode()
    assert mdt.session.title in alice.get("/mdt/").content.decode()


# --- Reading worklists and the referral API (the reading side) -----------------


def _south_radiologist(world: World):
    """A radiologist of the other alliance: a role that may act, so only access says no."""
    from tenants.models import Role

    from .conftest import _person

    return _person("rhea", "瑞亚", "Rhea", world.outsider, Role.RADIOLOGIST)


@case(
    "api:referral-list",
    "api:referral-detail",
    "api:referral-claim",
    "api:referral-open",
    "api:referral-release",
    "api:referral-return",
    "api:referral-cancel",
    "api:referral-acknowledge",
    "api:referral-events",
    "api:worklist-list",
    "api:worklist-next",
)
def _referral_api(world: World) -> None:
    from referrals.models import Referral

    referral = _north_referral(world)
    rhea = _south_radiologist(world)
    base = f"/api/v1/referrals/{referral.pk}/"
    for user in (world.oscar, rhea):
        _api_404(world, user, base)
        _api_404(world, user, f"{base}events/")
        for verb in ("claim", "open", "release", "return", "cancel", "acknowledge"):
            _api_404(world, user, f"{base}{verb}/", "post")
    for user in (world.oscar, rhea, world.otto):
        assert api_client_for(user).get("/api/v1/referrals/").json()["results"] == []
    outsider = api_client_for(rhea)
    for view in ("mine", "pool"):
        assert outsider.get(f"/api/v1/worklist/?view={view}").json()["results"] == []
    assert outsider.post("/api/v1/worklist/next/").status_code == 204
    referral.refresh_from_db()
    assert referral.status == "routed"
    assert Referral.objects.filter(claimed_by=rhea).count() == 0
    assert api_client_for(world.rita).get(base).status_code == 200


@case(
    "worklist",
    "worklist-rows",
    "worklist-next",
    "worklist-case",
    "worklist-claim",
    "worklist-open",
    "worklist-release",
    "worklist-return",
)
def _worklist_pages(world: World) -> None:
    referral = _north_referral(world)
    client = web(_south_radiologist(world))
    for url in ("/worklist/", "/worklist/rows/", "/worklist/?view=pool"):
        page = client.get(url)
        assert page.status_code == 200
        assert f'data-referral-id="{referral.pk}"' not in page.content.decode()
    theirs = client.get(f"/worklist/{referral.pk}/")
    missing = client.get("/worklist/999999999/")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.content == missing.content
    for verb in ("claim", "open", "release", "return"):
        assert (
            client.post(
                f"/worklist/{referral.pk}/{verb}/", {"reason": "motion_artefact"}
            ).status_code
            == 404
        ), verb
    client.post("/worklist/next/")
    referral.refresh_from_db()
    assert referral.status == "routed"
    # oscar and otto hold no reading role: no worklist at all.
    assert web(world.oscar).get("/worklist/").status_code == 403
    assert web(world.otto).get(f"/worklist/{referral.pk}/").status_code == 403
    assert web(world.rita).get(f"/worklist/{referral.pk}/").status_code == 200


# --- Report delivery: PDF, FHIR, patient share links -------------------------------


@case(
    "api:report-pdf",
    "api:report-fhir",
    "api:report-share-links",
    "api:report-share-link-revoke",
    "share-page",
    "share-patient",
    "share-pdf",
    "share-viewer",
    "share-frame",
)
def _report_delivery(world: World) -> None:
    import datetime as dt

    from django.utils import timezone

    from reporting.models import ShareLink

    report, reading = _north_report(world)
    # A (fake-final-free) link row of the north report: outsiders must not revoke or list it.
    link = ShareLink.objects.create(
        token_sha256="0" * 64,
        report=report,
        alliance=world.north,
        patient_key="k",
        created_by=reading.sam,
        created_for=world.reader,
        expires_at=timezone.now() + dt.timedelta(days=1),
    )
    oscar = api_client_for(world.oscar)
    for path in (
        f"/api/v1/reports/{report.pk}/pdf/",
        f"/api/v1/reports/{report.pk}/fhir/",
        f"/api/v1/reports/{report.pk}/share-links/",
    ):
        theirs = oscar.get(path)
        assert theirs.status_code == 404, path
        assert b"north secret" not in theirs.content
    made = oscar.post(f"/api/v1/reports/{report.pk}/share-links/", {}, format="json")
    assert made.status_code in (403, 404)
    revoke = oscar.post(f"/api/v1/reports/{report.pk}/share-links/{link.pk}/revoke/")
    assert revoke.status_code in (403, 404)
    assert ShareLink.objects.get(pk=link.pk).revoked_at is None
    assert ShareLink.objects.count() == 1
    # The public pages answer only to a token / grant; a signed-in outsider gets no more.
    client = web(world.oscar)
    token = "A" * 43
    for path in (
        f"/s/{token}/",
        f"/s/{token}/all/",
        f"/s/{token}/pdf/",
        "/s/v/bogus:grant/",
        f"/s/v/bogus:grant/series/1.2/instances/{report.study.study_uid}/frames/1/rendered",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert b"north secret" not in answer.content


# --- Reporting: "Share with the patient" pages and second-read quality --------------


@case("report-share", "report-share-revoke", "report-quality")
def _report_share_and_quality(world: World) -> None:
    import datetime as dt

    from django.utils import timezone

    from reporting.models import SecondRead, ShareLink

    report, reading = _north_report(world)
    link = ShareLink.objects.create(
        token_sha256="1" * 64,
        report=report,
        alliance=world.north,
        patient_key="k",
        created_by=reading.sam,
        created_for=world.reader,
        expires_at=timezone.now() + dt.timedelta(days=1),
    )
    # A south radiologist: a role that may share, so only access answers.
    for client in (web(world.oscar), web(_south_radiologist(world))):
        for path in (f"/reports/{report.pk}/share/", "/reports/999999999/share/"):
            assert client.get(path).status_code == 404, path
            assert client.post(path).status_code == 404, path
        assert client.post(f"/reports/{report.pk}/share/{link.pk}/revoke/").status_code == 404
    link.refresh_from_db()
    assert link.revoked_at is None
    assert ShareLink.objects.count() == 1
    # Quality: a south senior radiologist sees no north second read.
    from tenants.models import Role

    from .conftest import _person

    SecondRead.objects.create(
        report=report, reviewer=reading.sam, outcome="major_discrepancy", comment="north secret"
    )
    south_senior = _person("sol", "索尔", "Sol", world.outsider, Role.SENIOR_RADIOLOGIST)
    page = web(south_senior).get("/reports/quality/?group=reader")
    assert page.status_code == 200
    assert reading.sam.display_name not in page.content.decode()
    assert 'data-col="reads"' not in page.content.decode()
    assert web(world.oscar).get("/reports/quality/").status_code == 403
    assert 'data-col="major">1<' in web(reading.sam).get("/reports/quality/").content.decode()


# --- Commission dashboard page ------------------------------------------------------


@case("analytics-dashboard")
def _analytics_dashboard(world: World) -> None:
    from tenants.models import Role

    from .conftest import _person

    # oscar and otto hold no dashboard role; the south commission's viewer holds one, but
    # for the south only.
    assert web(world.oscar).get("/analytics/").status_code == 403
    assert web(world.otto).get("/analytics/").status_code == 403
    sue = _person("sue", "苏", "Sue", world.south.commission, Role.COMMISSION_VIEWER)
    client = web(sue)
    page = client.get("/analytics/").content.decode()
    assert f'<option value="{world.south.pk}"' in page
    assert f'<option value="{world.north.pk}"' not in page
    assert f'<option value="{world.clinic.pk}"' not in page
    assert "Beishan" not in page
    for name, north in (("alliance", world.north.pk), ("institution", world.clinic.pk)):
        theirs = client.get(f"/analytics/?{name}={north}")
        missing = client.get(f"/analytics/?{name}=999999999")
        assert theirs.status_code == missing.status_code == 404, name
        assert theirs.content == missing.content
    assert web(world.carl).get(f"/analytics/?alliance={world.north.pk}").status_code == 200


# --- Commission analytics -----------------------------------------------------------


@case(
    "api:analytics-options",
    "api:analytics-volumes",
    "api:analytics-turnaround",
    "api:analytics-flows",
    "api:analytics-workload",
    "api:analytics-scanners",
    "api:analytics-quality",
    "api:analytics-recognition",
)
def _analytics(world: World) -> None:
    from alliance.analytics.refresh import analytics_refresh
    from tenants.models import Role

    from .conftest import _person

    _north_referral(world)
    analytics_refresh(full=True)
    routes = [
        "options",
        "volumes",
        "turnaround",
        "flows",
        "workload",
        "scanners",
        "quality",
        "recognition",
    ]
    # The south's commission viewer: a role that may read analytics, so only access differs.
    sue = _person("sue", "苏", "Sue", world.south.commission, Role.COMMISSION_VIEWER)
    for route in routes:
        path = f"/api/v1/analytics/{route}/"
        assert api_client_for(world.carl).get(path).status_code == 200, path
        for user in (world.oscar, world.otto):
            assert api_client_for(user).get(path).status_code == 403, path
        mine = api_client_for(sue).get(path)
        assert mine.status_code == 200
        assert "north" not in mine.content.decode().lower(), path
        assert "Beishan" not in mine.content.decode()
        if route != "options":
            _api_404(world, sue, f"{path}?alliance={world.north.pk}")
            _api_404(world, sue, f"{path}?institution={world.clinic.pk}")


# --- Routing console: pools, roster, rules (referrals/routing/console_views.py) --------------


@case(
    "console-pools",
    "console-pool-create",
    "console-pool",
    "console-pool-active",
    "console-pool-member-add",
    "console-pool-member",
    "console-roster",
    "console-roster-shift-delete",
    "console-rules",
    "console-rule-create",
    "console-rule",
    "console-rule-move",
    "console-rule-active",
    "console-rule-test",
)
def _routing_console(world: World) -> None:
    import datetime as dt

    from django.utils import timezone

    from alliance.models import PoolMember, ReaderPool, RosterShift, RoutingRule
    from tenants.models import Role

    from .conftest import _person

    pool = ReaderPool.objects.create(
        alliance=world.north, institution=world.reader, name="北城夜班", name_en="North night"
    )
    member = PoolMember.objects.create(pool=pool, user=world.rita, capacity=10)
    now = timezone.now()
    shift = RosterShift.objects.create(
        pool=pool, user=world.rita, starts_at=now, ends_at=now + dt.timedelta(hours=8)
    )
    rule = RoutingRule.objects.create(alliance=world.north, order=10, name="North CT", pool=pool)
    _north_referral(world)
    north_pools = ReaderPool.objects.filter(alliance=world.north).count()
    # The south's alliance administrator: a role that manages routing, so only access answers.
    sam = _person("south-admin", "南管", "South Admin", world.outsider, Role.ALLIANCE_ADMIN)
    for user in (sam, world.otto):
        client = web(user)
        for path in ("/console/pools/", "/console/roster/"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert "North" not in page.content.decode(), path
        for path in (
            f"/console/pools/{pool.pk}/",
            f"/console/roster/?pool={pool.pk}",
            "/console/pools/999999999/",
        ):
            assert client.get(path).status_code == 404, path
        for path, data in (
            (f"/console/pools/{pool.pk}/", {"name": "x", "cap": 1}),
            (f"/console/pools/{pool.pk}/active/", {"active": "0"}),
            (f"/console/pools/{pool.pk}/members/", {"user": world.rita.pk, "capacity": 1}),
            (f"/console/pools/{pool.pk}/members/{member.pk}/", {"action": "remove"}),
            (f"/console/roster/shifts/{shift.pk}/delete/", {"following": "1"}),
            (f"/console/roster/?pool={pool.pk}", {"user": world.rita.pk}),
        ):
            assert client.post(path, data).status_code == 404, path
        # A new pool cannot be put at a north institution.
        client.post(
            "/console/pools/new/",
            {"alliance": world.north.pk, "institution": world.reader.pk, "name": "x", "cap": 1},
        )
        assert "north-central" not in client.get("/console/pools/new/").content.decode()
    admin = web(sam)
    rules = admin.get("/console/rules/")
    assert rules.status_code == 200
    assert "North CT" not in rules.content.decode()
    form = admin.get("/console/rules/new/").content.decode()
    assert "North" not in form
    assert "Beishan" not in form
    admin.post("/console/rules/new/", {"name": "steal", "pool": pool.pk})
    for path in (f"/console/rules/{rule.pk}/", f"/console/rules/{rule.pk}/test/"):
        assert admin.get(path).status_code == 404, path
    for path, data in (
        (f"/console/rules/{rule.pk}/", {"name": "x", "pool": pool.pk}),
        (f"/console/rules/{rule.pk}/move/", {"direction": "down"}),
        (f"/console/rules/{rule.pk}/active/", {"active": "0"}),
    ):
        assert admin.post(path, data).status_code == 404, path
    # A hospital administrator holds no rule rights at all.
    assert web(world.otto).get("/console/rules/").status_code == 403
    pool.refresh_from_db()
    rule.refresh_from_db()
    member.refresh_from_db()
    assert pool.is_active
    assert pool.name == "北城夜班"
    assert member.is_active
    assert rule.is_active
    assert rule.name == "North CT"
    assert RosterShift.objects.filter(pk=shift.pk).exists()
    assert ReaderPool.objects.filter(alliance=world.north).count() == north_pools
    assert not RoutingRule.objects.filter(name="steal").exists()


# --- The report template editor (console) ---------------------------------------------


@case(
    "console-templates",
    "console-template-create",
    "console-template",
    "console-template-edit",
    "console-template-history",
    "console-template-diff",
    "console-template-status",
)
def _report_template_editor(world: World) -> None:
    from django.urls import reverse

    from reporting.models import ReportTemplate
    from reporting.seed import templates_seed
    from tenants.models import Role

    from .conftest import _person

    templates_seed(alliance=world.north)
    templates_seed(alliance=world.south)
    north = ReportTemplate.objects.get(alliance=world.north, code="ct-chest")
    # The south's alliance administrator: the role that edits templates, so only access differs.
    sol = _person("sol", "索尔", "Sol", world.outsider, Role.ALLIANCE_ADMIN)
    client = web(sol)
    for name in (
        "console-template",
        "console-template-edit",
        "console-template-history",
        "console-template-diff",
    ):
        assert client.get(reverse(name, args=[north.pk])).status_code == 404, name
    edit = {"name": "x", "modality": "CT", "base_version": "1", "f-TOTAL_FORMS": "0"}
    assert client.post(reverse("console-template-edit", args=[north.pk]), edit).status_code == 404
    retire = client.post(reverse("console-template-status", args=[north.pk]), {"active": "0"})
    assert retire.status_code == 404
    north.refresh_from_db()
    assert north.active
    assert ReportTemplate.objects.filter(alliance=world.north).count() == 5
    listing = client.get(reverse("console-templates")).content.decode()
    assert f"/console/templates/{north.pk}/" not in listing
    south = ReportTemplate.objects.get(alliance=world.south, code="ct-chest")
    assert f"/console/templates/{south.pk}/" in listing
    # Creating in the north's name: not a choice.
    form = client.get(reverse("console-template-create")).content.decode()
    assert f'value="{world.north.pk}"' not in form
    made = client.post(
        reverse("console-template-create"),
        {
            "code": "mine",
            "alliance": str(world.north.pk),
            "name": "x",
            "modality": "CT",
            "f-TOTAL_FORMS": "1",
            "f-INITIAL_FORMS": "0",
            "f-0-label": "x",
            "f-0-kind": "text",
        },
    )
    assert made.status_code == 400
    assert not ReportTemplate.objects.filter(code="mine").exists()
    # Without the role: refused outright.
    assert web(world.oscar).get(reverse("console-templates")).status_code == 403


# --- The administration console: home, staff and roles, gateways, deadline policy ---------

NO_TENANT_OBJECT |= {  # the e-mailed password links and "Forgot your password?": no tenant
    "password-reset",
    "password-reset-done",
    "password-reset-confirm",
    "invite-accept",
}


@case(
    "console-home",
    "console-staff",
    "console-staff-invite",
    "console-staff-add",
    "console-staff-detail",
    "console-staff-grant",
    "console-staff-revoke",
    "console-staff-password-mail",
    "console-staff-deactivate",
    "console-staff-reactivate",
    "console-staff-remove",
)
def _console_staff(world: World) -> None:
    from django.core import mail

    from tenants.models import Role, User

    world.alice.email = "alice@example.org"
    world.alice.save()
    alices = Membership.objects.get(user=world.alice)
    client = web(world.otto)  # the south's hospital administrator
    home = client.get("/console/").content.decode()
    assert "Nanling Village Clinic" in home
    assert "Beishan" not in home
    listed = client.get("/console/staff/?q=ali").content.decode()
    assert "Alice" not in listed
    assert "alice@example.org" not in client.get("/console/staff/").content.decode()
    for path in (
        "",
        "grant/",
        "revoke/",
        "password-mail/",
        "deactivate/",
        "reactivate/",
        "remove/",
    ):
        url = f"/console/staff/{world.alice.pk}/{path}"
        theirs = client.post(url, {"role": Role.RADIOLOGIST, "membership": alices.pk})
        missing = client.post(url.replace(str(world.alice.pk), "999999999"))
        assert theirs.status_code == missing.status_code == 404, url
    assert client.get(f"/console/staff/{world.alice.pk}/").status_code == 404
    world.alice.refresh_from_db()
    alices.refresh_from_db()
    assert world.alice.is_active
    assert alices.revoked_at is None
    assert list(Membership.objects.filter(user=world.alice)) == [alices]
    assert mail.outbox == []
    # Adding the north's person by user name is answered like an unknown name.
    added = client.post(
        "/console/staff/add/", {"username": "alice", "role": Role.RADIOLOGIST}, follow=True
    )
    assert "No such user in your alliance." in added.content.decode()
    assert not Membership.objects.filter(user=world.alice, institution=world.outsider).exists()
    # An invitation lands at the south's own institution only.
    client.post(
        "/console/staff/invite/",
        {"email": "s@example.org", "username": "sven", "language": "en", "role": Role.RADIOLOGIST},
    )
    assert [m.institution for m in Membership.objects.filter(user__username="sven")] == [
        world.outsider
    ]
    # Not an administrator: refused outright.
    assert web(world.oscar).get("/console/").status_code == 403
    assert web(world.oscar).get("/console/staff/invite/").status_code == 403
    assert User.objects.filter(username="sven").count() == 1


@case("console-gateways", "console-gateway-revoke")
def _console_gateways(world: World) -> None:
    north = GatewayCredential.objects.create(
        institution=world.clinic, label="north-ct", key_id="gw_northct", secret_hash="0" * 64
    )
    client = web(world.otto)
    assert "gw_northct" not in client.get("/console/gateways/").content.decode()
    assert client.post(f"/console/gateways/{north.pk}/revoke/").status_code == 404
    assert client.post("/console/gateways/999999999/revoke/").status_code == 404
    north.refresh_from_db()
    assert north.revoked_at is None
    assert web(world.oscar).get("/console/gateways/").status_code == 403


@case("console-policy")
def _console_policy(world: World) -> None:
    from alliance.models import AlliancePolicy
    from tenants.models import Role

    from .conftest import _person

    assert web(world.otto).get("/console/policy/").status_code == 403
    south_admin = _person("sam", "萨姆", "Sam", world.south.lead_hospital, Role.ALLIANCE_ADMIN)
    client = web(south_admin)
    page = client.get("/console/policy/").content.decode()
    assert "North" not in page
    theirs = client.get(f"/console/policy/?alliance={world.north.pk}")
    missing = client.get("/console/policy/?alliance=999999999")
    assert theirs.status_code == missing.status_code == 404
    posted = client.post(f"/console/policy/?alliance={world.north.pk}", {"stat_minutes": 5})
    assert posted.status_code == 404
    assert not AlliancePolicy.objects.filter(alliance=world.north).exists()


# --- MDT scheduling pages -----------------------------------------------------------


@case(
    "mdt-schedule",
    "mdt-session",
    "mdt-reschedule",
    "mdt-cancel",
    "mdt-cases",
    "mdt-case-edit",
    "mdt-people",
    "mdt-invitation-remove",
    "mdt-answer",
)
def _mdt_scheduling(world: World) -> None:
    import datetime as dt

    from django.utils import timezone

    from consultations.models import Invitation, MdtSession
    from tenants.models import Role

    from .conftest import _person
    from .mdt_support import mdt_setup

    mdt = mdt_setup(world, opens_in=dt.timedelta(days=1))
    pk, case = mdt.session.pk, mdt.session.cases.get()
    # A south MDT member: a role that may organise, so only access can answer 404.
    olga = web(_person("olga", "奥尔加", "Olga", world.outsider, Role.MDT_MEMBER))
    for url in ("session", "reschedule", "cancel", "cases", "people"):
        assert olga.get(f"/mdt/{pk}/{url}/").status_code == 404, url
    day = (timezone.localtime() + dt.timedelta(days=2)).date().isoformat()
    for url, data in [
        (f"/mdt/{pk}/cancel/", {}),
        (f"/mdt/{pk}/reschedule/", {"date": day, "start": "09:00", "end": "10:00"}),
        (f"/mdt/{pk}/cases/{case.pk}/", {"action": "remove"}),
        (f"/mdt/{pk}/invitations/{mdt.alice_invitation.pk}/remove/", {}),
        (f"/mdt/{pk}/answer/", {"answer": "declined"}),
        (f"/mdt/{pk}/people/", {"user": world.oscar.pk, "institution": world.outsider.pk}),
    ]:
        assert olga.post(url, data).status_code == 404, url
    mdt.session.refresh_from_db()
    assert mdt.session.status == "scheduled"
    assert mdt.session.cases.count() == 1
    assert Invitation.objects.active().filter(session=mdt.session).count() == 3
    assert not Invitation.objects.filter(user=world.oscar).exists()
    # The schedule page offers her own alliance only, and refuses the north.
    page = olga.get("/mdt/new/").content.decode()
    assert f'<option value="{world.south.pk}"' in page
    assert f'<option value="{world.north.pk}"' not in page
    form = {"title": "x", "kind": "mdt", "date": day, "start": "09:00", "end": "10:00"}
    assert olga.post("/mdt/new/", {**form, "alliance": world.north.pk}).status_code == 400
    assert not MdtSession.objects.filter(alliance=world.north).exclude(pk=pk).exists()
    # Her own session's directory lists nobody of the north.
    assert olga.post("/mdt/new/", {**form, "alliance": world.south.pk}).status_code == 302
    own = MdtSession.objects.get(alliance=world.south)
    directory = olga.get(f"/mdt/{own.pk}/people/").content.decode()
    for name in ("Alice", "Rita", "Adam", "Beishan", "North Central"):
        assert name not in directory, name
    assert "Otto" in directory
    assert web(world.alice).get(f"/mdt/{pk}/session/").status_code == 200


NO_TENANT_OBJECT |= {  # the caller's own second factor (tenants/two_factor/): no tenant object
    "two-factor",
    "two-factor-enrol",
    "two-factor-verify",
    "two-factor-recovery-codes",
    "two-factor-recovery-regenerate",
    "two-factor-remove",
}


NO_TENANT_OBJECT |= {  # hospital single sign-on (tenants/oidc.py): the sign-in itself
    "oidc_authentication_init",
    "oidc_authentication_callback",
    "oidc_logout",
}


@case("api:study-corrections", "api:study-correction", "study-correct")
def _corrections(world: World) -> None:
    from referrals.models import Correction

    from .referral_support import study_at

    study = study_at(world.clinic)
    correction = Correction.objects.create(
        institution=world.clinic, kind="edit", study=study, study_uid=study.study_uid
    )
    base = f"/api/v1/archive/studies/{study.study_uid}/corrections/"
    # The outsider's administrator: a role that may correct, so only access can answer 404.
    _api_404(world, world.otto, base)
    _api_404(world, world.otto, f"{base}{correction.pk}/")
    refused = api_client_for(world.otto).post(
        base, {"kind": "reject", "code": "113001", "reason": "x"}, format="json"
    )
    assert refused.status_code == 404
    assert web(world.otto).get(f"/studies/{study.pk}/correct/").status_code == 404
    posted = web(world.otto).post(f"/studies/{study.pk}/correct/", {"kind": "edit"})
    assert posted.status_code == 404
    assert Correction.objects.count() == 1
    study.refresh_from_db()
    assert study.num_instances == 1
    assert study.patient_name == "Wang^Xiaoming"


def _north_registration(world: World):
    import datetime as dt

    from django.utils import timezone

    from referrals.registration.services import registration_create
    from tenants.access import scope_for_user

    return registration_create(
        scope=scope_for_user(world.alice),
        patient_id="MZ-NORTH",
        family_name="王",
        given_name="北",
        modality="CT",
        procedure_description="CT",
        scheduled_at=timezone.now() + dt.timedelta(hours=1),
    )


@case("api:registration-list", "api:registration-detail", "api:registration-cancel")
def _registration_api(world: World) -> None:
    from referrals.models import RegistrationStatus

    north = _north_registration(world)
    api = api_client_for(world.oscar)
    _api_404(world, world.oscar, f"/api/v1/registrations/{north.pk}/")
    _api_404(world, world.oscar, f"/api/v1/registrations/{north.pk}/cancel/", "post")
    assert api.get("/api/v1/registrations/").json()["results"] == []
    north.refresh_from_db()
    assert north.status == RegistrationStatus.SCHEDULED


@case("registration-list", "registration-new", "registration-cancel")
def _registration_pages(world: World) -> None:
    from django.utils import timezone

    from referrals.models import ExamRegistration, RegistrationStatus

    north = _north_registration(world)
    oscar = web(world.oscar)
    assert oscar.post(f"/registrations/{north.pk}/cancel/").status_code == 404
    day = timezone.localtime(north.scheduled_at).date().isoformat()
    page = oscar.get(f"/registrations/?day={day}").content.decode()
    assert "MZ-NORTH" not in page
    assert "MZ-NORTH" in web(world.alice).get(f"/registrations/?day={day}").content.decode()
    # What he registers is his own site's, whatever he posts.
    form = {
        "patient_id": "S-1",
        "family_name": "李",
        "modality": "CT",
        "procedure_description": "CT",
        "scheduled_at": "2031-05-06T09:00",
        "institution": world.clinic.pk,
    }
    assert oscar.post("/registrations/new/", form).status_code == 302
    assert ExamRegistration.objects.get(patient_id="S-1").institution == world.outsider
    north.refresh_from_db()
    assert north.status == RegistrationStatus.SCHEDULED


@case("api:gateway-worklist")
def _gateway_worklist(world: World) -> None:
    import base64

    from tenants.access import scope_for_user
    from tenants.services import gateway_credential_create

    north = _north_registration(world)
    credential, secret = gateway_credential_create(
        scope=scope_for_user(world.otto), label="south", calling_ae_titles=["US1"]
    )
    token = base64.b64encode(f"{credential.key_id}:{secret}".encode()).decode()
    client = Client(HTTP_AUTHORIZATION=f"Basic {token}")
    answer = client.get("/api/v1/gateway/worklist/")
    assert answer.status_code == 200
    assert answer.json()["items"] == []
    assert north.study_uid not in answer.content.decode()
    # A person (of any site) reads no gateway's worklist.
    assert api_client_for(world.oscar).get("/api/v1/gateway/worklist/").status_code in (401, 403)


def _north_held(world: World):
    """An instance of a second patient held in the north clinic's reconciliation queue."""
    import io

    import pydicom

    from referrals.archive.synthetic import SyntheticPatient
    from referrals.models import HeldInstance

    from .dicom_support import ct_files, multipart_related

    [first] = ct_files(1, size=32)
    study_uid = pydicom.dcmread(io.BytesIO(first)).StudyInstanceUID
    [second] = ct_files(
        1, size=32, patient=SyntheticPatient("HELD-2", "Li^Hua"), study_uid=study_uid
    )
    for part in (first, second):
        body, ctype = multipart_related([part])
        api_client_for(world.alice).post("/dicomweb/studies", data=body, content_type=ctype)
    return HeldInstance.objects.get(institution=world.clinic)


@case(
    "api:held-instance-list",
    "api:held-instance-detail",
    "api:held-instance-accept",
    "api:held-instance-new-study",
    "api:held-instance-reject",
)
def _held_api(world: World) -> None:
    held = _north_held(world)
    for user in (world.oscar, world.otto):
        api = api_client_for(user)
        _api_404(world, user, f"/api/v1/archive/held/{held.pk}/")
        for verb in ("accept", "new-study", "reject"):
            _api_404(world, user, f"/api/v1/archive/held/{held.pk}/{verb}/", "post")
        assert api.get("/api/v1/archive/held/?state=all").json()["results"] == []
    # The outsider sending the same study UID with another patient holds nothing of the north.
    held.refresh_from_db()
    assert held.resolved_at is None


@case("held-list", "held-accept", "held-new-study", "held-reject")
def _held_pages(world: World) -> None:
    held = _north_held(world)
    otto = web(world.otto)  # an administrator, of another alliance's clinic
    page = otto.get("/archive/held/").content.decode()
    assert "HELD-2" not in page
    assert held.sop_uid not in page
    for verb in ("accept", "new-study", "reject"):
        answer = otto.post(f"/archive/held/{held.pk}/{verb}/", {"confirm": "yes"})
        assert answer.status_code == 404, (verb, answer.status_code)
    held.refresh_from_db()
    assert held.resolved_at is None


def _north_identity(world: World):
    """Two north patient records with a proposed link, and an alliance administrator of the
    south alliance (the outsider who reviews identities, but only of their own alliance)."""
    import datetime as dt

    from referrals.identity.services import patient_identity_refresh
    from referrals.models import Patient, PatientLink
    from tenants.models import Role

    from .conftest import _person

    records = [
        Patient.objects.create(
            institution=site,
            patient_id=pid,
            name="Wang^Xiaoming",
            birth_date=birth,
            sex="M",
            patient_key=f"key-{pid}",
            own_key=f"key-{pid}",
        )
        for site, pid, birth in (
            (world.reader, "NR-1", dt.date(1960, 12, 3)),
            (world.clinic, "NC-1", dt.date(1960, 3, 12)),
        )
    ]
    patient_identity_refresh(patient_id=records[1].pk)
    sue = _person("sue", "苏", "Sue", world.outsider, Role.ALLIANCE_ADMIN)
    return records, PatientLink.objects.get(), sue


@case(
    "identity-review",
    "identity-search",
    "identity-patient",
    "identity-patient-link",
    "identity-link-decide",
    "identity-link-unlink",
)
def _identity_pages(world: World) -> None:
    (reader_record, clinic_record), link, sue = _north_identity(world)
    before = link.status
    for user in (sue, world.otto, world.oscar):
        client = web(user)
        review = client.get("/identity/review/")
        assert review.status_code in (200, 403)
        assert "NR-1" not in review.content.decode()
        assert "NR-1" not in client.get("/identity/patients/", {"q": "Wang"}).content.decode()
        for path in (
            f"/identity/patients/{reader_record.pk}/",
            f"/identity/patients/?link_to={reader_record.pk}",
        ):
            assert client.get(path).status_code in (403, 404), path
        for path, data in (
            (f"/identity/links/{link.pk}/decide/", {"decision": "same"}),
            (f"/identity/links/{link.pk}/unlink/", {}),
            (f"/identity/patients/{reader_record.pk}/link/", {"other": clinic_record.pk}),
        ):
            assert client.post(path, data).status_code in (403, 404), path
    assert web(sue).get(f"/identity/links/{link.pk}/decide/").status_code == 405
    assert (
        web(sue).post(f"/identity/links/{link.pk}/decide/", {"decision": "same"}).status_code == 404
    )
    link.refresh_from_db()
    assert link.status == before


@case("identity-issuers")
def _identity_issuers(world: World) -> None:
    from referrals.models import PatientIdDomain
    from tenants.access import scope_for_user
    from tenants.services import gateway_credential_create

    north_gateway, _secret = gateway_credential_create(
        scope=scope_for_user(world.adam, institution_id=world.clinic.pk),
        label="north US",
        calling_ae_titles=[],
    )
    otto = web(world.otto)
    page = otto.get("/identity/issuers/").content.decode()
    assert "north US" not in page
    assert north_gateway.key_id not in page
    answer = otto.post("/identity/issuers/", {"issuer": "EVIL", "gateway": north_gateway.pk})
    assert answer.status_code == 404
    assert not PatientIdDomain.objects.filter(gateway=north_gateway).exists()
    # Otto's own site's issuer is his to set; the north clinic's is untouched.
    assert otto.post("/identity/issuers/", {"issuer": "SOUTH"}).status_code == 302
    assert not PatientIdDomain.objects.filter(institution=world.clinic).exists()


@case("console-connected-systems", "console-connected-system-revoke")
def _console_connected_systems(world: World) -> None:
    from tenants.models import ConnectedSystem

    north = ConnectedSystem.objects.create(
        institution=world.clinic, name="North PACS", key_id="cs_northpacs", secret_hash="0" * 64
    )
    client = web(world.otto)  # the south's hospital administrator
    page = client.get("/console/connected-systems/").content.decode()
    assert "cs_northpacs" not in page
    assert "North PACS" not in page
    assert client.post(f"/console/connected-systems/{north.pk}/revoke/").status_code == 404
    assert client.post("/console/connected-systems/999999999/revoke/").status_code == 404
    north.refresh_from_db()
    assert north.revoked_at is None
    assert web(world.oscar).get("/console/connected-systems/").status_code == 403
    # A system the south created sees only the south's studies: its own institution's.
    from tenants.access import scope_for_connected_system

    south = ConnectedSystem.objects.create(
        institution=world.outsider, name="South PACS", key_id="cs_southpacs", secret_hash="1" * 64
    )
    assert scope_for_connected_system(south).institution == world.outsider


def test_an_outsider_gets_no_nested_bulk_data(world: World) -> None:
    """A bulk data path inside sequence items (dicomweb:bulkdata) answers the outsider
    exactly as one that does not exist."""
    from referrals.models import Instance

    from .dicom_support import ecg_two_groups, multipart_related
    from .test_wado import to_bytes

    body, ctype = multipart_related([to_bytes(ecg_two_groups())])
    api_client_for(world.alice).post("/dicomweb/studies", data=body, content_type=ctype)
    north = Instance.objects.select_related("study", "series").get(institution=world.clinic)
    url = (
        f"/dicomweb/studies/{north.study.study_uid}/series/{north.series.series_uid}"
        f"/instances/{north.sop_uid}/bulk/54000100/1/54001010"
    )
    assert api_client_for(world.alice).get(url).status_code == 200
    oscar = api_client_for(world.oscar)
    theirs = oscar.get(url)
    missing = oscar.get(url.replace(north.study.study_uid, "1.2.5"))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.content == missing.content


@case("console-correct-studies")
def _correction_finder(world: World) -> None:
    """The console's study finder (/console/studies/): the south's administrator finds none
    of the north's studies, and a north study's correction page answers 404 like a missing one."""
    from .referral_support import study_at

    north = study_at(world.clinic, patient_id="NORTH-PID-1", patient_name="North^Patient")
    otto = web(world.otto)  # the south's hospital administrator
    searched = otto.get("/console/studies/", {"q": "NORTH-PID-1"})
    assert searched.status_code == 200
    assert f"/studies/{north.pk}/correct/" not in searched.content.decode()
    assert "NORTH-PID-1" not in otto.get("/console/studies/").content.decode()
    assert otto.get(f"/studies/{north.pk}/correct/").status_code == 404
    assert otto.get("/studies/999999999/correct/").status_code == 404
    assert web(world.oscar).get("/console/studies/").status_code == 403
    # The north's own administrator does find it.
    assert "NORTH-PID-1" in web(world.adam).get("/console/studies/").content.decode()


@case("api:held-instance-new-patient", "held-new-patient")
def _held_new_patient(world: World) -> None:
    """Filing a north held instance as a new patient: 404 for the south, by API and page."""
    held = _north_held(world)
    for user in (world.oscar, world.otto):
        _api_404(world, user, f"/api/v1/archive/held/{held.pk}/new-patient/", "post")
    answer = web(world.otto).post(f"/archive/held/{held.pk}/new-patient/")
    assert answer.status_code == 404, answer.status_code
    held.refresh_from_db()
    assert held.resolved_at is None
