"""WADO-RS frames, rendered frames and thumbnails: decoding, windows, viewports, caching, access."""

from __future__ import annotations

import io
import re
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.cache import cache
from django.core.files.storage import default_storage
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import get_frame
from pydicom.pixels import pixel_array
from pydicom.uid import generate_uid

from referrals.archive import rendering
from referrals.archive.ingest import instance_store
from referrals.archive.synthetic import HUB_UID_ROOT, SyntheticPatient, ct_series, ct_slice
from referrals.models import Instance, Series
from tenants.models import AuditEvent

from .conftest import api_client_for

pytestmark = pytest.mark.django_db

PATIENT = SyntheticPatient("R0001", "Li^Lei=李^雷")


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The audit throttle lives in the cache; each test starts without it."""
    cache.clear()
    yield
    cache.clear()


def store(institution, ds: pydicom.Dataset, tmp_path: Path) -> Instance:
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    outcome = instance_store(institution=institution, path=path, via="test")
    assert outcome.status == "stored", outcome.message
    assert outcome.instance is not None
    return outcome.instance


def store_test_file(institution, name: str, tmp_path: Path) -> Instance:
    """One of pydicom's bundled files, with fresh UIDs so each is a new instance."""
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.StudyInstanceUID = generate_uid(prefix=HUB_UID_ROOT)
    ds.SeriesInstanceUID = generate_uid(prefix=HUB_UID_ROOT)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix=HUB_UID_ROOT)
    ds.PatientID = ds.get("PatientID") or "TESTFILE"
    return store(institution, ds, tmp_path)


def ct_study(institution, tmp_path: Path, count: int = 3, size: int = 64) -> list[Instance]:
    return [
        store(institution, ds, tmp_path)
        for ds in ct_series(patient=PATIENT, count=count, size=size)
    ]


def base(instance: Instance) -> str:
    return (
        f"/dicomweb/studies/{instance.study.study_uid}/series/{instance.series.series_uid}"
        f"/instances/{instance.sop_uid}"
    )


def picture(response) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


def multipart_parts(response) -> list[tuple[dict[str, str], bytes]]:
    """Each part's media type, transfer syntax and location, and its bytes."""
    raw = f"Content-Type: {response['Content-Type']}\r\n\r\n".encode() + response.content
    message = BytesParser(policy=HTTP).parsebytes(raw)
    assert message.is_multipart()
    return [
        (
            {
                "type": part.get_content_type(),
                "transfer-syntax": part.get_param("transfer-syntax"),
                "location": part["Content-Location"],
            },
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]


# --- Compressed transfer syntaxes --------------------------------------------------------------

COMPRESSED = {
    "JPEG2000.dcm": "1.2.840.10008.1.2.4.91",
    "MR_small_jp2klossless.dcm": "1.2.840.10008.1.2.4.90",
    "MR_small_RLE.dcm": "1.2.840.10008.1.2.5",
    "SC_rgb_jpeg_dcmtk.dcm": "1.2.840.10008.1.2.4.50",
    "SC_rgb_jpeg_gdcm.dcm": "1.2.840.10008.1.2.4.70",
    "MR_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80",
    "JPEGLSNearLossless_08.dcm": "1.2.840.10008.1.2.4.81",
    "SC_rgb_rle_2frame.dcm": "1.2.840.10008.1.2.5",
    "examples_ybr_color.dcm": "1.2.840.10008.1.2.4.50",
}


@pytest.mark.parametrize("name", sorted(COMPRESSED))
def test_each_compressed_transfer_syntax_renders(world, tmp_path, name):
    instance = store_test_file(world.clinic, name, tmp_path)
    assert instance.transfer_syntax_uid == COMPRESSED[name]
    client = api_client_for(world.alice)
    for url in (
        f"{base(instance)}/rendered",
        f"{base(instance)}/frames/{instance.number_of_frames}/rendered",
    ):
        response = client.get(url)
        assert response.status_code == 200, (url, response.content[:200])
        assert response["Content-Type"] == "image/jpeg"
        image = picture(response)
        assert image.format == "JPEG"
        assert image.size == (instance.columns, instance.rows)
        assert np.asarray(image).std() > 5  # a picture, not a blank


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]
)
def test_lossless_codecs_render_the_same_pixels_as_the_uncompressed_original(world, tmp_path, name):
    original = store_test_file(world.clinic, "MR_small.dcm", tmp_path)
    compressed = store_test_file(world.clinic, name, tmp_path)
    client = api_client_for(world.alice)
    a = client.get(f"{base(original)}/rendered", HTTP_ACCEPT="image/png")
    b = client.get(f"{base(compressed)}/rendered", HTTP_ACCEPT="image/png")
    assert np.array_equal(np.asarray(picture(a)), np.asarray(picture(b)))


def test_colour_stays_colour_and_ybr_becomes_rgb(world, tmp_path):
    instance = store_test_file(world.clinic, "SC_rgb_jpeg_dcmtk.dcm", tmp_path)  # YBR_FULL
    response = api_client_for(world.alice).get(
        f"{base(instance)}/rendered", HTTP_ACCEPT="image/png"
    )
    rendered = np.asarray(picture(response)).astype(int)
    assert rendered.shape == (100, 100, 3)
    expected = pixel_array(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))  # pydicom's RGB
    assert np.abs(rendered - expected.astype(int)).max() <= 2
    # The test image's top band is pure red.
    assert tuple(rendered[2, 50]) == pytest.approx((255, 0, 0), abs=6)


def test_palette_colour_renders_through_its_lookup_table(world, tmp_path):
    instance = store_test_file(world.clinic, "examples_palette.dcm", tmp_path)
    response = api_client_for(world.alice).get(
        f"{base(instance)}/rendered", HTTP_ACCEPT="image/png"
    )
    assert response.status_code == 200
    assert picture(response).mode == "RGB"


def test_a_frame_that_will_not_decode_is_a_422_with_its_reason(world, tmp_path):
    # pydicom's 12-bit JPEG Extended sample trips every installed decoder.
    instance = store_test_file(world.clinic, "JPEG-lossy.dcm", tmp_path)
    response = api_client_for(world.alice).get(f"{base(instance)}/rendered")
    assert response.status_code == 422
    assert b"could not be decoded" in response.content


# --- Windows, inversion, rescale ---------------------------------------------------------------


def ramp_slice(
    tmp_path, institution, *, photometric="MONOCHROME2", window=True, slope=1.0, intercept=0.0
) -> Instance:
    """A 16x16 CT slice whose stored values run -128..127 along each row, twice."""
    ds = ct_slice(
        patient=PATIENT,
        study_uid=generate_uid(prefix=HUB_UID_ROOT),
        series_uid=generate_uid(prefix=HUB_UID_ROOT),
        index=0,
        count=1,
        size=16,
    )
    values = np.tile(np.arange(-128, 128, dtype=np.int16).reshape(16, 16), 1)
    ds.PixelData = values.tobytes()
    ds.PhotometricInterpretation = photometric
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if not window:
        del ds.WindowCenter
        del ds.WindowWidth
    return store(institution, ds, tmp_path)


def rendered_pixels(client, instance, query: str = "") -> np.ndarray:
    response = client.get(f"{base(instance)}/rendered{query}", HTTP_ACCEPT="image/png")
    assert response.status_code == 200, response.content
    return np.asarray(picture(response)).astype(int)


def test_the_window_changes_the_pixels(world, tmp_path):
    instance = ct_study(world.clinic, tmp_path, count=1, size=64)[0]
    client = api_client_for(world.alice)
    soft = rendered_pixels(client, instance, "?window=40,400")
    lung = rendered_pixels(client, instance, "?window=-600,1500")
    assert not np.array_equal(soft, lung)
    # Air (-1000 HU) is black in the soft-tissue window but grey in the lung window.
    assert soft[0, 0] == 0
    assert 20 < lung[0, 0] < 80


def test_window_functions_follow_ps33(world, tmp_path):
    instance = ramp_slice(tmp_path, world.clinic)
    client = api_client_for(world.alice)
    linear = rendered_pixels(client, instance, "?window=0,101,linear")
    row = linear.reshape(-1)  # the stored values -128..127 in raster order
    values = np.arange(-128, 128)
    assert (row[values <= -51] == 0).all()
    assert (row[values > 49] == 255).all()
    assert row[values == 0][0] == pytest.approx(128, abs=2)
    exact = rendered_pixels(client, instance, "?window=0,100,linear-exact").reshape(-1)
    assert exact[values == 25][0] == pytest.approx(0.75 * 255, abs=2)
    sigmoid = rendered_pixels(client, instance, "?window=0,100,sigmoid").reshape(-1)
    assert sigmoid[values == 0][0] == pytest.approx(127.5, abs=2)
    assert 0 < sigmoid[0] < sigmoid[-1] < 255


def test_without_a_window_the_instance_window_then_min_max_apply(world, tmp_path):
    client = api_client_for(world.alice)
    own = ramp_slice(tmp_path, world.clinic)  # WindowCenter 40, WindowWidth 400 (first values)
    assert np.array_equal(
        rendered_pixels(client, own), rendered_pixels(client, own, "?window=40,400")
    )
    bare = ramp_slice(tmp_path, world.clinic, window=False)
    pixels = rendered_pixels(client, bare).reshape(-1)
    assert pixels[0] == 0
    assert pixels[-1] == 255


def test_monochrome1_is_inverted_and_rescale_applies_before_the_window(world, tmp_path):
    client = api_client_for(world.alice)
    plain = rendered_pixels(client, ramp_slice(tmp_path, world.clinic), "?window=0,256")
    inverted = rendered_pixels(
        client, ramp_slice(tmp_path, world.clinic, photometric="MONOCHROME1"), "?window=0,256"
    )
    assert np.array_equal(inverted, 255 - plain)
    shifted = rendered_pixels(
        client, ramp_slice(tmp_path, world.clinic, intercept=1000), "?window=1000,256"
    )
    assert np.array_equal(shifted, plain)


# --- Media types, viewport, quality ------------------------------------------------------------


def test_png_or_jpeg_by_accept_header_or_query(world, tmp_path):
    instance = ct_study(world.clinic, tmp_path, count=1)[0]
    client = api_client_for(world.alice)
    url = f"{base(instance)}/rendered"
    assert client.get(url).content[:3] == b"\xff\xd8\xff"  # JPEG by default
    png = client.get(url, HTTP_ACCEPT="image/png")
    assert (png["Content-Type"], png.content[:8]) == ("image/png", b"\x89PNG\r\n\x1a\n")
    assert client.get(url + "?accept=image/png")["Content-Type"] == "image/png"
    browser = client.get(url, HTTP_ACCEPT="image/avif,image/webp,image/apng,image/*,*/*;q=0.8")
    assert browser["Content-Type"] == "image/jpeg"
    preferred = client.get(url, HTTP_ACCEPT="image/jpeg;q=0.5, image/png")
    assert preferred["Content-Type"] == "image/png"
    refused = client.get(url, HTTP_ACCEPT="image/gif")
    assert refused.status_code == 406
    assert b"image/jpeg" in refused.content


def test_quality_changes_the_jpeg(world, tmp_path):
    instance = ct_study(world.clinic, tmp_path, count=1, size=128)[0]
    client = api_client_for(world.alice)
    low = client.get(f"{base(instance)}/rendered?quality=10").content
    high = client.get(f"{base(instance)}/rendered?quality=95").content
    assert len(low) < len(high)


def test_the_viewport_is_honoured(world, tmp_path):
    instance = ct_study(world.clinic, tmp_path, count=1, size=128)[0]
    client = api_client_for(world.alice)
    url = f"{base(instance)}/rendered"
    assert picture(client.get(url)).size == (128, 128)
    assert picture(client.get(url + "?viewport=64,32")).size == (32, 32)  # fits, keeps aspect
    assert picture(client.get(url + "?viewport=300,300")).size == (300, 300)
    # A source region: the top-left quarter at 64x64, then the same region flipped sideways.
    full = rendered_pixels(client, instance)
    quarter = rendered_pixels(client, instance, "?viewport=64,64,0,0,64,64")
    assert np.array_equal(quarter, full[:64, :64])
    flipped = rendered_pixels(client, instance, "?viewport=64,64,64,0,-64,64")
    assert np.array_equal(flipped, full[:64, :64][:, ::-1])


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("window=abc,400", "window"),
        ("window=40", "window"),
        ("window=40,0", "window"),
        ("window=40,400,cubic", "window"),
        ("window=nan,400", "window"),
        ("viewport=0,10", "viewport"),
        ("viewport=a,b", "viewport"),
        ("viewport=10,10,1", "viewport"),
        ("viewport=99999,10", "viewport"),
        ("viewport=10,10,500,500,10,10", "viewport"),
        ("quality=0", "quality"),
        ("quality=101", "quality"),
        ("quality=high", "quality"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_parameter(world, tmp_path, query, param):
    instance = ct_study(world.clinic, tmp_path, count=1)[0]
    response = api_client_for(world.alice).get(f"{base(instance)}/rendered?{query}")
    assert response.status_code == 400, (query, response.status_code)
    assert response.content.decode().startswith(f"{param}:")


@pytest.mark.parametrize(
    ("frames", "status"),
    [
        ("0", 400),
        ("abc", 400),
        ("1,x", 400),
        ("-1", 400),
        ("2", 404),
        ("1,2", 400),
    ],
)
def test_bad_frame_numbers(world, tmp_path, frames, status):
    instance = ct_study(world.clinic, tmp_path, count=1)[0]
    response = api_client_for(world.alice).get(f"{base(instance)}/frames/{frames}/rendered")
    assert response.status_code == status, response.content
    if status == 404:
        assert b"Frame 2 does not exist" in response.content
    else:
        assert response.content.startswith(b"frames:")


# --- Frames --------------------------------------------------------------------------------


def test_frames_return_the_exact_uncompressed_bytes(world, tmp_path):
    instances = ct_study(world.clinic, tmp_path, count=2, size=64)
    instance = instances[1]
    with default_storage.open(instance.object_key) as fp:
        stored = pydicom.dcmread(fp).PixelData
    response = api_client_for(world.alice).get(f"{base(instance)}/frames/1")
    assert response.status_code == 200
    assert response["Content-Type"].startswith('multipart/related; type="application/octet-stream"')
    [(headers, payload)] = multipart_parts(response)
    assert (headers["type"], headers["transfer-syntax"]) == (
        "application/octet-stream",
        "1.2.840.10008.1.2.1",
    )
    assert headers["location"].endswith(f"{base(instance)}/frames/1")
    assert payload == stored
    missing = api_client_for(world.alice).get(f"{base(instance)}/frames/2")
    assert missing.status_code == 404


def test_multi_frame_frames_decoded_or_as_stored(world, tmp_path):
    instance = store_test_file(world.clinic, "SC_rgb_rle_2frame.dcm", tmp_path)
    source = get_testdata_file("SC_rgb_rle_2frame.dcm")
    client = api_client_for(world.alice)

    decoded = client.get(f"{base(instance)}/frames/2,1")
    assert decoded.status_code == 200
    parts = multipart_parts(decoded)
    assert [p[1] for p in parts] == [
        pixel_array(source, index=1, raw=True).tobytes(),
        pixel_array(source, index=0, raw=True).tobytes(),
    ]

    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    stored = client.get(f"{base(instance)}/frames/2", HTTP_ACCEPT=accept)
    assert stored.status_code == 200
    [(headers, payload)] = multipart_parts(stored)
    assert (headers["type"], headers["transfer-syntax"]) == (
        "image/dicom-rle",
        "1.2.840.10008.1.2.5",
    )
    assert payload == get_frame(pydicom.dcmread(source).PixelData, 1, number_of_frames=2)

    by_type = client.get(
        f"{base(instance)}/frames/1", HTTP_ACCEPT='multipart/related; type="image/dicom-rle"'
    )
    assert by_type.status_code == 200
    wrong = client.get(
        f"{base(instance)}/frames/1", HTTP_ACCEPT='multipart/related; type="image/jp2"'
    )
    assert wrong.status_code == 406


def test_jpeg2000_frames_as_stored_are_the_codestream(world, tmp_path):
    instance = store_test_file(world.clinic, "JPEG2000.dcm", tmp_path)
    response = api_client_for(world.alice).get(
        f"{base(instance)}/frames/1",
        HTTP_ACCEPT='multipart/related; type="application/octet-stream"; transfer-syntax=*',
    )
    [(headers, payload)] = multipart_parts(response)
    assert (headers["type"], headers["transfer-syntax"]) == ("image/jp2", "1.2.840.10008.1.2.4.91")
    assert payload[:4] == b"\xff\x4f\xff\x51"  # a JPEG 2000 codestream's SOC and SIZ markers


def test_an_instance_without_pixels_has_no_frames(world, tmp_path):
    ds = pydicom.dcmread(get_testdata_file("test-SR.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix=HUB_UID_ROOT)
    instance = store(world.clinic, ds, tmp_path)
    client = api_client_for(world.alice)
    for url in (
        f"{base(instance)}/frames/1",
        f"{base(instance)}/rendered",
        f"{base(instance)}/thumbnail",
    ):
        response = client.get(url)
        assert response.status_code == 404
        assert b"no pixel data" in response.content


# --- Thumbnails ----------------------------------------------------------------------------


def test_series_thumbnail_is_the_middle_image_and_is_cached(world, tmp_path, monkeypatch):
    instances = ct_study(world.clinic, tmp_path, count=5, size=128)
    series = instances[0].series
    client = api_client_for(world.alice)
    url = f"/dicomweb/studies/{series.study.study_uid}/series/{series.series_uid}/thumbnail"

    first = client.get(url)
    assert first.status_code == 200
    assert first["Content-Type"] == "image/jpeg"
    assert picture(first).size == (rendering.THUMBNAIL_SIZE, rendering.THUMBNAIL_SIZE)
    series.refresh_from_db()
    middle = Instance.objects.get(series=series, instance_number=3)
    assert series.thumbnail_key == f"thumbnails/{series.pk}-{middle.pk}-256.jpg"
    with default_storage.open(series.thumbnail_key) as fp:
        assert fp.read() == first.content

    def no_rendering(*args, **kwargs):
        raise AssertionError("the cached thumbnail should have been read from storage")

    monkeypatch.setattr(rendering, "frame_render", no_rendering)
    second = client.get(url)
    assert second.status_code == 200
    assert second.content == first.content
    study = client.get(f"/dicomweb/studies/{series.study.study_uid}/thumbnail")
    assert study.content == first.content


def test_series_thumbnail_ensure_is_idempotent_and_follows_a_growing_series(world, tmp_path):
    study_uid, series_uid = generate_uid(prefix=HUB_UID_ROOT), generate_uid(prefix=HUB_UID_ROOT)

    def add(index: int) -> None:
        store(
            world.clinic,
            ct_slice(
                patient=PATIENT,
                study_uid=study_uid,
                series_uid=series_uid,
                index=index,
                count=5,
                size=32,
            ),
            tmp_path,
        )

    add(0)
    series = Series.objects.get(series_uid=series_uid)
    key = rendering.series_thumbnail_ensure(series)
    assert default_storage.exists(key)
    assert rendering.series_thumbnail_ensure(series) == key
    for index in range(1, 5):
        add(index)
    grown = rendering.series_thumbnail_ensure(Series.objects.get(pk=series.pk))
    assert grown != key
    assert default_storage.exists(grown)
    assert not default_storage.exists(key)  # the stale picture is gone
    assert Series.objects.get(pk=series.pk).thumbnail_key == grown


def test_instance_thumbnail_and_other_sizes(world, tmp_path):
    instance = ct_study(world.clinic, tmp_path, count=1, size=128)[0]
    client = api_client_for(world.alice)
    assert picture(client.get(f"{base(instance)}/thumbnail")).size == (256, 256)
    small = client.get(f"{base(instance)}/thumbnail?viewport=64,64")
    assert picture(small).size == (64, 64)
    series = instance.series
    sized = client.get(
        f"/dicomweb/studies/{series.study.study_uid}/series/"
        f"{series.series_uid}/thumbnail?viewport=48,48"
    )
    assert picture(sized).size == (48, 48)
    series.refresh_from_db()
    assert series.thumbnail_key == ""  # only the standard size is kept


# --- HTTP caching and audit --------------------------------------------------------------------


def test_etag_gives_304_and_changes_with_the_parameters(world, tmp_path):
    instance = ct_study(world.clinic, tmp_path, count=1)[0]
    client = api_client_for(world.alice)
    url = f"{base(instance)}/rendered?window=40,400"
    first = client.get(url)
    assert first["Cache-Control"].startswith("private")
    etag = first["ETag"]
    again = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    other = client.get(f"{base(instance)}/rendered?window=-600,1500", HTTP_IF_NONE_MATCH=etag)
    assert other.status_code == 200
    assert other["ETag"] != etag


def test_images_viewed_is_audited_once_per_study_for_a_while(world, tmp_path):
    instances = ct_study(world.clinic, tmp_path, count=3)
    client = api_client_for(world.alice)
    for instance in instances:
        assert client.get(f"{base(instance)}/rendered").status_code == 200
        assert client.get(f"{base(instance)}/frames/1").status_code == 200
    events = AuditEvent.objects.filter(event="images_viewed")
    assert events.count() == 1
    event = events.get()
    assert (event.username, event.study_uid, event.patient_id) == (
        "alice",
        instances[0].study.study_uid,
        "R0001",
    )
    cache.clear()  # the throttle window has passed
    client.get(f"{base(instances[0])}/rendered")
    assert events.count() == 2


def test_failed_requests_are_not_audited_as_views(world, tmp_path):
    instance = ct_study(world.clinic, tmp_path, count=1)[0]
    api_client_for(world.alice).get(f"{base(instance)}/rendered?window=x")
    assert not AuditEvent.objects.filter(event="images_viewed").exists()


# --- Access ------------------------------------------------------------------------------------


def test_the_outsider_and_the_commission_see_no_pixels(world, tmp_path):
    instance = ct_study(world.clinic, tmp_path, count=1)[0]
    series = instance.series
    urls = [
        f"{base(instance)}/frames/1",
        f"{base(instance)}/rendered",
        f"{base(instance)}/frames/1/rendered",
        f"{base(instance)}/thumbnail",
        f"{base(instance)}/frames/1/thumbnail",
        f"/dicomweb/studies/{series.study.study_uid}/series/{series.series_uid}/thumbnail",
        f"/dicomweb/studies/{series.study.study_uid}/thumbnail",
    ]
    oscar, carl = api_client_for(world.oscar), api_client_for(world.carl)
    for url in urls:
        assert oscar.get(url).status_code == 404, url
        assert carl.get(url).status_code == 403, url
    missing = oscar.get(urls[1].replace(instance.sop_uid, "1.2.3.4"))
    assert missing.status_code == 404
    assert missing.content == oscar.get(urls[1]).content
    assert not AuditEvent.objects.filter(event="images_viewed").exists()
    assert not re.search(rb"thumbnails/", b"".join(oscar.get(u).content for u in urls))


def test_big_endian_and_deflated_files_give_little_endian_frames_and_render(world, tmp_path):
    client = api_client_for(world.alice)
    little = store_test_file(world.clinic, "MR_small.dcm", tmp_path)
    big = store_test_file(world.clinic, "MR_small_bigendian.dcm", tmp_path)
    assert big.transfer_syntax_uid == "1.2.840.10008.1.2.2"
    [(_h, from_little)] = multipart_parts(client.get(f"{base(little)}/frames/1"))
    [(headers, from_big)] = multipart_parts(client.get(f"{base(big)}/frames/1"))
    assert headers["transfer-syntax"] == "1.2.840.10008.1.2.1"
    assert from_big == from_little
    assert np.array_equal(rendered_pixels(client, big), rendered_pixels(client, little))

    deflated = store_test_file(world.clinic, "image_dfl.dcm", tmp_path)
    assert deflated.transfer_syntax_uid == "1.2.840.10008.1.2.1.99"
    response = client.get(f"{base(deflated)}/rendered")
    assert response.status_code == 200
    assert picture(response).size == (deflated.columns, deflated.rows)
    [(_h, frame)] = multipart_parts(client.get(f"{base(deflated)}/frames/1"))
    assert frame == pydicom.dcmread(get_testdata_file("image_dfl.dcm")).PixelData[: len(frame)]
    assert len(frame) == deflated.rows * deflated.columns  # 8-bit


# --- The study pages, server side (the browser tests are in test_study_page.py) -----------


def web_client(user):
    from django.test import Client

    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def test_the_study_list_searches_names_ids_and_accessions_newest_first(world, tmp_path):
    import datetime as dt

    older = ct_series(
        patient=SyntheticPatient("PID-1", "Zhang^Wei=张^伟"),
        count=1,
        size=16,
        accession="ACC-1",
        study_date=dt.date(2024, 1, 2),
    )
    newer = ct_series(
        patient=SyntheticPatient("PID-2", "Li^Na=李^娜"),
        count=1,
        size=16,
        accession="ACC-2",
        study_date=dt.date(2025, 6, 7),
    )
    for ds in [*older, *newer]:
        store(world.clinic, ds, tmp_path)
    client = web_client(world.alice)

    def listed(query: str = "") -> list[str]:
        page = client.get("/studies/", {"q": query} if query else {}).content.decode()
        return re.findall(r'class="study-link"[^>]*>([^<]+)<', page)

    assert listed() == ["Li Na (李娜)", "Zhang Wei (张伟)"]  # an English page: English first
    for query in ("张伟", "zhang wei", "Zhang^Wei", "wei", "PID-1", "pid-1", "ACC-1"):
        assert listed(query) == ["Zhang Wei (张伟)"], query
    assert listed("nobody") == []
    assert "No study matches your search." in client.get("/studies/?q=nobody").content.decode()


def test_the_study_list_pages_and_keeps_the_search(world, tmp_path, monkeypatch):
    from referrals.archive import study_views as views

    monkeypatch.setattr(views, "STUDIES_PER_PAGE", 2)
    for n in range(5):
        for ds in ct_series(patient=SyntheticPatient(f"PG-{n}", f"Page^{n}"), count=1, size=16):
            store(world.clinic, ds, tmp_path)
    page = web_client(world.alice).get("/studies/?q=page").content.decode()
    assert "Page 1 of 3" in page
    assert "?q=page&amp;page=2" in page


def test_the_study_page_shows_facts_series_and_viewer_data(world, tmp_path):
    import json

    instances = ct_study(world.clinic, tmp_path, count=4, size=32)
    study = instances[0].study
    response = web_client(world.alice).get(f"/studies/{study.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Li Lei (李雷)" in page
    data = json.loads(
        re.search(r'id="viewer-data" type="application/json">(.*?)</script>', page, re.S).group(1)
    )
    [series] = data["series"]
    assert series["pixelSpacing"] == [500 / 32, 500 / 32]
    assert series["windows"][0] == [40, 400]
    assert [s[0] for s in series["slices"]] == [i.sop_uid for i in instances]
    assert data["base"] == f"/dicomweb/studies/{study.study_uid}"
    assert f"{data['base']}/series/{series['uid']}/thumbnail" in page
    viewed = AuditEvent.objects.get(event="study_viewed")
    assert (viewed.username, viewed.study_uid) == ("alice", study.study_uid)


def test_roles_that_do_not_look_at_images_get_no_study_pages(world, tmp_path):
    study = ct_study(world.clinic, tmp_path, count=1)[0].study
    for user in (world.adam, world.carl):
        client = web_client(user)
        assert client.get("/studies/").status_code == 403
        assert client.get(f"/studies/{study.pk}/").status_code == 403
        assert b'href="/studies/"' not in client.get("/").content
    assert b'href="/studies/"' in web_client(world.alice).get("/").content
