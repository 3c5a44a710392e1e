"""QIDO-RS: matching, includefield, paging and its cap, bad queries, audit, and access."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from referrals.archive.ingest import instance_store
from referrals.archive.synthetic import HUB_UID_ROOT, SyntheticPatient, ct_series, to_bytes
from referrals.models import Instance, Study
from tenants.models import AuditEvent, Institution

from .conftest import World, api_client_for

pytestmark = pytest.mark.django_db

WANG = SyntheticPatient("P0001", "Wang^Xiaoming=王^小明")
ZHANG = SyntheticPatient("P0002", "Zhang^San=张^三", birth_date="19800101", sex="F")
OBRIEN = SyntheticPatient("P0003", "O'Brien^Mary", sex="F")


def store(institution: Institution, datasets: list[Dataset], tmp_path: Path) -> None:
    """Store each data set for `institution` the one way instances are stored."""
    for ds in datasets:
        path = tmp_path / f"{uuid.uuid4().hex}.dcm"
        path.write_bytes(to_bytes(ds))
        outcome = instance_store(institution=institution, path=path, via="stow")
        assert outcome.ok, outcome.message


def series(
    patient: SyntheticPatient,
    *,
    count: int = 2,
    modality: str = "CT",
    study_uid: str | None = None,
    **kwargs: object,
) -> list[Dataset]:
    datasets = list(ct_series(patient=patient, count=count, size=16, study_uid=study_uid, **kwargs))
    for ds in datasets:
        ds.Modality = modality
        ds.SeriesDescription = f"{modality} series"
    return datasets


@pytest.fixture
def archive(world: World, tmp_path: Path) -> dict[str, str]:
    """Three studies at the north clinic and one at the outsider clinic; name -> UID."""
    wang = series(
        WANG,
        accession="A100",
        study_date=dt.date(2024, 1, 10),
        description="CT CHEST",
        referring="Li^Wei",
    )
    brain = generate_uid(prefix=HUB_UID_ROOT)
    zhang = series(
        ZHANG,
        modality="MR",
        study_uid=brain,
        accession="A200",
        study_date=dt.date(2024, 1, 25),
        description="MR BRAIN",
    ) + series(
        ZHANG,
        count=1,
        modality="SR",
        study_uid=brain,
        accession="A200",
        study_date=dt.date(2024, 1, 25),
        description="MR BRAIN",
    )
    obrien = series(
        OBRIEN, count=3, accession="B300", study_date=dt.date(2024, 2, 5), description="ct abdomen"
    )
    south = series(WANG, accession="A100", study_date=dt.date(2024, 1, 15), description="CT CHEST")
    store(world.clinic, wang + zhang + obrien, tmp_path)
    store(world.outsider, south, tmp_path)
    return {
        "wang": wang[0].StudyInstanceUID,
        "zhang": brain,
        "obrien": obrien[0].StudyInstanceUID,
        "south": south[0].StudyInstanceUID,
    }


def get(user, path: str, **params):
    return api_client_for(user).get(path, params, HTTP_ACCEPT="application/dicom+json")


def values(body: list[dict], tag: str) -> list:
    return [item[tag]["Value"][0] if "Value" in item[tag] else None for item in body]


def study_uids(user, **params) -> set[str]:
    response = get(user, "/dicomweb/studies", **params)
    assert response.status_code == 200, response.content
    return set(values(response.json(), "0020000D"))


# --- Answers -------------------------------------------------------------------------------


def test_study_search_returns_the_required_attributes(world, archive):
    response = get(world.alice, "/dicomweb/studies", PatientID="P0002")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    [study] = response.json()
    required = {
        "00080005": ("CS", ["ISO_IR 192"]),
        "00080020": ("DA", ["20240125"]),
        "00080030": ("TM", ["093000"]),
        "00080050": ("SH", ["A200"]),
        "00080056": ("CS", ["ONLINE"]),
        "00080061": ("CS", ["MR", "SR"]),
        "00100020": ("LO", ["P0002"]),
        "00100030": ("DA", ["19800101"]),
        "00100040": ("CS", ["F"]),
        "0020000D": ("UI", [archive["zhang"]]),
        "00200010": ("SH", ["1"]),
        "00201206": ("IS", [2]),
        "00201208": ("IS", [3]),
        "00081030": ("LO", ["MR BRAIN"]),
    }
    for tag, (vr, value) in required.items():
        assert study[tag] == {"vr": vr, "Value": value}, tag
    assert study["00100010"] == {
        "vr": "PN",
        "Value": [{"Alphabetic": "Zhang^San", "Ideographic": "张^三"}],
    }
    assert study["00080090"] == {"vr": "PN"}  # present, empty: no referring physician
    assert study["00081190"]["Value"] == [f"http://testserver/dicomweb/studies/{archive['zhang']}"]


def test_no_match_is_an_empty_array_not_204(world, archive):
    response = get(world.alice, "/dicomweb/studies", PatientID="nobody")
    assert response.status_code == 200
    assert response.json() == []


def test_series_search_in_a_study(world, archive):
    response = get(world.alice, f"/dicomweb/studies/{archive['zhang']}/series")
    body = response.json()
    assert sorted(values(body, "00080060")) == ["MR", "SR"]
    assert set(values(body, "0020000D")) == {archive["zhang"]}
    mr = next(s for s in body if s["00080060"]["Value"] == ["MR"])
    assert mr["00201209"]["Value"] == [2]
    assert mr["0008103E"]["Value"] == ["MR series"]
    assert mr["00200011"]["Value"] == [2]
    assert mr["00081190"]["Value"][0].endswith(
        f"/studies/{archive['zhang']}/series/{mr['0020000E']['Value'][0]}"
    )
    only_sr = get(world.alice, f"/dicomweb/studies/{archive['zhang']}/series", Modality="sr")
    assert values(only_sr.json(), "00080060") == ["SR"]


def test_series_search_across_studies_matches_study_attributes(world, archive):
    body = get(world.alice, "/dicomweb/series", PatientID="P0001").json()
    assert len(body) == 1
    assert body[0]["0020000D"]["Value"] == [archive["wang"]]
    assert body[0]["00100010"]["Value"][0]["Alphabetic"] == "Wang^Xiaoming"  # study level too
    ct = get(world.alice, "/dicomweb/series", Modality="CT").json()
    assert set(values(ct, "0020000D")) == {archive["wang"], archive["obrien"]}


def test_instance_search_at_each_resource(world, archive):
    obrien = archive["obrien"]
    [series_uid] = (
        Instance.objects.filter(study__study_uid=obrien)
        .values_list("series__series_uid", flat=True)
        .distinct()
    )
    path = f"/dicomweb/studies/{obrien}/series/{series_uid}/instances"
    body = get(world.alice, path).json()
    assert values(body, "00200013") == [1, 2, 3]
    first = body[0]
    assert first["00280010"] == {"vr": "US", "Value": [16]}
    assert first["00280011"] == {"vr": "US", "Value": [16]}
    assert first["00280100"] == {"vr": "US", "Value": [16]}
    assert first["00280008"] == {"vr": "IS", "Value": [1]}
    assert first["00083002"]["Value"] == ["1.2.840.10008.1.2.1"]
    assert first["0020000E"]["Value"] == [series_uid]
    sop = first["00080018"]["Value"][0]
    assert first["00081190"]["Value"][0].endswith(f"/series/{series_uid}/instances/{sop}")

    assert values(get(world.alice, path, InstanceNumber="2").json(), "00200013") == [2]
    assert values(get(world.alice, path, SOPInstanceUID=sop).json(), "00080018") == [sop]
    assert len(get(world.alice, path, SOPClassUID="1.2.840.10008.5.1.4.1.1.2").json()) == 3
    in_study = get(world.alice, f"/dicomweb/studies/{obrien}/instances", Modality="CT").json()
    assert len(in_study) == 3
    assert in_study[0]["00080060"]["Value"] == ["CT"]  # series attributes at this resource
    everywhere = get(world.alice, "/dicomweb/instances", PatientID="P0003").json()
    assert len(everywhere) == 3
    assert everywhere[0]["00100020"]["Value"] == ["P0003"]  # and study attributes here


# --- Matching ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Wang^Xiaoming", {"wang"}),
        ("wang*", {"wang"}),
        ("WANG^XIAOMING", {"wang"}),
        ("王^小明", {"wang"}),
        ("王*", {"wang"}),
        ("*小明", {"wang"}),
        ("Wang^Xiaoming=王^小明", {"wang"}),
        ("?ang*", {"wang"}),
        ("*an*", {"wang", "zhang"}),
        ("Wang", set()),
        ("O'Brien*", {"obrien"}),
        ("*", {"wang", "zhang", "obrien"}),
        ("", {"wang", "zhang", "obrien"}),
        ("100%*", set()),  # SQL's own wildcards are plain characters in DICOM
        ("_ang*", set()),
    ],
)
def test_patient_name_matching(world, archive, name, expected):
    assert study_uids(world.alice, PatientName=name) == {archive[k] for k in expected}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"PatientID": "P0001"}, {"wang"}),
        ({"PatientID": "p0001"}, set()),  # IDs are case-sensitive
        ({"PatientID": "P000*"}, {"wang", "zhang", "obrien"}),
        ({"00100020": "P0003"}, {"obrien"}),  # a tag as the key
        ({"AccessionNumber": "A*"}, {"wang", "zhang"}),
        ({"AccessionNumber": "B300"}, {"obrien"}),
        ({"StudyDate": "20240125"}, {"zhang"}),
        ({"StudyDate": "20240101-20240131"}, {"wang", "zhang"}),
        ({"StudyDate": "-20240110"}, {"wang"}),
        ({"StudyDate": "20240126-"}, {"obrien"}),
        ({"StudyTime": "0930-1000"}, {"wang", "zhang", "obrien"}),
        ({"StudyTime": "10-"}, set()),
        ({"ModalitiesInStudy": "MR"}, {"zhang"}),
        ({"ModalitiesInStudy": "SR"}, {"zhang"}),
        ({"ModalitiesInStudy": "CT,MR"}, {"wang", "zhang", "obrien"}),
        ({"ModalitiesInStudy": "US"}, set()),
        ({"ReferringPhysicianName": "li*"}, {"wang"}),
        ({"StudyDescription": "*CHEST*"}, {"wang"}),
        ({"StudyDescription": "CT*"}, {"wang", "obrien"}),  # case-insensitive
        ({"PatientBirthDate": "19800101"}, {"zhang"}),
        ({"PatientSex": "F"}, {"zhang", "obrien"}),
        ({"StudyID": "1"}, {"wang", "zhang", "obrien"}),
        ({"PatientName": "Wang*", "StudyDate": "20240201-"}, set()),  # keys combine with AND
        ({"fuzzymatching": "true", "PatientName": "wang*"}, {"wang"}),  # accepted, ignored
    ],
)
def test_study_matching(world, archive, params, expected):
    assert study_uids(world.alice, **params) == {archive[k] for k in expected}


def test_uid_list_matching(world, archive):
    both = f"{archive['wang']},{archive['obrien']}"
    assert study_uids(world.alice, StudyInstanceUID=both) == {archive["wang"], archive["obrien"]}
    response = api_client_for(world.alice).get(
        f"/dicomweb/studies?StudyInstanceUID={archive['wang']}&StudyInstanceUID={archive['zhang']}"
    )
    assert set(values(response.json(), "0020000D")) == {archive["wang"], archive["zhang"]}
    backslash = f"{archive['zhang']}\\{archive['obrien']}"
    assert study_uids(world.alice, StudyInstanceUID=backslash) == {
        archive["zhang"],
        archive["obrien"],
    }


# --- includefield --------------------------------------------------------------------------


def test_includefield_by_name_tag_and_from_stored_metadata(world, archive):
    body = get(
        world.alice,
        "/dicomweb/studies",
        PatientID="P0001",
        includefield=["00081030", "IssuerOfPatientID,BodyPartExamined"],
    ).json()
    [study] = body
    assert study["00081030"]["Value"] == ["CT CHEST"]
    assert study["00100021"] == {"vr": "LO"}
    # Not in the index: read from the study's first stored instance.
    assert study["00180015"] == {"vr": "CS", "Value": ["CHEST"]}


def test_includefield_at_series_level_reads_the_first_instance(world, archive):
    [mr] = get(
        world.alice,
        f"/dicomweb/studies/{archive['zhang']}/series",
        Modality="MR",
        includefield=["InstanceNumber", "00180050", "PatientName"],
    ).json()
    assert mr["00200013"]["Value"] == [1]
    assert mr["00180050"]["Value"] == [5.0]
    assert mr["00100010"]["Value"][0]["Ideographic"] == "张^三"
    assert (
        "7FE00010"
        not in get(
            world.alice, f"/dicomweb/studies/{archive['zhang']}/series", includefield="PixelData"
        ).json()[0]
    )


def test_includefield_all_at_instance_level_returns_the_stored_data_set(world, archive):
    body = get(
        world.alice, f"/dicomweb/studies/{archive['wang']}/instances", includefield="all"
    ).json()
    assert len(body) == 2
    item = body[0]
    assert item["00281050"]["Value"] == [40, -600]  # WindowCenter, only in the metadata
    assert item["00180050"]["Value"] == [5.0]
    sop = item["00080018"]["Value"][0]
    assert item["7FE00010"]["BulkDataURI"].endswith(f"/instances/{sop}/bulk/7FE00010")
    assert item["7FE00010"]["BulkDataURI"].startswith("http://testserver/dicomweb/")
    one = get(
        world.alice, f"/dicomweb/studies/{archive['wang']}/instances", includefield="00180050"
    ).json()[0]
    assert one["00180050"]["Value"] == [5.0]
    assert "00281050" not in one


# --- Paging --------------------------------------------------------------------------------


def test_limit_and_offset_page_through_newest_first(world, archive):
    order = [archive["obrien"], archive["zhang"], archive["wang"]]
    pages = [
        values(get(world.alice, "/dicomweb/studies", limit=1, offset=n).json(), "0020000D")
        for n in range(4)
    ]
    assert pages == [[order[0]], [order[1]], [order[2]], []]
    assert (
        values(get(world.alice, "/dicomweb/studies", limit=2, offset=1).json(), "0020000D")
        == order[1:]
    )


def test_the_cap_clamps_any_limit_and_says_so(world, archive, settings):
    settings.HUB_QIDO_MAX_RESULTS = 2
    unbounded = get(world.alice, "/dicomweb/studies")
    assert len(unbounded.json()) == 2
    assert unbounded["Warning"].startswith("299 ")
    too_many = get(world.alice, "/dicomweb/studies", limit=500)
    assert len(too_many.json()) == 2
    assert "maximum" in too_many["Warning"]
    within = get(world.alice, "/dicomweb/studies", limit=2)
    assert len(within.json()) == 2
    assert "Warning" not in within  # the client asked for a page: no warning
    last = get(world.alice, "/dicomweb/studies", offset=2)
    assert len(last.json()) == 1
    assert "Warning" not in last  # nothing more to tell
    instances = get(world.alice, "/dicomweb/instances", limit=100)
    assert len(instances.json()) == 2
    assert "Warning" in instances


# --- Bad queries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        ("/dicomweb/studies", {"PatientNmae": "x"}, "PatientNmae"),
        ("/dicomweb/studies", {"00109999": "x"}, "00109999"),
        ("/dicomweb/studies", {"Modality": "CT"}, "Modality"),  # a series key at study level
        ("/dicomweb/studies", {"PatientAge": "040Y"}, "PatientAge"),
        ("/dicomweb/studies", {"StudyDate": "2024-01-01"}, "YYYYMMDD"),
        ("/dicomweb/studies", {"StudyDate": "20240231"}, "20240231"),
        ("/dicomweb/studies", {"StudyDate": "20240201-20240101"}, "range"),
        ("/dicomweb/studies", {"StudyDate": "-"}, "range"),
        ("/dicomweb/studies", {"StudyTime": "2500"}, "2500"),
        ("/dicomweb/studies", {"StudyInstanceUID": "1.2.abc"}, "1.2.abc"),
        ("/dicomweb/studies", {"StudyInstanceUID": "1." + "2" * 70}, "UID"),
        ("/dicomweb/studies", {"ModalitiesInStudy": "C*"}, "ModalitiesInStudy"),
        ("/dicomweb/studies", {"limit": "ten"}, "limit"),
        ("/dicomweb/studies", {"limit": "-1"}, "limit"),
        ("/dicomweb/studies", {"offset": "-5"}, "offset"),
        ("/dicomweb/studies", {"includefield": "NoSuchAttribute"}, "NoSuchAttribute"),
        ("/dicomweb/series", {"SeriesNumber": "two"}, "SeriesNumber"),
        ("/dicomweb/instances", {"InstanceNumber": "99999999999"}, "InstanceNumber"),
        ("/dicomweb/instances", {"SOPInstanceUID": "../etc/passwd"}, "SOPInstanceUID"),
        ("/dicomweb/studies", {"PatientID": "P\x00001"}, "PatientID"),
        ("/dicomweb/studies", {"StudyDescription": "x" * 5000}, "StudyDescription"),
    ],
)
def test_bad_queries_get_400_with_the_reason(world, archive, path, params, says):
    response = get(world.alice, path, **params)
    assert response.status_code == 400, response.content
    assert says in response.content.decode()


def test_an_absurd_offset_is_just_past_the_end(world, archive):
    response = get(world.alice, "/dicomweb/studies", offset="9" * 30, limit="9" * 30)
    assert response.status_code == 200
    assert response.json() == []


def test_only_dicom_json_is_offered(world, archive):
    client = api_client_for(world.alice)
    assert client.get("/dicomweb/studies", HTTP_ACCEPT="application/dicom+xml").status_code == 406
    for accept in ("application/json", "*/*", "application/dicom+json; q=0.9, text/html"):
        assert client.get("/dicomweb/studies", HTTP_ACCEPT=accept).status_code == 200, accept


def test_repeated_single_value_keys_are_refused(world, archive):
    response = api_client_for(world.alice).get(
        "/dicomweb/studies?StudyDate=20240101&StudyDate=20240102"
    )
    assert response.status_code == 400
    assert "StudyDate" in response.content.decode()


# --- Audit ---------------------------------------------------------------------------------


def test_each_search_records_one_query_event(world, archive):
    before = AuditEvent.objects.count()
    get(world.alice, "/dicomweb/studies", PatientID="P0001", limit=5)
    get(world.alice, f"/dicomweb/studies/{archive['wang']}/series")
    get(world.alice, "/dicomweb/studies", Bogus="1")
    events = list(AuditEvent.objects.order_by("id")[before:])
    assert [e.event for e in events] == ["query"] * 3
    assert [e.outcome for e in events] == [0, 0, 4]
    assert "PatientID=P0001" in events[0].detail["query"]
    assert events[0].detail["results"] == 1
    assert events[0].username == "alice"
    assert events[0].institution == world.clinic
    assert events[1].study_uid == archive["wang"]
    assert "Bogus" in events[2].detail["error"]


# --- Access --------------------------------------------------------------------------------


def test_other_institutions_studies_never_appear(world, archive):
    assert study_uids(world.alice) == {archive[k] for k in ("wang", "zhang", "obrien")}
    assert study_uids(world.oscar) == {archive["south"]}
    assert study_uids(world.oscar, PatientName="Wang*") == {archive["south"]}
    assert study_uids(world.oscar, StudyInstanceUID=archive["wang"]) == set()
    assert get(world.oscar, f"/dicomweb/studies/{archive['wang']}/series").json() == []
    assert get(world.oscar, f"/dicomweb/studies/{archive['wang']}/instances").json() == []
    assert {i["00100020"]["Value"][0] for i in get(world.oscar, "/dicomweb/instances").json()} == {
        "P0001"
    }
    assert len(get(world.oscar, "/dicomweb/series").json()) == 1
    # The reader hospital sees nothing until a referral grants it a study.
    assert study_uids(world.rita) == set()


def test_roles_without_image_rights_cannot_search(world, archive):
    assert get(world.carl, "/dicomweb/studies").status_code == 403
    assert get(world.adam, "/dicomweb/studies").status_code == 403
    from rest_framework.test import APIClient

    assert APIClient().get("/dicomweb/studies").status_code == 401


def test_a_study_copy_at_each_site_is_found_by_each_site_only(world, archive):
    assert Study.objects.filter(patient_name__startswith="Wang").count() == 2
    north = get(world.alice, "/dicomweb/studies", PatientName="Wang*").json()
    assert values(north, "00080020") == ["20240110"]


def test_a_study_list_asking_for_modality_is_answered_from_the_study(world):
    """OHIF's study list sends includefield=00080060: every modality of the study, at once."""
    from .dicom_support import ct_files, multipart_related

    client = api_client_for(world.alice)
    body, ctype = multipart_related(ct_files(2))
    assert client.post("/dicomweb/studies", data=body, content_type=ctype).status_code == 200
    answer = client.get(
        "/dicomweb/studies?includefield=00081030,00080060", HTTP_ACCEPT="application/dicom+json"
    )
    assert answer.status_code == 200
    [study] = answer.json()
    assert study["00080060"] == {"vr": "CS", "Value": ["CT"]}
