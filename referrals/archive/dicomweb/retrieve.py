"""WADO-RS retrieve (PS3.18 10.4): instances as multipart DICOM, their metadata, bulk data.

Bodies stream in constant memory: stored objects are copied chunk by chunk, metadata is
written a batch of instances at a time, and under ASGI every step runs off the event loop
(a plain iterator would make Django buffer the whole body first). The stored bytes are
found only through Instance.object_key, never from anything in the request.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import pydicom
from asgiref.sync import sync_to_async
from django.core.files.storage import default_storage
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils.translation import gettext as _
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.encaps import generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import UID

from referrals.archive import selectors
from referrals.archive.dicom_json import BULK_THRESHOLD, bulk_path
from referrals.archive.dicomweb.base import DICOM_JSON
from referrals.archive.dicomweb.multipart import parse_content_type
from referrals.models import Instance
from tenants.access import Scope
from tenants.audit import AuditCode, audit_record

logger = logging.getLogger(__name__)

CHUNK_SIZE = 256 * 1024
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
PIXEL_DATA_TAG = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
OCTET_STREAM = "application/octet-stream"
# The media type of each compressed transfer syntax's frames (PS3.18 Table 8.7.3-3).
IMAGE_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
# Stored syntaxes whose values sit in the file exactly as a little-endian reader wants them.
PLAIN_LE = frozenset({EXPLICIT_LE, IMPLICIT_LE})


# --- Accept --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaRange:
    media_type: str
    part_type: str | None  # the "type" parameter of multipart/related
    transfer_syntax: str | None  # None when the parameter is absent
    quality: float


def parse_accept(header: str) -> list[MediaRange]:
    """The Accept header's media ranges, best first; q=0 ranges are dropped."""
    ranges: list[MediaRange] = []
    for item in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', header or ""):
        if not item.strip():
            continue
        media_type, params = parse_content_type(item.strip())
        if "/" not in item.split(";")[0]:
            continue  # not a media range; Message would call it text/plain
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 1.0
        if quality <= 0:
            continue
        part = params.get("type")
        ranges.append(
            MediaRange(
                media_type, part.lower() if part else None, params.get("transfer-syntax"), quality
            )
        )
    return sorted(ranges, key=lambda r: -r.quality)


@dataclass
class SyntaxChoice:
    """The transfer syntaxes a client takes for application/dicom, best first ("*": any, as
    stored)."""

    order: list[str] = field(default_factory=list)

    def add(self, transfer_syntax: str | None) -> None:
        # PS3.18 8.7.3.5: no transfer-syntax parameter means the default, Explicit VR LE.
        ts = transfer_syntax or EXPLICIT_LE
        if ts not in self.order:
            self.order.append(ts)

    @property
    def any(self) -> bool:
        return "*" in self.order

    @property
    def syntaxes(self) -> set[str]:
        return set(self.order) - {"*"}

    def __bool__(self) -> bool:
        return bool(self.order)


def dicom_choices(header: str | None) -> tuple[SyntaxChoice, SyntaxChoice]:
    """(multipart, single part) application/dicom choices of an Accept header.

    Wildcards (`*/*`, `multipart/*`, `type="*/*"` or `type="application/*"` without a
    transfer syntax) take the instances as they are stored: nothing to convert, nothing
    that can fail.
    """
    multi, single = SyntaxChoice(), SyntaxChoice()
    if not (header or "").strip():
        multi.add("*")  # no Accept at all: the instances as they are stored
        return multi, single
    for r in parse_accept(header or ""):
        if r.media_type in ("*/*", "multipart/*"):
            multi.add("*")
        elif r.media_type == "multipart/related":
            if r.part_type in (None, "application/dicom"):
                multi.add(r.transfer_syntax)
            elif r.part_type in ("application/*", "*/*"):
                multi.add(r.transfer_syntax or "*")
        elif r.media_type == "application/dicom":
            single.add(r.transfer_syntax)
    return multi, single


def _decodable(transfer_syntax: str) -> bool:
    from pydicom.pixels.decoders.base import get_decoder

    try:
        return get_decoder(UID(transfer_syntax)).is_available
    except (NotImplementedError, ValueError):
        return False


def _can_transcode(stored: str) -> bool:
    """Whether an instance stored as `stored` can be sent as Explicit VR Little Endian."""
    if stored in (IMPLICIT_LE, DEFLATED_LE):
        return True
    uid = UID(stored)
    return uid.is_compressed and _decodable(stored)


STORED, TRANSCODE = "stored", "transcode"


def _plans(choice: SyntaxChoice, stored: str) -> list[str]:
    """How an instance stored as `stored` may be sent, in the client's order of preference:
    "stored" (the bytes as kept) and/or "transcode" (to Explicit VR LE)."""
    plans: list[str] = []
    for ts in choice.order:
        if ts in ("*", stored):
            plan = STORED
        elif ts == EXPLICIT_LE and _can_transcode(stored):
            plan = TRANSCODE
        else:
            continue
        if plan not in plans:
            plans.append(plan)
    return plans


# --- Streaming -----------------------------------------------------------------------------


def _next_chunk(chunks: Generator[bytes, None, None]) -> bytes | None:
    return next(chunks, None)


async def _async_chunks(chunks: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    # Each step runs in the request's own thread, where its database connection lives.
    step = sync_to_async(_next_chunk, thread_sensitive=True)
    try:
        while (chunk := await step(chunks)) is not None:
            yield chunk
    finally:
        await sync_to_async(chunks.close, thread_sensitive=True)()


def streaming_response(
    request: HttpRequest, chunks: Generator[bytes, None, None], content_type: str
) -> StreamingHttpResponse:
    """A streamed answer; under ASGI an async iterator, which Django does not buffer."""
    content: Any = _async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(content, content_type=content_type)
    response["Vary"] = "Accept"
    return response


def open_object(key: str) -> IO[bytes]:
    """Read a stored object as a stream.

    For S3, django-storages' S3File copies the whole object into a temporary file before
    the first byte; the object's own body streams as it arrives.
    """
    storage: Any = default_storage
    bucket = getattr(storage, "bucket", None)
    if bucket is not None and hasattr(storage, "_normalize_name"):
        from storages.utils import clean_name

        return bucket.Object(storage._normalize_name(clean_name(key))).get()["Body"]
    return storage.open(key, "rb")


def object_chunks(key: str) -> Iterator[bytes]:
    with contextlib.closing(open_object(key)) as stream:
        while chunk := stream.read(CHUNK_SIZE):
            yield chunk


def _range_chunks(fp: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    fp.seek(start)
    remaining = length
    while remaining > 0:
        chunk = fp.read(min(CHUNK_SIZE, remaining))
        if not chunk:
            raise OSError("The stored object ended before its value did.")
        remaining -= len(chunk)
        yield chunk


@dataclass
class Part:
    headers: dict[str, str]
    chunks: Iterable[bytes]


def multipart_chunks(
    parts: Iterable[Part], boundary: str, closing: Any = None
) -> Generator[bytes, None, None]:
    """A multipart/related body (RFC 2387), one part after the other, never all at once."""
    try:
        for part in parts:
            head = "".join(f"{k}: {v}\r\n" for k, v in part.headers.items())
            yield f"--{boundary}\r\n{head}\r\n".encode()
            yield from part.chunks
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()
    finally:
        if closing is not None:
            closing.close()


def _plain(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def _audit_viewed(
    request: HttpRequest,
    scope: Scope,
    *,
    study_uid: str,
    patient_id: str,
    object_type: str,
    object_id: str,
    detail: dict[str, Any],
) -> None:
    audit_record(
        event=AuditCode.IMAGES_VIEWED,
        action="R",
        scope=scope,
        request=request,
        study_uid=study_uid,
        patient_id=patient_id,
        object_type=object_type,
        object_id=object_id,
        detail=detail,
    )


def _target(study_uid: str, series_uid: str | None, sop_uid: str | None) -> tuple[str, str]:
    if sop_uid:
        return "instance", sop_uid
    if series_uid:
        return "series", series_uid
    return "study", study_uid


# --- Instances -----------------------------------------------------------------------------


def _transcoded(instance: Instance) -> bytes:
    """The instance as Explicit VR Little Endian: one instance in memory, decoded."""
    with default_storage.open(instance.object_key, "rb") as fp:
        ds = pydicom.dcmread(fp)
        if UID(instance.transfer_syntax_uid).is_compressed:
            ds.decompress(generate_instance_uid=False)
        ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_LE)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _stored_chunks(instance: Instance) -> Iterator[bytes]:
    try:
        yield from object_chunks(instance.object_key)
    except Exception:
        # The status line has gone out: all we can do is end the body early and say why.
        logger.exception(
            "WADO-RS could not send instance %s (object %s)", instance.pk, instance.object_id
        )
        raise


def _prepared_part(instance: Instance, plans: list[str]) -> Part | None:
    """The instance's part in the first plan that works, converted already; None if none.

    Converting before the part's first byte is what lets a failure change the answer (a
    406, or the stored syntax when the client takes it) instead of cutting the body.
    """
    for plan in plans:
        if plan == STORED:
            ts = instance.transfer_syntax_uid
            headers = {
                "Content-Type": f"application/dicom; transfer-syntax={ts}",
                "Content-Length": str(instance.size_bytes),
            }
            return Part(headers, _stored_chunks(instance))
        try:
            data = _transcoded(instance)
        except Exception as exc:  # the decoders raise many kinds on damaged data
            logger.warning(
                "WADO-RS could not convert instance %s (%s) to Explicit VR LE: %r",
                instance.pk,
                instance.transfer_syntax_uid,
                exc,
            )
            continue
        headers = {
            "Content-Type": f"application/dicom; transfer-syntax={EXPLICIT_LE}",
            "Content-Length": str(len(data)),
        }
        return Part(headers, [data])
    return None


def _refusal(instance: Instance) -> str:
    name = UID(instance.transfer_syntax_uid).name
    return _(
        "Instance %(sop)s is stored as %(ts)s (%(uid)s) and cannot be sent in the "
        "transfer syntaxes the Accept header allows; ask for transfer-syntax=* or "
        "for %(uid)s."
    ) % {"sop": instance.sop_uid, "ts": name, "uid": instance.transfer_syntax_uid}


def _not_converted(instance: Instance) -> str:
    name = UID(instance.transfer_syntax_uid).name
    return _(
        "Instance %(sop)s is stored as %(ts)s (%(uid)s) and the hub could not convert it "
        "to Explicit VR Little Endian (its pixel data does not decode). It is offered as "
        "stored: ask for transfer-syntax=* or for %(uid)s."
    ) % {"sop": instance.sop_uid, "ts": name, "uid": instance.transfer_syntax_uid}


def _parts(first: Part, rest: Iterable[tuple[Instance, list[str]]]) -> Generator[Part, None, None]:
    """The parts of a multi-instance answer, each converted just before it is sent.

    A later instance that cannot be converted, and that the client does not take as stored,
    is left out: the status line is gone and cannot become a 406 (see docs/dicomweb.md).
    """
    yield first
    for instance, plans in rest:
        part = _prepared_part(instance, plans)
        if part is None:
            logger.warning("WADO-RS left instance %s out of a retrieve answer", instance.pk)
            continue
        yield part


def retrieve_instances(
    request: HttpRequest,
    scope: Scope,
    *,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> HttpResponseBase:
    """GET a study, series or instance as multipart/related; type="application/dicom".

    Everything that can refuse is decided before the status line: the plan of every
    instance (a 406 names the first that has none), and the first instance's part itself,
    converted. Later instances are converted one at a time as the body streams.
    """
    instances = selectors.instances_to_retrieve(
        scope=scope, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
    )
    multi, single = dicom_choices(request.headers.get("Accept"))
    choice, multipart = (multi, True) if multi else (single, False)
    if not choice or (not multipart and sop_uid is None):
        return _plain(
            406, _('This resource is sent as multipart/related; type="application/dicom".')
        )
    plans = [_plans(choice, i.transfer_syntax_uid) for i in instances]
    refused = next((i for i, p in zip(instances, plans, strict=True) if not p), None)
    if refused is not None:
        return _plain(406, _refusal(refused))
    first = _prepared_part(instances[0], plans[0])
    if first is None:
        return _plain(406, _not_converted(instances[0]))
    object_type, object_id = _target(study_uid, series_uid, sop_uid)
    _audit_viewed(
        request,
        scope,
        study_uid=study_uid,
        patient_id=instances[0].study.pid,
        object_type=object_type,
        object_id=object_id,
        detail={"resource": "instances", "instances": len(instances)},
    )
    if not multipart:
        return streaming_response(request, (c for c in first.chunks), first.headers["Content-Type"])
    boundary = uuid.uuid4().hex
    parts = _parts(first, zip(instances[1:], plans[1:], strict=True))
    return streaming_response(
        request,
        multipart_chunks(parts, boundary),
        f'multipart/related; type="application/dicom"; boundary={boundary}',
    )


# --- Metadata ------------------------------------------------------------------------------


def metadata_with_urls(body: dict[str, Any], instance_url: str, prefix: str = "") -> dict[str, Any]:
    """A copy of `body` whose `bulk:` references are URLs of the bulk data resource.

    The URL names the value's place (`.../bulk/54000100/1/54001010`), taken from where the
    reference sits rather than from its stored text: metadata kept before values inside
    sequences had paths (`bulk:54001010` in the second waveform group) gets the right URL too.
    """
    out: dict[str, Any] = {}
    for tag, item in body.items():
        if not isinstance(item, dict):
            out[tag] = item
            continue
        item = dict(item)
        uri = item.get("BulkDataURI")
        if isinstance(uri, str) and uri.startswith("bulk:"):
            item["BulkDataURI"] = f"{instance_url}/bulk/{bulk_path(prefix, tag)}"
        if item.get("vr") == "SQ" and isinstance(item.get("Value"), list):
            item["Value"] = [
                metadata_with_urls(v, instance_url, f"{bulk_path(prefix, tag)}/{index}/")
                if isinstance(v, dict)
                else v
                for index, v in enumerate(item["Value"])
            ]
        out[tag] = item
    return out


def accepts_json(header: str | None) -> bool:
    if not (header or "").strip():
        return True
    return any(
        r.media_type in (DICOM_JSON, "application/json", "application/*", "*/*")
        for r in parse_accept(header or "")
    )


def _metadata_chunks(
    rows: Iterable[tuple[str, str, str, str, dict[str, Any]]], root: str
) -> Generator[bytes, None, None]:
    seen: set[str] = set()
    batch = io.BytesIO()
    batch.write(b"[")
    first = True
    for sop_uid, series_uid, study_uid, ts, metadata in rows:
        if sop_uid in seen:
            continue
        seen.add(sop_uid)
        url = f"{root}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
        item = metadata_with_urls(metadata, url)
        # Lets a viewer ask for frames in the syntax they are kept in (PS3.18 10.6.3-5).
        item["00083002"] = {"vr": "UI", "Value": [ts]}
        if not first:
            batch.write(b",")
        first = False
        batch.write(json.dumps(dict(sorted(item.items())), ensure_ascii=False).encode())
        if batch.tell() >= CHUNK_SIZE:
            yield batch.getvalue()
            batch = io.BytesIO()
    batch.write(b"]")
    yield batch.getvalue()


def retrieve_metadata(
    request: HttpRequest,
    scope: Scope,
    *,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> HttpResponseBase:
    """GET .../metadata: the instances' DICOM JSON with bulk data as URLs."""
    from django.http import Http404

    rows = selectors.instance_list(
        scope=scope, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
    )
    first = rows.values_list("study__pid", flat=True).first()
    if first is None:
        selectors.rejected_check(
            scope=scope, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
        )
        raise Http404
    if not accepts_json(request.headers.get("Accept")):
        return _plain(406, _("Metadata is sent as application/dicom+json."))
    object_type, object_id = _target(study_uid, series_uid, sop_uid)
    _audit_viewed(
        request,
        scope,
        study_uid=study_uid,
        patient_id=first,
        object_type=object_type,
        object_id=object_id,
        detail={"resource": "metadata"},
    )
    root = request.build_absolute_uri(reverse("dicomweb:studies"))[: -len("/studies")]
    values = rows.values_list(
        "sop_uid", "series__series_uid", "study__study_uid", "transfer_syntax_uid", "metadata"
    ).iterator(chunk_size=100)
    return streaming_response(request, _metadata_chunks(values, root), DICOM_JSON)


# --- Bulk data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkPlan:
    how: str  # "stored" | "decode"
    part_type: str  # the media type of the parts
    multipart: bool


def _bulk_plan(header: str | None, stored: str, encapsulated: bool) -> BulkPlan | None:
    stored_media = IMAGE_MEDIA_TYPES.get(stored, OCTET_STREAM) if encapsulated else OCTET_STREAM
    ranges = (
        parse_accept(header or "")
        if (header or "").strip()
        else [MediaRange("*/*", None, None, 1.0)]
    )
    for r in ranges:
        wildcard = r.media_type in ("*/*", "multipart/*") or (
            r.media_type == "multipart/related" and r.part_type in (None, "*/*")
        )
        if wildcard:
            return BulkPlan("stored", stored_media, True)
        multipart = r.media_type == "multipart/related"
        part = r.part_type if multipart else r.media_type
        if part == "application/*":
            part = OCTET_STREAM  # the only application/ type bulk data has
        ts = r.transfer_syntax
        if part == OCTET_STREAM:
            if (ts == "*" or ts == stored) and (multipart or not encapsulated):
                return BulkPlan("stored", OCTET_STREAM, multipart)
            if ts in (None, EXPLICIT_LE):
                if not encapsulated and stored in PLAIN_LE | {DEFLATED_LE}:
                    return BulkPlan("stored", OCTET_STREAM, multipart)
                if encapsulated and _decodable(stored):
                    return BulkPlan("decode", OCTET_STREAM, multipart)
        elif (
            multipart
            and encapsulated
            and part in (stored_media, "image/*")
            and ts in (None, "*", stored)
        ):
            return BulkPlan("stored", stored_media, True)
    return None


def _value_bytes(element: DataElement) -> bytes:
    """An element's value as little-endian bytes, whatever its VR."""
    if isinstance(element.value, bytes):
        return element.value
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = True
    write_data_element(buffer, element)
    return buffer.getvalue()[8:]  # after the implicit-VR header: tag and length


def _is_sequence(raw: RawDataElement) -> bool:
    if raw.VR is not None:
        return raw.VR == "SQ"
    try:  # implicit VR: the dictionary says
        return dictionary_VR(raw.tag) == "SQ"
    except KeyError:
        return False


def _find_nested(ds: pydicom.Dataset, tag: int) -> DataElement | None:
    for element in ds.iterall():
        if element.tag == tag and element.VR != "SQ":
            return element
    return None


@dataclass(frozen=True)
class BulkPath:
    """Where a bulk value sits: its top-level tag, then (item index, tag) steps inward."""

    top: int
    steps: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, text: str) -> BulkPath:
        # The URL converter has already checked the shape: TAG(/INDEX/TAG)*.
        pieces = text.split("/")
        steps = tuple(
            (int(pieces[i]), int(pieces[i + 1], 16)) for i in range(1, len(pieces) - 1, 2)
        )
        return cls(int(pieces[0], 16), steps)

    def text(self) -> str:
        inner = "".join(f"/{index}/{tag:08X}" for index, tag in self.steps)
        return f"{self.top:08X}{inner}"


def _walk(ds: pydicom.Dataset, where: BulkPath) -> DataElement | None:
    """The element a nested path names, or None when any step of it is not there."""
    element = ds.get(where.top)
    for index, tag in where.steps:
        if element is None or element.VR != "SQ" or not 0 <= index < len(element.value):
            return None
        item = element.value[index]
        element = item.get(tag)
    if element is None or element.VR == "SQ":
        return None
    return element


def retrieve_bulkdata(
    request: HttpRequest,
    scope: Scope,
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    bulk_path: str,
) -> HttpResponseBase:
    """GET .../instances/{i}/bulk/{path}: one value of the stored file, as multipart.

    The path is a top-level tag (`7FE00010`) or a value inside sequence items
    (`54000100/1/54001010`: the second waveform group's samples).
    """
    from django.http import Http404

    [instance] = selectors.instances_to_retrieve(
        scope=scope, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
    )
    where = BulkPath.parse(bulk_path)
    stored = instance.transfer_syntax_uid
    # Only the top-level pixel data is split into frames; a nested value (an icon's pixels)
    # is sent as the bytes it holds.
    is_pixels = not where.steps and where.top == PIXEL_DATA_TAG
    encapsulated = is_pixels and UID(stored).is_compressed
    plan = _bulk_plan(request.headers.get("Accept"), stored, encapsulated)
    if plan is None:
        return _plain(
            406,
            _('This bulk data is sent as multipart/related; type="%(type)s" (stored as %(ts)s).')
            % {
                "type": IMAGE_MEDIA_TYPES.get(stored, OCTET_STREAM)
                if encapsulated
                else OCTET_STREAM,
                "ts": stored,
            },
        )

    fp = default_storage.open(instance.object_key, "rb")
    try:
        chunks, part_type = _bulk_chunks(fp, instance, where, plan, encapsulated)
    except Exception as exc:
        fp.close()
        if plan.how != "decode":
            raise
        # Decoded before the status line, so a value that does not decode is a refusal
        # that names what is on offer, not a cut body.
        logger.warning("WADO-RS could not decode the pixel data of %s: %r", instance.pk, exc)
        return _plain(
            406,
            _(
                "The pixel data could not be decoded; it is offered as stored: "
                'multipart/related; type="%(type)s"; transfer-syntax=%(ts)s.'
            )
            % {"type": IMAGE_MEDIA_TYPES.get(stored, OCTET_STREAM), "ts": stored},
        )
    except BaseException:
        fp.close()
        raise
    if chunks is None:
        fp.close()
        raise Http404
    _audit_viewed(
        request,
        scope,
        study_uid=study_uid,
        patient_id=instance.study.pid,
        object_type="instance",
        object_id=sop_uid,
        detail={"resource": "bulkdata", "tag": where.text()},
    )
    if not plan.multipart:
        only = next(iter(chunks), [])

        def single() -> Generator[bytes, None, None]:
            try:
                yield from only
            finally:
                fp.close()

        return streaming_response(request, single(), part_type)
    boundary = uuid.uuid4().hex
    parts = (Part({"Content-Type": part_type}, c) for c in chunks)
    media = plan.part_type
    return streaming_response(
        request,
        multipart_chunks(parts, boundary, closing=fp),
        f'multipart/related; type="{media}"; boundary={boundary}',
    )


def _bulk_chunks(
    fp: IO[bytes], instance: Instance, where: BulkPath, plan: BulkPlan, encapsulated: bool
) -> tuple[list[Iterable[bytes]] | None, str]:
    """The value's parts (each an iterable of chunks) and their Content-Type; None if absent."""
    stored = instance.transfer_syntax_uid
    number = where.top
    before_pixels = number < PIXEL_DATA_TAG
    if stored in PLAIN_LE and not encapsulated and not where.steps:
        ds = pydicom.dcmread(fp, defer_size=BULK_THRESHOLD, stop_before_pixels=before_pixels)
        raw = ds.get_item(number, keep_deferred=True) if number in ds else None
        if (
            isinstance(raw, RawDataElement)
            and raw.value is None
            and raw.length != UNDEFINED_LENGTH
            and not _is_sequence(raw)
        ):
            # A large top-level value: straight from the stored file, never held whole.
            return [_range_chunks(fp, raw.value_tell, raw.length)], OCTET_STREAM
    fp.seek(0)
    if where.steps:
        # Large top-level values stay on disk; only the sequence the path names is read.
        nested = pydicom.dcmread(fp, stop_before_pixels=before_pixels, defer_size=BULK_THRESHOLD)
        found = _walk(nested, where)
        return ([[_value_bytes(found)]] if found is not None else None), OCTET_STREAM
    full = pydicom.dcmread(fp, stop_before_pixels=before_pixels)
    # A bare tag that is not at the top level: the first value with that tag, as URLs
    # handed out before values inside sequences had paths were resolved.
    element = full[number] if number in full else _find_nested(full, number)
    if element is None or element.VR == "SQ":  # a sequence is items, not a value
        return None, OCTET_STREAM
    if encapsulated and plan.how == "decode":
        full.decompress(generate_instance_uid=False)
        return [[full.PixelData]], f"{OCTET_STREAM}; transfer-syntax={EXPLICIT_LE}"
    if encapsulated:
        frames = generate_frames(full.PixelData, number_of_frames=instance.number_of_frames)
        return [[frame] for frame in frames], f"{plan.part_type}; transfer-syntax={stored}"
    return [[_value_bytes(element)]], OCTET_STREAM
