"""dicomweb-client (a peer no one here wrote) against a real HTTP server: store, search,
retrieve, metadata and bulk data; an outsider's token; and a viewer's CORS preflight."""

from __future__ import annotations

import io

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from knox.models import AuthToken
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from referrals.archive.synthetic import HUB_UID_ROOT, to_bytes
from referrals.models import Instance
from tenants.models import User

from .test_qido import WANG, series
from .test_wado import parse_multipart

PYDICOM_FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm"]
ANY_SYNTAX = (("application/dicom", "*"),)
VIEWER = "http://viewer.example.test:3000"


def session_for(user: User) -> requests.Session:
    _token, key = AuthToken.objects.create(user=user)
    session = requests.Session()
    session.trust_env = False  # the loopback, whatever proxy the environment names
    session.headers["Authorization"] = f"Token {key}"
    return session


def client_for(live_server, user: User) -> tuple[DICOMwebClient, requests.Session]:
    session = session_for(user)
    return DICOMwebClient(url=f"{live_server.url}/dicomweb", session=session), session


def as_sent(ds: Dataset) -> bytes:
    """The bytes dicomweb-client puts on the wire for `ds` (its store_instances encoding)."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


def rle_copy() -> Dataset:
    """MR_small_RLE is MR_small compressed, under the same UIDs: give it its own."""
    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix=HUB_UID_ROOT)
    ds.SeriesInstanceUID = generate_uid(prefix=HUB_UID_ROOT)
    return ds


@pytest.fixture
def stored(world, live_server) -> dict[str, Dataset]:
    """A synthetic CT study and pydicom's test files, stored by alice over STOW-RS."""
    datasets = {name: pydicom.dcmread(get_testdata_file(name)) for name in PYDICOM_FILES}
    datasets["MR_small_RLE.dcm"] = rle_copy()
    for index, ds in enumerate(series(WANG, count=3, accession="SYN1")):
        # Read back as a Part 10 file, so the client writes it with its preamble.
        datasets[f"synthetic-{index}"] = pydicom.dcmread(io.BytesIO(to_bytes(ds)))
    client, _session = client_for(live_server, world.alice)
    response = client.store_instances(list(datasets.values()))
    assert "FailedSOPSequence" not in response
    assert len(response.ReferencedSOPSequence) == len(datasets)
    assert Instance.objects.count() == len(datasets)
    return datasets


def uid(item: dict, tag: str) -> str:
    return item[tag]["Value"][0]


def test_search_with_filters(world, live_server, stored):
    client, _s = client_for(live_server, world.alice)
    studies = client.search_for_studies()
    assert len(studies) == 5  # CT_small, MR_small (+ its RLE copy), JPEG2000, SC, synthetic
    [ct] = client.search_for_studies(search_filters={"PatientID": "1CT1"})
    assert uid(ct, "0020000D") == stored["CT_small.dcm"].StudyInstanceUID
    [mr] = client.search_for_studies(search_filters={"ModalitiesInStudy": ["MR"]})
    assert uid(mr, "00201208") == 2
    [synthetic] = client.search_for_studies(
        search_filters={"PatientName": "wang*"}, fields=["StudyDescription"]
    )
    assert uid(synthetic, "00081030") == "CT CHEST"
    assert synthetic["00100010"]["Value"][0]["Ideographic"] == "王^小明"
    assert client.search_for_studies(search_filters={"PatientName": "王*"}) == [synthetic]
    dated = client.search_for_studies(search_filters={"StudyDate": "20040119-20040119"})
    assert [uid(s, "0020000D") for s in dated] == [stored["CT_small.dcm"].StudyInstanceUID]
    paged = client.search_for_studies(limit=2, get_remaining=True)
    assert sorted(uid(s, "0020000D") for s in paged) == sorted(uid(s, "0020000D") for s in studies)

    study_uid = stored["synthetic-0"].StudyInstanceUID
    [ct_series] = client.search_for_series(study_uid, search_filters={"Modality": "CT"})
    series_uid = uid(ct_series, "0020000E")
    assert uid(ct_series, "00201209") == 3
    instances = client.search_for_instances(study_uid, series_uid)
    assert sorted(uid(i, "00200013") for i in instances) == [1, 2, 3]
    [second] = client.search_for_instances(
        study_uid, series_uid, search_filters={"InstanceNumber": 2}
    )
    assert uid(second, "00080018") == stored["synthetic-1"].SOPInstanceUID
    mr_instances = client.search_for_instances(search_filters={"Modality": "MR"})
    assert len(mr_instances) == 2


def test_retrieve_gives_back_what_was_sent(world, live_server, stored):
    client, session = client_for(live_server, world.alice)
    for name, ds in stored.items():
        path = (
            f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}"
        )
        got = client.retrieve_instance(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, media_types=ANY_SYNTAX
        )
        assert got.SOPInstanceUID == ds.SOPInstanceUID, name
        assert got.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID, name
        assert got.PixelData == ds.PixelData, name
        raw = session.get(
            f"{live_server.url}{path}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        )
        [(_headers, content)] = parse_multipart(raw.headers["Content-Type"], raw.content)
        assert content == as_sent(ds), name


def test_retrieve_study_decompresses_by_default(world, live_server, stored):
    client, _s = client_for(live_server, world.alice)
    mr_study = stored["MR_small.dcm"].StudyInstanceUID
    got = {ds.SOPInstanceUID: ds for ds in client.retrieve_study(mr_study)}
    assert len(got) == 2
    rle = stored["MR_small_RLE.dcm"]
    decoded = got[rle.SOPInstanceUID]
    # Without a transfer-syntax parameter the default, Explicit VR Little Endian, is sent.
    assert decoded.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert (decoded.pixel_array == rle.pixel_array).all()
    as_stored = client.retrieve_study(mr_study, media_types=ANY_SYNTAX)
    assert {ds.file_meta.TransferSyntaxUID for ds in as_stored} == {
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.5",
    }


def test_metadata_and_its_bulk_data_uris(world, live_server, stored):
    client, session = client_for(live_server, world.alice)
    ct = stored["CT_small.dcm"]
    [meta] = client.retrieve_study_metadata(ct.StudyInstanceUID)
    assert meta["00100010"]["Value"][0]["Alphabetic"] == str(ct.PatientName)
    # BulkDataURIs are absolute, built from the Host header. dicomweb-client sends its Host
    # without the port (web.py, _http_get), so on this test server's odd port it gets back
    # "localhost/..." exactly as it asked; a browser (and OHIF) sends the port.
    instance = (
        f"/dicomweb/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
        f"/instances/{ct.SOPInstanceUID}"
    )
    assert meta["7FE00010"]["BulkDataURI"] == f"http://localhost{instance}/bulk/7FE00010"

    def metadata(path: str) -> list[dict]:
        answer = session.get(
            f"{live_server.url}{path}/metadata", headers={"Accept": "application/dicom+json"}
        )
        assert answer.status_code == 200
        return answer.json()

    [meta] = metadata(f"/dicomweb/studies/{ct.StudyInstanceUID}")
    pixel_uri = meta["7FE00010"]["BulkDataURI"]
    assert pixel_uri == f"{live_server.url}{instance}/bulk/7FE00010"
    assert client.retrieve_bulkdata(pixel_uri) == [ct.PixelData]

    j2k = stored["JPEG2000.dcm"]
    [series_meta] = client.retrieve_series_metadata(j2k.StudyInstanceUID, j2k.SeriesInstanceUID)
    assert series_meta["00080018"]["Value"] == [j2k.SOPInstanceUID]
    [series_meta] = metadata(
        f"/dicomweb/studies/{j2k.StudyInstanceUID}/series/{j2k.SeriesInstanceUID}"
    )
    frames = client.retrieve_bulkdata(series_meta["7FE00010"]["BulkDataURI"])
    assert frames == list(generate_frames(j2k.PixelData, number_of_frames=1))

    synthetic = stored["synthetic-2"]
    one = client.retrieve_instance_metadata(
        synthetic.StudyInstanceUID, synthetic.SeriesInstanceUID, synthetic.SOPInstanceUID
    )
    assert one["00200013"]["Value"] == [3]
    [one] = metadata(
        f"/dicomweb/studies/{synthetic.StudyInstanceUID}/series/"
        f"{synthetic.SeriesInstanceUID}/instances/{synthetic.SOPInstanceUID}"
    )
    assert client.retrieve_bulkdata(one["7FE00010"]["BulkDataURI"]) == [synthetic.PixelData]


def test_an_outsider_token_gets_nothing(world, live_server, stored):
    client, session = client_for(live_server, world.oscar)
    assert client.search_for_studies() == []
    assert client.search_for_series() == []
    assert client.search_for_instances(search_filters={"PatientID": "1CT1"}) == []
    ct = stored["CT_small.dcm"]
    with pytest.raises(requests.HTTPError) as caught:
        client.retrieve_study(ct.StudyInstanceUID)
    assert caught.value.response.status_code == 404
    with pytest.raises(requests.HTTPError) as caught:
        client.retrieve_study_metadata(ct.StudyInstanceUID)
    assert caught.value.response.status_code == 404
    bulk = (
        f"{live_server.url}/dicomweb/studies/{ct.StudyInstanceUID}/series/"
        f"{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}/bulk/7FE00010"
    )
    assert session.get(bulk).status_code == 404


def test_cors_preflight_for_a_viewer_origin(world, live_server, settings):
    settings.CORS_ALLOWED_ORIGINS = [VIEWER]
    http = requests.Session()
    http.trust_env = False
    preflight = http.options(
        f"{live_server.url}/dicomweb/studies",
        headers={
            "Origin": VIEWER,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, x-institution, accept",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == VIEWER
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "x-institution", "accept"} <= {h.strip() for h in allowed.split(",")}
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]

    session = session_for(world.alice)
    answer = session.get(f"{live_server.url}/dicomweb/studies", headers={"Origin": VIEWER})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == VIEWER
    assert "warning" in answer.headers["Access-Control-Expose-Headers"].lower()

    stranger = http.options(
        f"{live_server.url}/dicomweb/studies",
        headers={"Origin": "http://evil.example.test", "Access-Control-Request-Method": "GET"},
    )
    assert "Access-Control-Allow-Origin" not in stranger.headers
    # CORS opens DICOMweb only: the rest of the API stays same-origin.
    api = http.options(
        f"{live_server.url}/api/v1/me/",
        headers={"Origin": VIEWER, "Access-Control-Request-Method": "GET"},
    )
    assert "Access-Control-Allow-Origin" not in api.headers


def test_the_server_root_resolves_paths_this_client_builds(world, live_server, stored):
    client, _s = client_for(live_server, world.alice)
    ds = stored["synthetic-0"]
    got = client.retrieve_series(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert sorted(int(d.InstanceNumber) for d in got) == [1, 2, 3]


@pytest.mark.integration
@pytest.mark.parametrize(
    "origins",
    ["viewer.example.test", "https://viewer.example.test/ohif", "ftp://viewer.example.test"],
)
def test_a_malformed_cors_origin_stops_the_hub(origins):
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "CORS_ALLOWED_ORIGINS": origins,
        "DJANGO_SETTINGS_MODULE": "alliance.settings",
    }
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "CORS_ALLOWED_ORIGINS" in done.stderr
    assert origins in done.stderr


def test_the_clients_default_accepts_work_everywhere(world, live_server, stored):
    """dicomweb-client's own defaults (`type="*/*"` for frames and bulk data), no media
    types named: every resource answers, compressed instances included."""
    client, _s = client_for(live_server, world.alice)
    j2k = stored["JPEG2000.dcm"]
    uids = (j2k.StudyInstanceUID, j2k.SeriesInstanceUID, j2k.SOPInstanceUID)
    [frame] = client.retrieve_instance_frames(*uids, frame_numbers=[1])
    assert frame == next(generate_frames(j2k.PixelData, number_of_frames=1))
    rle = stored["MR_small_RLE.dcm"]
    rle_uids = (rle.StudyInstanceUID, rle.SeriesInstanceUID, rle.SOPInstanceUID)
    [rle_frame] = client.retrieve_instance_frames(*rle_uids, frame_numbers=[1])
    assert rle_frame == next(generate_frames(rle.PixelData, number_of_frames=1))
    got = client.retrieve_instance(*uids)
    assert got.SOPInstanceUID == j2k.SOPInstanceUID
    assert (got.pixel_array == j2k.pixel_array).all()
    series = client.retrieve_series(rle.StudyInstanceUID, rle.SeriesInstanceUID)
    assert [ds.SOPInstanceUID for ds in series] == [rle.SOPInstanceUID]
    meta = client.retrieve_instance_metadata(*uids)
    uri = meta["7FE00010"]["BulkDataURI"].replace("http://localhost/", f"{live_server.url}/")
    assert client.retrieve_bulkdata(uri) == [frame]


def test_nested_bulk_data_through_the_client(world, live_server):
    """Two ECG waveform groups: each BulkDataURI gives its own group's samples."""
    from .dicom_support import ecg_two_groups

    ecg = ecg_two_groups()
    client, _s = client_for(live_server, world.alice)
    response = client.store_instances([pydicom.dcmread(io.BytesIO(to_bytes(ecg)))])
    assert "FailedSOPSequence" not in response
    meta = client.retrieve_instance_metadata(
        ecg.StudyInstanceUID, ecg.SeriesInstanceUID, ecg.SOPInstanceUID
    )
    groups = meta["54000100"]["Value"]
    got = [
        client.retrieve_bulkdata(
            g["54001010"]["BulkDataURI"].replace("http://localhost/", f"{live_server.url}/")
        )
        for g in groups
    ]
    assert got == [[g.WaveformData] for g in ecg.WaveformSequence]
