"""WADO-RS retrieve: instances, metadata and bulk data; Accept, 404s, audit, streaming."""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
from pathlib import Path

import pydicom
import pytest
from django.core.files.storage import default_storage
from django.http import StreamingHttpResponse
from django.test import AsyncRequestFactory, RequestFactory
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from referrals.archive.ingest import instance_store
from referrals.archive.synthetic import to_bytes
from referrals.models import Instance
from tenants.models import AuditEvent, Institution

from .conftest import World, api_client_for
from .dicom_support import ecg_two_groups, with_icon
from .test_qido import WANG, series

pytestmark = pytest.mark.django_db

EXPLICIT_LE = "1.2.840.10008.1.2.1"
ANY_SYNTAX = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def keep(institution: Institution, data: bytes, tmp_path: Path) -> Instance:
    path = tmp_path / f"{uuid.uuid4().hex}.dcm"
    path.write_bytes(data)
    outcome = instance_store(institution=institution, path=path, via="stow")
    assert outcome.ok, outcome.message
    assert outcome.instance is not None
    return outcome.instance


def pydicom_file(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def with_overlay(ds: Dataset) -> Dataset:
    """A CT slice with a graphic overlay: a second bulk value besides the pixels."""
    ds.add_new(0x60000010, "US", 128)  # OverlayRows
    ds.add_new(0x60000011, "US", 128)  # OverlayColumns
    ds.add_new(0x60000040, "CS", "G")  # OverlayType
    ds.add_new(0x60000050, "SS", [1, 1])  # OverlayOrigin
    ds.add_new(0x60000100, "US", 1)  # OverlayBitsAllocated
    ds.add_new(0x60000102, "US", 0)  # OverlayBitPosition
    ds.add_new(0x60003000, "OW", bytes(range(256)) * 8)  # OverlayData, 2048 bytes
    return ds


@pytest.fixture
def study(world: World, tmp_path: Path) -> dict:
    """A two-slice CT study at the north clinic (one slice with an overlay)."""
    datasets = series(WANG, count=2)
    with_overlay(datasets[0])
    sent = [to_bytes(ds) for ds in datasets]
    instances = [keep(world.clinic, data, tmp_path) for data in sent]
    return {
        "study": datasets[0].StudyInstanceUID,
        "series": datasets[0].SeriesInstanceUID,
        "sops": [ds.SOPInstanceUID for ds in datasets],
        "bytes": sent,
        "instances": instances,
    }


def parse_multipart(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart/related body, each (headers, content)."""
    assert content_type.startswith("multipart/related"), content_type
    boundary = re.search(r"boundary=\"?([^\";]+)", content_type).group(1).encode()
    pieces = body.split(b"--" + boundary)
    assert pieces[0] == b""
    assert pieces[-1] == b"--\r\n"
    parts = []
    for piece in pieces[1:-1]:
        assert piece.startswith(b"\r\n")
        assert piece.endswith(b"\r\n")
        head, _sep, content = piece[2:-2].partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((headers, content))
    return parts


def multipart(response) -> list[tuple[dict[str, str], bytes]]:
    assert response.status_code == 200, response.status_code
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return parse_multipart(response["Content-Type"], body)


def wado(user, path: str, accept: str | None = None):
    headers = {"HTTP_ACCEPT": accept} if accept is not None else {}
    return api_client_for(user).get(path, **headers)


def study_path(s: dict) -> str:
    return f"/dicomweb/studies/{s['study']}"


def instance_path(s: dict, index: int = 0) -> str:
    return f"{study_path(s)}/series/{s['series']}/instances/{s['sops'][index]}"


# --- Instances -----------------------------------------------------------------------------


def test_a_study_comes_back_as_the_stored_bytes(world, study):
    response = wado(world.alice, study_path(study), 'multipart/related; type="application/dicom"')
    assert isinstance(response, StreamingHttpResponse)
    assert 'type="application/dicom"' in response["Content-Type"]
    parts = multipart(response)
    assert [content for _h, content in parts] == study["bytes"]
    for headers, content in parts:
        assert headers["Content-Type"] == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
        assert int(headers["Content-Length"]) == len(content)


def test_series_and_instance_resources(world, study):
    series_parts = multipart(wado(world.alice, f"{study_path(study)}/series/{study['series']}"))
    assert [c for _h, c in series_parts] == study["bytes"]
    [(_h, only)] = multipart(wado(world.alice, instance_path(study, 1), ANY_SYNTAX))
    assert only == study["bytes"][1]


def test_a_bare_application_dicom_accept_gets_one_instance_unwrapped(world, study):
    response = wado(world.alice, instance_path(study), "application/dicom")
    assert response["Content-Type"] == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
    assert b"".join(response.streaming_content) == study["bytes"][0]
    # A whole study cannot be one application/dicom body.
    assert wado(world.alice, study_path(study), "application/dicom").status_code == 406


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="application/dicom+xml"',
        "image/png",
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50',
        'multipart/related; type="application/dicom"; transfer-syntax=*; q=0',
    ],
)
def test_what_cannot_be_honoured_gets_406_with_the_reason(world, study, accept):
    response = wado(world.alice, study_path(study), accept)
    assert response.status_code == 406
    assert "transfer syntax" in response.content.decode() or (
        "application/dicom" in response.content.decode()
    )


def test_406_names_the_instance_and_its_stored_syntax(world, study):
    response = wado(
        world.alice,
        instance_path(study),
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90',
    )
    assert response.status_code == 406
    assert study["sops"][0] in response.content.decode()
    assert "Explicit VR Little Endian" in response.content.decode()


def test_compressed_instances_as_stored_or_decompressed(world, tmp_path):
    sent = pydicom_file("JPEG2000.dcm")
    instance = keep(world.clinic, sent, tmp_path)
    path = (
        f"/dicomweb/studies/{instance.study.study_uid}/series/"
        f"{instance.series.series_uid}/instances/{instance.sop_uid}"
    )
    [(headers, content)] = multipart(wado(world.alice, path, ANY_SYNTAX))
    assert content == sent
    assert headers["Content-Type"].endswith("transfer-syntax=1.2.840.10008.1.2.4.91")
    # No transfer-syntax parameter means Explicit VR Little Endian (PS3.18 8.7.3.5.2).
    [(headers, content)] = multipart(
        wado(world.alice, path, 'multipart/related; type="application/dicom"')
    )
    assert headers["Content-Type"] == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
    got = pydicom.dcmread(io.BytesIO(content))
    original = pydicom.dcmread(io.BytesIO(sent))
    assert got.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert got.SOPInstanceUID == original.SOPInstanceUID  # decompressing keeps the UID
    assert (got.pixel_array == original.pixel_array).all()
    # Asking for exactly its stored syntax is honoured too.
    [(_h, content)] = multipart(
        wado(
            world.alice,
            path,
            'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.91',
        )
    )
    assert content == sent


def test_an_implicit_vr_instance_is_converted_when_explicit_is_asked(world, tmp_path):
    sent = pydicom_file("MR_small_implicit.dcm")
    instance = keep(world.clinic, sent, tmp_path)
    path = (
        f"/dicomweb/studies/{instance.study.study_uid}/series/"
        f"{instance.series.series_uid}/instances/{instance.sop_uid}"
    )
    [(_h, content)] = multipart(
        wado(world.alice, path, 'multipart/related; type="application/dicom"')
    )
    got = pydicom.dcmread(io.BytesIO(content))
    assert got.file_meta.TransferSyntaxUID == EXPLICIT_LE
    original = pydicom.dcmread(io.BytesIO(sent))
    assert got.PatientName == original.PatientName
    assert got.PixelData == original.PixelData
    [(_h, content)] = multipart(wado(world.alice, path, ANY_SYNTAX))
    assert content == sent


# --- Metadata ------------------------------------------------------------------------------


def test_study_metadata_with_bulk_data_as_urls(world, study):
    response = wado(world.alice, f"{study_path(study)}/metadata", "application/dicom+json")
    assert response["Content-Type"] == "application/dicom+json"
    body = json.loads(b"".join(response.streaming_content))
    assert [i["00080018"]["Value"][0] for i in body] == study["sops"]
    first = body[0]
    assert first["00100010"]["Value"][0]["Alphabetic"] == "Wang^Xiaoming"
    assert first["00100010"]["Value"][0]["Ideographic"] == "王^小明"
    prefix = f"http://testserver{instance_path(study)}/bulk/"
    assert first["7FE00010"]["BulkDataURI"] == prefix + "7FE00010"
    assert first["60003000"]["BulkDataURI"] == prefix + "60003000"
    assert first["00083002"]["Value"] == [EXPLICIT_LE]
    assert "PixelData" not in str(first)
    assert "bulk:" not in str(body)


def test_series_and_instance_metadata(world, study):
    series = wado(world.alice, f"{study_path(study)}/series/{study['series']}/metadata")
    assert len(json.loads(b"".join(series.streaming_content))) == 2
    one = wado(world.alice, f"{instance_path(study, 1)}/metadata", "application/json")
    [item] = json.loads(b"".join(one.streaming_content))
    assert item["00080018"]["Value"] == [study["sops"][1]]
    refused = wado(world.alice, f"{instance_path(study)}/metadata", "application/dicom+xml")
    assert refused.status_code == 406


# --- Bulk data -----------------------------------------------------------------------------


def test_pixel_data_and_other_bulk_values(world, study):
    original = pydicom.dcmread(io.BytesIO(study["bytes"][0]))
    [(headers, pixels)] = multipart(wado(world.alice, f"{instance_path(study)}/bulk/7FE00010"))
    assert headers["Content-Type"] == "application/octet-stream"
    assert pixels == original.PixelData
    [(_h, overlay)] = multipart(
        wado(
            world.alice,
            f"{instance_path(study)}/bulk/60003000",
            'multipart/related; type="application/octet-stream"',
        )
    )
    assert overlay == original[0x60003000].value
    # A small value is bulk data too when asked for by its tag: its little-endian bytes.
    [(_h, rows)] = multipart(wado(world.alice, f"{instance_path(study)}/bulk/00280010"))
    assert rows == (16).to_bytes(2, "little")
    single = wado(world.alice, f"{instance_path(study)}/bulk/7FE00010", "application/octet-stream")
    assert single["Content-Type"] == "application/octet-stream"
    assert b"".join(single.streaming_content) == original.PixelData


def test_a_missing_tag_is_404(world, study):
    assert wado(world.alice, f"{instance_path(study, 1)}/bulk/60003000").status_code == 404


def test_compressed_pixel_data_as_frames_or_decoded(world, tmp_path):
    sent = pydicom_file("JPEG2000.dcm")
    instance = keep(world.clinic, sent, tmp_path)
    base = (
        f"/dicomweb/studies/{instance.study.study_uid}/series/"
        f"{instance.series.series_uid}/instances/{instance.sop_uid}/bulk/7FE00010"
    )
    original = pydicom.dcmread(io.BytesIO(sent))
    frames = list(generate_frames(original.PixelData, number_of_frames=1))
    parts = multipart(wado(world.alice, base))  # dicomweb-client's default: type="*/*"
    assert [c for _h, c in parts] == frames
    assert parts[0][0]["Content-Type"] == "image/jp2; transfer-syntax=1.2.840.10008.1.2.4.91"
    parts = multipart(
        wado(
            world.alice, base, "multipart/related; type=application/octet-stream; transfer-syntax=*"
        )
    )
    assert [c for _h, c in parts] == frames
    [(headers, decoded)] = multipart(
        wado(world.alice, base, 'multipart/related; type="application/octet-stream"')
    )
    assert headers["Content-Type"].endswith(f"transfer-syntax={EXPLICIT_LE}")
    original.decompress(generate_instance_uid=False)
    assert decoded == original.PixelData
    assert wado(world.alice, base, 'multipart/related; type="image/jpeg"').status_code == 406


def _metadata(user, path: str) -> dict:
    [item] = json.loads(b"".join(wado(user, f"{path}/metadata").streaming_content))
    return item


def _bulk(user, uri: str) -> bytes:
    path = uri.removeprefix("http://testserver")
    [(headers, content)] = multipart(wado(user, path))
    assert headers["Content-Type"] == "application/octet-stream"
    return content


def _path_of(instance: Instance) -> str:
    return (
        f"/dicomweb/studies/{instance.study.study_uid}/series/"
        f"{instance.series.series_uid}/instances/{instance.sop_uid}"
    )


def test_each_waveform_group_has_its_own_bulk_data_uri(world, tmp_path):
    ecg = ecg_two_groups()
    instance = keep(world.clinic, to_bytes(ecg), tmp_path)
    path = _path_of(instance)
    groups = _metadata(world.alice, path)["54000100"]["Value"]
    uris = [g["54001010"]["BulkDataURI"] for g in groups]
    assert uris == [
        f"http://testserver{path}/bulk/54000100/0/54001010",
        f"http://testserver{path}/bulk/54000100/1/54001010",
    ]
    assert all("InlineBinary" not in g["54001010"] for g in groups)
    assert [_bulk(world.alice, u) for u in uris] == [g.WaveformData for g in ecg.WaveformSequence]
    # Kept in the index with their place, not just their tag.
    stored = instance.metadata["54000100"]["Value"]
    assert stored[1]["54001010"]["BulkDataURI"] == "bulk:54000100/1/54001010"


def test_an_icon_image_uri_gives_the_icon_not_the_image(world, tmp_path):
    [ct] = series(WANG, count=1)
    with_icon(ct)
    instance = keep(world.clinic, to_bytes(ct), tmp_path)
    path = _path_of(instance)
    meta = _metadata(world.alice, path)
    icon_uri = meta["00880200"]["Value"][0]["7FE00010"]["BulkDataURI"]
    assert icon_uri == f"http://testserver{path}/bulk/00880200/0/7FE00010"
    assert _bulk(world.alice, icon_uri) == ct.IconImageSequence[0].PixelData
    assert _bulk(world.alice, meta["7FE00010"]["BulkDataURI"]) == ct.PixelData


def test_paths_that_name_nothing_are_404(world, tmp_path):
    instance = keep(world.clinic, to_bytes(ecg_two_groups()), tmp_path)
    path = _path_of(instance)
    for missing in (
        "54000100/2/54001010",  # no third group
        "54000100/0/7FE00010",  # not in the item
        "00100010/0/54001010",  # not a sequence
        "54000100",  # a sequence is not a bulk value
    ):
        assert wado(world.alice, f"{path}/bulk/{missing}").status_code == 404, missing
    assert wado(world.alice, f"{path}/bulk/54000100/x/54001010").status_code == 404


def test_metadata_kept_with_tag_only_uris_still_resolves(world, tmp_path):
    """Instances indexed before bulk values had paths: `bulk:54001010` in both groups."""
    ecg = ecg_two_groups()
    instance = keep(world.clinic, to_bytes(ecg), tmp_path)
    old = json.loads(json.dumps(instance.metadata))
    for group in old["54000100"]["Value"]:
        group["54001010"]["BulkDataURI"] = "bulk:54001010"
    Instance.objects.filter(pk=instance.pk).update(metadata=old)
    path = _path_of(instance)
    groups = _metadata(world.alice, path)["54000100"]["Value"]
    second = groups[1]["54001010"]["BulkDataURI"]
    assert second.endswith("/bulk/54000100/1/54001010")
    assert _bulk(world.alice, second) == ecg.WaveformSequence[1].WaveformData
    # A bare tag handed out before resolves as it did: the top level, else its first use.
    assert _bulk(world.alice, f"{path}/bulk/54001010") == ecg.WaveformSequence[0].WaveformData


# --- Converting before the status line, wildcards -------------------------------------------


def j2k_copies(count: int, *, damaged: set[int]) -> list[bytes]:
    """`count` JPEG 2000 instances of one series; those in `damaged` do not decode."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    from referrals.archive.synthetic import HUB_UID_ROOT

    series_uid = generate_uid(HUB_UID_ROOT)
    files = []
    for index in range(count):
        ds = pydicom.dcmread(get_testdata_file("JPEG2000.dcm"))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(HUB_UID_ROOT)
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = index + 1
        if index in damaged:
            # A codestream marker, then noise: the decoder gives up halfway.
            ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(range(200)) * 5])
        files.append(to_bytes(ds))
    return files


EXPLICIT_ONLY = 'multipart/related; type="application/dicom"'
EXPLICIT_ELSE_STORED = f"{EXPLICIT_ONLY}, {ANY_SYNTAX}; q=0.5"


def _series_path(instance: Instance) -> str:
    return f"/dicomweb/studies/{instance.study.study_uid}/series/{instance.series.series_uid}"


def test_an_instance_that_cannot_be_converted_is_406_before_any_body(world, tmp_path):
    [damaged] = j2k_copies(1, damaged={0})
    instance = keep(world.clinic, damaged, tmp_path)
    for path in (_path_of(instance), _series_path(instance), study_path_of(instance)):
        response = wado(world.alice, path, EXPLICIT_ONLY)
        assert response.status_code == 406, path
        text = response.content.decode()
        assert instance.sop_uid in text
        assert "1.2.840.10008.1.2.4.91" in text  # what it is offered as instead
        assert "transfer-syntax=*" in text
    assert not AuditEvent.objects.filter(object_id=instance.sop_uid).exists()
    # When the client also takes the stored syntax, that is what it gets.
    [(headers, content)] = multipart(wado(world.alice, _path_of(instance), EXPLICIT_ELSE_STORED))
    assert headers["Content-Type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.91"
    assert content == damaged


def test_converted_parts_come_first_choice_and_carry_their_length(world, tmp_path):
    [good] = j2k_copies(1, damaged=set())
    instance = keep(world.clinic, good, tmp_path)
    [(headers, content)] = multipart(wado(world.alice, _path_of(instance), EXPLICIT_ELSE_STORED))
    assert headers["Content-Type"] == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
    assert headers["Content-Length"] == str(len(content))
    assert pydicom.dcmread(io.BytesIO(content)).file_meta.TransferSyntaxUID == EXPLICIT_LE


def test_a_later_instance_that_cannot_be_converted(world, tmp_path):
    files = j2k_copies(3, damaged={1})
    instances = [keep(world.clinic, data, tmp_path) for data in files]
    path = _series_path(instances[0])
    # Stored syntax acceptable: the damaged one comes as stored, the others converted.
    parts = multipart(wado(world.alice, path, EXPLICIT_ELSE_STORED))
    syntaxes = [h["Content-Type"].rsplit("=", 1)[1] for h, _c in parts]
    assert syntaxes == [EXPLICIT_LE, "1.2.840.10008.1.2.4.91", EXPLICIT_LE]
    assert parts[1][1] == files[1]
    # Not acceptable: the body stays whole and well formed, without that instance.
    parts = multipart(wado(world.alice, path, EXPLICIT_ONLY))
    got = [pydicom.dcmread(io.BytesIO(c)).SOPInstanceUID for _h, c in parts]
    assert got == [instances[0].sop_uid, instances[2].sop_uid]


def study_path_of(instance: Instance) -> str:
    return f"/dicomweb/studies/{instance.study.study_uid}"


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="*/*"',
        'multipart/related; type="application/*"',
        "*/*",
        "multipart/*",
        'multipart/related; type="application/dicom"; transfer-syntax=*',
        "",
    ],
)
def test_wildcard_accepts_get_instances_as_stored(world, tmp_path, accept):
    sent = pydicom_file("JPEG2000.dcm")
    instance = keep(world.clinic, sent, tmp_path)
    [(headers, content)] = multipart(wado(world.alice, _path_of(instance), accept))
    assert content == sent
    assert headers["Content-Type"].endswith("transfer-syntax=1.2.840.10008.1.2.4.91")


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="*/*"',
        'multipart/related; type="image/*"',
        'multipart/related; type="*/*"; transfer-syntax=*',
        'multipart/related; type="application/octet-stream"; transfer-syntax=*',
    ],
)
def test_wildcard_accepts_get_frames_as_stored(world, tmp_path, accept):
    sent = pydicom_file("JPEG2000.dcm")
    instance = keep(world.clinic, sent, tmp_path)
    frame = next(generate_frames(pydicom.dcmread(io.BytesIO(sent)).PixelData, number_of_frames=1))
    [(headers, content)] = multipart(wado(world.alice, f"{_path_of(instance)}/frames/1", accept))
    assert content == frame
    assert headers["Content-Type"] == "image/jp2; transfer-syntax=1.2.840.10008.1.2.4.91"


def test_frames_that_do_not_decode_fall_back_or_say_what_is_offered(world, tmp_path):
    [damaged] = j2k_copies(1, damaged={0})
    instance = keep(world.clinic, damaged, tmp_path)
    frames = f"{_path_of(instance)}/frames/1"
    octets = 'multipart/related; type="application/octet-stream"'
    refused = wado(world.alice, frames, octets)
    assert refused.status_code == 422
    assert "image/jp2" in refused.content.decode()
    assert "transfer-syntax=*" in refused.content.decode()
    # "*/*" and no Accept prefer uncompressed octets, and take the stored bytes instead.
    for accept in ("*/*", None, f"{octets}, {octets}; transfer-syntax=*; q=0.5"):
        [(headers, _content)] = multipart(wado(world.alice, frames, accept))
        assert headers["Content-Type"].startswith("image/jp2"), accept


def test_pixel_data_that_does_not_decode_is_406_naming_the_offer(world, tmp_path):
    [damaged] = j2k_copies(1, damaged={0})
    instance = keep(world.clinic, damaged, tmp_path)
    pixels = f"{_path_of(instance)}/bulk/7FE00010"
    refused = wado(world.alice, pixels, 'multipart/related; type="application/octet-stream"')
    assert refused.status_code == 406
    assert 'type="image/jp2"; transfer-syntax=1.2.840.10008.1.2.4.91' in refused.content.decode()
    [(headers, _c)] = multipart(wado(world.alice, pixels, 'multipart/related; type="*/*"'))
    assert headers["Content-Type"].startswith("image/jp2")


def test_wildcard_accepts_get_bulk_data_as_stored(world, study):
    original = pydicom.dcmread(io.BytesIO(study["bytes"][0]))
    wildcards = ('multipart/related; type="*/*"', "*/*", 'multipart/related; type="application/*"')
    for accept in wildcards:
        parts = multipart(wado(world.alice, f"{instance_path(study)}/bulk/7FE00010", accept))
        assert [c for _h, c in parts] == [original.PixelData], accept


# --- Not found, access, audit -----------------------------------------------------------------


def test_missing_and_not_yours_answer_the_same_404(world, study):
    resources = [
        study_path(study),
        f"{study_path(study)}/metadata",
        f"{study_path(study)}/series/{study['series']}",
        f"{study_path(study)}/series/{study['series']}/metadata",
        instance_path(study),
        f"{instance_path(study)}/metadata",
        f"{instance_path(study)}/bulk/7FE00010",
    ]
    for path in resources:
        theirs = wado(world.oscar, path)
        missing = wado(world.alice, path.replace(study["study"], "1.2.3.999"))
        assert theirs.status_code == missing.status_code == 404, path
        assert theirs.content == missing.content
    assert wado(world.rita, study_path(study)).status_code == 404  # no grant yet


@pytest.mark.parametrize("bad", ["abc", "1.2.3.4x", "1." + "2" * 70, "..%2F..%2Fetc"])
def test_invalid_uids_in_the_path_are_404(world, study, bad):
    assert wado(world.alice, f"/dicomweb/studies/{bad}").status_code == 404
    assert (
        wado(world.alice, f"/dicomweb/studies/{study['study']}/series/{bad}/metadata").status_code
        == 404
    )
    assert wado(world.alice, f"{instance_path(study)}/bulk/7FE0001X").status_code == 404


def test_roles_without_image_rights_cannot_retrieve(world, study):
    assert wado(world.carl, study_path(study)).status_code == 403
    assert wado(world.adam, f"{study_path(study)}/metadata").status_code == 403


def test_each_retrieve_records_one_images_viewed_event(world, study):
    before = AuditEvent.objects.count()
    b"".join(wado(world.alice, study_path(study)).streaming_content)
    b"".join(wado(world.alice, f"{study_path(study)}/metadata").streaming_content)
    b"".join(wado(world.alice, f"{instance_path(study)}/bulk/7FE00010").streaming_content)
    wado(world.oscar, study_path(study))  # not visible: nothing was viewed
    events = list(AuditEvent.objects.order_by("id")[before:])
    assert [e.event for e in events] == ["images_viewed"] * 3
    assert {e.study_uid for e in events} == {study["study"]}
    assert {e.patient_id for e in events} == {"P0001"}
    assert [e.detail["resource"] for e in events] == ["instances", "metadata", "bulkdata"]
    assert events[0].detail["instances"] == 2
    assert events[2].object_id == study["sops"][0]


# --- Streaming -----------------------------------------------------------------------------


def test_under_asgi_the_body_is_an_async_stream(world, study):
    from referrals.archive.dicomweb.retrieve import Part, multipart_chunks, streaming_response

    def body():
        yield from multipart_chunks([Part({"Content-Type": "x/y"}, [b"abc", b"def"])], "B")

    asgi = streaming_response(AsyncRequestFactory().get("/"), body(), "multipart/related")
    assert asgi.is_async  # Django would buffer a sync iterator whole under ASGI

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in asgi.streaming_content])

    expected = b"--B\r\nContent-Type: x/y\r\n\r\nabcdef\r\n--B--\r\n"
    assert asyncio.run(collect()) == expected
    wsgi = streaming_response(RequestFactory().get("/"), body(), "multipart/related")
    assert not wsgi.is_async
    assert b"".join(wsgi.streaming_content) == expected


def test_retrieve_streams_from_s3_storage(world, settings, tmp_path):
    import boto3
    from botocore.response import StreamingBody
    from moto import mock_aws

    from referrals.archive.dicomweb.retrieve import open_object

    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="hub-images")
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": "hub-images",
                    "access_key": "k",
                    "secret_key": "s",
                    "region_name": "us-east-1",
                    "file_overwrite": False,
                    "querystring_auth": False,
                    "default_acl": None,
                },
            },
        }
        datasets = series(WANG, count=2)
        sent = [to_bytes(ds) for ds in datasets]
        instances = [keep(world.clinic, data, tmp_path) for data in sent]
        assert default_storage.exists(instances[0].object_key)
        assert isinstance(open_object(instances[0].object_key), StreamingBody)
        parts = multipart(wado(world.alice, f"/dicomweb/studies/{datasets[0].StudyInstanceUID}"))
        assert [c for _h, c in parts] == sent


def test_two_copies_of_one_uid_in_view_come_back_once(world, study, monkeypatch, tmp_path):
    """When a grant lets one caller see two sites' copies, each instance is sent once."""
    from referrals.archive import selectors

    keep(world.outsider, study["bytes"][0], tmp_path)
    both = Instance.objects.filter(study__study_uid=study["study"])
    assert both.count() == 3
    monkeypatch.setattr(selectors, "instance_list", lambda **kw: both.order_by("id"))
    parts = multipart(wado(world.alice, study_path(study)))
    assert [c for _h, c in parts] == study["bytes"]


def test_series_uid_of_another_study_is_not_found(world, study, tmp_path):
    other = series(WANG, count=1)
    keep(world.clinic, to_bytes(other[0]), tmp_path)
    path = f"{study_path(study)}/series/{other[0].SeriesInstanceUID}"
    assert wado(world.alice, path).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_study_retrieved_through_the_asgi_handler(world, study):
    """The whole path under ASGI (as uvicorn serves it): sync view, async streamed body."""
    from django.test import AsyncClient
    from knox.models import AuthToken

    _token, key = AuthToken.objects.create(user=world.alice)

    async def fetch() -> tuple[StreamingHttpResponse, bytes]:
        response = await AsyncClient().get(
            study_path(study), headers={"Authorization": f"Token {key}"}
        )
        body = b"".join([chunk async for chunk in response.streaming_content])
        return response, body

    response, body = asyncio.run(fetch())
    assert response.is_async
    parts = parse_multipart(response["Content-Type"], body)
    assert [content for _h, content in parts] == study["bytes"]
