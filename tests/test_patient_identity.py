"""Patient identity across the alliance: issuers of patient IDs coerced at ingest, resident
identity numbers, the master patient index (deterministic and probabilistic links, review,
manual link and unlink), and that priors, prior reports and the commission's figures follow
the links."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pydicom
import pytest
from django.core.files.storage import default_storage
from django.test import Client
from freezegun import freeze_time
from pydicom.dataset import Dataset
from rest_framework.test import APIClient

from alliance.analytics.models import StudyRollup
from alliance.analytics.refresh import analytics_refresh
from referrals.archive.ingest import IngestContext, instance_store
from referrals.archive.synthetic import SyntheticPatient, ct_series, to_bytes
from referrals.identity import matching
from referrals.identity.issuers import patient_id_issuer_set
from referrals.identity.resident_id import (
    id_mask,
    resident_id_find,
    resident_id_mask,
    resident_id_normalize,
)
from referrals.identity.services import (
    patient_identity_refresh,
    patient_link_manual,
    patient_unlink,
)
from referrals.models import (
    Instance,
    LinkMethod,
    LinkStatus,
    Patient,
    PatientIdDomain,
    PatientLink,
    Study,
)
from referrals.workflow.services import priors_of
from tenants import access
from tenants.models import AuditEvent, Institution, Role
from tenants.services import gateway_credential_create

from .conftest import _person
from .factories import InstitutionFactory, join
from .ingest_support import media  # noqa: F401
from .referral_support import study_at

pytestmark = pytest.mark.django_db

# A resident identity number with a valid check digit (GB 11643's own example region), its
# 15-digit pre-1999 form, and the same number with a wrong check digit.
RESIDENT_18 = "11010519491231002X"
RESIDENT_15 = "110105491231002"
RESIDENT_BAD = "110105194912310021"


def _scope(user, institution) -> access.Scope:
    return access.scope_for_user(user, institution_id=institution.pk)


@pytest.fixture
def ada(world):
    """The north alliance's administrator, at its lead (reader) hospital."""
    return _person("ada", "阿达", "Ada", world.reader, Role.ALLIANCE_ADMIN)


@pytest.fixture
def ada_scope(world, ada):
    return _scope(ada, world.reader)


def _store(tmp_path: Path, institution, patient: SyntheticPatient, *, gateway_id=None, edit=None):
    """One CT instance through the real ingest; returns its study."""
    ds = next(iter(ct_series(patient=patient, count=1, size=16)))
    if edit is not None:
        edit(ds)
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    path.write_bytes(to_bytes(ds))
    context = IngestContext(institution, gateway_id=gateway_id)
    outcome = instance_store(institution=institution, path=path, via="test", context=context)
    context.settle()
    assert outcome.status == "stored", outcome.message
    assert outcome.instance is not None
    return Study.objects.select_related("patient").get(pk=outcome.instance.study_id)


# --- Issuers of patient IDs -----------------------------------------------------------------


def test_configured_issuers_link_two_sites_deterministically(world, media, tmp_path):  # noqa: F811
    for site, user in ((world.clinic, world.adam), (world.reader, None)):
        if user is None:
            user = _person("hal", "哈尔", "Hal", site, Role.HOSPITAL_ADMIN)
        patient_id_issuer_set(scope=_scope(user, site), issuer="NORTH-HIS")
    patient = SyntheticPatient("H-123", "Li^Na=李^娜", "19700101", "F")
    at_clinic = _store(tmp_path, world.clinic, patient)
    at_reader = _store(tmp_path, world.reader, patient)

    assert at_clinic.patient.issuer == at_reader.patient.issuer == "NORTH-HIS"
    assert at_clinic.patient_key == at_reader.patient_key
    assert priors_of(at_clinic, world.north) == [at_reader]
    # The index and the DICOM JSON carry the coerced issuer; the stored bytes do not.
    instance = Instance.objects.get(study=at_clinic)
    assert instance.metadata["00100021"] == {"vr": "LO", "Value": ["NORTH-HIS"]}
    with default_storage.open(instance.object_key) as fp:
        assert "IssuerOfPatientID" not in pydicom.dcmread(fp)
    assert AuditEvent.objects.filter(event="patient_id_issuer_set").count() == 2


def test_without_a_configured_issuer_two_sites_stay_apart(world, media, tmp_path):  # noqa: F811
    patient = SyntheticPatient("H-123", "Li^Na=李^娜", "19700101", "F")
    at_clinic = _store(tmp_path, world.clinic, patient)
    at_reader = _store(tmp_path, world.reader, patient)
    assert at_clinic.patient.issuer == ""
    assert at_clinic.patient_key != at_reader.patient_key
    assert priors_of(at_clinic, world.north) == []


def test_a_gateway_issuer_wins_over_the_site_and_a_sent_issuer_wins_over_both(
    world,
    media,  # noqa: F811
    tmp_path,
):
    adam = _scope(world.adam, world.clinic)
    credential, secret = gateway_credential_create(scope=adam, label="US", calling_ae_titles=[])
    patient_id_issuer_set(scope=adam, issuer="CLINIC")
    patient_id_issuer_set(scope=adam, issuer="US-ROOM", gateway=credential)

    plain = _store(tmp_path, world.clinic, SyntheticPatient("A-1", "Zhao^Lei"))
    assert plain.patient.issuer == "CLINIC"
    sent = _store(
        tmp_path,
        world.clinic,
        SyntheticPatient("A-2", "Zhao^Lei", issuer="CITY-MPI"),
        gateway_id=credential.pk,
    )
    assert sent.patient.issuer == "CITY-MPI"

    # Through the real STOW-RS endpoint with the gateway's credential.
    from .dicom_support import multipart_related

    ds = next(iter(ct_series(patient=SyntheticPatient("A-3", "Zhao^Lei"), count=1, size=16)))
    body, content_type = multipart_related([to_bytes(ds)])
    client = APIClient()
    token = base64.b64encode(f"{credential.key_id}:{secret}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    response = client.post("/dicomweb/studies", data=body, content_type=content_type)
    assert response.status_code == 200, response.content
    assert Patient.objects.get(institution=world.clinic, patient_id="A-3").issuer == "US-ROOM"


def test_an_issuer_is_refused_with_a_reason(world):
    from referrals.identity.issuers import IssuerError

    with pytest.raises(IssuerError) as refused:
        patient_id_issuer_set(scope=_scope(world.adam, world.clinic), issuer="A\\B")
    assert refused.value.code == "bad_issuer"
    assert not PatientIdDomain.objects.exists()


# --- Resident identity numbers --------------------------------------------------------------


def test_resident_numbers_are_checked_with_their_check_digit():
    assert resident_id_normalize(RESIDENT_18) == RESIDENT_18
    assert resident_id_normalize(RESIDENT_18.lower()) == RESIDENT_18
    assert resident_id_normalize(RESIDENT_BAD) is None  # wrong check digit
    assert resident_id_normalize(RESIDENT_15) == RESIDENT_18  # the old form, widened
    assert resident_id_normalize("110105491331002") is None  # month 13
    assert resident_id_normalize("P0001") is None
    assert resident_id_normalize("") is None
    assert resident_id_mask(RESIDENT_18) == "110***********002X"
    assert id_mask(RESIDENT_18) == "110***********002X"
    assert id_mask("P0001") == "P0001"
    assert resident_id_find(["P0001", RESIDENT_BAD, RESIDENT_15]) == RESIDENT_18


def _other_ids(*numbers: str):
    def edit(ds: Dataset) -> None:
        items = []
        for number in numbers:
            item = Dataset()
            item.PatientID = number
            item.TypeOfPatientID = "TEXT"
            items.append(item)
        ds.OtherPatientIDsSequence = items

    return edit


def test_the_same_resident_number_links_records_of_two_sites(world, media, tmp_path):  # noqa: F811
    at_clinic = _store(
        tmp_path,
        world.clinic,
        SyntheticPatient("C-77", "Zhou^Min=周^敏", "19491231", "F"),
        edit=_other_ids(RESIDENT_18),
    )
    # The reader hospital files the person under the 15-digit number itself, no name.
    at_reader = _store(tmp_path, world.reader, SyntheticPatient(RESIDENT_15, "", "", ""))
    assert at_clinic.patient_key != at_reader.patient_key
    patient_identity_refresh(patient_id=at_clinic.patient_id)
    patient_identity_refresh(patient_id=at_reader.patient_id)

    link = PatientLink.objects.get()
    assert (link.method, link.status) == (LinkMethod.RESIDENT_ID, LinkStatus.LINKED)
    at_clinic.refresh_from_db()
    at_reader.refresh_from_db()
    assert at_clinic.patient_key == at_reader.patient_key
    assert priors_of(at_reader, world.north) == [at_clinic]
    clinic_patient = Patient.objects.get(pk=at_clinic.patient_id)
    assert clinic_patient.resident_id_masked == "110***********002X"
    # Only a hash and a masked form are kept of a number found among the other IDs.
    kept = " ".join(
        str(v) for v in Patient.objects.filter(pk=clinic_patient.pk).values().get().values()
    )
    assert RESIDENT_18 not in kept
    event = AuditEvent.objects.get(event="patient_linked")
    assert event.detail["method"] == LinkMethod.RESIDENT_ID
    assert set(event.detail["sites"]) == {world.clinic.pk, world.reader.pk}


def test_two_different_valid_resident_numbers_veto_a_demographic_match(world):
    a = Patient.objects.create(
        institution=world.clinic,
        patient_id="X-1",
        name="Wang^Wei",
        birth_date=dt.date(1980, 5, 12),
        sex="M",
        patient_key="k-x1",
        own_key="k-x1",
        resident_key="r-1",
    )
    b = Patient.objects.create(
        institution=world.reader,
        patient_id="X-2",
        name="Wang^Wei",
        birth_date=dt.date(1980, 5, 12),
        sex="M",
        patient_key="k-x2",
        own_key="k-x2",
        resident_key="r-2",
    )
    patient_identity_refresh(patient_id=b.pk)
    assert not PatientLink.objects.filter(patient_a=a, patient_b=b).exists()


# --- Probabilistic matching -----------------------------------------------------------------


def _patient(site, pid: str, name: str, birth: dt.date | None, sex: str = "M") -> Patient:
    return Patient.objects.create(
        institution=site,
        patient_id=pid,
        name=name,
        birth_date=birth,
        sex=sex,
        patient_key=f"key-{site.code}-{pid}",
        own_key=f"key-{site.code}-{pid}",
    )


def test_demographics_link_above_the_threshold_queue_between_and_ignore_below(world):
    birth = dt.date(1965, 4, 12)
    known = _patient(world.reader, "R-1", "Wang^Xiaoming=王^小明", birth)
    same = _patient(world.clinic, "C-1", "王小明", birth)  # hanzi only, same person
    swapped = _patient(world.clinic, "C-2", "Wang^Xiaoming", dt.date(1965, 12, 4))  # day/month
    other = _patient(world.clinic, "C-3", "Li^Hua", birth, "F")
    for record in (same, swapped, other):
        patient_identity_refresh(patient_id=record.pk)

    linked = PatientLink.objects.get(patient_a=known, patient_b=same)
    assert linked.status == LinkStatus.LINKED
    assert linked.score is not None
    assert linked.score >= matching.UPPER
    proposed = PatientLink.objects.get(patient_a=known, patient_b=swapped)
    assert proposed.status == LinkStatus.PROPOSED
    assert proposed.score is not None
    assert matching.LOWER <= proposed.score < matching.UPPER
    assert not PatientLink.objects.filter(patient_b=other).exists()
    known.refresh_from_db()
    same.refresh_from_db()
    swapped.refresh_from_db()
    assert known.patient_key == same.patient_key != swapped.patient_key
    # A repeat of the run changes nothing.
    before = PatientLink.objects.count()
    patient_identity_refresh(patient_id=same.pk)
    assert PatientLink.objects.count() == before
    assert linked.events.count() == 1


def test_the_stable_hook_links_the_patient_of_a_complete_study(world, media, tmp_path):  # noqa: F811
    from referrals.archive.stability import generation_of
    from referrals.tasks import patient_identity_when_stable

    person = SyntheticPatient("R-9", "Sun^Li=孙^丽", "19810203", "F")
    first = _store(tmp_path, world.reader, person)
    second = _store(tmp_path, world.clinic, SyntheticPatient("C-9", "孙丽", "19810203", "F"))
    now = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    Study.objects.filter(pk=second.pk).update(stable_at=now)
    assert patient_identity_when_stable(second.pk, generation_of(now - dt.timedelta(1))) is None
    assert not PatientLink.objects.exists()  # a stale generation does nothing
    patient_identity_when_stable(second.pk, generation_of(now))
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.patient_key == second.patient_key


# --- Who follows the links ------------------------------------------------------------------


def test_priors_follow_a_manual_link_and_unlink_restores(world, ada_scope):
    mine = study_at(world.clinic, patient_id="C-5", patient_key="key-c5", study_date="2026-11-10")
    theirs = study_at(world.reader, patient_id="R-5", patient_key="key-r5", study_date="2026-11-01")
    assert priors_of(mine, world.north) == []

    link = patient_link_manual(
        scope=ada_scope,
        alliance_id=world.north.pk,
        patient=mine.patient,
        other=theirs.patient,
        reason="同一人 身份证核对",
    )
    mine.refresh_from_db()
    assert priors_of(mine, world.north) == [theirs]
    assert mine.patient_key == "key-c5"  # the smaller own key of the two names the person
    theirs.refresh_from_db()
    assert theirs.patient_key == "key-c5"
    # A study that arrives later for a linked record joins the person at once.
    later = study_at(world.reader, patient_id="R-5", patient_key="key-c5", study_date="2026-11-12")
    assert set(priors_of(mine, world.north)) == {theirs, later}

    patient_unlink(scope=ada_scope, link=link, reason="不是同一人")
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.patient_key, theirs.patient_key) == ("key-c5", "key-r5")
    assert priors_of(mine, world.north) == []
    link.refresh_from_db()
    assert link.status == LinkStatus.UNLINKED
    assert [e.status for e in link.events.all()] == [LinkStatus.LINKED, LinkStatus.UNLINKED]
    events = AuditEvent.objects.filter(object_type="patient_link", object_id=str(link.pk))
    assert sorted(events.values_list("event", flat=True)) == ["patient_linked", "patient_unlinked"]
    assert set(events.values_list("username", flat=True)) == {"ada"}
    # The automatic linker does not undo a person's unlink.
    patient_identity_refresh(patient_id=mine.patient_id)
    link.refresh_from_db()
    assert link.status == LinkStatus.UNLINKED


def test_prior_reports_follow_the_link(world, django_capture_on_commit_callbacks):
    from reporting import selectors, services

    from .reporting_support import desk_make

    desk = desk_make(world, django_capture_on_commit_callbacks)
    report = services.report_create(
        scope=desk.sam(), referral_id=desk.mr.pk, template_id=desk.mr_knee.pk
    )
    report = services.report_autosave(
        scope=desk.sam(),
        report_id=report.pk,
        version=report.version,
        content={"findings": "ACL intact.", "impression": "Normal."},
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.report_sign(
            scope=desk.sam(), report_id=report.pk, kind="final", version=report.version
        )
    assert list(selectors.prior_reports(desk.rita(), desk.chest)) == []
    patient_link_manual(
        scope=_scope(desk.ada, world.reader),
        alliance_id=world.north.pk,
        patient=desk.chest.study.patient,
        other=desk.mr.study.patient,
    )
    desk.chest.study.refresh_from_db()
    assert [r.pk for r in selectors.prior_reports(desk.rita(), desk.chest)] == [report.pk]


def _cross_site_repeats() -> int:
    return sum(StudyRollup.objects.filter(grain="day").values_list("repeats_cross_site", flat=True))


def test_the_commission_figures_follow_a_link_and_an_unlink(world, ada_scope):
    with freeze_time("2026-11-28 12:00:00+08:00"):
        first = study_at(
            world.reader, patient_id="R-7", patient_key="key-r7", study_date="2026-11-10"
        )
        again = study_at(
            world.clinic, patient_id="C-7", patient_key="key-c7", study_date="2026-11-20"
        )
        analytics_refresh(full=True)
        assert _cross_site_repeats() == 0
        link = patient_link_manual(
            scope=ada_scope, alliance_id=world.north.pk, patient=first.patient, other=again.patient
        )
        result = analytics_refresh()
        assert not result.full
        assert _cross_site_repeats() == 1
        patient_unlink(scope=ada_scope, link=link)
        analytics_refresh()
        assert _cross_site_repeats() == 0


# --- The pages ------------------------------------------------------------------------------


def _browser(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def test_the_alliance_admin_reviews_a_proposal_with_masked_ids(world, ada):
    a = _patient(world.reader, RESIDENT_18, "Wang^Xiaoming", dt.date(1949, 12, 3))
    b = _patient(world.clinic, "C-1", "Wang^Xiaoming", dt.date(1949, 3, 12))  # day/month
    patient_identity_refresh(patient_id=b.pk)
    link = PatientLink.objects.get(patient_a=a, patient_b=b)
    assert link.status == LinkStatus.PROPOSED

    client = _browser(ada)
    page = client.get("/identity/review/")
    assert page.status_code == 200
    text = page.content.decode()
    assert f'id="link-{link.pk}"' in text
    assert "110***********002X" in text
    assert RESIDENT_18 not in text

    decided = client.post(
        f"/identity/links/{link.pk}/decide/", {"decision": "different", "reason": "两个人"}
    )
    assert decided.status_code == 302
    link.refresh_from_db()
    assert link.status == LinkStatus.REJECTED
    assert AuditEvent.objects.filter(event="patient_link_rejected").count() == 1
    # Changed its mind: the same person after all, from the patient's page.
    client.post(f"/identity/links/{link.pk}/decide/", {"decision": "same"})
    link.refresh_from_db()
    assert link.status == LinkStatus.LINKED
    assert client.get(f"/identity/patients/{a.pk}/").status_code == 200
    found = client.get("/identity/patients/", {"q": "王小明"})
    assert f"/identity/patients/{b.pk}/" in found.content.decode()
    found = client.get("/identity/patients/", {"q": RESIDENT_18})
    assert found.status_code == 200


def test_a_manual_link_from_the_search_page(world, ada):
    a = _patient(world.reader, "R-1", "Zhang^San", dt.date(1990, 1, 1))
    b = _patient(world.clinic, "C-1", "Li^Si", dt.date(1991, 2, 2))
    client = _browser(ada)
    response = client.post(f"/identity/patients/{a.pk}/link/", {"other": b.pk, "reason": "核对"})
    assert response.status_code == 302
    link = PatientLink.objects.get()
    assert (link.method, link.status, link.reason) == (LinkMethod.MANUAL, LinkStatus.LINKED, "核对")
    response = client.post(f"/identity/links/{link.pk}/unlink/", {"reason": "错误"})
    assert response.status_code == 302
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.patient_key != b.patient_key


def test_only_the_alliance_admin_reviews_and_a_hospital_admin_sets_issuers(world):
    adam = _browser(world.adam)
    with_text = adam.get("/identity/review/")
    assert with_text.status_code == 403
    assert "alliance administrator" in with_text.content.decode()
    assert adam.get("/identity/issuers/").status_code == 200
    saved = adam.post("/identity/issuers/", {"issuer": "BEISHAN"})
    assert saved.status_code == 302
    assert PatientIdDomain.objects.get(institution=world.clinic).issuer == "BEISHAN"
    refused = adam.post("/identity/issuers/", {"issuer": "A\\B"})
    assert refused.status_code == 400
    assert _browser(world.alice).get("/identity/issuers/").status_code == 403


# --- The benchmark --------------------------------------------------------------------------


def test_the_benchmark_scores_a_tiny_alliance_against_its_ground_truth():
    from itertools import combinations

    from bench.identity.run import linkage_score, world_load, world_remove
    from bench.identity.synthetic import alliance_generate

    synthetic = alliance_generate(persons=40, sites=3, seed=7, errors=0.1)
    assert len({r.person for r in synthetic.records}) == 40
    alliance, truth = world_load(synthetic, tag="tiny")
    score = linkage_score(alliance, truth, upper=matching.UPPER, lower=matching.LOWER)

    keys = dict(Patient.objects.filter(pk__in=truth).values_list("pk", "patient_key"))
    pairs = list(combinations(sorted(truth), 2))
    same_person = {(a, b) for a, b in pairs if truth[a] == truth[b]}
    same_key = {(a, b) for a, b in pairs if keys[a] == keys[b]}
    assert score.true_pairs == len(same_person) > 0
    assert score.linked_pairs == len(same_key)
    assert score.precision == (len(same_person & same_key) / len(same_key) if same_key else 1.0)
    assert score.recall == len(same_person & same_key) / len(same_person)
    assert 0 < score.recall <= score.recall_after_review <= 1
    proposals = PatientLink.objects.filter(alliance=alliance, status=LinkStatus.PROPOSED)
    assert score.proposed == proposals.count()
    world_remove(alliance)
    assert not Patient.objects.filter(pk__in=truth).exists()


def test_a_new_record_with_a_linked_records_id_joins_the_person(world, ada_scope):
    """Same issuer and ID at a third site: the stable hook gives it the person's key."""
    made = InstitutionFactory(code="north-clinic-2", name_en="Nanshan Clinic")
    third = Institution.objects.get(code=made.code)
    join(world.north, third)
    first = study_at(world.clinic, patient_id="C-8", patient_key="key-c8")
    other = study_at(world.reader, patient_id="R-8", patient_key="key-a8")
    patient_link_manual(
        scope=ada_scope, alliance_id=world.north.pk, patient=first.patient, other=other.patient
    )
    Patient.objects.filter(pk=first.patient_id).update(issuer="NORTH-HIS")
    arrived = study_at(third, patient_id="C-8", patient_key="key-c8")
    Patient.objects.filter(pk=arrived.patient_id).update(issuer="NORTH-HIS")
    assert arrived.patient_key == "key-c8"
    patient_identity_refresh(patient_id=arrived.patient_id)
    arrived.refresh_from_db()
    assert arrived.patient_key == "key-a8"
    assert set(priors_of(arrived, world.north)) == {first, other}


def _two_patients_each_with_a_shared_report(world, capture, settings):
    """The chest report of one patient and sam's MR report of another site's patient, each
    shared with its patient; returns the chest link's token and the signed chest case."""
    from django.core.cache import cache

    from reporting import services

    from .conftest import api_client_for
    from .share_support import signed_report

    cache.clear()
    settings.HUB_SHARE_RATE_IP = "1000/m"
    signed = signed_report(world, capture)
    desk = signed.desk
    with capture(execute=True):
        mr = services.report_create(
            scope=desk.sam(), referral_id=desk.mr.pk, template_id=desk.mr_knee.pk
        )
        mr = services.report_autosave(
            scope=desk.sam(),
            report_id=mr.pk,
            version=mr.version,
            content={"findings": "半月板撕裂。", "impression": "内侧半月板后角撕裂。"},
        )
        mr = services.report_sign(
            scope=desk.sam(), report_id=mr.pk, kind="final", version=mr.version
        )
    made = api_client_for(signed.tech).post(
        f"/api/v1/reports/{signed.report.pk}/share-links/", {}, format="json"
    )
    token = made.json()["url"].rstrip("/").rsplit("/", 1)[1]
    api_client_for(desk.reading.sam).post(
        f"/api/v1/reports/{mr.pk}/share-links/", {}, format="json"
    )
    return token, signed


def test_the_patients_file_follows_a_link_and_an_unlink(
    world,
    media,  # noqa: F811
    django_capture_on_commit_callbacks,
    settings,
):
    token, signed = _two_patients_each_with_a_shared_report(
        world, django_capture_on_commit_callbacks, settings
    )
    desk = signed.desk
    phone = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "内侧半月板后角撕裂" not in phone.get(f"/s/{token}/all/").content.decode()

    link = patient_link_manual(
        scope=_scope(desk.ada, world.reader),
        alliance_id=world.north.pk,
        patient=signed.study.patient,
        other=desk.mr.study.patient,
    )
    assert "内侧半月板后角撕裂" in phone.get(f"/s/{token}/all/").content.decode()
    patient_unlink(scope=_scope(desk.ada, world.reader), link=link)
    assert "内侧半月板后角撕裂" not in phone.get(f"/s/{token}/all/").content.decode()


def test_the_patients_file_never_follows_a_link_made_by_demographics_alone(
    world,
    media,  # noqa: F811
    django_capture_on_commit_callbacks,
    settings,
):
    """A reader judges a prior; a patient holding a link cannot: only certain links count."""
    from referrals.identity.services import patient_link_set
    from referrals.models import LinkMethod, LinkStatus, Study

    token, signed = _two_patients_each_with_a_shared_report(
        world, django_capture_on_commit_callbacks, settings
    )
    desk = signed.desk
    patient_link_set(
        alliance_id=world.north.pk,
        a=signed.study.patient_id,
        b=desk.mr.study.patient_id,
        status=LinkStatus.LINKED,
        method=LinkMethod.DEMOGRAPHICS,
        score=0.97,
    )
    # The reader's side follows the automatic link: both studies now carry one key ...
    keys = set(
        Study.objects.filter(pk__in=(signed.study.pk, desk.mr.study.pk)).values_list(
            "patient_key", flat=True
        )
    )
    assert len(keys) == 1
    # ... the patient's own file does not.
    phone = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "内侧半月板后角撕裂" not in phone.get(f"/s/{token}/all/").content.decode()


def test_the_console_home_leads_each_administrator_to_their_identity_page(world, ada):
    assert 'href="/identity/issuers/"' in _browser(world.adam).get("/console/").content.decode()
    page = _browser(ada).get("/console/").content.decode()
    assert 'href="/identity/review/"' in page
    assert 'href="/identity/issuers/"' not in page


def test_the_rebuild_command_links_a_whole_alliance_and_refuses_bad_thresholds(world):
    import io

    from django.core.management import CommandError, call_command

    birth = dt.date(1972, 6, 1)
    a = _patient(world.reader, "R-1", "Zhang^Wei=张^伟", birth)
    b = _patient(world.clinic, "C-1", "张伟", birth)
    _patient(world.outsider, "S-1", "张伟", birth)  # another alliance: never a candidate
    out = io.StringIO()
    call_command("patient_links_rebuild", "--alliance", "north", stdout=out)
    assert "north: patients=2" in out.getvalue()
    assert PatientLink.objects.get().status == LinkStatus.LINKED
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.patient_key == b.patient_key
    with pytest.raises(CommandError):
        call_command("patient_links_rebuild", "--upper", "0.5", "--lower", "0.9")
    with pytest.raises(CommandError):
        call_command("patient_links_rebuild", "--alliance", "nowhere")
